//! The shape of src/: no module depends on itself through others. Read from the source: every `crate::`, `super::` and
//! `self::` path outside a test module names a module it uses; a cycle among them (between top-level modules, or
//! between any two modules) fails with the path that closes it.

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

/// Every `crate::a::b…`, `super::…` or `self::…` path in `text`, as segments.
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
                found.push(
                    rest[..end]
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            rest = &rest[end.max(1)..];
        }
    }
    found
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

#[test]
fn src_has_no_import_cycles() {
    let modules = modules();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &modules {
        for path in paths(text) {
            let Some(to) = target(&path, module, &modules) else {
                continue;
            };
            // A module and its own submodules or parent are one unit.
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
    assert!(
        graph.len() > 20,
        "the walk found too few modules to mean anything: {graph:?}"
    );
    for (name, graph) in [("top-level modules", &top), ("modules", &graph)] {
        let cycles: Vec<Vec<String>> = graph.keys().filter_map(|m| cycle_through(m, graph)).collect();
        assert!(cycles.is_empty(), "import cycles among {name}: {cycles:?}");
    }
}
