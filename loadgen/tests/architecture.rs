//! The shape of the code, checked: in both crates no module depends on another that depends
//! back on it (no import cycles); loadgen's layers depend only downward (the model at the
//! bottom, the reports on the model alone, the scenarios on top); and no source file is longer
//! than a reader takes in at one sitting.
//!
//! A module's dependencies are read from its source text (comments and tests left out):
//! every `crate::`, `super::` and `self::` path, and paths through the child modules it
//! declares, each resolved to the module that holds the item named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lines a source file may have before its tests.
const MOST_LINES: usize = 450;

/// loadgen's top-level modules, lowest layer first: each may depend only on layers before it.
const LAYERS: [&[&str]; 5] = [
    &["proto"],
    &["model"],
    &["os", "diagnose", "report"],
    &["rig"],
    &["scenario"],
];

/// Modules that may depend on the model alone (and on themselves).
const ON_THE_MODEL_ONLY: [&str; 2] = ["report", "diagnose"];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every module of the crate at `src`, by path (`rig::worker`), with its file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().map_or(true, |e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            // `foo/tests.rs` is the test module of `foo`.
            if parts.len() > 1 && parts.last().is_some_and(|p| p == "tests") {
                continue;
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The source without comments and without its tests.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path in `code` that starts with `root::` (an identifier boundary before it), as
/// the list of its segments after `root`; braces (`root::a::{b, c::d}`) give one path each.
fn paths_after(code: &str, root: &str) -> Vec<Vec<String>> {
    let needle = format!("{root}::");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find(&needle) {
        let at = from + i;
        from = at + needle.len();
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        out.extend(expand(&code[from..], Vec::new()));
    }
    out
}

/// The paths at the start of `rest` (after a `::`), prefixed by `prefix`.
fn expand(rest: &str, prefix: Vec<String>) -> Vec<Vec<String>> {
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut depth = 1;
        let end = inner
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '{' => 1,
                    '}' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map_or(inner.len(), |(i, _)| i);
        return split_top(&inner[..end])
            .into_iter()
            .flat_map(|item| expand(item, prefix.clone()))
            .collect();
    }
    let ident: String = rest.chars().take_while(|&c| is_ident(c)).collect();
    if ident.is_empty() {
        return vec![prefix];
    }
    let mut path = prefix;
    path.push(ident.clone());
    match rest[ident.len()..].strip_prefix("::") {
        Some(tail) => expand(tail, path),
        None => vec![path],
    }
}

/// `a, b::{c, d}, e` split at the commas outside braces.
fn split_top(list: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in list.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out
}

/// The module holding `path`: its longest prefix that is a module.
fn resolve(path: &[String], mods: &BTreeMap<String, PathBuf>) -> Option<String> {
    (0..=path.len())
        .rev()
        .map(|k| path[..k].join("::"))
        .find(|m| mods.contains_key(m))
}

/// Which modules each module of the crate at `src` depends on.
fn graph(src: &Path) -> Graph {
    let mods = modules(src);
    let mut graph = Graph::new();
    for (module, file) in &mods {
        let code = code(&std::fs::read_to_string(file).expect("read a source file"));
        let here: Vec<String> = match module.is_empty() {
            true => Vec::new(),
            false => module.split("::").map(String::from).collect(),
        };
        let parent = here[..here.len().saturating_sub(1)].to_vec();
        let mut deps = BTreeSet::new();
        let roots = [
            ("crate", Vec::new()),
            ("super", parent),
            ("self", here.clone()),
        ];
        for (root, base) in roots {
            for tail in paths_after(&code, root) {
                let full: Vec<String> = base.iter().cloned().chain(tail).collect();
                deps.extend(resolve(&full, &mods));
            }
        }
        // Paths through the child modules this file declares: `mod x;` then `x::item`.
        for line in code.lines() {
            let line = line.trim();
            let Some(decl) = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .or_else(|| line.strip_prefix("mod "))
            else {
                continue;
            };
            let child = decl.trim_end_matches(';').trim();
            let mut path = here.clone();
            path.push(child.to_string());
            let name = path.join("::");
            if mods.contains_key(&name) && !paths_after(&code, child).is_empty() {
                deps.insert(name);
            }
        }
        deps.remove(module);
        graph.insert(module.clone(), deps);
    }
    graph
}

/// The strongly connected groups of more than one module: the import cycles.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    // Two modules are in one cycle when each reaches the other.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for d in graph.get(&m).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut groups: Vec<Vec<String>> = Vec::new();
    for m in graph.keys() {
        let group: Vec<String> = graph
            .keys()
            .filter(|o| *o == m || (reaches[m].contains(*o) && reaches[*o].contains(m)))
            .cloned()
            .collect();
        if group.len() > 1 && !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}

fn crate_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or_default()
}

#[test]
fn neither_crate_has_an_import_cycle() {
    for krate in ["loadgen", "broker"] {
        let found = cycles(&graph(&crate_src(krate)));
        assert!(found.is_empty(), "{krate}: import cycles {found:?}");
    }
}

#[test]
fn loadgen_depends_only_downward() {
    let graph = graph(&crate_src("loadgen"));
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&top(m)));
    let mut wrong = Vec::new();
    for (module, deps) in &graph {
        for dep in deps {
            let (from, to) = (top(module), top(dep));
            if from == to || module.is_empty() {
                continue;
            }
            let upward = match (layer(module), layer(dep)) {
                (Some(a), Some(b)) => b >= a,
                _ => true,
            };
            let beyond_model = ON_THE_MODEL_ONLY.contains(&from) && to != "model";
            if upward || beyond_model {
                wrong.push(format!("{module} -> {dep}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layers: {wrong:#?}"
    );
}

#[test]
fn every_source_file_reads_in_one_sitting() {
    let mut long = Vec::new();
    for krate in ["loadgen", "broker"] {
        for file in modules(&crate_src(krate)).values() {
            let text = std::fs::read_to_string(file).unwrap();
            let lines = text.split("#[cfg(test)]").next().unwrap().lines().count();
            if lines > MOST_LINES {
                long.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {MOST_LINES} lines before their tests: {long:?}"
    );
}

#[test]
fn the_reader_finds_paths_and_cycles() {
    let code = "use crate::a::{b, c::{d, e}};\nfn f() { super::g::h(); my_crate::x(); }";
    let found = paths_after(code, "crate");
    assert_eq!(
        found,
        [vec!["a", "b"], vec!["a", "c", "d"], vec!["a", "c", "e"]]
    );
    assert_eq!(paths_after(code, "super"), [vec!["g", "h"]]);
    let graph: Graph = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(m, d)| (m.to_string(), d.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&graph), [vec!["a", "b", "c"]]);
}
