//! The layers of the `calsync` crate as the source has them: foundations, adapters, services,
//! the app, entry points — each using only the layers below it — and no cycle between its
//! modules. Read from the source files themselves, so a new `use` that breaks the rule fails
//! here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module of the crate as the rule sees it: `adapters::graph`, `services::users`,
/// `entry::auth`, `app`, `config`…
type Module = String;

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the source folder is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a source file belongs to.
fn module_of(relative: &Path) -> Option<Module> {
    let parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    match parts.as_slice() {
        [file] if file == "lib" => None,
        [file] => Some(file.clone()),
        [layer, rest @ ..] if ["adapters", "services", "entry"].contains(&layer.as_str()) => {
            match rest.first().map(String::as_str) {
                Some("mod") | None => None,
                Some(module) => Some(format!("{layer}::{module}")),
            }
        }
        _ => None,
    }
}

/// The modules a file's code names through `crate::…` paths (comments left out).
fn references(text: &str) -> BTreeSet<Module> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let path: String = rest[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segments = path.split("::").filter(|s| !s.is_empty());
            if let Some(first) = segments.next() {
                let module = match first {
                    "adapters" | "services" | "entry" => {
                        segments.next().map(|second| format!("{first}::{second}"))
                    }
                    other => Some(other.to_owned()),
                };
                if let Some(module) = module {
                    found.insert(module);
                }
            }
            rest = &rest[at + "crate::".len()..];
        }
    }
    found
}

/// How high a module sits: a module may only use modules at its own height or below.
fn height(module: &str) -> u8 {
    match module.split("::").next() {
        Some("adapters") => 1,
        Some("services") => 2,
        Some("app") => 3,
        Some("entry") => 4,
        // config, crypto, signed_url, nudge, errors, telemetry
        _ => 0,
    }
}

fn module_graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let root = source_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&root).expect("under the source root");
        let Some(module) = module_of(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        let uses = references(&text);
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(uses.into_iter().filter(|used| *used != module));
    }
    graph
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let graph = module_graph();
    assert!(graph.contains_key("adapters::graph") && graph.contains_key("entry::auth"));
    let mut breaches = Vec::new();
    for (module, uses) in &graph {
        for used in uses {
            if height(used) > height(module) {
                breaches.push(format!("{module} uses {used}"));
            }
        }
    }
    assert!(
        breaches.is_empty(),
        "layer breaches:\n{}",
        breaches.join("\n")
    );
}

#[test]
fn no_two_modules_depend_on_each_other_in_a_cycle() {
    let graph = module_graph();
    // Depth-first search with colours: grey on the stack, black done.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        colour: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        colour.insert(node, 1);
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match colour.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| *n == next).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|n| (*n).to_owned()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, colour, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        colour.insert(node, 2);
        None
    }
    let mut colour = BTreeMap::new();
    for node in graph.keys() {
        if !colour.contains_key(node.as_str()) {
            if let Some(cycle) = visit(node, &graph, &mut colour, &mut Vec::new()) {
                panic!("a cycle between modules: {}", cycle.join(" → "));
            }
        }
    }
}

#[test]
fn the_reader_finds_paths_and_skips_comments() {
    let text = "use crate::adapters::store::{Item, StoreError};\n\
                // crate::entry::auth is only mentioned here\n\
                let x = crate::services::users::Users::new(s); crate::config::join_url(a, b);";
    let found = references(text);
    assert_eq!(
        found,
        BTreeSet::from([
            "adapters::store".to_owned(),
            "services::users".to_owned(),
            "config".to_owned()
        ])
    );
    assert_eq!(
        module_of(Path::new("services/sync_run/target.rs")).as_deref(),
        Some("services::sync_run")
    );
    assert_eq!(module_of(Path::new("adapters/mod.rs")), None);
    assert_eq!(module_of(Path::new("app.rs")).as_deref(), Some("app"));
}
