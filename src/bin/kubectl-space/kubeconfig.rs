//! `kubectl space use`: which kubeconfig file holds the context, and setting that context's namespace while every other
//! entry of the file stays as it was (same keys, same order, same values).
//!
//! The file is read into an order-keeping YAML tree rather than a typed Kubeconfig, so fields this tool does not know
//! (extensions, exec plugins, preferences) survive the write. Comments do not, exactly as with
//! `kubectl config set-context --current --namespace`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// Why a namespace could not be set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        // Boxed: the parser's error carries a snippet of the file and would make every Result large.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serializing {}: {source}", path.display())]
    Serialize {
        path: PathBuf,
        #[source]
        source: serde_saphyr::SerializeError,
    },
    #[error("current-context is not set in {0}; name one with --context")]
    NoCurrentContext(String),
    #[error("context {context:?} not found in {files}")]
    NoSuchContext { context: String, files: String },
    #[error("no kubeconfig file: set KUBECONFIG, pass --kubeconfig, or create ~/.kube/config")]
    NoFile,
}

/// The kubeconfig files kubectl would read, in kubectl's order: `--kubeconfig`, else `$KUBECONFIG` (a path list), else
/// `~/.kube/config`.
pub fn files(flag: Option<&Path>) -> Result<Vec<PathBuf>, Error> {
    if let Some(path) = flag {
        return Ok(vec![path.to_owned()]);
    }
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            return Ok(paths);
        }
    }
    let home = std::env::var_os("HOME").ok_or(Error::NoFile)?;
    Ok(vec![PathBuf::from(home).join(".kube").join("config")])
}

/// Sets `namespace` on `context` (or the current context) in the first of `files` that defines it, as kubectl does
/// when it modifies a context. Returns the context's name and the file written.
pub fn set_namespace(files: &[PathBuf], context: Option<&str>, namespace: &str) -> Result<(String, PathBuf), Error> {
    // Files that do not exist are skipped, as kubectl skips them when merging.
    let mut loaded = Vec::new();
    for path in files {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let node: Node = if text.trim().is_empty() {
                    Node::Map(Vec::new())
                } else {
                    serde_saphyr::from_str(&text).map_err(|source| Error::Parse {
                        path: path.clone(),
                        source: Box::new(source),
                    })?
                };
                loaded.push((path.clone(), node));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Read {
                    path: path.clone(),
                    source,
                })
            }
        }
    }
    let listed = || {
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if loaded.is_empty() {
        return Err(Error::NoFile);
    }
    // The first file that sets current-context wins, as in kubectl's merge.
    let name = match context {
        Some(name) => name.to_owned(),
        None => loaded
            .iter()
            .find_map(|(_, node)| {
                node.get("current-context")
                    .and_then(Node::as_str)
                    .filter(|s| !s.is_empty())
            })
            .map(str::to_owned)
            .ok_or_else(|| Error::NoCurrentContext(listed()))?,
    };
    for (path, node) in &mut loaded {
        let Some(entry) = node.context_mut(&name) else {
            continue;
        };
        entry.set("namespace", Node::Str(namespace.to_owned()));
        // Plain scalars, never folded ones: a long token or certificate stays one line, as kubectl writes it.
        let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
        let text = serde_saphyr::to_string_with_options(&*node, options).map_err(|source| Error::Serialize {
            path: path.clone(),
            source,
        })?;
        // In place, as kubectl writes it: the file keeps its owner and mode (often 0600: it holds credentials).
        std::fs::write(&*path, text).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        return Ok((name, path.clone()));
    }
    Err(Error::NoSuchContext {
        context: name,
        files: listed(),
    })
}

/// A YAML document as written: mappings keep their keys in file order.
#[derive(Clone, Debug, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

// === impl Node ===

impl Node {
    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match self {
            Node::Map(entries) => entries
                .iter_mut()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Replaces `key`'s value where it stands, or appends it; a null becomes a mapping first.
    fn set(&mut self, key: &str, value: Node) {
        if *self == Node::Null {
            *self = Node::Map(Vec::new());
        }
        if let Some(slot) = self.get_mut(key) {
            *slot = value;
        } else if let Node::Map(entries) = self {
            entries.push((Node::Str(key.to_owned()), value));
        }
    }

    /// The `context` mapping of the `contexts[]` entry named `name`, made if the entry has none.
    fn context_mut(&mut self, name: &str) -> Option<&mut Node> {
        let Some(Node::Seq(contexts)) = self.get_mut("contexts") else {
            return None;
        };
        let entry = contexts
            .iter_mut()
            .find(|c| c.get("name").and_then(Node::as_str) == Some(name))?;
        if entry.get("context").is_none() {
            entry.set("context", Node::Map(Vec::new()));
        }
        let context = entry.get_mut("context")?;
        if *context == Node::Null {
            *context = Node::Map(Vec::new());
        }
        Some(context)
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(b) => serializer.serialize_bool(*b),
            Node::Int(i) => serializer.serialize_i64(*i),
            Node::UInt(u) => serializer.serialize_u64(*u),
            Node::Float(f) => serializer.serialize_f64(*f),
            Node::Str(s) => serializer.serialize_str(s),
            Node::Seq(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests;
