//! The README cannot rot: every command block in it runs, every shown output is what the
//! command prints, and every scenario snippet loads.
//!
//! - A ```sh block runs in bash, in a scratch copy of `scenarios/` and `reports/`, with `cargo
//!   run --release [-q] -- ARGS` meaning this build's `flux-sim ARGS`; background jobs are
//!   stopped at the end and loopback ports are swapped for free ones. It must exit 0.
//! - A plain ``` block whose first line is `$ COMMAND` runs COMMAND the same way, and its output
//!   must be the rest of the block, byte for byte.
//! - A ```toml block must load as a scenario.
//! - A block right after a line `<!-- not run: REASON -->` is skipped (the test suite itself,
//!   load generators, wall-clock measurements, outputs that depend on real time).

use std::path::{Path, PathBuf};
use std::process::Command;

struct Block {
    /// The fence's info string (`sh`, `toml`, or empty).
    lang: String,
    /// The text between the fences.
    body: String,
    /// The README line the block starts on.
    line: usize,
    /// Why it is not run, if it is marked so.
    skip: Option<String>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let lines: Vec<&str> = readme.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        if let Some(lang) = t.strip_prefix("```") {
            let indent = lines[i].len() - t.len();
            let start = i;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                body.push_str(lines[i].get(indent..).unwrap_or(lines[i].trim_start()));
                body.push('\n');
                i += 1;
            }
            let skip = start
                .checked_sub(1)
                .and_then(|p| lines[p].trim().strip_prefix("<!-- not run:"))
                .map(|r| r.trim_end_matches("-->").trim().to_string());
            out.push(Block {
                lang: lang.trim().to_string(),
                body,
                line: start + 1,
                skip,
            });
        }
        i += 1;
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory holding copies of `scenarios/` and `reports/`.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["scenarios", "reports", "benches"] {
        copy_dir(&root.join(sub), &dir.path().join(sub));
    }
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Runs `script` in bash in `dir`, `cargo run … --` meaning this build's binary; loopback ports
/// (127.0.0.1:NNNN) are swapped for free ones. Everything it started in the background is
/// stopped when it ends (it runs in a process group of its own). Returns (success, stdout,
/// stderr).
fn bash(script: &str, dir: &Path) -> (bool, String, String) {
    use std::os::unix::process::CommandExt;
    let mut script = script.to_string();
    let mut ports: Vec<String> = Vec::new();
    for (i, _) in script.match_indices("127.0.0.1:") {
        let digits: String = script[i + 10..].chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && !ports.contains(&digits) {
            ports.push(digits);
        }
    }
    for p in ports {
        script = script.replace(&format!("127.0.0.1:{p}"), &format!("127.0.0.1:{}", free_port()));
    }
    // `cargo` is a script on PATH that execs the built binary, so `cargo run … &` is the
    // server's own process.
    let shim = dir.join(".shim");
    std::fs::create_dir_all(&shim).unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_flux-sim"));
    std::fs::write(
        shim.join("cargo"),
        format!(
            "#!/usr/bin/env bash\nif [ \"$1\" != run ]; then echo \"README test: only cargo run is emulated, not: cargo $*\" >&2; exit 97; fi\n\
             while [ \"$1\" != -- ]; do shift; done; shift\nexec \"{}\" \"$@\"\n",
            bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(shim.join("cargo"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", shim.display(), std::env::var("PATH").unwrap_or_default());
    let (out_path, err_path) = (dir.join(".stdout"), dir.join(".stderr"));
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e\n{script}"))
        .current_dir(dir)
        .env("PATH", path)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let status = child.wait().unwrap();
    // Stop what the block left running (a server started with `&`).
    let _ = Command::new("kill")
        .arg("--")
        .arg(format!("-{}", child.id()))
        .stderr(std::process::Stdio::null())
        .status();
    (
        status.success(),
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

#[test]
fn every_command_block_of_the_readme_runs_and_shows_what_it_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let all = blocks(&readme);
    assert!(all.len() > 10, "found {} blocks", all.len());
    let (mut ran, mut compared, mut loaded) = (0, 0, 0);
    for b in &all {
        if b.skip.is_some() {
            continue;
        }
        let at = format!("README.md:{}", b.line);
        match b.lang.as_str() {
            "sh" => {
                let dir = scratch();
                let (ok, out, err) = bash(&b.body, dir.path());
                assert!(ok, "{at}: the block failed\n{}\nstdout:\n{out}\nstderr:\n{err}", b.body);
                ran += 1;
            }
            "toml" => {
                flux_sim::scenario::Scenario::parse(&b.body, &root.join("scenarios").join("readme.toml"))
                    .unwrap_or_else(|e| panic!("{at}: the scenario does not load: {e}"));
                loaded += 1;
            }
            "" if b.body.starts_with("$ ") => {
                let (command, shown) = b.body.split_once('\n').unwrap();
                let dir = scratch();
                let (ok, out, err) = bash(&command[2..], dir.path());
                assert!(ok, "{at}: `{command}` failed: {err}");
                assert!(
                    out == shown,
                    "{at}: `{command}` prints something else now; update the README.\n--- README\n{shown}--- now\n{out}"
                );
                compared += 1;
            }
            _ => {}
        }
    }
    assert!(
        ran >= 3 && compared >= 3 && loaded >= 1,
        "ran {ran}, compared {compared}, loaded {loaded}"
    );
}

#[test]
fn the_block_reader_sees_markers_and_languages() {
    let text = "a\n```sh\necho hi\n```\n<!-- not run: a load test -->\n```sh\nwrk\n```\n```\n$ x\ny\n```\n";
    let b = blocks(text);
    assert_eq!(b.len(), 3);
    assert_eq!(
        (b[0].lang.as_str(), b[0].body.as_str(), b[0].skip.is_none()),
        ("sh", "echo hi\n", true)
    );
    assert_eq!(b[1].skip.as_deref(), Some("a load test"));
    assert_eq!(b[2].body, "$ x\ny\n");
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, _) = bash("cargo run --release -q -- strategies | head -1", dir.path());
    assert!(ok && out.starts_with("Built-in strategies"), "{out}");
    let (ok, _, err) = bash("cargo test", dir.path());
    assert!(!ok && err.contains("only cargo run"), "{err}");
}
