//! Walks of objects guided by their schema, with structured-merge-diff's semantics: the field set
//! of a value, the comparison of two versions of an object, the merge of an applied
//! configuration into a live object, and the removal of fields an applier gave up.
//!
//! The schema says how each part is owned and merged:
//! - a struct (declared `properties`) is granular: each field on its own;
//! - a map (`additionalProperties`) is granular by key, unless `x-kubernetes-map-type: atomic`;
//! - a list is `atomic` (replaced whole, the default), a `set` of scalars (merged by value) or a
//!   `map` keyed by `x-kubernetes-list-map-keys` (merged item by item). Built-in lists that only
//!   carry a strategic-merge `merge` strategy count as a map keyed by the merge key (or a set),
//!   as upstream's OpenAPI conversion does;
//! - what the schema does not describe is "deduced": objects are granular maps, lists atomic.

use serde_json::{Map, Value};

use super::set::{FieldSet, Step};
use crate::apiserver::patch::Schemas;

/// The definition a custom resource's `metadata` uses (CRD schemas leave it out).
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// How deep the walks go; stored objects are far shallower, and bodies are bounded by the JSON
/// decoder's own limit.
const MAX_DEPTH: usize = 200;

/// The type of a value: its schema node (where per-field extensions live) and the schema it
/// resolves to. Both are absent for an untyped (deduced) value.
#[derive(Clone, Copy)]
pub struct Type<'a> {
    schemas: &'a Schemas,
    node: Option<&'a Value>,
    schema: Option<&'a Value>,
    /// The object's root: its `metadata` is always `ObjectMeta`.
    root: bool,
}

/// What a value is, for ownership and merging.
#[derive(Clone)]
enum Shape<'a> {
    /// Owned and replaced as a whole (scalars, atomic maps and lists).
    Leaf,
    /// Declared fields (unknown keys are treated as map keys).
    Struct,
    /// Granular map; each key on its own.
    Map,
    /// List of scalars merged by value.
    Set,
    /// List of objects merged by these key fields.
    Keyed(Vec<&'a str>),
}

impl<'a> Type<'a> {
    /// The root type of a built-in kind, by definition name.
    pub fn named(schemas: &'a Schemas, name: &str) -> Type<'a> {
        Type {
            schemas,
            node: None,
            schema: schemas.get(name),
            root: true,
        }
    }

    /// The root type of a custom resource, from its `openAPIV3Schema`.
    pub fn custom(schemas: &'a Schemas, schema: &'a Value) -> Type<'a> {
        Type {
            schemas,
            node: None,
            schema: Some(schema),
            root: true,
        }
    }

    fn untyped(schemas: &'a Schemas) -> Type<'a> {
        Type {
            schemas,
            node: None,
            schema: None,
            root: false,
        }
    }

    fn of(schemas: &'a Schemas, node: &'a Value) -> Type<'a> {
        let (_, schema) = schemas.resolve(node);
        Type {
            schemas,
            node: Some(node),
            schema,
            root: false,
        }
    }

    /// An extension of the field (its schema node) or else of its type.
    fn ext(&self, key: &str) -> Option<&'a Value> {
        self.node
            .and_then(|n| n.get(key))
            .or_else(|| self.schema.and_then(|s| s.get(key)))
    }

    fn properties(&self) -> Option<&'a Map<String, Value>> {
        self.schema?.get("properties")?.as_object()
    }

    /// Whether the schema lists `key` as required (Go fields without `omitempty`, which the
    /// zero object upstream compares against already has).
    fn requires(&self, key: &str) -> bool {
        self.schema
            .and_then(|s| s.get("required"))
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|k| k == key))
    }

    fn declares(&self, key: &str) -> bool {
        (self.root && matches!(key, "metadata" | "apiVersion" | "kind"))
            || self.properties().is_some_and(|p| p.contains_key(key))
    }

    /// The type of the value under `key`.
    fn field(&self, key: &str) -> Type<'a> {
        if self.root && key == "metadata" {
            return Type::named(self.schemas, OBJECT_META).not_root();
        }
        if let Some(p) = self.properties().and_then(|p| p.get(key)) {
            return Type::of(self.schemas, p);
        }
        match self.schema.and_then(|s| s.get("additionalProperties")) {
            Some(extra) if extra.is_object() => Type::of(self.schemas, extra),
            _ => Type::untyped(self.schemas),
        }
    }

    fn not_root(mut self) -> Type<'a> {
        self.root = false;
        self
    }

    /// The type of a list's items.
    fn items(&self) -> Type<'a> {
        match self.schema.and_then(|s| s.get("items")) {
            Some(items) if items.is_object() => Type::of(self.schemas, items),
            _ => Type::untyped(self.schemas),
        }
    }

    fn shape(&self, value: &Value) -> Shape<'a> {
        if self.ext("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            return Shape::Leaf;
        }
        match value {
            Value::Object(_) => {
                if self.ext("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") {
                    Shape::Leaf
                } else if self.root || self.properties().is_some() {
                    Shape::Struct
                } else {
                    Shape::Map
                }
            }
            Value::Array(_) => self.list_shape(),
            _ => Shape::Leaf,
        }
    }

    fn list_shape(&self) -> Shape<'a> {
        match self.ext("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => return Shape::Set,
            Some("map") => {
                let keys: Vec<&str> = self
                    .ext("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                return if keys.is_empty() {
                    Shape::Leaf
                } else {
                    Shape::Keyed(keys)
                };
            }
            Some(_) => return Shape::Leaf,
            None => {}
        }
        let merge = self
            .ext("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)
            .is_some_and(|s| s.split(',').any(|p| p.trim() == "merge"));
        if !merge {
            return Shape::Leaf;
        }
        match self
            .ext("x-kubernetes-patch-merge-key")
            .and_then(Value::as_str)
        {
            Some(key) => Shape::Keyed(vec![key]),
            None => Shape::Set,
        }
    }

    /// The default of a key field of this list's items, for items that leave it out
    /// (upstream fills a missing `protocol` of ports with its default, `TCP`).
    fn key_default(&self, key: &str) -> Option<Value> {
        let declared = self
            .items()
            .properties()
            .and_then(|p| p.get(key))
            .and_then(|p| p.get("default"))
            .cloned();
        declared.or_else(|| (key == "protocol").then(|| Value::from("TCP")))
    }
}

/// Why a value has no field set: an applied configuration that breaks the list rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Where, as upstream prints paths (`.spec.template.spec.containers`).
    pub path: String,
    pub message: String,
}

/// The step of a list item; an error when a keyed item lacks a key field that has no default.
fn item_step(ty: &Type<'_>, shape: &Shape<'_>, item: &Value) -> Result<Step, String> {
    match shape {
        Shape::Set => Ok(Step::value(item)),
        Shape::Keyed(keys) => {
            let Value::Object(fields) = item else {
                return Err("associative list items must be objects".into());
            };
            let mut key = Map::new();
            for name in keys {
                match fields.get(*name).filter(|v| !v.is_null()) {
                    Some(v) => {
                        key.insert((*name).to_owned(), v.clone());
                    }
                    None => match ty.key_default(name) {
                        Some(v) => {
                            key.insert((*name).to_owned(), v);
                        }
                        None => {
                            return Err(format!(
                                "associative list with keys has an element that omits key field \"{name}\" (and doesn't have default value)"
                            ));
                        }
                    },
                }
            }
            Ok(Step::key(key))
        }
        _ => Err("not a merged list".into()),
    }
}

/// The steps of every item of a merged list. Items that cannot be keyed (only in objects that
/// were stored before: applied configurations are checked) fall back to their position.
fn item_steps(ty: &Type<'_>, shape: &Shape<'_>, items: &[Value]) -> Vec<Step> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| item_step(ty, shape, item).unwrap_or(Step::Index(i)))
        .collect()
}

/// Where each step first occurs in a list.
fn positions(steps: &[Step]) -> std::collections::HashMap<&Step, usize> {
    let mut at = std::collections::HashMap::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        at.entry(s).or_insert(i);
    }
    at
}

/// The field set of `value` (upstream's `ToFieldSet`): every scalar and atomic value, every map
/// key and list item, and struct fields that are null or empty objects. With `strict`, items of
/// keyed lists must carry their keys and be unique (applied configurations).
pub fn field_set(value: &Value, ty: Type<'_>, strict: bool) -> Result<FieldSet, Invalid> {
    let mut set = FieldSet::default();
    let mut path = Vec::new();
    walk_set(value, ty, strict, &mut path, &mut set, 0)?;
    Ok(set)
}

fn walk_set(
    value: &Value,
    ty: Type<'_>,
    strict: bool,
    path: &mut Vec<Step>,
    set: &mut FieldSet,
    depth: usize,
) -> Result<(), Invalid> {
    if depth > MAX_DEPTH {
        return Err(Invalid {
            path: super::set::display(path),
            message: "the object nests too deeply".into(),
        });
    }
    let shape = ty.shape(value);
    match (&shape, value) {
        (Shape::Struct | Shape::Map, Value::Object(fields)) => {
            for (key, child) in fields {
                path.push(Step::field(key));
                walk_set(child, ty.field(key), strict, path, set, depth + 1)?;
                let empty = child.is_null() || child.as_object().is_some_and(|o| o.is_empty());
                if empty || matches!(shape, Shape::Map) || !ty.declares(key) {
                    set.insert(path);
                }
                path.pop();
            }
        }
        (Shape::Set | Shape::Keyed(_), Value::Array(items)) => {
            let item_ty = ty.items();
            let mut seen = std::collections::HashSet::new();
            for (i, item) in items.iter().enumerate() {
                let step = match item_step(&ty, &shape, item) {
                    Ok(step) => step,
                    Err(message) if strict => {
                        return Err(Invalid {
                            path: format!("{}[{i}]", super::set::display(path)),
                            message,
                        });
                    }
                    Err(_) => Step::Index(i),
                };
                if strict && !seen.insert(step.clone()) {
                    let mut at = path.clone();
                    at.push(step);
                    return Err(Invalid {
                        path: super::set::display(path),
                        message: format!(
                            "duplicate entries for key {}",
                            super::set::display(&at[at.len() - 1..])
                        ),
                    });
                }
                path.push(step);
                if matches!(shape, Shape::Keyed(_)) {
                    walk_set(item, item_ty, strict, path, set, depth + 1)?;
                }
                set.insert(path);
                path.pop();
            }
        }
        _ => {
            if !path.is_empty() {
                set.insert(path);
            }
        }
    }
    Ok(())
}

/// What changed between two versions of an object, as structured-merge-diff compares them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Added and modified paths: what a writer sets.
    pub fn changed(&self) -> FieldSet {
        let mut out = self.added.clone();
        out.union(&self.modified);
        out
    }
}

/// Compares `old` (absent when creating) with `new`. Scalars and atomic values are added,
/// removed or modified; maps, list items and struct values are added or removed as nodes too.
/// A struct or required field that sits in a struct present on that side counts as present even
/// when absent, the way Go's non-pointer structs and fields without `omitempty` always are in
/// the zero object upstream starts from, so `spec`, `template` or `containers` are never
/// "added" nodes.
pub fn compare(old: Option<&Value>, new: &Value, ty: Type<'_>) -> Comparison {
    let mut c = Comparison::default();
    let mut path = Vec::new();
    let root = Implicit {
        present: (true, true),
        required: true,
    };
    walk_compare(old, Some(new), ty, root, &mut path, &mut c, 0);
    c
}

/// What a node's parent says about it: whether the parent exists on each side (old, new), and
/// whether the parent's schema requires the node.
#[derive(Clone, Copy)]
struct Implicit {
    present: (bool, bool),
    required: bool,
}

const NOT_IMPLICIT: Implicit = Implicit {
    present: (false, false),
    required: false,
};

fn same_kind(a: &Value, b: &Value) -> bool {
    matches!(
        (a, b),
        (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_))
    ) || (!a.is_object() && !a.is_array() && !b.is_object() && !b.is_array())
}

fn walk_compare(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    ty: Type<'_>,
    implicit: Implicit,
    path: &mut Vec<Step>,
    c: &mut Comparison,
    depth: usize,
) {
    let Some(value) = rhs.or(lhs) else { return };
    let shape = ty.shape(value);
    let mixed = matches!((lhs, rhs), (Some(a), Some(b)) if !same_kind(a, b));
    if depth > MAX_DEPTH || mixed || matches!(shape, Shape::Leaf) {
        match (lhs, rhs) {
            (None, Some(_)) => c.added.insert(path),
            (Some(_), None) => c.removed.insert(path),
            (Some(a), Some(b)) if a != b => c.modified.insert(path),
            _ => {}
        }
        return;
    }
    let is_implicit = matches!(shape, Shape::Struct) || implicit.required;
    // Whether this node exists on each side, counting implicit ones.
    let here = (
        lhs.is_some() || (is_implicit && implicit.present.0),
        rhs.is_some() || (is_implicit && implicit.present.1),
    );
    match shape {
        Shape::Struct | Shape::Map => {
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let mut keys: Vec<&String> = l.keys().chain(r.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child_implicit = if matches!(shape, Shape::Struct) {
                    Implicit {
                        present: here,
                        required: ty.requires(key),
                    }
                } else {
                    NOT_IMPLICIT
                };
                path.push(Step::field(key));
                walk_compare(
                    l.get(key),
                    r.get(key),
                    ty.field(key),
                    child_implicit,
                    path,
                    c,
                    depth + 1,
                );
                path.pop();
            }
        }
        Shape::Set | Shape::Keyed(_) => {
            let empty = Vec::new();
            let l = lhs.and_then(Value::as_array).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_array).unwrap_or(&empty);
            let l_steps = item_steps(&ty, &shape, l);
            let r_steps = item_steps(&ty, &shape, r);
            let item_ty = if matches!(shape, Shape::Set) {
                Type::untyped(ty.schemas)
            } else {
                ty.items()
            };
            let (l_at, r_at) = (positions(&l_steps), positions(&r_steps));
            let mut done = std::collections::HashSet::new();
            for step in r_steps.iter().chain(&l_steps) {
                if !done.insert(step) {
                    continue;
                }
                let li = l_at.get(step).and_then(|i| l.get(*i));
                let ri = r_at.get(step).and_then(|i| r.get(*i));
                path.push(step.clone());
                walk_compare(li, ri, item_ty, NOT_IMPLICIT, path, c, depth + 1);
                path.pop();
            }
        }
        Shape::Leaf => {}
    }
    if path.is_empty() {
        return;
    }
    // A node with children is itself added or removed when it appears or goes (unless it is
    // implicitly present and carries content).
    let has_content = |v: Option<&Value>| {
        v.is_some_and(|v| match v {
            Value::Object(o) => !o.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        })
    };
    match (lhs, rhs) {
        (None, Some(_)) if !(is_implicit && implicit.present.0 && has_content(rhs)) => {
            c.added.insert(path)
        }
        (Some(_), None) if !(is_implicit && implicit.present.1 && has_content(lhs)) => {
            c.removed.insert(path)
        }
        _ => {}
    }
}

/// Merges an applied configuration into the live object: configured values win, maps and
/// structs merge by key, set lists by value, map lists item by item (live items the
/// configuration does not name keep their place, the configured ones follow its order), and
/// atomic values are replaced. A `null` in the configuration removes the field.
pub fn merge(live: Option<&Value>, config: &Value, ty: Type<'_>) -> Value {
    merge_at(live, config, ty, 0)
}

fn merge_at(live: Option<&Value>, config: &Value, ty: Type<'_>, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return config.clone();
    }
    let shape = ty.shape(config);
    match (&shape, config) {
        (Shape::Struct | Shape::Map, Value::Object(fields)) => {
            let mut out = match live {
                Some(Value::Object(live)) => live.clone(),
                _ => Map::new(),
            };
            for (key, value) in fields {
                if value.is_null() {
                    out.remove(key);
                    continue;
                }
                let merged = merge_at(out.get(key), value, ty.field(key), depth + 1);
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (Shape::Set, Value::Array(items)) => {
            let mut out = match live {
                Some(Value::Array(live)) => live.clone(),
                _ => Vec::new(),
            };
            for item in items {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Value::Array(out)
        }
        (Shape::Keyed(_), Value::Array(items)) => {
            let live_items: &[Value] = match live {
                Some(Value::Array(live)) => live,
                _ => &[],
            };
            merge_keyed(live_items, items, &ty, &shape, depth)
        }
        _ => strip_nulls(config),
    }
}

fn merge_keyed(
    live: &[Value],
    config: &[Value],
    ty: &Type<'_>,
    shape: &Shape<'_>,
    depth: usize,
) -> Value {
    let live_steps = item_steps(ty, shape, live);
    let config_steps = item_steps(ty, shape, config);
    let (live_at, config_at) = (positions(&live_steps), positions(&config_steps));
    let item_ty = ty.items();
    let merged = |step: &Step, item: &Value| {
        let current = live_at.get(step).and_then(|i| live.get(*i));
        merge_at(current, item, item_ty, depth + 1)
    };
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let mut emitted = std::collections::HashSet::new();
    let mut next = 0;
    for (step, item) in live_steps.iter().zip(live) {
        match config_at.get(step).copied() {
            Some(at) => {
                // Everything the configuration lists up to this item goes here, in its order.
                while next <= at {
                    let s = &config_steps[next];
                    if emitted.insert(s.clone()) {
                        out.push(merged(s, &config[next]));
                    }
                    next += 1;
                }
            }
            None => out.push(item.clone()),
        }
    }
    for (s, item) in config_steps.iter().zip(config).skip(next) {
        if emitted.insert(s.clone()) {
            out.push(merged(s, item));
        }
    }
    Value::Array(out)
}

/// A configured value without the nulls inside it (they mean "unset").
fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Removes from `value` what the applier owned last time (`last`) and nobody owns now (`owned`
/// is everyone's set, the applier's new one included). A field stays while anyone owns it or
/// anything below it; the key fields of a list item that stays are kept; a map or list left
/// empty by the removal goes too, unless it is owned itself.
pub fn prune(value: &mut Value, last: &FieldSet, owned: &FieldSet, ty: Type<'_>) {
    prune_at(value, last, Some(owned), ty, &[], 0);
}

/// Returns whether `value` was emptied by the removal.
fn prune_at(
    value: &mut Value,
    last: &FieldSet,
    owned: Option<&FieldSet>,
    ty: Type<'_>,
    keep: &[&str],
    depth: usize,
) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let shape = ty.shape(value);
    match (&shape, value) {
        (Shape::Struct | Shape::Map, Value::Object(fields)) => {
            let before = fields.len();
            for (step, gone) in last.children() {
                let Step::Field(key) = step else { continue };
                if keep.contains(&key.as_str()) {
                    continue;
                }
                let now = owned.and_then(|o| o.child(step));
                if gone.is_member() && now.is_none() {
                    fields.remove(key);
                } else if let Some(child) = fields.get_mut(key) {
                    let emptied = prune_at(child, gone, now, ty.field(key), &[], depth + 1);
                    if emptied && !now.is_some_and(FieldSet::is_member) {
                        fields.remove(key);
                    }
                }
            }
            before > 0 && fields.is_empty()
        }
        (Shape::Set | Shape::Keyed(_), Value::Array(items)) => {
            let before = items.len();
            let steps = item_steps(&ty, &shape, items);
            let item_ty = ty.items();
            let keys: Vec<&str> = match &shape {
                Shape::Keyed(keys) => keys.clone(),
                _ => Vec::new(),
            };
            let mut kept = Vec::with_capacity(items.len());
            for (step, mut item) in steps.iter().zip(std::mem::take(items)) {
                let Some(gone) = last.child(step) else {
                    kept.push(item);
                    continue;
                };
                let now = owned.and_then(|o| o.child(step));
                if gone.is_member() && now.is_none() {
                    continue;
                }
                if matches!(shape, Shape::Keyed(_)) {
                    prune_at(&mut item, gone, now, item_ty, &keys, depth + 1);
                }
                kept.push(item);
            }
            *items = kept;
            before > 0 && items.is_empty()
        }
        _ => false,
    }
}
