//! The shape of src/: no module depends on itself through others, and dependencies point inwards only (`LAYERS`). Read
//! from the source: every `crate::`, `super::` and `self::` path outside a test module names a module it uses; a cycle
//! among them (between top-level modules, or between any two modules) fails with the path that closes it, and a use
//! of a module further out fails naming both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module paths (`spaces::write`) to their source, for every file of src/ but the crate roots and test files.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, out);
                continue;
            }
            let relative = path
                .strip_prefix(src())
                .expect("under src/")
                .to_string_lossy()
                .into_owned();
            let Some(module) = relative.strip_suffix(".rs") else {
                continue;
            };
            if ["main", "lib"].contains(&module) || module.ends_with("tests") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file");
            // What follows `#[cfg(test)] mod tests {` is test code: it may use anything.
            let text = match text.find("#[cfg(test)]\nmod tests {") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            out.insert(module.replace('/', "::"), text);
        }
    }
    let mut out = BTreeMap::new();
    walk(&src(), &mut out);
    out
}

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `crate::a::b…`, `super::…` or `self::…` path in `text`, as segments; a group (`use super::{a, b::{c, d}}`)
/// gives one path per name in it.
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut rest = text;
        while let Some(at) = rest.find(start) {
            let before = rest[..at].chars().last();
            rest = &rest[at..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                let prefix = segments(&rest[..end]);
                match rest[end..].strip_prefix('{').and_then(group) {
                    Some(inside) => found.extend(names(inside).into_iter().map(|name| [prefix.clone(), name].concat())),
                    None => found.push(prefix),
                }
            }
            rest = &rest[end.max(1)..];
        }
    }
    found
}

/// `a::b::` as `[a, b]`.
fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "*")
        .map(str::to_owned)
        .collect()
}

/// What is inside a group whose `{` was just passed: the text up to its matching `}`.
fn group(text: &str) -> Option<&str> {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(&text[..at]),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The names a group's text holds, each as segments: `a as b` is `a`, `self` is the group's own path (no segments),
/// `c::{d, e}` is `c::d` and `c::e`.
fn names(inside: &str) -> Vec<Vec<String>> {
    let mut items = Vec::new();
    let (mut depth, mut from) = (0usize, 0);
    for (at, c) in inside.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&inside[from..at]);
                from = at + 1;
            }
            _ => {}
        }
    }
    items.push(&inside[from..]);
    let mut out = Vec::new();
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        match item.find('{') {
            Some(open) => {
                let prefix = segments(&item[..open]);
                if let Some(nested) = group(&item[open + 1..]) {
                    out.extend(names(nested).into_iter().map(|name| [prefix.clone(), name].concat()));
                }
            }
            None => match item.split(" as ").next().unwrap_or_default().trim() {
                "self" => out.push(Vec::new()),
                name => out.push(segments(name)),
            },
        }
    }
    out
}

#[test]
fn groups_are_read_name_by_name() {
    let found = paths("use super::{self as up, a, b::{c, d as e}, F};\nuse crate::x::y;");
    let expected: Vec<Vec<&str>> = vec![
        vec!["super"],
        vec!["super", "a"],
        vec!["super", "b", "c"],
        vec!["super", "b", "d"],
        vec!["super", "F"],
        vec!["crate", "x", "y"],
    ];
    let mut found: Vec<Vec<&str>> = found.iter().map(|p| p.iter().map(String::as_str).collect()).collect();
    found.sort();
    let mut expected = expected;
    expected.sort();
    assert_eq!(found, expected);
}

/// The module a path in `module` leads to: the longest prefix that is a module of src/.
fn target(path: &[String], module: &str, modules: &BTreeMap<String, String>) -> Option<String> {
    let mut segments: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => path[1..].to_vec(),
        Some("self") => module
            .split("::")
            .map(str::to_owned)
            .chain(path[1..].iter().cloned())
            .collect(),
        Some("super") => {
            let mut base: Vec<String> = module.split("::").map(str::to_owned).collect();
            let mut rest = path;
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
            base.into_iter().chain(rest.iter().cloned()).collect()
        }
        _ => return None,
    };
    while !segments.is_empty() {
        let candidate = segments.join("::");
        if modules.contains_key(&candidate) {
            return Some(candidate);
        }
        segments.pop();
    }
    None
}

/// A path from `from` back to itself through `graph`, if there is one.
fn cycle_through(from: &str, graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().expect("a path has a start");
        for next in graph.get(last).into_iter().flatten() {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

/// Which modules of src/ use which: between any two modules, and between top-level modules. A module and its own
/// submodules or parent are one unit.
fn uses() -> (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, BTreeSet<String>>) {
    let modules = modules();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &modules {
        for path in paths(text) {
            let Some(to) = target(&path, module, &modules) else {
                continue;
            };
            if to == *module || to.starts_with(&format!("{module}::")) || module.starts_with(&format!("{to}::")) {
                continue;
            }
            let (a, b) = (
                module.split("::").next().unwrap_or_default(),
                to.split("::").next().unwrap_or_default(),
            );
            if a != b {
                top.entry(a.to_owned()).or_default().insert(b.to_owned());
            }
            graph.entry(module.clone()).or_default().insert(to);
        }
    }
    (graph, top)
}

#[test]
fn src_has_no_import_cycles() {
    let (graph, top) = uses();
    assert!(
        graph.len() > 20,
        "the walk found too few modules to mean anything: {graph:?}"
    );
    for (name, graph) in [("top-level modules", &top), ("modules", &graph)] {
        let cycles: Vec<Vec<String>> = graph.keys().filter_map(|m| cycle_through(m, graph)).collect();
        assert!(cycles.is_empty(), "import cycles among {name}: {cycles:?}");
    }
}

/// The layers of src/, outermost first: a module may use modules of its own layer or of layers further in, never one
/// further out. The request edge and the controllers drive the registry; the registry writes through the clusters it
/// serves; those reach kube-apiserver through `backend` (kube I/O), which feeds `state`; everything may use the
/// leaves (wire types, RBAC evaluation, identities, settings, metrics).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "the request edge and the controllers",
        &["http", "controllers", "certs"],
    ),
    ("connecting clusters", &["connect"]),
    ("the registry", &["spaces", "watch"]),
    ("the clusters served", &["clusters"]),
    ("kube I/O", &["backend"]),
    ("the state", &["state"]),
    (
        "leaves",
        &[
            "api", "access", "authn", "authz", "metrics", "config", "tls", "fixtures", "domains", "sleep",
        ],
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

/// Each use in `uses` of a module further out than its user, in words.
fn wrong_way(uses: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut wrong = Vec::new();
    for (from, tos) in uses {
        let from_layer = layer_of(from).unwrap_or_else(|| panic!("module {from} is in no layer of LAYERS"));
        for to in tos {
            let to_layer = layer_of(to).unwrap_or_else(|| panic!("module {to} is in no layer of LAYERS"));
            if to_layer < from_layer {
                wrong.push(format!(
                    "{from} ({}) uses {to} ({}), which is further out",
                    LAYERS[from_layer].0, LAYERS[to_layer].0
                ));
            }
        }
    }
    wrong
}

#[test]
fn dependencies_point_inwards_only() {
    let wrong = wrong_way(&uses().1);
    assert!(wrong.is_empty(), "wrong-way imports:\n{}", wrong.join("\n"));
}

#[test]
fn a_wrong_way_import_is_caught() {
    // src/ as it is, plus the state reaching out to the registry and kube I/O to the clusters it serves.
    let mut uses = uses().1;
    uses.entry("state".to_owned()).or_default().insert("spaces".to_owned());
    uses.entry("backend".to_owned())
        .or_default()
        .insert("clusters".to_owned());
    assert_eq!(
        wrong_way(&uses),
        [
            "backend (kube I/O) uses clusters (the clusters served), which is further out",
            "state (the state) uses spaces (the registry), which is further out",
        ]
    );
}
