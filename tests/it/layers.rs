//! The layering of `src/`: one folder per layer, dependencies only downward, and a pure core.
//!
//! Every `crate::LAYER` a file names must be its own layer or one below it, and the pure layers
//! (`core`, `strategy`) must not read a clock, sleep, touch files or sockets, or use the async
//! runtime. `sim` may use threads but no clock, file or socket. ARCHITECTURE.md explains why.

use std::path::{Path, PathBuf};

/// The layers, bottom up, each with the layers it may use.
const LAYERS: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("strategy", &["core"]),
    ("scenario", &["core", "strategy"]),
    ("sim", &["core", "strategy", "scenario"]),
    ("net", &["core", "strategy", "scenario", "sim"]),
    ("report", &["core", "strategy", "scenario", "sim"]),
    ("cli", &["core", "strategy", "scenario", "sim", "net", "report"]),
];

/// What no module of a pure layer may name: clocks, sleeping, files, sockets, processes, the
/// environment, the async runtime and the I/O crates.
const IMPURE: &[&str] = &[
    "tokio",
    "axum",
    "hyper",
    "reqwest",
    "rayon",
    "indicatif",
    "plotters",
    "clap",
    "std::fs",
    "std::net",
    "std::io",
    "std::thread",
    "std::process",
    "std::env",
    "std::time",
    "Instant",
    "SystemTime",
    "Utc::now",
    "Local::now",
    "thread_rng",
];

/// What the virtual-time driver may not name: it runs on threads, but never reads a clock or
/// touches a file or socket (results must not depend on the machine).
const NOT_IN_SIM: &[&str] = &[
    "tokio",
    "axum",
    "hyper",
    "reqwest",
    "std::fs",
    "std::net",
    "std::time",
    "Instant",
    "SystemTime",
    "Utc::now",
    "Local::now",
    "thread_rng",
];

/// The source with comments removed (line comments and doc comments), so prose that mentions a
/// layer or a crate does not count.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // Keep `//` inside string literals such as URLs: cut only where no quote is open.
            Some(i) if l[..i].matches('"').count() % 2 == 0 => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `needle` occurs in `hay` as whole words (not inside a longer identifier).
fn mentions(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The top-level modules a file names through `crate::` paths, including grouped imports
/// (`use crate::{core::time, sim};`).
fn crate_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        if code[..i].chars().next_back().is_some_and(is_ident) {
            continue; // e.g. `flux_crate::`
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => at_start = true,
                    c if at_start && is_ident(c) => item.push(c),
                    c if at_start && !item.is_empty() && !is_ident(c) => {
                        out.push(std::mem::take(&mut item));
                        at_start = false;
                    }
                    _ => {}
                }
            }
            if !item.is_empty() {
                out.push(item);
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            out.push(name);
        }
    }
    out
}

/// Every rule a file of `layer` breaks, as messages.
fn violations(layer: &str, file: &str, text: &str) -> Vec<String> {
    let code = code(text);
    let mut out = Vec::new();
    let Some((_, allowed)) = LAYERS.iter().find(|(l, _)| *l == layer) else {
        return vec![format!(
            "{file}: {layer:?} is not a layer; add it to LAYERS and ARCHITECTURE.md"
        )];
    };
    for m in crate_modules(&code) {
        let is_layer = LAYERS.iter().any(|(l, _)| *l == m);
        if is_layer && m != layer && !allowed.contains(&m.as_str()) {
            out.push(format!(
                "{file}: the {layer} layer uses crate::{m}, a layer above or beside it"
            ));
        }
    }
    if mentions(&code, "super::super") {
        out.push(format!(
            "{file}: super::super leaves the layer; name the layer with crate::"
        ));
    }
    let forbidden: &[&str] = match layer {
        "core" | "strategy" => IMPURE,
        "sim" => NOT_IN_SIM,
        _ => &[],
    };
    for f in forbidden {
        if mentions(&code, f) {
            out.push(format!("{file}: the {layer} layer must stay pure but names `{f}`"));
        }
    }
    out
}

/// Every rule a file of `net::wire` (Gemini's wire formats, both directions) breaks: it is
/// pure like the core — no clock, sleeping, files, sockets or async runtime — and names no
/// other part of `net` (serve, proxy, drive and http use it, never the reverse).
fn wire_violations(file: &str, text: &str) -> Vec<String> {
    let code = code(text);
    let mut out = Vec::new();
    for f in IMPURE {
        if mentions(&code, f) {
            out.push(format!("{file}: net::wire must stay pure but names `{f}`"));
        }
    }
    for other in ["serve", "proxy", "drive", "http", "shared_ledger", "tls"] {
        for form in [format!("crate::net::{other}"), format!("net::{other}::")] {
            if mentions(&code, &form) {
                out.push(format!("{file}: net::wire names net::{other}, which uses it"));
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_layer_depends_only_downward_and_the_core_is_pure() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src/");
        let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let layer = match parts.as_slice() {
            [one] if one == "lib.rs" || one == "main.rs" => continue,
            [one] => one.trim_end_matches(".rs").to_string(),
            [dir, ..] => dir.clone(),
            [] => unreachable!("a file has a name"),
        };
        seen.push(layer.clone());
        let text = std::fs::read_to_string(path).expect("source is readable");
        problems.extend(violations(&layer, &rel.display().to_string(), &text));
        if parts.len() >= 2 && parts[0] == "net" && (parts[1] == "wire.rs" || parts[1] == "wire") {
            problems.extend(wire_violations(&rel.display().to_string(), &text));
        }
    }
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
    for (layer, _) in LAYERS {
        assert!(
            seen.iter().any(|l| l == layer),
            "no file in layer {layer}: update LAYERS"
        );
    }
}

#[test]
fn the_check_has_teeth() {
    // A core module reaching up, or reading the clock, or a grouped import of an upper layer.
    let cases = [
        ("core", "use crate::sim::engine::simulate;"),
        ("core", "use crate::{core::time::Nanos, scenario::Scenario};"),
        ("core", "let t = std::time::Instant::now();"),
        ("core", "use std::fs::read_to_string;"),
        ("strategy", "use tokio::sync::mpsc;"),
        ("strategy", "use crate::scenario::Scenario;"),
        ("scenario", "use crate::sim::run::run;"),
        ("sim", "use crate::net::wire;"),
        ("sim", "let now = Instant::now();"),
        ("report", "use crate::net::serve::serve;"),
        ("net", "use crate::report::to_json;"),
        ("core", "use super::super::cli;"),
    ];
    for (layer, line) in cases {
        assert!(!violations(layer, "x.rs", line).is_empty(), "{layer}: `{line}` passed");
    }
    for line in [
        "use crate::net::serve::MAX_BODY;",
        "let t = std::time::Instant::now();",
        "tokio::time::sleep(d).await;",
    ] {
        assert!(
            !wire_violations("net/wire.rs", line).is_empty(),
            "wire: `{line}` passed"
        );
    }
    assert!(wire_violations("net/wire.rs", "use crate::core::ledger::Dims; use serde_json::json;").is_empty());
    // Comments, words inside identifiers and allowed layers pass.
    let fine = [
        (
            "core",
            "// see crate::sim::engine for the driver\nuse crate::core::time::Nanos;",
        ),
        ("core", "fn tokio_free() {} // tokio is not used here"),
        ("strategy", "use crate::core::{ledger::Dims, time::Nanos};"),
        ("sim", "use crate::{scenario::Scenario, strategy::Strategy};"),
        ("net", "let url = \"http://x//y\"; use crate::sim::metrics;"),
        ("cli", "use crate::net::serve; use crate::report::to_json;"),
    ];
    for (layer, text) in fine {
        assert_eq!(violations(layer, "x.rs", text), Vec::<String>::new(), "{layer}: {text}");
    }
}

/// The modules of `core` that `code` names (`crate::core::ledger`, `crate::core::{time, rng}`).
fn core_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::core::") {
        let rest = &code[i + "crate::core::".len()..];
        // `crate::core::{time, rng}` names several; `crate::core::ledger::X` names one.
        let group = match rest.strip_prefix('{') {
            Some(g) => &g[..g.find('}').unwrap_or(g.len())],
            None => &rest[..rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len())],
        };
        for item in group.split(',') {
            let name: String = item.trim().chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() && name != "self" {
                out.push(name);
            }
        }
    }
    out
}

/// `core`'s modules import one another without a cycle (a cycle is a sign two concepts share a
/// module: `live` ↔ `server` ↔ `workload` was one, until `Latency` and `TokenDist` moved to
/// `dist`).
#[test]
fn core_modules_import_each_other_without_a_cycle() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let mut edges: Vec<(String, Vec<String>)> = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&dir).expect("under src/core");
        let module = rel
            .iter()
            .next()
            .expect("a name")
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "mod" {
            continue;
        }
        let text = code(&std::fs::read_to_string(path).expect("source is readable"));
        let test_start = text.find("#[cfg(test)]").unwrap_or(text.len());
        let mut uses = core_modules(&text[..test_start]);
        uses.retain(|m| *m != module);
        match edges.iter_mut().find(|(m, _)| *m == module) {
            Some((_, u)) => u.extend(uses),
            None => edges.push((module, uses)),
        }
    }
    assert!(edges.len() >= 10, "found only {edges:?}");
    // Depth-first search for a back edge, reporting the cycle.
    fn visit(
        m: &str,
        edges: &[(String, Vec<String>)],
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<String> {
        if let Some(i) = path.iter().position(|p| p == m) {
            return Some(format!("{} -> {m}", path[i..].join(" -> ")));
        }
        if done.iter().any(|d| d == m) {
            return None;
        }
        path.push(m.to_string());
        let next = edges
            .iter()
            .find(|(n, _)| n == m)
            .map(|(_, u)| u.clone())
            .unwrap_or_default();
        for n in next {
            if let Some(c) = visit(&n, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.push(m.to_string());
        None
    }
    let mut done = Vec::new();
    for (m, _) in &edges {
        if let Some(cycle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!("core modules import each other in a cycle: {cycle}");
        }
    }
}

/// The string literals of `code` (outside `#[cfg(test)]` modules) that name a command-line flag
/// (`--name`), but for whole commands shown to the user (`flux-sim …`, `cargo …`, `gcloud …`)
/// and documentation that quotes one in backticks (`scenario::reference`).
fn flag_literals(code: &str) -> Vec<String> {
    let code = &code[..code.find("#[cfg(test)]").unwrap_or(code.len())];
    let mut out = Vec::new();
    for line in code.lines() {
        // The literals of the line: every other piece between quotes (escaped quotes removed).
        let cleaned = line.replace("\\\"", "");
        for (i, piece) in cleaned.split('"').enumerate() {
            if i % 2 == 1
                && piece.match_indices("--").any(|(j, _)| {
                    piece[j + 2..].chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && !piece[..j].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
                })
                && !["flux-sim ", "cargo ", "gcloud ", "`"]
                    .iter()
                    .any(|cmd| piece.contains(cmd))
            {
                out.push(piece.to_string());
            }
        }
    }
    out
}

/// Flags are the command line's: layers below `cli.rs` name the value they were given (or
/// return a typed error), and `cli.rs` adds the flag that carried it (issue 32).
#[test]
fn no_layer_below_the_command_line_names_a_flag() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src/");
        if rel == Path::new("cli.rs") || rel == Path::new("main.rs") {
            continue;
        }
        let text = code(&std::fs::read_to_string(path).expect("source is readable"));
        found.extend(
            flag_literals(&text)
                .into_iter()
                .map(|l| format!("{}: {l:?}", rel.display())),
        );
    }
    assert!(found.is_empty(), "flags named below cli.rs:\n{}", found.join("\n"));
    // The check has teeth.
    assert_eq!(flag_literals(r#"Err(format!("--out: cannot write {p}"))"#).len(), 1);
    assert!(flag_literals(r#"hint("run flux-sim sweep --set a=1")"#).is_empty());
}
