//! The Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`), translated to and
//! from the v1 JSON form the API server works on.
//!
//! kubectl 1.32+ sends the bodies of its typed clients (`create configmap`, `create deployment`,
//! `auth whoami`, `certificate approve`, …) as protobuf. Upstream's envelope is the magic
//! `k8s\0` followed by a `runtime.Unknown` {1 typeMeta {1 apiVersion, 2 kind}, 2 raw,
//! 3 contentEncoding, 4 contentType}, where `raw` is the go-to-protobuf (proto2) encoding of the
//! Go type. The field numbers, JSON names and value kinds of every message come from the table
//! in `fields.txt` (parsed by `table`); [`decode()`] walks the bytes with it and prints what Go's
//! JSON encoder would print for the same object, and [`encode()`] goes the other way.

mod decode;
mod encode;
mod table;
mod timestamp;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use table::Table;

/// The media type of the Kubernetes protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// Messages nest at most this deep (objects, and objects inside RawExtensions); real kinds stay
/// well under 20, so this only stops hostile input.
const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("body does not start with the Kubernetes protobuf magic number \"k8s\\0\"")]
    NoMagic,
    #[error("malformed protobuf{}: {reason}", location(.path))]
    Malformed { path: String, reason: String },
    #[error("protobuf content encoding {0:?} is not supported")]
    ContentEncoding(String),
    #[error("protobuf envelope holds content type {0:?}, not {MEDIA_TYPE}")]
    ContentType(String),
    #[error("no protobuf schema is known for kind {kind:?} in apiVersion {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("protobuf message nests deeper than {MAX_DEPTH} levels{}", location(.path))]
    TooDeep { path: String },
    #[error("invalid JSON in raw field{}", location(.path))]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode{} as protobuf: {reason}", location(.path))]
    Unencodable { path: String, reason: String },
}

fn location(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

impl Error {
    fn malformed(reason: impl Into<String>) -> Error {
        Error::Malformed {
            path: String::new(),
            reason: reason.into(),
        }
    }

    fn unencodable(reason: impl Into<String>) -> Error {
        Error::Unencodable {
            path: String::new(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path of the error with `segment` (a field name or `[index]`), as the
    /// error travels up out of the message that holds the field.
    fn at(mut self, segment: &str) -> Error {
        let path = match &mut self {
            Error::Malformed { path, .. }
            | Error::TooDeep { path }
            | Error::Json { path, .. }
            | Error::Unencodable { path, .. } => path,
            _ => return self,
        };
        if segment.is_empty() {
            return self;
        }
        *path = if path.is_empty() {
            segment.to_owned()
        } else if path.starts_with('[') {
            format!("{segment}{path}")
        } else {
            format!("{segment}.{path}")
        };
        self
    }
}

/// Whether a `Content-Type` (or one `Accept` entry) names the Kubernetes protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// Decodes a Kubernetes protobuf body into the JSON object of the same kind, with `apiVersion`
/// and `kind` set from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    envelope(Table::get(), body, 0)
}

/// Encodes a JSON object (with `apiVersion` and `kind`) into a Kubernetes protobuf body.
/// Fields the protobuf schema does not have are dropped, as Go's decoder drops unknown JSON.
pub fn encode(object: &Value) -> Result<Vec<u8>, Error> {
    encode::envelope(Table::get(), object, 0)
}

fn envelope(table: &Table, body: &[u8], depth: usize) -> Result<Value, Error> {
    let unknown = body.strip_prefix(MAGIC).ok_or(Error::NoMagic)?;
    let unknown = decode::fields(unknown)?;
    let type_meta = decode::fields(unknown.bytes(1)?.unwrap_or_default())?;
    let api_version = type_meta.string(1)?.unwrap_or_default();
    let kind = type_meta.string(2)?.unwrap_or_default();
    let encoding = unknown.string(3)?.unwrap_or_default();
    if !encoding.is_empty() {
        return Err(Error::ContentEncoding(encoding));
    }
    let content_type = unknown.string(4)?.unwrap_or_default();
    if !content_type.is_empty() && !is_protobuf(&content_type) {
        return Err(Error::ContentType(content_type));
    }
    let index = definition(table, &api_version, &kind).ok_or_else(|| Error::UnknownKind {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let mut object = Map::new();
    decode::message(
        table,
        index,
        unknown.bytes(2)?.unwrap_or_default(),
        &mut object,
        depth,
    )?;
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(object))
}

/// The table entry of the Go type registered as `kind` in `apiVersion`: built-in groups map to
/// `io.k8s.api.<first label of the group>.<version>.<kind>` (`rbac.authorization.k8s.io/v1` →
/// `io.k8s.api.rbac.v1`), and the meta/v1 kinds every group version registers (DeleteOptions,
/// Status, WatchEvent, …) to `io.k8s.apimachinery.pkg.apis.meta.v1.<kind>`.
fn definition(table: &Table, api_version: &str, kind: &str) -> Option<usize> {
    if kind.is_empty() || kind.contains('.') {
        return None;
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let package = if group.is_empty() {
        Some("core")
    } else if !group.contains('.') {
        Some(group)
    } else {
        // Built-in groups with dots all end in .k8s.io; anything else is a custom resource.
        group
            .strip_suffix(".k8s.io")
            .and_then(|group| group.split('.').next())
    };
    package
        .filter(|package| !version.contains('.') && !package.is_empty())
        .and_then(|package| table.index(&format!("io.k8s.api.{package}.{version}.{kind}")))
        .or_else(|| table.index(&format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}")))
}
