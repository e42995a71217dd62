//! JSON → protobuf, for clients that accept only `application/vnd.kubernetes.protobuf`: the
//! reverse walk of `decode`, driven by the same field table.
//!
//! Only what the JSON holds is written (Go would also write zero values of non-pointer fields;
//! a reader cannot tell the difference). Map entries are sorted by key, as go-to-protobuf's
//! generated marshallers do, so equal objects encode to equal bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::encoding::{WireType, encode_key, encode_varint};
use serde_json::{Map, Value};

use super::table::{Field, Kind, Shape, Table};
use super::{Error, MAGIC, MAX_DEPTH, timestamp};

pub(super) fn envelope(table: &Table, object: &Value, depth: usize) -> Result<Vec<u8>, Error> {
    let object = object
        .as_object()
        .ok_or_else(|| Error::unencodable("the value is not a JSON object"))?;
    let text = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::unencodable(format!("the object has no {name}")))
    };
    let (api_version, kind) = (text("apiVersion")?, text("kind")?);
    let index = super::definition(table, api_version, kind).ok_or_else(|| Error::UnknownKind {
        api_version: api_version.into(),
        kind: kind.into(),
    })?;
    let mut raw = Vec::new();
    message(table, index, object, &mut raw, depth)?;
    let mut type_meta = Vec::new();
    string(1, api_version, &mut type_meta);
    string(2, kind, &mut type_meta);
    let mut out = MAGIC.to_vec();
    len_delimited(1, &type_meta, &mut out);
    len_delimited(2, &raw, &mut out);
    // contentEncoding and contentType, written empty as Go's runtime.Unknown does.
    string(3, "", &mut out);
    string(4, "", &mut out);
    Ok(out)
}

fn message(
    table: &Table,
    index: usize,
    object: &Map<String, Value>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep {
            path: String::new(),
        });
    }
    for field in &table.message(index).fields {
        if field.inline {
            // An embedded struct: its fields sit in this same object.
            if let Kind::Message(inner) = field.kind {
                let mut bytes = Vec::new();
                message(table, inner, object, &mut bytes, depth + 1)?;
                len_delimited(field.number, &bytes, out);
            }
            continue;
        }
        match object.get(field.name) {
            None | Some(Value::Null) => {}
            Some(value) => encode_field(table, field, value, out, depth)
                .map_err(|error| error.at(field.name))?,
        }
    }
    Ok(())
}

fn encode_field(
    table: &Table,
    field: &Field,
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Error> {
    match field.shape {
        Shape::Single => self::value(table, field.number, field.kind, value, out, depth),
        Shape::Repeated => {
            let items = value
                .as_array()
                .ok_or_else(|| Error::unencodable("expected an array"))?;
            for (index, item) in items.iter().enumerate() {
                if !item.is_null() {
                    self::value(table, field.number, field.kind, item, out, depth)
                        .map_err(|error| error.at(&format!("[{index}]")))?;
                }
            }
            Ok(())
        }
        Shape::Map => {
            let entries = value
                .as_object()
                .ok_or_else(|| Error::unencodable("expected an object"))?;
            let mut keys: Vec<&String> = entries.keys().collect();
            keys.sort();
            for key in keys {
                let mut entry = Vec::new();
                string(1, key, &mut entry);
                match &entries[key] {
                    Value::Null => {}
                    item => self::value(table, 2, field.kind, item, &mut entry, depth)
                        .map_err(|error| error.at(&format!("[{key}]")))?,
                }
                len_delimited(field.number, &entry, out);
            }
            Ok(())
        }
    }
}

fn value(
    table: &Table,
    number: u32,
    kind: Kind,
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Error> {
    let text = || {
        value
            .as_str()
            .ok_or_else(|| Error::unencodable("expected a string"))
    };
    match kind {
        Kind::String => string(number, text()?, out),
        Kind::Int => {
            let number_value = value
                .as_i64()
                .ok_or_else(|| Error::unencodable("expected an integer"))?;
            varint(number, number_value as u64, out);
        }
        Kind::Bool => {
            let flag = value
                .as_bool()
                .ok_or_else(|| Error::unencodable("expected a boolean"))?;
            varint(number, u64::from(flag), out);
        }
        Kind::Bytes => {
            let bytes = BASE64
                .decode(text()?)
                .map_err(|error| Error::unencodable(format!("invalid base64: {error}")))?;
            len_delimited(number, &bytes, out);
        }
        Kind::Time | Kind::MicroTime => {
            let (seconds, nanos) = timestamp::parse(text()?)
                .ok_or_else(|| Error::unencodable("expected an RFC 3339 time"))?;
            let nanos = if kind == Kind::Time {
                0
            } else {
                nanos / 1_000 * 1_000
            };
            let mut bytes = Vec::new();
            varint(1, seconds as u64, &mut bytes);
            varint(2, u64::from(nanos), &mut bytes);
            len_delimited(number, &bytes, out);
        }
        Kind::Duration => {
            let nanos = timestamp::parse_duration(text()?)
                .ok_or_else(|| Error::unencodable("expected a duration such as 1m30s"))?;
            let mut bytes = Vec::new();
            varint(1, nanos as u64, &mut bytes);
            len_delimited(number, &bytes, out);
        }
        Kind::Quantity => {
            // Go's Quantity also accepts a bare JSON number.
            let quantity = match value {
                Value::Number(number) => number.to_string(),
                _ => text()?.to_owned(),
            };
            let mut bytes = Vec::new();
            string(1, &quantity, &mut bytes);
            len_delimited(number, &bytes, out);
        }
        Kind::IntOrString => {
            let mut bytes = Vec::new();
            match value {
                Value::String(text) => {
                    varint(1, 1, &mut bytes);
                    varint(2, 0, &mut bytes);
                    string(3, text, &mut bytes);
                }
                _ => {
                    let int = value
                        .as_i64()
                        .and_then(|int| i32::try_from(int).ok())
                        .ok_or_else(|| Error::unencodable("expected an int32 or a string"))?;
                    varint(1, 0, &mut bytes);
                    varint(2, i64::from(int) as u64, &mut bytes);
                    string(3, "", &mut bytes);
                }
            }
            len_delimited(number, &bytes, out);
        }
        Kind::Json => {
            // Serialising a Value cannot fail: its map keys are strings.
            let raw = serde_json::to_vec(value).unwrap_or_default();
            let mut bytes = Vec::new();
            len_delimited(1, &raw, &mut bytes);
            len_delimited(number, &bytes, out);
        }
        Kind::StringList => {
            let items = value
                .as_array()
                .ok_or_else(|| Error::unencodable("expected an array of strings"))?;
            let mut bytes = Vec::new();
            for item in items {
                let item = item
                    .as_str()
                    .ok_or_else(|| Error::unencodable("expected an array of strings"))?;
                string(1, item, &mut bytes);
            }
            len_delimited(number, &bytes, out);
        }
        Kind::Message(index) => {
            let object = value
                .as_object()
                .ok_or_else(|| Error::unencodable("expected an object"))?;
            let mut bytes = Vec::new();
            message(table, index, object, &mut bytes, depth + 1)?;
            len_delimited(number, &bytes, out);
        }
    }
    Ok(())
}

fn varint(number: u32, value: u64, out: &mut Vec<u8>) {
    encode_key(number, WireType::Varint, out);
    encode_varint(value, out);
}

fn len_delimited(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn string(number: u32, text: &str, out: &mut Vec<u8>) {
    len_delimited(number, text.as_bytes(), out);
}
