//! The field table: for every protobuf message rk3s understands, its field numbers, JSON names
//! and value kinds, parsed once from the compact text in `fields.txt` (its header explains the
//! format).

use std::collections::HashMap;
use std::sync::OnceLock;

const FIELDS: &str = include_str!("fields.txt");

/// What a field holds, which decides both its wire type and its JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    String,
    /// int32 or int64 (varint; negative int32 values are sign-extended to 64 bits).
    Int,
    Bool,
    /// `[]byte`: base64 in JSON.
    Bytes,
    /// metav1.Time: RFC 3339 with whole seconds.
    Time,
    /// metav1.MicroTime: RFC 3339 with six fractional digits.
    MicroTime,
    /// metav1.Duration: Go's duration string.
    Duration,
    /// resource.Quantity: its canonical string.
    Quantity,
    /// intstr.IntOrString: a JSON number or string.
    IntOrString,
    /// metav1.FieldsV1 or runtime.RawExtension: JSON text carried as bytes.
    Json,
    /// A named `[]string` (ExtraValue, Verbs), wrapped in a message on the wire.
    StringList,
    /// Another message, by its index in [`Table::messages`].
    Message(usize),
}

impl Kind {
    /// Kinds carried as varints, the only ones that may also arrive packed when repeated.
    pub(super) fn is_varint(self) -> bool {
        matches!(self, Kind::Int | Kind::Bool)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Single,
    Repeated,
    /// `map<string, kind>`: repeated entry messages {1 key, 2 value}.
    Map,
}

#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) number: u32,
    /// The JSON name; empty for an inline field.
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) shape: Shape,
    /// Embedded with `json:",inline"`: the message's fields belong to the parent object.
    pub(super) inline: bool,
    /// A non-pointer scalar with `omitempty`: Go's JSON encoder drops its zero value.
    pub(super) omit_zero: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Message {
    /// Sorted by number.
    pub(super) fields: Vec<Field>,
}

impl Message {
    pub(super) fn field(&self, number: u32) -> Option<&Field> {
        self.fields
            .binary_search_by_key(&number, |field| field.number)
            .ok()
            .map(|index| &self.fields[index])
    }
}

#[derive(Debug)]
pub(super) struct Table {
    pub(super) messages: Vec<Message>,
    by_name: HashMap<String, usize>,
}

impl Table {
    /// The built-in table, parsed on first use.
    pub(super) fn get() -> &'static Table {
        static TABLE: OnceLock<Table> = OnceLock::new();
        // `fields.txt` is a constant compiled into the binary, and the tests parse it.
        TABLE.get_or_init(|| Table::parse(FIELDS).expect("fields.txt is well formed"))
    }

    pub(super) fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(super) fn message(&self, index: usize) -> &Message {
        &self.messages[index]
    }

    /// Every message by its definition name.
    #[cfg(test)]
    pub(super) fn names(&self) -> impl Iterator<Item = (&str, usize)> {
        self.by_name
            .iter()
            .map(|(name, index)| (name.as_str(), *index))
    }

    pub(super) fn parse(text: &'static str) -> Result<Table, String> {
        let lines = || {
            text.lines()
                .enumerate()
                .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        };
        // First pass: packages and message names, so that fields can refer to messages
        // declared further down.
        let mut aliases = HashMap::new();
        let mut by_name = HashMap::new();
        let mut prefix = None;
        for (number, line) in lines() {
            if let Some(package) = line.strip_prefix('=') {
                let (alias, package_prefix) = package
                    .split_once(' ')
                    .ok_or_else(|| format!("line {}: package without alias", number + 1))?;
                aliases.insert(alias, package_prefix);
                prefix = Some(package_prefix);
            } else {
                let prefix = prefix.ok_or_else(|| format!("line {}: no package", number + 1))?;
                let name = line.split(' ').next().unwrap_or_default();
                let full = format!("{prefix}.{name}");
                let index = by_name.len();
                if by_name.insert(full, index).is_some() {
                    return Err(format!("line {}: {name} declared twice", number + 1));
                }
            }
        }
        let mut messages = Vec::with_capacity(by_name.len());
        let mut prefix = "";
        for (number, line) in lines() {
            if let Some(package) = line.strip_prefix('=') {
                prefix = package.split_once(' ').map_or("", |(_, prefix)| prefix);
                continue;
            }
            let mut tokens = line.split(' ');
            tokens.next();
            let mut fields = tokens
                .map(|token| parse_field(token, prefix, &aliases, &by_name))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| format!("line {}: {error}", number + 1))?;
            fields.sort_by_key(|field| field.number);
            messages.push(Message { fields });
        }
        Ok(Table { messages, by_name })
    }
}

/// One `NUMBER FLAGS NAME : TYPE` token.
fn parse_field(
    token: &'static str,
    prefix: &str,
    aliases: &HashMap<&str, &str>,
    by_name: &HashMap<String, usize>,
) -> Result<Field, String> {
    let digits = token.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
    let number = token[..digits]
        .parse()
        .map_err(|_| format!("field {token:?} has no number"))?;
    let rest = &token[digits..];
    let flags = rest.find(|c| c != '~' && c != '?').unwrap_or(rest.len());
    let (name, kind) = rest[flags..]
        .split_once(':')
        .ok_or_else(|| format!("field {token:?} has no type"))?;
    let (shape, kind) = match kind.as_bytes().first() {
        Some(b'*') => (Shape::Repeated, &kind[1..]),
        Some(b'%') => (Shape::Map, &kind[1..]),
        _ => (Shape::Single, kind),
    };
    let kind = match kind {
        "s" => Kind::String,
        "i" => Kind::Int,
        "b" => Kind::Bool,
        "y" => Kind::Bytes,
        "t" => Kind::Time,
        "T" => Kind::MicroTime,
        "D" => Kind::Duration,
        "q" => Kind::Quantity,
        "x" => Kind::IntOrString,
        "j" => Kind::Json,
        "l" => Kind::StringList,
        reference => {
            let (alias, message) = reference
                .split_once('.')
                .ok_or_else(|| format!("field {token:?} has an unknown type"))?;
            let package = if alias.is_empty() {
                prefix
            } else {
                aliases
                    .get(alias)
                    .ok_or_else(|| format!("field {token:?} names an unknown package"))?
            };
            let index = by_name
                .get(&format!("{package}.{message}"))
                .ok_or_else(|| format!("field {token:?} names an unknown message"))?;
            Kind::Message(*index)
        }
    };
    let inline = rest[..flags].contains('~');
    if inline && (shape != Shape::Single || !matches!(kind, Kind::Message(_))) {
        return Err(format!("inline field {token:?} is not a single message"));
    }
    Ok(Field {
        number,
        name,
        kind,
        shape,
        inline,
        omit_zero: rest[..flags].contains('?'),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_table_parses() {
        let table = Table::parse(FIELDS).unwrap();
        assert!(table.messages.len() > 500, "{}", table.messages.len());
        let config_map = table.message(table.index("io.k8s.api.core.v1.ConfigMap").unwrap());
        let binary_data = config_map.field(3).unwrap();
        assert_eq!(
            (binary_data.name, binary_data.shape, binary_data.kind),
            ("binaryData", Shape::Map, Kind::Bytes)
        );
        let meta = config_map.field(1).unwrap();
        assert_eq!(
            meta.kind,
            Kind::Message(
                table
                    .index("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
                    .unwrap()
            )
        );
    }

    #[test]
    fn malformed_tables_are_rejected() {
        assert!(Table::parse("Orphan 1a:s").is_err());
        assert!(Table::parse("=p io.p\nA 1a:.Missing").is_err());
        assert!(Table::parse("=p io.p\nA 1a:zz").is_err());
        assert!(Table::parse("=p io.p\nA a:s").is_err());
        assert!(Table::parse("=p io.p\nA 1~a:s").is_err());
        assert!(Table::parse("=p io.p\nA 1a:s\nA 2b:s").is_err());
    }
}
