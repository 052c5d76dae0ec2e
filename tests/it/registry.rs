//! Every list of strategies a user reads is the registry's (`strategy::KINDS`): the docs'
//! list, `flux-sim strategies`, and what `--strategy` accepts.

use assert_cmd::Command;
use flux_sim::strategy::KINDS;
use std::path::Path;

/// The strategy names a docs list gives: each bullet that opens with backticked names
/// (`` - `a`, `b` (…): … ``) names those.
fn listed(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(mut rest) = line.strip_prefix("- `") else {
            continue;
        };
        while let Some(end) = rest.find('`') {
            out.push(rest[..end].to_string());
            match rest[end + 1..].strip_prefix(", `") {
                Some(more) => rest = more,
                None => break,
            }
        }
    }
    out
}

/// The docs' list of strategies: docs/strategies.md up to its first `##` section, else the
/// README's "Strategies" section.
fn docs_list() -> (String, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = root.join("docs/strategies.md");
    let (name, text) = if page.exists() {
        let text = std::fs::read_to_string(page).unwrap();
        let end = text.find("\n## ").unwrap_or(text.len());
        ("docs/strategies.md", text[..end].to_string())
    } else {
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let start = readme.find("### Strategies").expect("README has a Strategies section");
        let end = readme[start + 4..].find("\n#").map_or(readme.len(), |e| start + 4 + e);
        ("README.md", readme[start..end].to_string())
    };
    (name.to_string(), listed(&text))
}

#[test]
fn the_docs_list_every_strategy_of_the_registry_and_no_other() {
    let (page, listed) = docs_list();
    let names: Vec<String> = KINDS.iter().map(|d| d.name.to_string()).collect();
    for n in &names {
        assert!(listed.contains(n), "{page} does not describe the strategy {n}");
    }
    for l in &listed {
        assert!(
            names.contains(l),
            "{page} describes {l:?}, which is not a strategy (the registry has {names:?})"
        );
    }
}

#[test]
fn flux_sim_strategies_prints_the_registry_and_each_runs() {
    let out = Command::cargo_bin("flux-sim")
        .unwrap()
        .arg("strategies")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let printed: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let names: Vec<&str> = KINDS.iter().map(|d| d.name).collect();
    assert_eq!(printed, names, "flux-sim strategies:\n{text}");
    for d in KINDS {
        // Each on a workload its tool can send: REST requests, else Live sessions.
        let scenario = if d.rest {
            "scenarios/dubbing.toml"
        } else {
            "scenarios/live-sessions.toml"
        };
        Command::cargo_bin("flux-sim")
            .unwrap()
            .args(["run", scenario, "--strategy", d.name, "--format", "json"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .assert()
            .success();
    }
}
