//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7396) and Kubernetes' strategic
//! merge patch, applied to objects held as `serde_json::Value`.
//!
//! Everything here is pure: the REST handler decodes the current object, picks the function by
//! [`PatchType::from_content_type`], and maps [`Error`] to a `Status` with
//! [`Error::http_code`]. Server-side apply (`application/apply-patch+yaml`) is recognised here but
//! implemented in `apiserver::apply`.
//!
//! Hostile bodies are bounded: patches may nest at most [`MAX_PATCH_DEPTH`] levels, a JSON patch
//! may hold at most [`MAX_JSON_PATCH_OPERATIONS`] operations (upstream's limit), and its `copy`
//! operations may duplicate at most [`MAX_JSON_PATCH_COPIED_NODES`] values in total, so no input
//! can exhaust the stack or memory.

pub mod meta;
pub mod schemas;
mod strategic;

use std::fmt;

use serde_json::Value;

pub use meta::{PatchMeta, patch_meta, type_map_type};
pub use schemas::{REF_PREFIX, Schemas};
pub use strategic::strategic_merge;

/// How deeply a patch body may nest objects and arrays. Real patches stay far below; the bound
/// keeps every recursive step in this module within a small, fixed stack.
pub const MAX_PATCH_DEPTH: usize = 100;

/// How deeply an object being patched (or a JSON patch's result) may nest.
pub const MAX_OBJECT_DEPTH: usize = 512;

/// Upstream's limit on the number of operations in one JSON patch (answered with 413).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The total number of JSON values a JSON patch's `copy` operations may duplicate, so that a
/// few hundred bytes of repeated `copy` cannot double the object until memory runs out.
pub const MAX_JSON_PATCH_COPIED_NODES: usize = 1_000_000;

/// The patch formats of `PATCH` requests, named by their `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`: RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: RFC 7396.
    Merge,
    /// `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch.
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value, ignoring parameters such as
    /// `; charset=utf-8` and letter case; `None` for anything else (upstream answers 415).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        [
            ("application/json-patch+json", PatchType::Json),
            ("application/merge-patch+json", PatchType::Merge),
            (
                "application/strategic-merge-patch+json",
                PatchType::StrategicMerge,
            ),
            ("application/apply-patch+yaml", PatchType::Apply),
        ]
        .into_iter()
        .find(|(name, _)| essence.eq_ignore_ascii_case(name))
        .map(|(_, patch_type)| patch_type)
    }

    /// The media type this patch type is sent as.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

impl fmt::Display for PatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatchType::Json => "JSON patch",
            PatchType::Merge => "JSON merge patch",
            PatchType::StrategicMerge => "strategic merge patch",
            PatchType::Apply => "apply patch",
        })
    }
}

/// Why a patch could not be applied. [`Error::http_code`] gives the status upstream answers
/// with: 400 for a malformed patch, 413 for too many operations, 422 for a well-formed patch
/// that does not apply to this object (a failed `test`, a missing path).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON, or not of the shape its patch type requires.
    #[error("error decoding {patch_type}: {source}")]
    Decode {
        patch_type: PatchType,
        #[source]
        source: serde_json::Error,
    },
    /// A merge or strategic merge patch whose body is not a JSON object.
    #[error("{patch_type} must be a JSON object, got {found}")]
    NotAnObject {
        patch_type: PatchType,
        found: &'static str,
    },
    /// The patch nests deeper than [`MAX_PATCH_DEPTH`].
    #[error("{patch_type} nests deeper than {limit} levels")]
    TooDeep { patch_type: PatchType, limit: usize },
    /// More than [`MAX_JSON_PATCH_OPERATIONS`] operations; upstream's message.
    #[error("The allowed maximum operations in a JSON patch is {max}, got {count}")]
    TooManyOperations { count: usize, max: usize },
    /// A JSON patch operation that does not apply, e.g. a `test` that failed or a path that does
    /// not exist; `index` counts operations from 0.
    #[error("{message}")]
    Operation { index: usize, message: String },
    /// A strategic merge patch that breaks the format's rules, at `path` in the patch.
    #[error("{}", at(message, path))]
    InvalidPatch { path: String, message: String },
    /// A well-formed strategic merge patch that cannot be merged into this object, at `path`.
    #[error("{}", at(message, path))]
    Unmergeable { path: String, message: String },
}

impl Error {
    /// The HTTP status code for this error, as kube-apiserver answers.
    pub fn http_code(&self) -> u16 {
        match self {
            Error::Decode { .. }
            | Error::NotAnObject { .. }
            | Error::TooDeep { .. }
            | Error::InvalidPatch { .. } => 400,
            Error::TooManyOperations { .. } => 413,
            Error::Operation { .. } | Error::Unmergeable { .. } => 422,
        }
    }
}

fn at(message: &str, path: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{message} (at {path})")
    }
}

/// Applies a JSON patch (RFC 6902, all six operations) to `doc`. Operations apply in order and
/// the whole patch fails if any does; `doc` itself is never modified.
pub fn json_patch(doc: &Value, patch: &[u8]) -> Result<Value, Error> {
    let patch_type = PatchType::Json;
    let body: Value =
        serde_json::from_slice(patch).map_err(|source| Error::Decode { patch_type, source })?;
    // An operation's value sits two levels below the body, so allow for them.
    if exceeds_depth(&body, MAX_PATCH_DEPTH + 2) {
        return Err(Error::TooDeep {
            patch_type,
            limit: MAX_PATCH_DEPTH,
        });
    }
    let operations: json_patch::Patch =
        serde_json::from_value(body).map_err(|source| Error::Decode { patch_type, source })?;
    if operations.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(Error::TooManyOperations {
            count: operations.len(),
            max: MAX_JSON_PATCH_OPERATIONS,
        });
    }
    check_object_depth(doc)?;

    let mut result = doc.clone();
    let mut copied = 0usize;
    for (index, operation) in operations.iter().enumerate() {
        bound_operation(&result, operation, &mut copied)
            .map_err(|message| Error::Operation { index, message })?;
        // `patch_unsafe` on our own copy: a failure discards `result`, so its partial state never
        // escapes, and unlike `patch` it has no undo path that could panic.
        json_patch::patch_unsafe(&mut result, std::slice::from_ref(operation)).map_err(
            |error| Error::Operation {
                index,
                message: describe_operation_error(operation, &error.kind),
            },
        )?;
    }
    Ok(result)
}

/// Refuses an operation whose result would nest deeper than [`MAX_OBJECT_DEPTH`], or that would
/// push the patch's copies past [`MAX_JSON_PATCH_COPIED_NODES`].
fn bound_operation(
    doc: &Value,
    operation: &json_patch::PatchOperation,
    copied: &mut usize,
) -> Result<(), String> {
    use json_patch::PatchOperation as Op;
    let (path, added) = match operation {
        Op::Add(op) => (&op.path, Some(&op.value)),
        Op::Replace(op) => (&op.path, Some(&op.value)),
        Op::Move(op) => (&op.path, doc.pointer(op.from.as_str())),
        Op::Copy(op) => {
            let source = doc.pointer(op.from.as_str());
            if let Some(source) = source {
                *copied = copied.saturating_add(count_nodes(source));
                if *copied > MAX_JSON_PATCH_COPIED_NODES {
                    return Err(format!(
                        "copy operation does not apply: the patch's copies add more than {} values",
                        MAX_JSON_PATCH_COPIED_NODES
                    ));
                }
            }
            (&op.path, source)
        }
        Op::Remove(_) | Op::Test(_) => return Ok(()),
    };
    let depth = added.map_or(0, depth_of).saturating_add(path.count());
    if depth > MAX_OBJECT_DEPTH {
        return Err(format!(
            "{} operation does not apply: the result would nest deeper than {} levels at {}",
            operation_name(operation),
            MAX_OBJECT_DEPTH,
            path.as_str()
        ));
    }
    Ok(())
}

fn operation_name(operation: &json_patch::PatchOperation) -> &'static str {
    use json_patch::PatchOperation as Op;
    match operation {
        Op::Add(_) => "add",
        Op::Remove(_) => "remove",
        Op::Replace(_) => "replace",
        Op::Move(_) => "move",
        Op::Copy(_) => "copy",
        Op::Test(_) => "test",
    }
}

/// Words a failed operation the way upstream's json-patch library does, naming the path.
fn describe_operation_error(
    operation: &json_patch::PatchOperation,
    kind: &json_patch::PatchErrorKind,
) -> String {
    use json_patch::PatchErrorKind as Kind;
    use json_patch::PatchOperation as Op;
    let name = operation_name(operation);
    let path = operation.path().as_str();
    let from = match operation {
        Op::Move(op) => Some(op.from.as_str()),
        Op::Copy(op) => Some(op.from.as_str()),
        _ => None,
    };
    match (operation, kind) {
        (Op::Test(_), _) => format!("testing value {path} failed: test failed"),
        (_, Kind::InvalidFromPointer) => format!(
            "{name} operation does not apply: doc is missing from path: \"{}\"",
            from.unwrap_or_default()
        ),
        (_, Kind::CannotMoveInsideItself) => format!(
            "move operation does not apply: cannot move \"{}\" into its own child \"{path}\"",
            from.unwrap_or_default()
        ),
        (Op::Replace(_), _) => {
            format!("replace operation does not apply: doc is missing key: {path}")
        }
        _ => format!("{name} operation does not apply: doc is missing path: \"{path}\""),
    }
}

/// Applies a JSON merge patch (RFC 7396) to `doc`: objects merge recursively, `null` removes a
/// key, anything else (arrays included) replaces the target.
pub fn merge_patch(doc: &Value, patch: &[u8]) -> Result<Value, Error> {
    let patch_type = PatchType::Merge;
    let patch: Value =
        serde_json::from_slice(patch).map_err(|source| Error::Decode { patch_type, source })?;
    // Upstream refuses anything but an object (or an array, which then fails to decode as
    // the object): a patch replacing the whole object with a scalar is never meaningful.
    if !patch.is_object() {
        return Err(Error::NotAnObject {
            patch_type,
            found: kind_name(&patch),
        });
    }
    if exceeds_depth(&patch, MAX_PATCH_DEPTH) {
        return Err(Error::TooDeep {
            patch_type,
            limit: MAX_PATCH_DEPTH,
        });
    }
    check_object_depth(doc)?;
    let mut result = doc.clone();
    json_patch::merge(&mut result, &patch);
    Ok(result)
}

/// Refuses to work on an object nesting deeper than [`MAX_OBJECT_DEPTH`]: stored objects never
/// do, and cloning one that did could exhaust the stack.
fn check_object_depth(doc: &Value) -> Result<(), Error> {
    if exceeds_depth(doc, MAX_OBJECT_DEPTH) {
        return Err(Error::Unmergeable {
            path: String::new(),
            message: format!("the object nests deeper than {MAX_OBJECT_DEPTH} levels"),
        });
    }
    Ok(())
}

/// The JSON type of `value`, as error messages name it.
fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How many levels of arrays and objects `value` nests (a scalar is 0, `{}` is 1), computed
/// without recursion so that any value can be measured.
fn depth_of(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

/// Whether `value` nests more than `limit` levels; stops looking at the first place it does.
fn exceeds_depth(value: &Value, limit: usize) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        if depth + 1 > limit {
            return true;
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    false
}

/// How many JSON values `value` is made of, itself included.
fn count_nodes(value: &Value) -> usize {
    let mut count = 0usize;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        count = count.saturating_add(1);
        match value {
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(fields) => stack.extend(fields.values()),
            _ => {}
        }
    }
    count
}

#[cfg(test)]
mod tests;
