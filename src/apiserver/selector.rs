//! Label and field selectors: the `labelSelector` and `fieldSelector` query parameters and the
//! metav1.LabelSelector objects of controllers and PodDisruptionBudgets. Parsing follows the
//! upstream grammar and error texts, matching reads object JSON, and `Display` prints the
//! canonical form upstream prints.
//!
//! Same semantics as k8s.io/apimachinery's `labels.Parse` (its lexer and recursive-descent
//! parser, including the quirks), `metav1.LabelSelectorAsSelector`, `fields.ParseSelector`, and
//! kubernetes' per-kind field label conversion functions and `ToSelectableFields`.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

/// A selector that cannot be parsed or names something the resource cannot select on. The
/// messages are upstream's, so they can go into a 400 Status unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A `labelSelector` string that does not follow the grammar, or names an invalid key or
    /// value.
    #[error("{0}")]
    Label(String),
    /// A metav1.LabelSelector object that cannot be turned into a selector.
    #[error("{0}")]
    LabelSelector(String),
    /// A `fieldSelector` string that does not follow the grammar.
    #[error("{0}")]
    Field(String),
    /// A field the resource does not support selecting on.
    #[error("{message}")]
    UnsupportedField { field: String, message: String },
}

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One requirement of a label selector, e.g. `app in (web,api)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Validates the requirement the way upstream's `labels.NewRequirement` does.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Requirement, Error> {
        Requirement::validated(key, operator, values).map_err(Error::LabelSelector)
    }

    /// [`Requirement::new`] with the bare message, which the parser wraps in its own.
    fn validated(
        key: &str,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, String> {
        let mut errors = Vec::new();
        if let Err(e) = validate_label_key(key) {
            errors.push(format!("key: Invalid value: {}: {e}", go_quote(key)));
        }
        let values_invalid = |detail: &str| {
            format!(
                "values: Invalid value: {}: {detail}",
                go_string_slice(&values)
            )
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                errors.push(values_invalid(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errors.push(values_invalid(
                    "exact-match compatibility requires one single value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errors.push(values_invalid(
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errors.push(values_invalid(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errors.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            if let Err(e) = validate_label_value(v) {
                errors.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {e}",
                    go_quote(v)
                ));
            }
        }
        if errors.is_empty() {
            Ok(Requirement {
                key: key.to_string(),
                operator,
                values,
            })
        } else {
            Err(aggregate(errors))
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Upstream's `Requirement.Matches`: `!=` and `notin` match objects without the key.
    fn matches(&self, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                lookup(&self.key).is_some_and(|v| has(&v))
            }
            Operator::NotIn | Operator::NotEquals => lookup(&self.key).is_none_or(|v| !has(&v)),
            Operator::Exists => lookup(&self.key).is_some(),
            Operator::DoesNotExist => lookup(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = lookup(&self.key).and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [wanted] = self.values.as_slice() else {
                    return false;
                };
                let Ok(wanted) = wanted.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    /// Upstream's `Requirement.String`: values printed sorted, `in`/`notin` with spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        f.write_str(&values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: requirements ANDed, kept sorted by key as upstream does.
///
/// The default value selects everything. [`LabelSelector::nothing`] (what a `null`
/// metav1.LabelSelector converts to) selects nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// Whether it selects every object (no requirements).
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    /// The selector that matches no object.
    pub fn nothing() -> LabelSelector {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses a `labelSelector` query parameter with upstream's grammar: comma-separated
    /// requirements `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>1`,
    /// `k<1`. The empty string selects everything.
    pub fn parse(s: &str) -> Result<LabelSelector, Error> {
        let mut parser = Parser::new(s);
        let mut requirements = parser.parse().map_err(Error::Label)?;
        // Stable, unlike upstream's sort.Sort, so equal keys keep their written order.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a metav1.LabelSelector object (`matchLabels`, `matchExpressions`) the way
    /// upstream's `LabelSelectorAsSelector` does: `null` selects nothing, an object without
    /// requirements (`{}`) selects everything.
    pub fn from_label_selector_json(sel: &Value) -> Result<LabelSelector, Error> {
        let object = match sel {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(o) => o,
            other => {
                return Err(Error::LabelSelector(format!(
                    "invalid label selector: expected an object, found {}",
                    json_type(other)
                )));
            }
        };
        let mut requirements = Vec::new();
        match object.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let Some(v) = v.as_str() else {
                        return Err(Error::LabelSelector(format!(
                            "invalid label selector: matchLabels[{k}] must be a string"
                        )));
                    };
                    let r = Requirement::new(k, Operator::Equals, vec![v.to_string()])?;
                    requirements.push(r);
                }
            }
            Some(_) => {
                return Err(Error::LabelSelector(
                    "invalid label selector: matchLabels must be an object".to_string(),
                ));
            }
        }
        match object.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, expr) in exprs.iter().enumerate() {
                    requirements.push(expression_requirement(i, expr)?);
                }
            }
            Some(_) => {
                return Err(Error::LabelSelector(
                    "invalid label selector: matchExpressions must be an array".to_string(),
                ));
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// A selector matching exactly the given `key: value` map (a Service's or
    /// ReplicationController's `selector`), validated like upstream's
    /// `ValidatedSelectorFromSet`. `null` and `{}` select everything.
    pub fn from_set_json(set: &Value) -> Result<LabelSelector, Error> {
        let mut requirements = Vec::new();
        match set {
            Value::Null => {}
            Value::Object(labels) => {
                for (k, v) in labels {
                    let Some(v) = v.as_str() else {
                        return Err(Error::LabelSelector(format!(
                            "invalid selector: value of {k} must be a string"
                        )));
                    };
                    let r = Requirement::new(k, Operator::Equals, vec![v.to_string()])?;
                    requirements.push(r);
                }
            }
            other => {
                return Err(Error::LabelSelector(format!(
                    "invalid selector: expected an object, found {}",
                    json_type(other)
                )));
            }
        }
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// True when the selector does not restrict anything (it selects everything).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for the selector that matches no object.
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` (an object's `metadata.labels`: a JSON object of strings, or `null`)
    /// satisfies every requirement. Non-string label values count as absent.
    pub fn matches(&self, labels: &Value) -> bool {
        if self.nothing {
            return false;
        }
        let lookup = |key: &str| -> Option<String> {
            labels.get(key).and_then(Value::as_str).map(str::to_string)
        };
        self.requirements.iter().all(|r| r.matches(&lookup))
    }

    /// The value `key` must have for the selector to match (`key=v`, `key==v` or
    /// `key in (v)`), as upstream's `RequiresExactMatch`.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical form upstream prints: requirements sorted by key, comma-joined, no
    /// spaces except around `in`/`notin`; the empty string for everything and for nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn expression_requirement(index: usize, expr: &Value) -> Result<Requirement, Error> {
    let invalid = |what: &str| {
        Error::LabelSelector(format!(
            "invalid label selector: matchExpressions[{index}].{what}"
        ))
    };
    let key = match expr.get("key") {
        None | Some(Value::Null) => "",
        Some(Value::String(k)) => k.as_str(),
        Some(_) => return Err(invalid("key must be a string")),
    };
    let operator = match expr.get("operator") {
        None | Some(Value::Null) => "",
        Some(Value::String(o)) => o.as_str(),
        Some(_) => return Err(invalid("operator must be a string")),
    };
    let operator = match operator {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(Error::LabelSelector(format!(
                "{} is not a valid label selector operator",
                go_quote(other)
            )));
        }
    };
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(vs)) => {
            let mut out = Vec::with_capacity(vs.len());
            for v in vs {
                match v.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => return Err(invalid("values must be strings")),
                }
            }
            out
        }
        Some(_) => return Err(invalid("values must be an array")),
    };
    Requirement::new(key, operator, values)
}

// The lexer and parser below reproduce k8s.io/apimachinery/pkg/labels/selector.go token by
// token, so that inputs upstream accepts are accepted, and rejected inputs get its messages.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn literal_token(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    /// Upstream reads a NUL byte both at the end of input and for a literal NUL; a NUL at
    /// the start of a token therefore ends the selector, as it does upstream.
    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn scan_id_or_keyword(&mut self) -> (Token, String) {
        let mut buf = Vec::new();
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special_symbol(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
        }
        let lit = String::from_utf8_lossy(&buf).into_owned();
        match literal_token(&buf) {
            Some(t) => (t, lit),
            None => (Token::Identifier, lit),
        }
    }

    fn scan_special_symbol(&mut self) -> (Token, String) {
        let mut last: Option<(Token, String)> = None;
        let mut buf = Vec::new();
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special_symbol(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
            if let Some(t) = literal_token(&buf) {
                last = Some((t, String::from_utf8_lossy(&buf).into_owned()));
            } else if last.is_some() {
                self.unread();
                break;
            }
        }
        last.unwrap_or_else(|| {
            (
                Token::Error,
                format!(
                    "error expected: keyword found '{}'",
                    String::from_utf8_lossy(&buf)
                ),
            )
        })
    }

    fn lex(&mut self) -> (Token, String) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, String::new());
        }
        self.unread();
        if is_special_symbol(ch) {
            self.scan_special_symbol()
        } else {
            self.scan_id_or_keyword()
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn new(s: &str) -> Parser {
        let mut lexer = Lexer {
            s: s.as_bytes(),
            pos: 0,
        };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            let end = item.0 == Token::EndOfString;
            items.push(item);
            if end {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn item(&self, index: usize, context: Context) -> (Token, String) {
        // The token list always ends with EndOfString; past it the parser keeps seeing it.
        let (tok, lit) = self
            .items
            .get(index)
            .or_else(|| self.items.last())
            .cloned()
            .unwrap_or((Token::EndOfString, String::new()));
        // In a values context the keywords `in` and `notin` are ordinary identifiers.
        let tok = match tok {
            Token::In | Token::NotIn if context == Context::Values => Token::Identifier,
            t => t,
        };
        (tok, lit)
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        self.item(self.position, context)
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.item(self.position, context);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => {
                            return Err(format!("found '{l}', expected: ',' or 'end of string'"));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(op) = inferred {
            return Requirement::validated(&key, op, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::validated(&key, operator, values.into_iter().collect())
    }

    /// Returns the key and, for `k` and `!k`, the operator implied by the absence of one.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut operator = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        if let Err(e) = validate_label_key(&lit) {
            return Err(format!("key: Invalid value: {}: {e}", go_quote(&lit)));
        }
        let (next, _) = self.lookahead(Context::Values);
        if (next == Token::EndOfString || next == Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((lit, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let set = self.parse_identifiers_list()?;
                let (tok, _) = self.consume(Context::Values);
                if tok != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(set)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    /// A possibly empty list of possibly empty values: `(a,,b)`, `(,a)`, `(a,)`.
    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut set = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    set.insert(lit);
                    let (tok2, lit2) = self.lookahead(Context::Values);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set),
                        _ => return Err(format!("found '{lit2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (tok2, _) = self.lookahead(Context::Values);
                    if tok2 == Token::ClosedPar {
                        set.insert(String::new());
                        return Ok(set);
                    }
                    if tok2 == Token::Comma {
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if tok == Token::EndOfString || tok == Token::Comma {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            return Ok(BTreeSet::from([lit]));
        }
        Err(format!("found '{lit}', expected: identifier"))
    }
}

// Validation of label keys and values, with the texts of
// k8s.io/apimachinery/pkg/util/validation.

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// Upstream's `RegexError`, including its doubled spaces between examples.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(e);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(fmt);
    out.push_str("')");
    out
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            match (b.first(), b.last()) {
                (Some(first), Some(last)) => {
                    alnum(first) && alnum(last) && b.iter().all(|c| alnum(c) || *c == b'-')
                }
                _ => false,
            }
        })
}

/// Upstream's `IsQualifiedName`: an optional DNS subdomain prefix and '/', then a name of at
/// most 63 characters.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let examples = ["MyName", "my.name", "123-abc"];
    let mut errors = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > 253 {
                    errors.push("prefix part must be no more than 253 characters".to_string());
                }
                if !is_dns1123_subdomain(prefix) {
                    errors.push(format!(
                        "prefix part {}",
                        regex_error(
                            DNS1123_SUBDOMAIN_ERR,
                            DNS1123_SUBDOMAIN_FMT,
                            &["example.com"]
                        )
                    ));
                }
            }
            *name
        }
        _ => {
            return Err(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &examples)
            ));
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errors.push("name part must be no more than 63 characters".to_string());
    }
    if !is_qualified_name_part(name) {
        errors.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &examples)
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Upstream's `IsValidLabelValue`: empty, or at most 63 characters of the qualified-name
/// alphabet starting and ending with an alphanumeric character.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errors.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Upstream's error aggregate: one message alone, several deduplicated in brackets.
fn aggregate(errors: Vec<String>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    if seen.len() == 1 {
        seen.remove(0)
    } else {
        format!("[{}]", seen.join(", "))
    }
}

/// Go's `%q` for the strings that appear in messages.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%#v` of a `[]string`.
fn go_string_slice(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------

/// The resources whose selectable fields go beyond `metadata.name` and `metadata.namespace`,
/// or that restrict even those (nodes, namespaces and certificate signing requests do not
/// accept `metadata.namespace` upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selectable {
    Pods,
    Nodes,
    ReplicationControllers,
    ReplicaSets,
    Events,
    EventsV1,
    Namespaces,
    Secrets,
    Services,
    Jobs,
    CertificateSigningRequests,
    /// Custom resources: metadata and the CRD version's selectableFields.
    Custom,
    /// Every other built-in resource: upstream's `DefaultMetaV1FieldSelectorConversion`.
    Other,
}

impl Selectable {
    fn of(group: &str, resource: &str) -> Selectable {
        match (group, resource) {
            ("", "pods") => Selectable::Pods,
            ("", "nodes") => Selectable::Nodes,
            ("", "replicationcontrollers") => Selectable::ReplicationControllers,
            ("", "events") => Selectable::Events,
            ("", "namespaces") => Selectable::Namespaces,
            ("", "secrets") => Selectable::Secrets,
            ("", "services") => Selectable::Services,
            ("apps", "replicasets") | ("extensions", "replicasets") => Selectable::ReplicaSets,
            ("batch", "jobs") => Selectable::Jobs,
            ("certificates.k8s.io", "certificatesigningrequests") => {
                Selectable::CertificateSigningRequests
            }
            ("events.k8s.io", "events") => Selectable::EventsV1,
            // Built-in groups are the core group, the dot-less groups and *.k8s.io; a
            // CRD's group contains a dot and is normally elsewhere.
            (g, _) if g.is_empty() || !g.contains('.') || g.ends_with(".k8s.io") => {
                Selectable::Other
            }
            _ => Selectable::Custom,
        }
    }

    /// The field label conversion: the canonical field name, or upstream's error.
    /// `custom_fields` are a custom resource's selectable fields, without the leading dot.
    fn convert(self, label: &str, custom_fields: &[String]) -> Result<String, Error> {
        let fields: &[&str] = match self {
            Selectable::Pods => {
                if label == "spec.host" {
                    // Old v1 clients send spec.host; upstream maps it to spec.nodeName.
                    return Ok("spec.nodeName".to_string());
                }
                &[
                    "metadata.name",
                    "metadata.namespace",
                    "spec.nodeName",
                    "spec.restartPolicy",
                    "spec.schedulerName",
                    "spec.serviceAccountName",
                    "spec.hostNetwork",
                    "status.phase",
                    "status.podIP",
                    "status.podIPs",
                    "status.nominatedNodeName",
                ]
            }
            Selectable::Nodes => &["metadata.name", "spec.unschedulable"],
            Selectable::ReplicationControllers | Selectable::ReplicaSets => {
                &["metadata.name", "metadata.namespace", "status.replicas"]
            }
            Selectable::Events => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
                "metadata.namespace",
                "metadata.name",
            ],
            Selectable::EventsV1 => {
                // events.k8s.io shares the core Event storage, so its field names are
                // mapped onto the core ones, as upstream's conversion does.
                let mapped = match label {
                    "reason" | "source" | "type" | "metadata.namespace" | "metadata.name" => {
                        label.to_string()
                    }
                    "reportingController" => "reportingComponent".to_string(),
                    _ => match label.strip_prefix("regarding.") {
                        Some(
                            rest @ ("kind" | "namespace" | "name" | "uid" | "apiVersion"
                            | "resourceVersion" | "fieldPath"),
                        ) => format!("involvedObject.{rest}"),
                        _ => return Err(field_label_not_supported(label)),
                    },
                };
                return Ok(mapped);
            }
            Selectable::Namespaces => &["status.phase", "metadata.name"],
            Selectable::Secrets => &["type", "metadata.namespace", "metadata.name"],
            Selectable::Services => &[
                "metadata.namespace",
                "metadata.name",
                "spec.clusterIP",
                "spec.type",
            ],
            Selectable::Jobs => {
                if matches!(
                    label,
                    "metadata.name" | "metadata.namespace" | "status.successful"
                ) {
                    return Ok(label.to_string());
                }
                return Err(Error::UnsupportedField {
                    field: label.to_string(),
                    message: format!(
                        "field label {} not supported for batchv1.Job",
                        go_quote(label)
                    ),
                });
            }
            Selectable::CertificateSigningRequests => &["metadata.name", "spec.signerName"],
            Selectable::Custom => {
                // The namespace is accepted for every custom resource: this module does not
                // know the scope, and on a cluster-scoped one it compares as "".
                if matches!(label, "metadata.name" | "metadata.namespace")
                    || custom_fields.iter().any(|f| f == label)
                {
                    return Ok(label.to_string());
                }
                return Err(field_label_not_supported(label));
            }
            Selectable::Other => {
                if matches!(label, "metadata.name" | "metadata.namespace") {
                    return Ok(label.to_string());
                }
                return Err(Error::UnsupportedField {
                    field: label.to_string(),
                    message: format!(
                        "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                        go_quote(label)
                    ),
                });
            }
        };
        if fields.contains(&label) {
            Ok(label.to_string())
        } else {
            Err(field_label_not_supported(label))
        }
    }

    /// The value of a canonical field, read from the object JSON the way upstream's
    /// `ToSelectableFields` reads the internal object: absent strings are "", absent numbers
    /// 0, absent booleans false.
    fn value(self, field: &str, obj: &Value) -> String {
        match field {
            "metadata.name" => return str_at(obj, &["metadata", "name"]),
            "metadata.namespace" => return str_at(obj, &["metadata", "namespace"]),
            _ => {}
        }
        match (self, field) {
            (Selectable::Pods, "spec.hostNetwork") => bool_at(obj, &["spec", "hostNetwork"]),
            (Selectable::Pods, "status.podIP") => {
                // Upstream uses status.podIPs[0]; a v1 object with only status.podIP
                // converts to podIPs = [podIP].
                let first = obj
                    .pointer("/status/podIPs/0/ip")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if first.is_empty() {
                    str_at(obj, &["status", "podIP"])
                } else {
                    first.to_string()
                }
            }
            // Accepted by upstream's conversion but absent from its selectable field set,
            // so it always compares as the empty string.
            (Selectable::Pods, "status.podIPs") => String::new(),
            (Selectable::Nodes, "spec.unschedulable") => bool_at(obj, &["spec", "unschedulable"]),
            (Selectable::ReplicationControllers | Selectable::ReplicaSets, "status.replicas") => {
                int_at(obj, &["status", "replicas"])
            }
            (Selectable::Jobs, "status.successful") => int_at(obj, &["status", "succeeded"]),
            (Selectable::Events | Selectable::EventsV1, f) => event_field(f, obj),
            (Selectable::Custom, f) => {
                // Selectable fields are strings, integers or booleans.
                let path: Vec<&str> = f.split('.').collect();
                match at(obj, &path) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::Bool(b)) => b.to_string(),
                    _ => String::new(),
                }
            }
            (_, f) => {
                let path: Vec<&str> = f.split('.').collect();
                str_at(obj, &path)
            }
        }
    }
}

fn field_label_not_supported(label: &str) -> Error {
    Error::UnsupportedField {
        field: label.to_string(),
        message: format!("field label not supported: {label}"),
    }
}

/// The selectable fields of an event, from either the core/v1 shape (`involvedObject`,
/// `source`) or the events.k8s.io/v1 shape (`regarding`, `deprecatedSource`).
fn event_field(field: &str, obj: &Value) -> String {
    if let Some(rest) = field.strip_prefix("involvedObject.") {
        let core = str_at(obj, &["involvedObject", rest]);
        if !core.is_empty() {
            return core;
        }
        return str_at(obj, &["regarding", rest]);
    }
    // The reporting controller is `reportingComponent` in core/v1 JSON and
    // `reportingController` in events.k8s.io/v1.
    let reporting = || {
        let core = str_at(obj, &["reportingComponent"]);
        if core.is_empty() {
            str_at(obj, &["reportingController"])
        } else {
            core
        }
    };
    match field {
        "reportingComponent" => reporting(),
        "source" => {
            // Upstream: source.component, falling back to the reporting controller.
            let mut source = str_at(obj, &["source", "component"]);
            if source.is_empty() {
                source = str_at(obj, &["deprecatedSource", "component"]);
            }
            if source.is_empty() {
                source = reporting();
            }
            source
        }
        f => str_at(obj, &[f]),
    }
}

fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(*k))
}

fn str_at(obj: &Value, path: &[&str]) -> String {
    at(obj, path)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn bool_at(obj: &Value, path: &[&str]) -> String {
    let b = at(obj, path).and_then(Value::as_bool).unwrap_or(false);
    b.to_string()
}

fn int_at(obj: &Value, path: &[&str]) -> String {
    match at(obj, path) {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => n
                .as_f64()
                .map_or_else(|| n.to_string(), |f| (f as i64).to_string()),
        },
        _ => "0".to_string(),
    }
}

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    field: String,
    not_equal: bool,
    value: String,
}

/// A parsed field selector for one resource: terms ANDed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSelector {
    kind: Selectable,
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Whether it selects every object (no requirements).
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The selector that matches every object.
    pub fn everything() -> FieldSelector {
        FieldSelector {
            kind: Selectable::Other,
            requirements: Vec::new(),
        }
    }

    /// Parses a `fieldSelector` query parameter for `resource` (the plural) in `group` (""
    /// for core), as upstream's `fields.ParseSelector` followed by the kind's field label
    /// conversion. Operators are `=`, `==` and `!=`, terms are comma-separated, and `\,`,
    /// `\=` and `\\` escape those characters in values.
    pub fn parse(s: &str, group: &str, resource: &str) -> Result<FieldSelector, Error> {
        FieldSelector::parse_as(s, Selectable::of(group, resource), &[])
    }

    /// Parses a `fieldSelector` for a custom resource whose CRD version declares
    /// `selectableFields` with these JSONPaths (`.spec.color`); `metadata.name` and
    /// `metadata.namespace` are always selectable.
    pub fn parse_custom(s: &str, selectable_fields: &[String]) -> Result<FieldSelector, Error> {
        let fields: Vec<String> = selectable_fields
            .iter()
            .map(|f| f.strip_prefix('.').unwrap_or(f).to_string())
            .collect();
        FieldSelector::parse_as(s, Selectable::Custom, &fields)
    }

    fn parse_as(
        s: &str,
        kind: Selectable,
        custom_fields: &[String],
    ) -> Result<FieldSelector, Error> {
        let mut terms = split_terms(s);
        terms.sort_unstable();
        let mut parsed = Vec::new();
        for term in terms.iter().filter(|t| !t.is_empty()) {
            let Some((lhs, op, rhs)) = split_term(term) else {
                return Err(Error::Field(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            let value = unescape_value(rhs)?;
            parsed.push((lhs, op == "!=", value));
        }
        // Upstream converts the labels only after every term has parsed.
        let mut requirements = Vec::with_capacity(parsed.len());
        for (lhs, not_equal, value) in parsed {
            requirements.push(FieldRequirement {
                field: kind.convert(lhs, custom_fields)?,
                not_equal,
                value,
            });
        }
        Ok(FieldSelector { kind, requirements })
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the object satisfies every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements
            .iter()
            .all(|r| (self.kind.value(&r.field, obj) == r.value) != r.not_equal)
    }

    /// The name a `metadata.name=X` term requires, for a single-object fast path.
    pub fn name(&self) -> Option<&str> {
        self.requires_exact_match("metadata.name")
    }

    /// The value an equality term on `field` requires, as upstream's `RequiresExactMatch`.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && !r.not_equal)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// Upstream's canonical form: terms in sorted order, `==` printed as `=`, values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if r.not_equal { "!=" } else { "=" };
            write!(f, "{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

/// Splits on commas not escaped by a backslash; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator, trying `!=`, `==` and `=` at each position; the left side
/// has no escaping.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], op, rhs));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => {
                    return Err(Error::Field(format!(
                        "invalid field selector: invalid escape sequence: \\{c}"
                    )));
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Go prints the rune with %v, i.e. as its number.
            ',' | '=' => {
                return Err(Error::Field(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(Error::Field(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse_ok(s: &str) -> LabelSelector {
        match LabelSelector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[test]
    fn label_selectors_print_in_upstream_canonical_form() {
        let cases = [
            ("", ""),
            ("x=a", "x=a"),
            ("x==a", "x==a"),
            ("x!=a", "x!=a"),
            ("  x  =  a  ", "x=a"),
            ("x=", "x="),
            ("x=,y=b", "x=,y=b"),
            ("b=1,a=2", "a=2,b=1"),
            ("x in (b,a,a)", "x in (a,b)"),
            ("x in(a)", "x in (a)"),
            ("x notin (c, b ,a)", "x notin (a,b,c)"),
            ("x in ()", "x in ()"),
            ("x in (,a)", "x in (,a)"),
            ("x in (a,)", "x in (,a)"),
            ("x in (a,,b)", "x in (,a,b)"),
            ("x", "x"),
            ("!x", "!x"),
            ("! x", "!x"),
            ("x>1", "x>1"),
            ("x<10", "x<10"),
            ("in in (in, notin)", "in in (in,notin)"),
            ("notin=in", "notin=in"),
            ("example.com/app=web,tier", "example.com/app=web,tier"),
            ("z,!y,x=1", "x=1,!y,z"),
            ("x=a,\ty=b", "x=a,y=b"),
        ];
        for (input, want) in cases {
            let sel = match LabelSelector::parse(input) {
                Ok(sel) => sel,
                Err(e) => panic!("{input:?} should parse: {e}"),
            };
            assert_eq!(sel.to_string(), want, "input {input:?}");
        }
    }

    #[test]
    fn whitespace_does_not_separate_requirements() {
        // After a value upstream expects ',' or the end, so whitespace alone is an error.
        assert!(LabelSelector::parse("x=a y=b").is_err());
    }

    #[test]
    fn malformed_label_selectors_get_upstream_messages() {
        let cases = [
            (
                "x y",
                "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt",
            ),
            ("x=a,", "found '', expected: identifier after ','"),
            ("x=a,,y", "found ',', expected: identifier after ','"),
            (
                ",x",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            (
                "=x",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            ("x=a=b", "found '=', expected: ',' or 'end of string'"),
            (
                "x in a",
                "unable to parse requirement: found 'a' expected: '('",
            ),
            (
                "x in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "x in (a b)",
                "unable to parse requirement: found 'b', expected: ',' or ')'",
            ),
            (
                "x in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "x=(",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "!",
                "unable to parse requirement: found '', expected: identifier",
            ),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            (
                "x>a",
                "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            (
                "x>=1",
                "unable to parse requirement: found '=', expected: identifier",
            ),
        ];
        for (input, want) in cases {
            match LabelSelector::parse(input) {
                Ok(sel) => panic!("{input:?} should fail, parsed as {sel}"),
                Err(e) => assert_eq!(e.to_string(), want, "input {input:?}"),
            }
        }
    }

    #[test]
    fn invalid_keys_and_values_name_the_offending_part() {
        let e = LabelSelector::parse("a/b/c=x").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "unable to parse requirement: key: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )
        );
        let e = LabelSelector::parse("-x").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "unable to parse requirement: key: Invalid value: \"-x\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
            )
        );
        let e = LabelSelector::parse("Example.com/x")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|m| m.contains("prefix part a lowercase RFC 1123 subdomain")),
            "{e:?}"
        );
        let e = LabelSelector::parse("/x").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "unable to parse requirement: key: Invalid value: \"/x\": prefix part must be non-empty"
            )
        );
        let long = "a".repeat(64);
        let e = LabelSelector::parse(&long).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|m| m.ends_with("name part must be no more than 63 characters")),
            "{e:?}"
        );
        let e = LabelSelector::parse("app=-web")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "unable to parse requirement: values[0][app]: Invalid value: \"-web\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
            )
        );
        let e = LabelSelector::parse(&format!("app={}", "v".repeat(64)))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|m| m.contains("Invalid value")
                && m.ends_with("must be no more than 63 characters")),
            "{e:?}"
        );
    }

    #[test]
    fn nul_byte_at_a_token_start_ends_the_selector_as_upstream() {
        assert_eq!(parse_ok("a=b,c\0").to_string(), "a=b,c");
        assert!(parse_ok("\0garbage").is_empty());
    }

    #[test]
    fn label_matching_follows_upstream_semantics() {
        let labels = json!({"app": "web", "tier": "front", "n": "5"});
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=api", false),
            ("app!=api", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (api,web)", true),
            ("app in (api)", false),
            ("missing in (x)", false),
            ("app notin (api)", true),
            ("app notin (web)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("missing", false),
            ("!app", false),
            ("!missing", true),
            ("n>4", true),
            ("n>5", false),
            ("n<6", true),
            ("app>1", false),
            ("missing<1", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("missing=", false),
        ];
        for (sel, want) in cases {
            assert_eq!(parse_ok(sel).matches(&labels), want, "selector {sel:?}");
        }
        assert!(parse_ok("x!=a").matches(&Value::Null));
        assert!(!parse_ok("x").matches(&Value::Null));
        assert!(parse_ok("").matches(&Value::Null));
    }

    #[test]
    fn label_selector_objects_convert_like_upstream() {
        let sel = LabelSelector::from_label_selector_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "zone", "operator": "Exists"}
            ]
        }));
        let sel = match sel {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            sel.to_string(),
            "app=web,!canary,env notin (dev),tier in (a,b),zone"
        );
        assert!(sel.matches(&json!({"app": "web", "tier": "a", "zone": "z1"})));
        assert!(!sel.matches(&json!({"app": "web", "tier": "a"})));
        assert!(!sel.matches(&json!({"app": "web", "tier": "a", "zone": "z", "canary": "1"})));

        let empty = LabelSelector::from_label_selector_json(&json!({}));
        assert!(
            empty
                .as_ref()
                .is_ok_and(|s| s.is_empty() && s.matches(&json!({"a": "b"})))
        );
        let empty_lists = LabelSelector::from_label_selector_json(
            &json!({"matchLabels": {}, "matchExpressions": []}),
        );
        assert!(empty_lists.is_ok_and(|s| s.is_empty()));

        let nothing = LabelSelector::from_label_selector_json(&Value::Null);
        assert!(
            nothing
                .as_ref()
                .is_ok_and(|s| !s.is_empty() && s.matches_nothing())
        );
        assert!(nothing.is_ok_and(|s| !s.matches(&json!({})) && s.to_string().is_empty()));
    }

    #[test]
    fn invalid_label_selector_objects_are_rejected() {
        let cases = [
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
                "\"Equals\" is not a valid label selector operator",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist",
            ),
            (
                json!({"matchLabels": {"a b": "x"}}),
                "key: Invalid value: \"a b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ),
            (
                json!({"matchLabels": {"a": 1}}),
                "invalid label selector: matchLabels[a] must be a string",
            ),
            (
                json!("app=web"),
                "invalid label selector: expected an object, found string",
            ),
        ];
        for (input, want) in cases {
            match LabelSelector::from_label_selector_json(&input) {
                Ok(s) => panic!("{input} should fail, got {s}"),
                Err(e) => assert_eq!(e.to_string(), want, "input {input}"),
            }
        }
        let two = LabelSelector::from_label_selector_json(
            &json!({"matchExpressions": [{"key": "-a", "operator": "In", "values": ["-b"]}]}),
        );
        assert!(
            two.as_ref()
                .is_err_and(|e| e.to_string().starts_with("[key: Invalid value")),
            "{two:?}"
        );
    }

    #[test]
    fn set_selectors_match_exactly() {
        let sel = LabelSelector::from_set_json(&json!({"app": "web", "tier": "front"}));
        let sel = match sel {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(sel.to_string(), "app=web,tier=front");
        assert!(sel.matches(&json!({"app": "web", "tier": "front", "x": "y"})));
        assert!(!sel.matches(&json!({"app": "web"})));
        assert!(LabelSelector::from_set_json(&Value::Null).is_ok_and(|s| s.is_empty()));
        assert_eq!(sel.requires_exact_match("app"), Some("web"));
        assert_eq!(parse_ok("app in (a,b)").requires_exact_match("app"), None);
        assert_eq!(
            parse_ok("app in (a)").requires_exact_match("app"),
            Some("a")
        );
    }

    fn field_ok(s: &str, group: &str, resource: &str) -> FieldSelector {
        match FieldSelector::parse(s, group, resource) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} for {group}/{resource} should parse: {e}"),
        }
    }

    #[test]
    fn field_selectors_parse_escape_and_print_like_upstream() {
        let cases = [
            ("", ""),
            ("metadata.name=a", "metadata.name=a"),
            ("metadata.name==a", "metadata.name=a"),
            ("metadata.name!=a", "metadata.name!=a"),
            (
                "status.phase!=Failed,spec.nodeName=n1",
                "spec.nodeName=n1,status.phase!=Failed",
            ),
            (
                "metadata.name=a\\,b\\=c\\\\d",
                "metadata.name=a\\,b\\=c\\\\d",
            ),
            ("metadata.name=,", "metadata.name="),
            ("spec.host=n1", "spec.nodeName=n1"),
        ];
        for (input, want) in cases {
            assert_eq!(
                field_ok(input, "", "pods").to_string(),
                want,
                "input {input:?}"
            );
        }
        assert_eq!(
            field_ok("metadata.name=a\\,b", "", "pods").name(),
            Some("a,b")
        );
        assert_eq!(field_ok("metadata.name!=a", "", "pods").name(), None);
        assert!(field_ok("", "", "pods").is_empty());
    }

    #[test]
    fn malformed_field_selectors_get_upstream_messages() {
        let cases = [
            ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
            (
                "a=b,foo",
                "invalid selector: 'a=b,foo'; can't understand 'foo'",
            ),
            (
                "metadata.name=a\\b",
                "invalid field selector: invalid escape sequence: \\b",
            ),
            (
                "metadata.name=a\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
            (
                "metadata.name=a=b",
                "invalid field selector: unescaped character in value: 61",
            ),
            // Syntax errors in any term win over unsupported fields in earlier terms.
            (
                "aaa=1,zzz",
                "invalid selector: 'aaa=1,zzz'; can't understand 'zzz'",
            ),
        ];
        for (input, want) in cases {
            match FieldSelector::parse(input, "", "pods") {
                Ok(s) => panic!("{input:?} should fail, got {s}"),
                Err(e) => assert_eq!(e.to_string(), want, "input {input:?}"),
            }
        }
    }

    #[test]
    fn unsupported_fields_are_rejected_per_resource() {
        let cases = [
            (
                "",
                "pods",
                "spec.foo",
                "field label not supported: spec.foo",
            ),
            (
                "",
                "pods",
                " metadata.name",
                "field label not supported:  metadata.name",
            ),
            (
                "",
                "nodes",
                "metadata.namespace",
                "field label not supported: metadata.namespace",
            ),
            (
                "",
                "namespaces",
                "spec.finalizers",
                "field label not supported: spec.finalizers",
            ),
            ("", "secrets", "data", "field label not supported: data"),
            (
                "",
                "services",
                "spec.ports",
                "field label not supported: spec.ports",
            ),
            (
                "",
                "events",
                "message",
                "field label not supported: message",
            ),
            (
                "events.k8s.io",
                "events",
                "involvedObject.name",
                "field label not supported: involvedObject.name",
            ),
            (
                "apps",
                "replicasets",
                "spec.replicas",
                "field label not supported: spec.replicas",
            ),
            (
                "batch",
                "jobs",
                "status.failed",
                "field label \"status.failed\" not supported for batchv1.Job",
            ),
            (
                "certificates.k8s.io",
                "certificatesigningrequests",
                "spec.username",
                "field label not supported: spec.username",
            ),
            (
                "apps",
                "deployments",
                "status.replicas",
                "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
            ),
            (
                "",
                "configmaps",
                "foo.bar",
                "\"foo.bar\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
            ),
        ];
        for (group, resource, field, want) in cases {
            let input = format!("{field}=x");
            match FieldSelector::parse(&input, group, resource) {
                Ok(s) => panic!("{input:?} on {resource} should fail, got {s}"),
                Err(Error::UnsupportedField { field: f, message }) => {
                    assert_eq!(message, want);
                    assert_eq!(f, field);
                }
                Err(e) => panic!("{input:?}: unexpected error {e}"),
            }
        }
    }

    #[test]
    fn pod_fields_are_read_like_upstream_selectable_fields() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                     "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIP": "10.0.0.9",
                       "podIPs": [{"ip": "10.0.0.9"}, {"ip": "fd00::9"}]}
        });
        let cases = [
            ("metadata.name=web-1", true),
            ("metadata.namespace=default", true),
            ("metadata.namespace=kube-system", false),
            ("spec.nodeName=n1", true),
            ("spec.host=n1", true),
            ("spec.nodeName=", false),
            ("spec.restartPolicy=Always", true),
            ("spec.schedulerName=default-scheduler", true),
            ("spec.serviceAccountName=default", true),
            ("spec.hostNetwork=false", true),
            ("spec.hostNetwork=true", false),
            ("status.phase=Running", true),
            ("status.phase!=Running", false),
            ("status.phase!=Failed,status.phase!=Succeeded", true),
            ("status.podIP=10.0.0.9", true),
            ("status.podIPs=10.0.0.9", false),
            ("status.podIPs=", true),
            ("status.nominatedNodeName=", true),
        ];
        for (sel, want) in cases {
            assert_eq!(
                field_ok(sel, "", "pods").matches(&pod),
                want,
                "selector {sel:?}"
            );
        }
        let host = json!({"metadata": {"name": "h"}, "spec": {"hostNetwork": true},
                          "status": {"podIP": "192.168.1.5"}});
        assert!(field_ok("spec.hostNetwork=true", "", "pods").matches(&host));
        assert!(field_ok("status.podIP=192.168.1.5", "", "pods").matches(&host));
    }

    #[test]
    fn other_resources_read_their_selectable_fields() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert!(field_ok("spec.unschedulable=true", "", "nodes").matches(&node));
        assert!(
            field_ok("spec.unschedulable=false", "", "nodes")
                .matches(&json!({"metadata": {"name": "n2"}}))
        );

        let rs = json!({"metadata": {"name": "rs"}, "status": {"replicas": 3}});
        assert!(field_ok("status.replicas=3", "apps", "replicasets").matches(&rs));
        assert!(field_ok("status.replicas=0", "", "replicationcontrollers").matches(&json!({})));

        let job = json!({"status": {"succeeded": 2}});
        assert!(field_ok("status.successful=2", "batch", "jobs").matches(&job));

        let secret = json!({"type": "kubernetes.io/tls"});
        assert!(field_ok("type=kubernetes.io/tls", "", "secrets").matches(&secret));

        let svc = json!({"spec": {"clusterIP": "None", "type": "ClusterIP"}});
        assert!(field_ok("spec.clusterIP=None,spec.type=ClusterIP", "", "services").matches(&svc));

        let ns = json!({"metadata": {"name": "x"}, "status": {"phase": "Terminating"}});
        assert!(field_ok("status.phase=Terminating", "", "namespaces").matches(&ns));

        let csr = json!({"spec": {"signerName": "kubernetes.io/kubelet-serving"}});
        assert!(
            field_ok(
                "spec.signerName=kubernetes.io/kubelet-serving",
                "certificates.k8s.io",
                "certificatesigningrequests"
            )
            .matches(&csr)
        );

        let cm = json!({"metadata": {"name": "cfg", "namespace": "a"}});
        assert!(field_ok("metadata.name=cfg,metadata.namespace=a", "", "configmaps").matches(&cm));
        assert!(
            field_ok(
                "metadata.namespace=",
                "rbac.authorization.k8s.io",
                "clusterroles"
            )
            .matches(&json!({"metadata": {"name": "admin"}}))
        );
    }

    #[test]
    fn custom_resources_select_on_metadata_and_their_selectable_fields() {
        let widget = json!({"metadata": {"name": "w", "namespace": "a"},
                            "spec": {"color": "blue", "size": 3, "enabled": true}});
        let fields = [
            ".spec.color".to_string(),
            ".spec.size".to_string(),
            ".spec.enabled".to_string(),
        ];
        let sel =
            FieldSelector::parse_custom("spec.color=blue,spec.size=3,spec.enabled=true", &fields);
        assert!(sel.is_ok_and(|s| s.matches(&widget)));
        let sel = FieldSelector::parse_custom("spec.color!=blue", &fields);
        assert!(sel.is_ok_and(|s| !s.matches(&widget)));
        let e = FieldSelector::parse_custom("spec.shape=round", &fields)
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("field label not supported: spec.shape"));
        let e = FieldSelector::parse("spec.color=blue", "example.com", "widgets")
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("field label not supported: spec.color"));
        assert!(field_ok("metadata.namespace=a", "example.com", "widgets").matches(&widget));
    }

    #[test]
    fn event_fields_work_for_both_event_apis() {
        let core = json!({
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"},
            "reason": "BackOff", "type": "Warning",
            "source": {"component": "kubelet", "host": "n1"},
            "reportingComponent": "kubelet-rc"
        });
        let sel = "involvedObject.kind=Pod,involvedObject.name=web,involvedObject.namespace=default,involvedObject.uid=u1";
        assert!(field_ok(sel, "", "events").matches(&core));
        assert!(
            field_ok("source=kubelet,reportingComponent=kubelet-rc", "", "events").matches(&core)
        );

        let v1 = json!({
            "metadata": {"name": "e1", "namespace": "default"},
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
            "reason": "Pulled", "type": "Normal",
            "reportingController": "kubelet"
        });
        let sel = field_ok(
            "regarding.name=web,regarding.kind=Pod,reportingController=kubelet",
            "events.k8s.io",
            "events",
        );
        assert_eq!(
            sel.to_string(),
            "involvedObject.kind=Pod,involvedObject.name=web,reportingComponent=kubelet"
        );
        assert!(sel.matches(&v1));
        // With no source component, "source" falls back to the reporting controller.
        assert!(field_ok("source=kubelet", "events.k8s.io", "events").matches(&v1));
        assert!(field_ok("involvedObject.name=web", "", "events").matches(&v1));
    }

    // Property tests: generated valid selectors round-trip through Display.

    fn key_strategy() -> impl Strategy<Value = String> {
        let name = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?";
        let prefix = "[a-z0-9]([-a-z0-9]{0,4}[a-z0-9])?(\\.[a-z0-9]{1,4}){0,2}";
        (proptest::option::of(prefix), name).prop_map(|(p, n)| match p {
            Some(p) => format!("{p}/{n}"),
            None => n,
        })
    }

    fn value_strategy() -> impl Strategy<Value = String> {
        "([A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?)?"
    }

    #[derive(Debug, Clone)]
    enum GenReq {
        Exact(&'static str, String),
        Set(bool, Vec<String>),
        Exists(bool),
        Compare(bool, u32),
    }

    fn req_strategy() -> impl Strategy<Value = GenReq> {
        prop_oneof![
            (
                prop_oneof![Just("="), Just("=="), Just("!=")],
                value_strategy()
            )
                .prop_map(|(op, v)| GenReq::Exact(op, v)),
            (
                any::<bool>(),
                proptest::collection::vec(value_strategy(), 1..4)
            )
                .prop_map(|(not, vs)| GenReq::Set(not, vs)),
            any::<bool>().prop_map(GenReq::Exists),
            (any::<bool>(), 0u32..100_000).prop_map(|(gt, n)| GenReq::Compare(gt, n)),
        ]
    }

    /// Writes a requirement with the given whitespace style; returns it and its canonical form.
    fn render(key: &str, req: &GenReq, ws: &str) -> (String, String) {
        match req {
            GenReq::Exact(op, v) => (format!("{key}{ws}{op}{ws}{v}"), format!("{key}{op}{v}")),
            GenReq::Set(not, vs) => {
                let op = if *not { "notin" } else { "in" };
                let written = format!("{key} {op}{ws}({})", vs.join(&format!(",{ws}")));
                let sorted: BTreeSet<&str> = vs.iter().map(String::as_str).collect();
                let sorted: Vec<&str> = sorted.into_iter().collect();
                (written, format!("{key} {op} ({})", sorted.join(",")))
            }
            GenReq::Exists(false) => (format!("{ws}{key}"), key.to_string()),
            GenReq::Exists(true) => (format!("!{ws}{key}"), format!("!{key}")),
            GenReq::Compare(gt, n) => {
                let op = if *gt { ">" } else { "<" };
                (format!("{key}{ws}{op}{ws}{n}"), format!("{key}{op}{n}"))
            }
        }
    }

    proptest! {
        #[test]
        fn generated_label_selectors_round_trip(
            reqs in proptest::collection::btree_map(key_strategy(), req_strategy(), 0..6),
            order in any::<u64>(),
            ws in prop_oneof![Just(""), Just(" "), Just("\t "), Just("  ")],
        ) {
            let mut written: Vec<(String, String)> =
                reqs.iter().map(|(k, r)| render(k, r, ws)).collect();
            // BTreeMap order is the canonical order; rotate to write them out of order.
            let canonical: Vec<String> = written.iter().map(|(_, c)| c.clone()).collect();
            if !written.is_empty() {
                let n = (order as usize) % written.len();
                written.rotate_left(n);
            }
            let input: Vec<String> = written.into_iter().map(|(w, _)| w).collect();
            let input = input.join(&format!("{ws},{ws}"));
            let sel = LabelSelector::parse(&input);
            prop_assert!(sel.is_ok(), "{:?} failed: {:?}", input, sel);
            let sel = sel.unwrap_or_default();
            prop_assert_eq!(sel.to_string(), canonical.join(","));
            let again = LabelSelector::parse(&sel.to_string());
            prop_assert_eq!(again, Ok(sel));
        }

        #[test]
        fn label_selector_parsing_never_panics(s in "[ -~\t\n]{0,40}") {
            let _ = LabelSelector::parse(&s);
        }

        #[test]
        fn generated_field_selectors_round_trip(
            terms in proptest::collection::btree_map(
                prop_oneof![Just("metadata.name"), Just("metadata.namespace"),
                            Just("spec.nodeName"), Just("status.phase")],
                (any::<bool>(), "[a-z,=\\\\ .é-]{0,8}"),
                0..4,
            ),
        ) {
            let input: Vec<String> = terms
                .iter()
                .map(|(f, (not, v))| format!("{f}{}{}", if *not { "!=" } else { "=" }, escape_value(v)))
                .collect();
            let input = input.join(",");
            let sel = FieldSelector::parse(&input, "", "pods");
            prop_assert!(sel.is_ok(), "{:?} failed: {:?}", input, sel);
            let sel = sel.unwrap_or_else(|_| FieldSelector::everything());
            let again = FieldSelector::parse(&sel.to_string(), "", "pods");
            prop_assert_eq!(again.as_ref(), Ok(&sel));
            let mut obj = json!({"metadata": {}, "spec": {}, "status": {}});
            for (f, (_, v)) in &terms {
                let (a, b) = f.split_once('.').unwrap_or(("", ""));
                obj[a][b] = json!(v);
            }
            let want = terms.values().all(|(not, _)| !*not);
            prop_assert_eq!(sel.matches(&obj), want);
        }

        #[test]
        fn field_selector_parsing_never_panics(s in "[ -~é]{0,40}") {
            let _ = FieldSelector::parse(&s, "", "pods");
            let _ = FieldSelector::parse(&s, "events.k8s.io", "events");
        }
    }
}
