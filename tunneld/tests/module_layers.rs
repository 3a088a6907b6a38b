//! The top-level modules of `tunneld/src` point one way: no import cycle
//! between them (ARCHITECTURE.md, "Layers"). Read from the source: every
//! `crate::NAME` a module's files name outside their tests.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading tunneld/src") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its `#[cfg(test)]` part and `//` comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first names of each item of a `{…}` use group (`a::b, c::{d}`).
fn group_heads(body: &str) -> Vec<String> {
    let (mut depth, mut item, mut heads) = (0, String::new(), Vec::new());
    for ch in body.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(ch);
    }
    heads.push(item);
    heads
        .iter()
        .filter_map(|i| i.trim().split("::").next().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty() && h != "self")
        .collect()
}

/// The top-level modules `code` names through `crate::`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = body
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(body.len(), |(i, _)| i);
            refs.extend(group_heads(&body[..end]));
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                refs.insert(name);
            }
        }
    }
    refs
}

/// Module → the modules it names, from the source.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a path");
        let module = Path::new(first.as_os_str())
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        // The crate root, and the binary (a crate of its own).
        if module == "lib" || module == "bin" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("reading a source file");
        let refs = crate_refs(&code(&text));
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != module));
    }
    graph
}

/// A cycle through `start`, if any, as the modules along it.
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    node: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in graph.get(node).into_iter().flatten() {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(start.to_string());
            return Some(cycle);
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(c) = cycle_from(graph, start, next, path, seen) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = module_graph();
    assert!(graph.len() > 10, "read too few modules: {graph:?}");
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| {
            cycle_from(&graph, m, m, &mut vec![m.clone()], &mut BTreeSet::new())
                .map(|c| c.join(" -> "))
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules of tunneld/src:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_reader_sees_use_groups_and_paths() {
    let refs = crate_refs(
        "use crate::{\n    error::{Error, Result},\n    ssh::HostConfig,\n};\nlet x = crate::policy::check();",
    );
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["error", "policy", "ssh"]
    );
    assert!(code("use crate::a; // crate::b\n#[cfg(test)]\nuse crate::c;").contains("crate::a"));
    assert!(!code("use crate::a; // crate::b\n#[cfg(test)]\nuse crate::c;").contains("crate::c"));
}

/// The layers of `tunneld/src`, top (the API) to bottom (the OS), as
/// ARCHITECTURE.md's "Layers" draws them. A module may name only modules of
/// the layers below its own; a new module must be placed here.
const LAYERS: &[&[&str]] = &[
    &["server"],
    &["metrics"],
    &["grpc"],
    &["daemon"],
    &["config", "state"],
    &["tunnel", "exec"],
    &["relay", "socks"],
    &["ssh"],
    &["policy"],
    &["sys", "logging", "error"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn every_module_names_only_layers_below_its_own() {
    let graph = module_graph();
    let mut wrong = Vec::new();
    for (module, refs) in &graph {
        let Some(own) = layer_of(module) else {
            wrong.push(format!("{module} is in no layer of LAYERS; place it"));
            continue;
        };
        for r in refs {
            match layer_of(r) {
                Some(l) if l > own => {}
                Some(_) => wrong.push(format!("{module} -> {r} points up or sideways")),
                None => wrong.push(format!("{module} -> {r}: {r} is in no layer")),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_crate_root_holds_at_most_eight_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: Vec<String> = std::fs::read_dir(&src)
        .expect("reading tunneld/src")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        (1..=8).contains(&files.len()),
        "{} .rs files directly in tunneld/src (at most 8; put the rest in the module they serve): {files:?}",
        files.len()
    );
}

#[test]
fn wire_types_stay_in_grpc_and_server() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .into_owned();
        if ["grpc/", "server/", "bin/"]
            .iter()
            .any(|p| rel.starts_with(p))
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("reading a source file");
        let code = without_strings(&code(&text));
        for wire in ["tonic::", "prost::", "tunnel_proto::v1", "pbjson"] {
            if code.contains(wire) {
                found.push(format!("{rel} names {wire}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "wire types below the adapter:\n{}",
        found.join("\n")
    );
}

/// `code` without the contents of its string literals (a log target such
/// as "tonic::transport" is not a use of tonic).
fn without_strings(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in code.chars() {
        if in_string {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => {
                    in_string = false;
                    out.push(c);
                }
                _ => escaped = false,
            }
        } else {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

#[test]
fn the_byte_path_names_tcp_only_in_local_stream() {
    let relay = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/relay");
    let mut files = Vec::new();
    rust_files(&relay, &mut files);
    let named: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("local_stream.rs"))
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("reading a source file");
            without_strings(&code(&text)).contains("TcpStream")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        files.len() > 3 && named.is_empty(),
        "relay/ is written over LocalStream; TcpStream named in {named:?}"
    );
}
