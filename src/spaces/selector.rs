//! Label selectors (the full grammar of apimachinery's `labels.Parse`) and the field selectors spaces support
//! (`metadata.name`, `metadata.namespace`, `spec.cluster` with `=`, `==`, `!=`).

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("unable to parse requirement: {0}")]
    Label(String),
    #[error("{0:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\", \"spec.cluster\"")]
    UnknownField(String),
    #[error("invalid field selector: {0}")]
    Field(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Exists,
    DoesNotExist,
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

// === impl LabelSelector ===

impl LabelSelector {
    /// # Errors
    /// When `input` is not a valid selector.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let tokens = lex(input)?;
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if parser.peek().is_none() {
            return Ok(LabelSelector::default());
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                None => break,
                Some(Token::Comma) => {}
                Some(other) => return Err(Error::Label(format!("found '{other:?}', expected: ','"))),
            }
        }
        Ok(LabelSelector { requirements })
    }

    #[must_use]
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.and_then(|l| l.get(&r.key));
            match &r.op {
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
                Op::In(values) => value.is_some_and(|v| values.contains(v)),
                Op::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
                Op::Gt(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
                Op::Lt(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    In,
    NotIn,
    Open,
    Close,
    Comma,
}

impl Token {
    /// The token as a key or value: the operator words `in` and `notin` are ordinary names where a name is expected,
    /// as in apimachinery's parser.
    fn name(&self) -> Option<String> {
        match self {
            Token::Ident(name) => Some(name.clone()),
            Token::In => Some("in".to_owned()),
            Token::NotIn => Some("notin".to_owned()),
            _ => None,
        }
    }
}

fn lex(input: &str) -> Result<Vec<Token>, Error> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let special = |c: char| matches!(c, '!' | '=' | '(' | ')' | ',' | '<' | '>');
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (token, len) = match (c, next) {
            ('!', Some('=')) => (Token::NotEq, 2),
            ('!', _) => (Token::Not, 1),
            ('=', Some('=')) => (Token::DoubleEq, 2),
            ('=', _) => (Token::Eq, 1),
            ('(', _) => (Token::Open, 1),
            (')', _) => (Token::Close, 1),
            (',', _) => (Token::Comma, 1),
            ('>', _) => (Token::Gt, 1),
            ('<', _) => (Token::Lt, 1),
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !special(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                tokens.push(match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(word),
                });
                continue;
            }
        };
        tokens.push(token);
        i += len;
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn requirement(&mut self) -> Result<Requirement, Error> {
        let negated = self.peek() == Some(&Token::Not);
        if negated {
            self.pos += 1;
        }
        let key = match self.next() {
            Some(token) if token.name().is_some() => token.name().unwrap_or_default(),
            other => return Err(Error::Label(format!("found '{other:?}', expected: identifier"))),
        };
        validate_key(&key)?;
        if negated {
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
            });
        }
        let op = match self.peek() {
            None | Some(Token::Comma) => return Ok(Requirement { key, op: Op::Exists }),
            Some(_) => self.next(),
        };
        let op = match op {
            Some(Token::Eq | Token::DoubleEq) => Op::In(vec![self.value()?]),
            Some(Token::NotEq) => Op::NotIn(vec![self.value()?]),
            Some(Token::In) => Op::In(self.values()?),
            Some(Token::NotIn) => Op::NotIn(self.values()?),
            Some(Token::Gt) => Op::Gt(self.integer()?),
            Some(Token::Lt) => Op::Lt(self.integer()?),
            other => {
                return Err(Error::Label(format!(
                    "found '{other:?}', expected: in, notin, =, ==, !=, gt, lt"
                )))
            }
        };
        Ok(Requirement { key, op })
    }

    /// A single value; it may be empty (`a=` selects the empty value).
    fn value(&mut self) -> Result<String, Error> {
        let value = match self.peek() {
            Some(token) if token.name().is_some() => token.name().unwrap_or_default(),
            None | Some(Token::Comma) => return Ok(String::new()),
            Some(other) => return Err(Error::Label(format!("found '{other:?}', expected: identifier"))),
        };
        self.pos += 1;
        validate_value(&value)?;
        Ok(value)
    }

    fn values(&mut self) -> Result<Vec<String>, Error> {
        if self.next() != Some(Token::Open) {
            return Err(Error::Label("expected '(' after set operator".to_owned()));
        }
        let mut values = Vec::new();
        loop {
            match self.next().map(|t| (t.name(), t)) {
                Some((Some(v), _)) => {
                    validate_value(&v)?;
                    values.push(v);
                    match self.next() {
                        Some(Token::Comma) => {}
                        Some(Token::Close) => return Ok(values),
                        other => return Err(Error::Label(format!("found '{other:?}', expected: ',' or ')'"))),
                    }
                }
                Some((None, Token::Close)) => {
                    values.push(String::new());
                    return Ok(values);
                }
                Some((None, Token::Comma)) => values.push(String::new()),
                other => {
                    return Err(Error::Label(format!(
                        "found '{:?}', expected: ',', ')' or identifier",
                        other.map(|(_, t)| t)
                    )))
                }
            }
        }
    }

    fn integer(&mut self) -> Result<i64, Error> {
        match self.next() {
            Some(Token::Ident(v)) => v
                .parse()
                .map_err(|_| Error::Label(format!("for 'Gt', 'Lt' operators, the value must be an integer: {v}"))),
            other => Err(Error::Label(format!("found '{other:?}', expected: integer"))),
        }
    }
}

fn is_name(s: &str, max: usize) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= max
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// A qualified name: `[prefix/]name`, prefix a DNS subdomain, name up to 63 characters.
fn validate_key(key: &str) -> Result<(), Error> {
    let valid = match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name(name, 63),
        None => is_name(key, 63),
    };
    if valid {
        Ok(())
    } else {
        Err(Error::Label(format!("invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")))
    }
}

fn validate_value(value: &str) -> Result<(), Error> {
    if value.is_empty() || is_name(value, 63) {
        Ok(())
    } else {
        Err(Error::Label(format!("invalid label value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")))
    }
}

/// A field selector over a space's name (and its always-empty namespace).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (field, wanted value, equal?)
    terms: Vec<(Field, String, bool)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Name,
    Namespace,
    /// The connected cluster a space is in (empty for this cluster's), as its name says.
    Cluster,
}

// === impl FieldSelector ===

impl FieldSelector {
    /// # Errors
    /// When a term is malformed or names a field other than `metadata.name` / `metadata.namespace` / `spec.cluster`.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let mut terms = Vec::new();
        for term in split_unescaped(input, ',') {
            if term.trim().is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(Error::Field(format!("{term:?}: expected an operator (=, ==, !=)")));
            };
            let field = match field.trim() {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                "spec.cluster" => Field::Cluster,
                other => return Err(Error::UnknownField(other.to_owned())),
            };
            terms.push((field, unescape(value.trim()), equal));
        }
        Ok(FieldSelector { terms })
    }

    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        self.terms.iter().all(|(field, value, equal)| {
            let actual = match field {
                Field::Name => name,
                Field::Namespace => "",
                Field::Cluster => crate::access::view::connected_part(name).map_or("", |(cluster, _)| cluster),
            };
            (actual == value) == *equal
        })
    }
}

/// Splits on `sep` not preceded by a backslash (field selector values escape `,`, `=` and `\`).
fn split_unescaped(input: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            if let Some(last) = parts.last_mut() {
                last.push('\\');
                last.push(c);
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
