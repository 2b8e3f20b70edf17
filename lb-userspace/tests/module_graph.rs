//! The module tree has no import cycles: no module imports one that imports
//! it back, neither between the crate's top-level modules (`crate::x`) nor
//! between the children of one directory module (`super::x` or
//! `crate::dir::x`). Read from the sources, so a new cycle fails the suite.
//! Test modules (inline `#[cfg(test)] mod` blocks, `tests.rs`, `tests/`,
//! `*_tests.rs`) are left out: a test may use a sibling's fake.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Edges `from -> to` between sibling modules, keyed by their parent path
/// (`""` for the crate root).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn modules_have_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        let module = module_path(relative);
        // Test modules (`tests.rs`, `tests/`, `*_tests.rs`) may use any
        // sibling: test dependencies, not part of the module graph.
        if module
            .iter()
            .any(|part| part == "tests" || part.ends_with("_tests"))
        {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        let mut lines = text.lines().map(str::trim).peekable();
        while let Some(line) = lines.next() {
            if line.starts_with("//") {
                continue;
            }
            // An inline test module may use its siblings' fakes: a test
            // dependency, not part of the module graph.
            if line == "#[cfg(test)]"
                && lines
                    .peek()
                    .is_some_and(|next| next.starts_with("mod ") && next.ends_with('{'))
            {
                break;
            }
            for target in imports(line, &module) {
                record(&mut graph, &module, &target);
            }
        }
    }
    let mut cycles = Vec::new();
    for (parent, edges) in &graph {
        for start in edges.keys() {
            if let Some(cycle) = cycle_through(edges, start) {
                cycles.push(format!("in {parent:?}: {}", cycle.join(" -> ")));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
    // The check reads something: the crate has top-level edges.
    assert!(
        graph.get("").is_some_and(|edges| edges.len() > 5),
        "{graph:?}"
    );
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// `config/validate/mod.rs` -> `["config", "validate"]`; `lib.rs` -> `[]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Absolute module paths named on `line` by `crate::a::b` or `super::a`.
fn imports(line: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = line;
        while let Some(at) = rest.find(prefix) {
            let after = &rest[at + prefix.len()..];
            let path: Vec<String> = after
                .split("::")
                .map(|part| {
                    part.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|part| !part.is_empty())
                .collect();
            let mut target = base.clone();
            target.extend(path);
            found.push(target);
            rest = after;
        }
    }
    found
}

/// Records `from -> to` at the level where their paths part: siblings under
/// their longest common parent.
fn record(graph: &mut Graph, from: &[String], to: &[String]) {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    let (Some(from_child), Some(to_child)) = (from.get(common), to.get(common)) else {
        // One is inside the other: a parent using its child, or the reverse.
        return;
    };
    graph
        .entry(from[..common].join("::"))
        .or_default()
        .entry(from_child.clone())
        .or_default()
        .insert(to_child.clone());
}

/// A cycle from `start` back to itself, if there is one.
fn cycle_through(edges: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in edges.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}
