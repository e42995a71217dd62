//! Strategic merge patch, with the semantics of upstream's apimachinery `strategicpatch`
//! package applying a patch (patch format version 2, as the apiserver does with
//! `MergeParallelList` and `IgnoreUnmatchedNulls`).
//!
//! - Maps merge recursively and `null` deletes a key.
//! - A list whose field has patch strategy `merge` is merged: lists of maps by the field's merge
//!   key (matching elements merge, new ones are added), lists of primitives as a set union; every
//!   other list is replaced.
//! - Directives: `$patch: replace|delete` in a map or list element, `$retainKeys`,
//!   `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>`.
//! - The order of a merged list follows upstream: `$setElementOrder` if given, otherwise patch
//!   elements in patch order interleaved with the object's own elements in their order, an
//!   element whose relative position is unknown (a new one) going first.
//!
//! Field types come from [`Schemas`] and the patch strategies from [`super::meta`]; a subtree the
//! schema does not describe is merged with no strategy, i.e. as a JSON merge patch would.
//!
//! Where upstream copies part of a patch into the object verbatim (a key the object lacks, a
//! `$patch: replace` map, elements appended to a merged list) we merge it into an empty value
//! instead, so that nulls and directives never end up in stored objects; upstream drops them
//! later, when decoding into the Go type.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

use super::meta::{PatchMeta, patch_meta};
use super::schemas::Schemas;
use super::{Error, MAX_PATCH_DEPTH, PatchType, check_object_depth, exceeds_depth, kind_name};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies the strategic merge patch `patch` to `doc`, an object of the type named `type_name`
/// in `schemas` (e.g. `io.k8s.api.apps.v1.Deployment`). An unknown type name merges with no
/// strategies at all; callers refuse strategic merge patches for custom resources beforehand
/// (upstream answers 415).
pub fn strategic_merge(
    doc: &Value,
    patch: &Value,
    schemas: &Schemas,
    type_name: &str,
) -> Result<Value, Error> {
    let patch_type = PatchType::StrategicMerge;
    let Value::Object(fields) = patch else {
        return Err(Error::NotAnObject {
            patch_type,
            found: kind_name(patch),
        });
    };
    if exceeds_depth(patch, MAX_PATCH_DEPTH) {
        return Err(Error::TooDeep {
            patch_type,
            limit: MAX_PATCH_DEPTH,
        });
    }
    check_object_depth(doc)?;
    let original = match doc {
        Value::Object(original) => original.clone(),
        _ => Map::new(),
    };
    let shape = Shape::named(schemas, type_name);
    merge_map(original, fields, shape, &Path::Root, 0).map(Value::Object)
}

/// Where in the patch we are, for error messages: `spec.template.spec.containers[1]`.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(Path::Root, name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

fn invalid(path: &Path<'_>, message: impl Into<String>) -> Error {
    Error::InvalidPatch {
        path: path.to_string(),
        message: message.into(),
    }
}

fn unmergeable(path: &Path<'_>, message: impl Into<String>) -> Error {
    Error::Unmergeable {
        path: path.to_string(),
        message: message.into(),
    }
}

/// What the schema says about the value at hand: the named type (for the patch-metadata table)
/// and its schema, either of which may be unknown.
#[derive(Clone, Copy)]
struct Shape<'a> {
    schemas: &'a Schemas,
    type_name: Option<&'a str>,
    schema: Option<&'a Value>,
}

impl<'a> Shape<'a> {
    fn named(schemas: &'a Schemas, type_name: &'a str) -> Shape<'a> {
        Shape {
            schemas,
            type_name: Some(type_name),
            schema: schemas.get(type_name),
        }
    }

    fn of(schemas: &'a Schemas, node: Option<&'a Value>) -> Shape<'a> {
        let (type_name, schema) = match node {
            Some(node) => schemas.resolve(node),
            None => (None, None),
        };
        Shape {
            schemas,
            type_name,
            schema,
        }
    }

    /// The shape of the value under `key`, with the key's patch metadata: a declared property,
    /// or the value type of a map (`additionalProperties`).
    fn field(&self, key: &str) -> (Shape<'a>, PatchMeta) {
        let meta = self
            .type_name
            .and_then(|type_name| patch_meta(type_name, key))
            .unwrap_or(PatchMeta::NONE);
        let property = self
            .schema
            .and_then(|schema| schema.get("properties"))
            .and_then(|properties| properties.get(key));
        let map_value = || {
            self.schema
                .and_then(|schema| schema.get("additionalProperties"))
                .filter(|value| value.is_object())
        };
        (Shape::of(self.schemas, property.or_else(map_value)), meta)
    }

    /// The shape of a list's elements.
    fn items(&self) -> Shape<'a> {
        Shape::of(
            self.schemas,
            self.schema.and_then(|schema| schema.get("items")),
        )
    }
}

/// Merges `patch` into `original`, both maps of the type `shape`.
fn merge_map(
    original: Map<String, Value>,
    patch: &Map<String, Value>,
    shape: Shape<'_>,
    path: &Path<'_>,
    depth: usize,
) -> Result<Map<String, Value>, Error> {
    if depth > MAX_PATCH_DEPTH {
        return Err(invalid(path, "patch nests too deeply"));
    }
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            // The rest of the patch becomes the map; nothing of the original is kept.
            Some("replace") => merge_fields(Map::new(), patch, shape, path, depth),
            Some("delete") => Ok(Map::new()),
            _ => Err(invalid(
                path,
                format!("unknown patch type: {directive} in map"),
            )),
        };
    }
    merge_fields(original, patch, shape, path, depth)
}

/// [`merge_map`] after the map-level `$patch` directive has been dealt with.
fn merge_fields(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    shape: Shape<'_>,
    path: &Path<'_>,
    depth: usize,
) -> Result<Map<String, Value>, Error> {
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut original, patch, retain, path)?;
    }

    // `$setElementOrder/<field>` merges its list first and fixes the result's order.
    let mut ordered = HashSet::new();
    for (key, order) in patch {
        let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else {
            continue;
        };
        let field_path = Path::Field(path, field);
        let Value::Array(order) = order else {
            return Err(invalid(
                &field_path,
                "invalid patch format of setElementOrder list",
            ));
        };
        let (child, meta) = shape.field(field);
        let merged = set_element_order(
            original.get(field),
            patch.get(field),
            order,
            child,
            meta,
            &field_path,
            depth + 1,
        )?;
        if let Some(merged) = merged {
            original.insert(field.to_owned(), Value::Array(merged));
        }
        ordered.insert(field);
    }

    let mut deletions = Vec::new();
    for (key, value) in patch {
        if key == DIRECTIVE
            || key == RETAIN_KEYS
            || key.starts_with(SET_ELEMENT_ORDER)
            || ordered.contains(key.as_str())
        {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((field, value));
            continue;
        }
        if value.is_null() {
            original.remove(key);
            continue;
        }
        let (child, meta) = shape.field(key);
        let field_path = Path::Field(path, key);
        let merged = match (original.remove(key), value) {
            (Some(Value::Object(current)), Value::Object(patch)) => {
                let current = if meta.has_strategy("replace") {
                    Map::new()
                } else {
                    current
                };
                Value::Object(merge_map(current, patch, child, &field_path, depth + 1)?)
            }
            (Some(Value::Array(current)), Value::Array(patch)) => Value::Array(merge_list(
                current,
                patch,
                child.items(),
                meta,
                &field_path,
                depth + 1,
            )?),
            // Missing from the object, or of another JSON type: the patch's value wins.
            (_, value) => new_value(value, child, meta, &field_path, depth + 1)?,
        };
        original.insert(key.clone(), merged);
    }

    for (field, remove) in deletions {
        delete_from_primitive_list(&mut original, field, remove, &Path::Field(path, field))?;
    }
    Ok(original)
}

/// `$retainKeys`: drops every key of `original` not listed, after checking that the patch sets
/// no key outside the list (upstream's rule).
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
    path: &Path<'_>,
) -> Result<(), Error> {
    let bad_format = || invalid(path, "invalid patch format of retainKeys");
    let Value::Array(retain) = retain else {
        return Err(bad_format());
    };
    let keep: HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
    let sets_unlisted_key = patch.iter().any(|(key, value)| {
        !value.is_null()
            && key != RETAIN_KEYS
            && key != DIRECTIVE
            && !key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            && !key.starts_with(SET_ELEMENT_ORDER)
            && !keep.contains(key.as_str())
    });
    if sets_unlisted_key {
        return Err(bad_format());
    }
    original.retain(|key, _| keep.contains(key.as_str()));
    Ok(())
}

/// `$deleteFromPrimitiveList/<field>`: removes the listed values from a merged list of
/// primitives. Like upstream, a field the object lacks (or that is not a list) is left alone,
/// and a `null` list deletes the field.
fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    field: &str,
    remove: &Value,
    path: &Path<'_>,
) -> Result<(), Error> {
    if remove.is_null() {
        original.remove(field);
        return Ok(());
    }
    let Value::Array(remove) = remove else {
        return Ok(());
    };
    let Some(Value::Array(current)) = original.get_mut(field) else {
        return Ok(());
    };
    if current.is_empty() && remove.is_empty() {
        return Ok(());
    }
    if element_kind(current, remove, path)? == Kind::Object {
        return Err(invalid(path, "invalid patch format of primitive list"));
    }
    let remove: HashSet<String> = remove.iter().map(identity).collect();
    current.retain(|value| !remove.contains(&identity(value)));
    Ok(())
}

/// Takes a patch value for a key the object lacks (or holds with another JSON type): maps and
/// merged lists are merged into nothing, which applies their directives and drops their nulls;
/// other values are taken as they are.
fn new_value(
    value: &Value,
    shape: Shape<'_>,
    meta: PatchMeta,
    path: &Path<'_>,
    depth: usize,
) -> Result<Value, Error> {
    Ok(match value {
        Value::Object(patch) => Value::Object(merge_map(Map::new(), patch, shape, path, depth)?),
        Value::Array(items) => Value::Array(new_list(items, shape.items(), meta, path, depth)?),
        other => other.clone(),
    })
}

/// A patch list for a field the object lacks. A merged list loses its directive elements
/// (`$patch: delete` has nothing to delete, `$patch: replace` nothing to replace) and its maps
/// are cleaned like new maps; any other list is taken verbatim, as upstream replaces it.
fn new_list(
    items: &[Value],
    shape: Shape<'_>,
    meta: PatchMeta,
    path: &Path<'_>,
    depth: usize,
) -> Result<Vec<Value>, Error> {
    if !meta.has_strategy("merge") {
        return Ok(items.to_vec());
    }
    let mut list = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let item_path = Path::Index(path, index);
        match item {
            Value::Object(patch) => match patch.get(DIRECTIVE) {
                None => list.push(Value::Object(merge_map(
                    Map::new(),
                    patch,
                    shape,
                    &item_path,
                    depth + 1,
                )?)),
                Some(directive) => list_directive(directive, &item_path).map(|_| ())?,
            },
            other => list.push(other.clone()),
        }
    }
    Ok(list)
}

/// The directive of a list element: `Ok(true)` for `replace`, `Ok(false)` for `delete`.
fn list_directive(directive: &Value, path: &Path<'_>) -> Result<bool, Error> {
    match directive.as_str() {
        Some("replace") => Ok(true),
        Some("delete") => Ok(false),
        Some("merge") => Err(invalid(
            path,
            "merging lists cannot yet be specified in the patch",
        )),
        _ => Err(invalid(
            path,
            format!("unknown patch type: {directive} in map"),
        )),
    }
}

/// Merges a patch list into the object's list of the same field.
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    items: Shape<'_>,
    meta: PatchMeta,
    path: &Path<'_>,
    depth: usize,
) -> Result<Vec<Value>, Error> {
    if !meta.has_strategy("merge") {
        // No strategy, or `replace`: the patch's list is the new list, verbatim.
        return Ok(patch.to_vec());
    }
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if element_kind(&original, patch, path)? != Kind::Object {
        return Ok(union(original, patch));
    }
    let Some(merge_key) = meta.merge_key else {
        return Err(unmergeable(path, "cannot merge lists without merge key"));
    };
    merge_keyed_list(original, patch, merge_key, items, path, depth)
}

/// The set union of two lists of primitives: the values of both, each once, ordered as
/// [`order_keyed`] does.
fn union(original: Vec<Value>, patch: &[Value]) -> Vec<Value> {
    let server_order = positions(&original);
    let patch_order = positions(patch);
    let mut seen = HashSet::new();
    let mut merged = Vec::with_capacity(original.len() + patch.len());
    for value in original.into_iter().chain(patch.iter().cloned()) {
        if seen.insert(identity(&value)) {
            merged.push(value);
        }
    }
    order_values(merged, &patch_order, &server_order, identity)
}

/// Merges a list of maps by `merge_key`.
fn merge_keyed_list(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    items: Shape<'_>,
    path: &Path<'_>,
    depth: usize,
) -> Result<Vec<Value>, Error> {
    // Directive elements first: `$patch: delete` removes by key, `$patch: replace` makes the
    // remaining patch elements the whole list.
    let mut elements = Vec::with_capacity(patch.len());
    let mut replace = false;
    let mut deleted = HashSet::new();
    for (index, item) in patch.iter().enumerate() {
        let item_path = Path::Index(path, index);
        let Value::Object(element) = item else {
            return Err(unmergeable(
                &item_path,
                "list element types are not identical",
            ));
        };
        let Some(directive) = element.get(DIRECTIVE) else {
            elements.push((index, element));
            continue;
        };
        if list_directive(directive, &item_path)? {
            replace = true;
            continue;
        }
        let Some(key) = element.get(merge_key) else {
            return Err(missing_merge_key(&item_path, merge_key));
        };
        deleted.insert(identity(key));
    }
    if !deleted.is_empty() {
        original.retain(|current| {
            current
                .get(merge_key)
                .is_none_or(|key| !deleted.contains(&identity(key)))
        });
    }
    if replace {
        let mut list = Vec::with_capacity(elements.len());
        for (index, element) in elements {
            let item_path = Path::Index(path, index);
            list.push(Value::Object(merge_map(
                Map::new(),
                element,
                items,
                &item_path,
                depth + 1,
            )?));
        }
        return Ok(list);
    }

    let server_order = keyed_positions(&original, merge_key, path)?;
    let mut patch_order = HashMap::with_capacity(elements.len());
    let mut found = server_order.clone();
    for (index, element) in elements {
        let item_path = Path::Index(path, index);
        let Some(key) = element.get(merge_key) else {
            return Err(missing_merge_key(&item_path, merge_key));
        };
        let key = identity(key);
        let position = patch_order.len();
        patch_order.entry(key.clone()).or_insert(position);
        match found.get(&key).and_then(|&at| original.get_mut(at)) {
            Some(current) => {
                let Value::Object(fields) = std::mem::take(current) else {
                    return Err(unmergeable(
                        &item_path,
                        "list element types are not identical",
                    ));
                };
                *current = Value::Object(merge_map(fields, element, items, &item_path, depth + 1)?);
            }
            None => {
                let added = merge_map(Map::new(), element, items, &item_path, depth + 1)?;
                found.insert(key, original.len());
                original.push(Value::Object(added));
            }
        }
    }
    let mut keyed = Vec::with_capacity(original.len());
    for element in original {
        let key = match element.get(merge_key) {
            Some(key) => identity(key),
            None => return Err(missing_merge_key(path, merge_key)),
        };
        keyed.push((key, element));
    }
    Ok(order_keyed(keyed, &patch_order, &server_order))
}

/// `$setElementOrder/<field>`: merges the field's patch list (if any) and orders the result by
/// `order`; `None` when neither the object nor the patch has the field.
fn set_element_order(
    current: Option<&Value>,
    patch: Option<&Value>,
    order: &[Value],
    shape: Shape<'_>,
    meta: PatchMeta,
    path: &Path<'_>,
    depth: usize,
) -> Result<Option<Vec<Value>>, Error> {
    let current = match current {
        None => None,
        Some(Value::Array(current)) => Some(current.as_slice()),
        Some(other) => {
            return Err(unmergeable(
                path,
                format!(
                    "$setElementOrder needs a list, the object has {}",
                    kind_name(other)
                ),
            ));
        }
    };
    let patch = match patch {
        None => None,
        Some(Value::Array(patch)) => Some(patch.as_slice()),
        Some(_) => {
            return Err(invalid(
                path,
                "invalid patch format of setElementOrder list",
            ));
        }
    };
    let merge_key = meta.merge_key;
    check_order(patch.unwrap_or_default(), order, merge_key, path)?;
    let merged = match (current, patch) {
        (None, None) => return Ok(None),
        (Some(current), None) => current.to_vec(),
        (None, Some(patch)) => new_list(patch, shape.items(), meta, path, depth)?,
        (Some(current), Some(patch)) => {
            merge_list(current.to_vec(), patch, shape.items(), meta, path, depth)?
        }
    };
    let server = current.unwrap_or_default();
    let keyed_maps = merge_key.filter(|_| merged.iter().chain(order).all(Value::is_object));
    let ordered = match keyed_maps {
        Some(merge_key) => {
            let order = keyed_positions(order, merge_key, path)?;
            let server_order = keyed_positions(server, merge_key, path)?;
            let mut keyed = Vec::with_capacity(merged.len());
            for element in merged {
                let Some(key) = element.get(merge_key) else {
                    return Err(missing_merge_key(path, merge_key));
                };
                keyed.push((identity(key), element));
            }
            order_keyed(keyed, &order, &server_order)
        }
        None => order_values(merged, &positions(order), &positions(server), identity),
    };
    Ok(Some(ordered))
}

/// Upstream's check that a patch list agrees with its `$setElementOrder`: its elements (bar
/// directive elements) must appear in the order list, in the same relative order.
fn check_order(
    patch: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
    path: &Path<'_>,
) -> Result<(), Error> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let identify = |value: &Value| -> Result<String, Error> {
        match merge_key {
            None => Ok(identity(value)),
            Some(merge_key) => match value.get(merge_key) {
                Some(key) if value.is_object() => Ok(identity(key)),
                _ => Err(missing_merge_key(path, merge_key)),
            },
        }
    };
    let mut wanted = patch.iter().filter(|item| item.get(DIRECTIVE).is_none());
    let mut next = wanted.next();
    for listed in order {
        let Some(item) = next else {
            return Ok(());
        };
        if identify(item)? == identify(listed)? {
            next = wanted.next();
        }
    }
    match next {
        None => Ok(()),
        Some(_) => Err(invalid(
            path,
            "the order in the patch list doesn't match the $setElementOrder list",
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// The one JSON type of the elements of both lists; upstream refuses lists of lists and lists
/// mixing types.
fn element_kind(original: &[Value], patch: &[Value], path: &Path<'_>) -> Result<Kind, Error> {
    let mut kind = None;
    for value in original.iter().chain(patch) {
        let this = match value {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Object(_) => Kind::Object,
            Value::Array(_) => return Err(unmergeable(path, "lists of lists are not supported")),
        };
        match kind {
            None => kind = Some(this),
            Some(kind) if kind != this => {
                return Err(unmergeable(path, "list element types are not identical"));
            }
            Some(_) => {}
        }
    }
    Ok(kind.unwrap_or(Kind::Null))
}

fn missing_merge_key(path: &Path<'_>, merge_key: &str) -> Error {
    invalid(
        path,
        format!("map does not contain declared merge key: {merge_key}"),
    )
}

/// A string that is equal for equal JSON values, to index values by. Objects serialize with
/// sorted keys, so this holds for them too.
fn identity(value: &Value) -> String {
    value.to_string()
}

/// Where each value first appears in `list`.
fn positions(list: &[Value]) -> HashMap<String, usize> {
    let mut positions = HashMap::with_capacity(list.len());
    for (index, value) in list.iter().enumerate() {
        positions.entry(identity(value)).or_insert(index);
    }
    positions
}

/// Where each merge-key value first appears in a list of maps; every element needs the key.
fn keyed_positions(
    list: &[Value],
    merge_key: &str,
    path: &Path<'_>,
) -> Result<HashMap<String, usize>, Error> {
    let mut positions = HashMap::with_capacity(list.len());
    for (index, value) in list.iter().enumerate() {
        let Some(key) = value.get(merge_key) else {
            return Err(missing_merge_key(path, merge_key));
        };
        positions.entry(identity(key)).or_insert(index);
    }
    Ok(positions)
}

/// [`order_keyed`] for values that are their own key.
fn order_values(
    merged: Vec<Value>,
    patch_order: &HashMap<String, usize>,
    server_order: &HashMap<String, usize>,
    key: fn(&Value) -> String,
) -> Vec<Value> {
    let keyed = merged
        .into_iter()
        .map(|value| (key(&value), value))
        .collect();
    order_keyed(keyed, patch_order, server_order)
}

/// Upstream's `normalizeElementOrder`: the elements the patch names, sorted by the patch's
/// order, interleaved with the others (sorted by the object's order); an element goes before a
/// patch element only when the object's order says so, which puts new elements first.
fn order_keyed(
    merged: Vec<(String, Value)>,
    patch_order: &HashMap<String, usize>,
    server_order: &HashMap<String, usize>,
) -> Vec<Value> {
    let (mut from_patch, mut server_only): (Vec<_>, Vec<_>) = merged
        .into_iter()
        .partition(|(key, _)| patch_order.contains_key(key));
    let rank = |order: &HashMap<String, usize>, key: &String| -> usize {
        order.get(key).copied().unwrap_or(usize::MAX)
    };
    from_patch.sort_by_key(|(key, _)| rank(patch_order, key));
    server_only.sort_by_key(|(key, _)| rank(server_order, key));

    let mut ordered = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut from_patch = from_patch.into_iter().peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        let take_server = match (server_only.peek(), from_patch.peek()) {
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
            (Some((left, _)), Some((right, _))) => {
                match (server_order.get(left), server_order.get(right)) {
                    (Some(left), Some(right)) => left < right,
                    _ => false,
                }
            }
        };
        let next = if take_server {
            server_only.next()
        } else {
            from_patch.next()
        };
        if let Some((_, value)) = next {
            ordered.push(value);
        }
    }
    ordered
}

#[cfg(test)]
mod tests;
