//! Sets of field paths, the unit of ownership in server-side apply, and their wire form
//! `FieldsV1` (upstream's structured-merge-diff encoding): `f:<field>` for a struct field or map
//! key, `k:<json of the key fields>` for an item of a list keyed by `x-kubernetes-list-map-keys`,
//! `v:<json value>` for an item of a set list, `i:<n>` for a list position, and `.` for "this
//! node itself is in the set" when it also has children.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// One step of a path into an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// A struct field or a map key.
    Field(String),
    /// An item of a map list, by the compact JSON of its key fields (keys sorted).
    Key(String),
    /// An item of a set list, by its compact JSON.
    Value(String),
    /// A list position (only lists without keys, which apply treats atomically).
    Index(usize),
}

impl Step {
    pub fn field(name: &str) -> Step {
        Step::Field(name.to_owned())
    }

    /// The step of a map-list item whose key fields are `keys`.
    pub fn key(keys: Map<String, Value>) -> Step {
        // serde_json's map is sorted, so equal keys always give equal text.
        Step::Key(Value::Object(keys).to_string())
    }

    pub fn value(value: &Value) -> Step {
        Step::Value(value.to_string())
    }

    fn encode(&self) -> String {
        match self {
            Step::Field(name) => format!("f:{name}"),
            Step::Key(keys) => format!("k:{keys}"),
            Step::Value(value) => format!("v:{value}"),
            Step::Index(index) => format!("i:{index}"),
        }
    }

    fn decode(text: &str) -> Option<Step> {
        let prefix = text.get(..2)?;
        let rest = text.get(2..)?;
        match prefix {
            "f:" => Some(Step::Field(rest.to_owned())),
            "k:" => match serde_json::from_str(rest).ok()? {
                Value::Object(keys) => Some(Step::key(keys)),
                _ => None,
            },
            "v:" => serde_json::from_str::<Value>(rest)
                .ok()
                .map(|v| Step::value(&v)),
            "i:" => rest.parse().ok().map(Step::Index),
            _ => None,
        }
    }

    /// How upstream prints a path element in conflict messages: `.name`,
    /// `[containerPort=80,protocol="TCP"]`, `[="value"]`, `[3]`.
    fn display(&self, out: &mut String) {
        match self {
            Step::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            Step::Key(keys) => {
                let parsed: Map<String, Value> = serde_json::from_str(keys).unwrap_or_default();
                let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(out, "[{}]", parts.join(","));
            }
            Step::Value(value) => {
                let _ = write!(out, "[={value}]");
            }
            Step::Index(index) => {
                let _ = write!(out, "[{index}]");
            }
        }
    }
}

/// A path as upstream prints it: `.spec.template.spec.containers[name="web"].image`.
pub fn display(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        step.display(&mut out);
    }
    out
}

/// A set of paths, as a tree: a node is *in* the set when `member` is true; children hold the
/// paths below it. Nodes that are neither members nor have children are never kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<Step, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Whether the node itself is in the set (meaningless for the root).
    pub fn is_member(&self) -> bool {
        self.member
    }

    pub fn child(&self, step: &Step) -> Option<&FieldSet> {
        self.children.get(step)
    }

    pub fn children(&self) -> impl Iterator<Item = (&Step, &FieldSet)> {
        self.children.iter()
    }

    pub fn insert(&mut self, path: &[Step]) {
        match path.split_first() {
            None => self.member = true,
            Some((step, rest)) => self.children.entry(step.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[Step]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((step, rest)) => self.children.get(step).is_some_and(|c| c.has(rest)),
        }
    }

    /// Adds every member of `other`.
    pub fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (step, theirs) in &other.children {
            self.children.entry(step.clone()).or_default().union(theirs);
        }
    }

    /// Removes every member of `other` (paths below a removed member stay unless `other` also
    /// has them), as structured-merge-diff's `Difference`.
    pub fn difference(&mut self, other: &FieldSet) {
        if other.member {
            self.member = false;
        }
        for (step, theirs) in &other.children {
            if let Some(mine) = self.children.get_mut(step) {
                mine.difference(theirs);
                if mine.is_empty() {
                    self.children.remove(step);
                }
            }
        }
    }

    /// Removes every path at or below a member of `other` (`RecursiveDifference`).
    pub fn recursive_difference(&mut self, other: &FieldSet) {
        for (step, theirs) in &other.children {
            if theirs.member {
                self.children.remove(step);
            } else if let Some(mine) = self.children.get_mut(step) {
                mine.recursive_difference(theirs);
                if mine.is_empty() {
                    self.children.remove(step);
                }
            }
        }
    }

    /// The members in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (step, mine) in &self.children {
            if let Some(theirs) = other.children.get(step) {
                let both = mine.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(step.clone(), both);
                }
            }
        }
        out
    }

    /// Keeps only the subtree under the root field `name` (for the status subresource).
    pub fn only_field(&mut self, name: &str) {
        let step = Step::field(name);
        self.member = false;
        self.children.retain(|s, _| *s == step);
    }

    /// Drops the subtree under the root field `name`.
    pub fn without_field(&mut self, name: &str) {
        self.children.remove(&Step::field(name));
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Vec<Step>> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect(&mut prefix, &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        if self.member && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (step, child) in &self.children {
            prefix.push(step.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` JSON of the set.
    pub fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        for (step, child) in &self.children {
            out.insert(step.encode(), child.node_json());
        }
        Value::Object(out)
    }

    fn node_json(&self) -> Value {
        let mut out = Map::new();
        if self.member && !self.children.is_empty() {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        for (step, child) in &self.children {
            out.insert(step.encode(), child.node_json());
        }
        Value::Object(out)
    }

    /// Parses `fieldsV1`; the error names the offending key.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, String> {
        let Value::Object(map) = value else {
            return Err("fieldsV1 must be an object".into());
        };
        let mut set = FieldSet::default();
        for (key, child) in map {
            let step = Step::decode(key).ok_or_else(|| format!("invalid field key {key:?}"))?;
            let node = FieldSet::node_from_json(child)?;
            if !node.is_empty() {
                set.children.insert(step, node);
            }
        }
        Ok(set)
    }

    fn node_from_json(value: &Value) -> Result<FieldSet, String> {
        let Value::Object(map) = value else {
            return Err("a fieldsV1 node must be an object".into());
        };
        if map.is_empty() {
            return Ok(FieldSet {
                member: true,
                children: BTreeMap::new(),
            });
        }
        let mut node = FieldSet::default();
        for (key, child) in map {
            if key == "." {
                node.member = true;
                continue;
            }
            let step = Step::decode(key).ok_or_else(|| format!("invalid field key {key:?}"))?;
            let child = FieldSet::node_from_json(child)?;
            if !child.is_empty() {
                node.children.insert(step, child);
            }
        }
        Ok(node)
    }
}
