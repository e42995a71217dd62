//! Protobuf → JSON: walks the bytes of a message with its entry in the field table and builds
//! the object Go's JSON encoder would print for the same Go value.
//!
//! Go semantics kept here: absent fields are omitted; a field present on the wire is printed
//! even when zero (pointers are only written when set), except non-pointer scalars tagged
//! `omitempty`, which go-to-protobuf always writes and Go's JSON encoder drops when zero; an
//! empty metav1.Time is Go's zero time, printed as `null`, so it is omitted.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use super::table::{Field, Kind, Shape, Table};
use super::wire::{Reader, WireType};
use super::{Error, MAGIC, MAX_DEPTH, timestamp};

/// Decodes the fields of message `index` from `bytes` into `out`.
pub(super) fn message(
    table: &Table,
    index: usize,
    bytes: &[u8],
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep {
            path: String::new(),
        });
    }
    let message = table.message(index);
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        let (number, wire) = reader.key()?;
        match message.field(number) {
            Some(field) => {
                decode_field(table, field, wire, &mut reader, out, depth)
                    .map_err(|error| error.at(field.name))?;
            }
            None => reader.skip(wire)?,
        }
    }
    Ok(())
}

fn decode_field(
    table: &Table,
    field: &Field,
    wire: WireType,
    reader: &mut Reader,
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), Error> {
    match field.shape {
        Shape::Map => {
            let entry = reader.expect_len(wire)?;
            let (key, value) = map_entry(table, field.kind, entry, depth)?;
            object_at(out, field.name).insert(key, value);
        }
        Shape::Repeated => {
            let list = array_at(out, field.name);
            if wire == WireType::Len && field.kind.is_varint() {
                // Packed: proto2 writes repeated scalars one by one, but parsers accept both.
                let mut packed = Reader::new(reader.len_delimited()?);
                while !packed.is_empty() {
                    list.push(varint_value(field.kind, packed.varint()?));
                }
            } else {
                let index = list.len();
                let value = value(table, field.kind, wire, reader, depth)
                    .map_err(|error| error.at(&format!("[{index}]")))?;
                list.push(value.unwrap_or(Value::Null));
            }
        }
        Shape::Single => match field.kind {
            // A repeated occurrence of a message merges into the earlier one, as in protobuf.
            Kind::Message(index) => {
                let bytes = reader.expect_len(wire)?;
                let target = if field.inline {
                    out
                } else {
                    object_at(out, field.name)
                };
                message(table, index, bytes, target, depth + 1)?;
            }
            kind => match value(table, kind, wire, reader, depth)? {
                Some(value) if !(field.omit_zero && is_zero(&value)) => {
                    out.insert(field.name.to_owned(), value);
                }
                _ => {
                    out.remove(field.name);
                }
            },
        },
    }
    Ok(())
}

/// One value of `kind`; `None` for values Go prints as `null` (zero times, nil raw JSON).
fn value(
    table: &Table,
    kind: Kind,
    wire: WireType,
    reader: &mut Reader,
    depth: usize,
) -> Result<Option<Value>, Error> {
    if kind.is_varint() {
        return Ok(Some(varint_value(kind, reader.expect_varint(wire)?)));
    }
    let bytes = reader.expect_len(wire)?;
    Ok(match kind {
        // Handled above: the only kinds not carried length-delimited.
        Kind::Int | Kind::Bool => None,
        // Go strings may hold any bytes; its JSON encoder replaces invalid UTF-8 the same way.
        Kind::String => Some(Value::String(String::from_utf8_lossy(bytes).into_owned())),
        Kind::Bytes => Some(Value::String(BASE64.encode(bytes))),
        Kind::Time => time(bytes, false)?,
        Kind::MicroTime => time(bytes, true)?,
        Kind::Duration => {
            let nanos = fields(bytes)?.int(1)?.unwrap_or(0);
            Some(Value::String(timestamp::format_duration(nanos)))
        }
        Kind::Quantity => {
            // An unset Quantity is zero, which Go prints as "0".
            let text = fields(bytes)?.string(1)?.unwrap_or_else(|| "0".into());
            Some(Value::String(text))
        }
        Kind::IntOrString => {
            let fields = fields(bytes)?;
            Some(match fields.int(1)?.unwrap_or(0) {
                0 => Value::from(fields.int(2)?.unwrap_or(0) as i32),
                1 => Value::String(fields.string(3)?.unwrap_or_default()),
                other => {
                    return Err(Error::malformed(format!(
                        "IntOrString has unknown type {other}"
                    )));
                }
            })
        }
        Kind::Json => raw_json(table, bytes, depth)?,
        Kind::StringList => Some(Value::Array(
            fields(bytes)?
                .all(1)
                .map(|bytes| {
                    let bytes = bytes?;
                    Ok(Value::String(String::from_utf8_lossy(bytes).into_owned()))
                })
                .collect::<Result<_, Error>>()?,
        )),
        Kind::Message(index) => {
            let mut object = Map::new();
            message(table, index, bytes, &mut object, depth + 1)?;
            Some(Value::Object(object))
        }
    })
}

fn varint_value(kind: Kind, raw: u64) -> Value {
    match kind {
        Kind::Bool => Value::Bool(raw != 0),
        // int32 and int64 both travel as the two's complement of a 64-bit value.
        _ => Value::from(raw as i64),
    }
}

/// A map entry {1 key, 2 value}; a missing value is the zero value of its kind.
fn map_entry(
    table: &Table,
    kind: Kind,
    entry: &[u8],
    depth: usize,
) -> Result<(String, Value), Error> {
    let mut key = String::new();
    let mut value_field = None;
    let mut reader = Reader::new(entry);
    while !reader.is_empty() {
        match reader.key()? {
            (1, wire) => key = String::from_utf8_lossy(reader.expect_len(wire)?).into_owned(),
            (2, wire) => value_field = Some(value(table, kind, wire, &mut reader, depth)),
            (_, wire) => reader.skip(wire)?,
        }
    }
    let value = match value_field {
        Some(value) => value.map_err(|error| error.at(&format!("[{key}]")))?,
        None => zero(kind),
    };
    Ok((key, value.unwrap_or(Value::Null)))
}

fn zero(kind: Kind) -> Option<Value> {
    match kind {
        Kind::String | Kind::Bytes => Some(Value::String(String::new())),
        Kind::Int | Kind::IntOrString => Some(Value::from(0)),
        Kind::Bool => Some(Value::Bool(false)),
        Kind::Quantity => Some(Value::String("0".into())),
        Kind::Duration => Some(Value::String("0s".into())),
        Kind::StringList => Some(Value::Array(Vec::new())),
        Kind::Message(_) => Some(Value::Object(Map::new())),
        Kind::Time | Kind::MicroTime | Kind::Json => None,
    }
}

/// metav1.Time / MicroTime {1 seconds, 2 nanos}. metav1.Time keeps whole seconds only, as its
/// Go `Unmarshal` does.
fn time(bytes: &[u8], micro: bool) -> Result<Option<Value>, Error> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let fields = fields(bytes)?;
    let seconds = fields.int(1)?.unwrap_or(0);
    // nanos is an int32; Go's time.Unix normalises values outside [0, 1e9).
    let nanos = i64::from(fields.int(2)?.unwrap_or(0) as i32);
    let seconds = seconds
        .checked_add(nanos.div_euclid(1_000_000_000))
        .ok_or_else(|| Error::malformed("time out of range"))?;
    let micros = micro.then_some((nanos.rem_euclid(1_000_000_000) / 1_000) as u32);
    timestamp::format(seconds, micros)
        .map(|text| Some(Value::String(text)))
        .ok_or_else(|| Error::malformed(format!("time {seconds}s is outside years 0-9999")))
}

/// metav1.FieldsV1 / runtime.RawExtension {1 raw}: JSON text, or a nested protobuf object.
fn raw_json(table: &Table, bytes: &[u8], depth: usize) -> Result<Option<Value>, Error> {
    let raw = fields(bytes)?.bytes(1)?.unwrap_or_default();
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.starts_with(MAGIC) {
        return super::envelope(table, raw, depth + 1).map(Some);
    }
    serde_json::from_slice(raw)
        .map(Some)
        .map_err(|source| Error::Json {
            path: String::new(),
            source,
        })
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(text) => text.is_empty(),
        Value::Number(number) => number.as_i64() == Some(0),
        Value::Bool(flag) => !flag,
        _ => false,
    }
}

fn object_at<'a>(out: &'a mut Map<String, Value>, name: &str) -> &'a mut Map<String, Value> {
    let slot = out.entry(name).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(object) => object,
        _ => unreachable!("replaced by an object just above"),
    }
}

fn array_at<'a>(out: &'a mut Map<String, Value>, name: &str) -> &'a mut Vec<Value> {
    let slot = out.entry(name).or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(list) => list,
        _ => unreachable!("replaced by an array just above"),
    }
}

/// The fields of one of the small fixed messages (Time, Quantity, IntOrString, …), read eagerly.
pub(super) fn fields(bytes: &[u8]) -> Result<Fields<'_>, Error> {
    let mut entries = Vec::new();
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        let (number, wire) = reader.key()?;
        let value = match wire {
            WireType::Varint => Raw::Varint(reader.varint()?),
            WireType::Len => Raw::Len(reader.len_delimited()?),
            other => {
                reader.skip(other)?;
                continue;
            }
        };
        entries.push((number, value));
    }
    Ok(Fields { entries })
}

#[derive(Clone, Copy)]
enum Raw<'a> {
    Varint(u64),
    Len(&'a [u8]),
}

pub(super) struct Fields<'a> {
    entries: Vec<(u32, Raw<'a>)>,
}

impl<'a> Fields<'a> {
    /// The last occurrence of field `number`, as protobuf's "last one wins".
    fn last(&self, number: u32) -> Option<Raw<'a>> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| *n == number)
            .map(|(_, raw)| *raw)
    }

    pub(super) fn int(&self, number: u32) -> Result<Option<i64>, Error> {
        match self.last(number) {
            None => Ok(None),
            Some(Raw::Varint(value)) => Ok(Some(value as i64)),
            Some(Raw::Len(_)) => Err(Error::malformed(format!(
                "field {number} is length-delimited where a varint was expected"
            ))),
        }
    }

    pub(super) fn bytes(&self, number: u32) -> Result<Option<&'a [u8]>, Error> {
        match self.last(number) {
            None => Ok(None),
            Some(Raw::Len(bytes)) => Ok(Some(bytes)),
            Some(Raw::Varint(_)) => Err(Error::malformed(format!(
                "field {number} is a varint where bytes were expected"
            ))),
        }
    }

    pub(super) fn string(&self, number: u32) -> Result<Option<String>, Error> {
        Ok(self
            .bytes(number)?
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned()))
    }

    /// Every occurrence of the length-delimited field `number`, in order.
    fn all(&self, number: u32) -> impl Iterator<Item = Result<&'a [u8], Error>> + '_ {
        self.entries
            .iter()
            .filter(move |(n, _)| *n == number)
            .map(move |(_, raw)| match raw {
                Raw::Len(bytes) => Ok(*bytes),
                Raw::Varint(_) => Err(Error::malformed(format!(
                    "field {number} is a varint where bytes were expected"
                ))),
            })
    }
}
