//! The documentation cannot rot: every command block of README.md and of every page under
//! `docs/` runs, every shown output is what the command prints, every scenario snippet loads,
//! every relative link (there and in CHANGELOG.md) leads to a file (and heading) that exists,
//! and every page is reachable from the README.
//!
//! - A ```sh block runs in bash, in a scratch copy of `scenarios/`, `reports/` and `benches/`,
//!   with `cargo run --release [-q] -- ARGS` and `flux-sim ARGS` (what `cargo install --path .`
//!   puts on the PATH) both meaning this build's binary; background jobs are stopped at the end
//!   and loopback ports are swapped for free ones. It must exit 0.
//! - A plain ``` block whose first line is `$ COMMAND` runs COMMAND the same way, and its output
//!   must be the rest of the block, byte for byte.
//! - A ```toml block must load as a scenario.
//! - A block right after a line `<!-- not run: REASON -->` is skipped (the test suite itself,
//!   load generators, wall-clock measurements, outputs that depend on real time).
//!
//! The pages are found, not listed: README.md and every `.md` file under `docs/` but
//! `docs/pending/` (notes waiting to be merged into a page), so a new page is checked as soon
//! as it exists.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Block {
    /// The fence's info string (`sh`, `toml`, or empty).
    lang: String,
    /// The text between the fences.
    body: String,
    /// The page line the block starts on.
    line: usize,
    /// Why it is not run, if it is marked so.
    skip: Option<String>,
}

fn blocks(page: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let lines: Vec<&str> = page.lines().collect();
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

/// Runs `script` in bash in `dir`, `cargo run … --` and `flux-sim` meaning this build's binary; loopback ports
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
    // `flux-sim` as `cargo install --path .` puts it on the PATH: this build's binary, never
    // one installed earlier.
    let installed = shim.join("flux-sim");
    if !installed.exists() {
        std::os::unix::fs::symlink(&bin, &installed).unwrap();
    }
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

/// README.md and every Markdown page under `docs/` (but `docs/pending/`), as paths relative to
/// the crate root, README first.
fn pages() -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = dir.join(p.file_name().unwrap());
            if p.is_dir() {
                if rel != Path::new("docs/pending") {
                    walk(root, &rel, out);
                }
            } else if p.extension().is_some_and(|e| e == "md") {
                out.push(rel);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![PathBuf::from("README.md")];
    walk(root, Path::new("docs"), &mut out);
    out
}

/// What checking one page's blocks did: (ran, compared, loaded).
fn check_blocks(page: &Path) -> (usize, usize, usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(page)).unwrap();
    let (mut ran, mut compared, mut loaded) = (0, 0, 0);
    for b in blocks(&text) {
        if b.skip.is_some() {
            continue;
        }
        let at = format!("{}:{}", page.display(), b.line);
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
                    "{at}: `{command}` prints something else now; update {}.\n--- page\n{shown}--- now\n{out}",
                    page.display()
                );
                compared += 1;
            }
            _ => {}
        }
    }
    (ran, compared, loaded)
}

#[test]
fn every_command_block_of_the_readme_and_docs_runs_and_shows_what_it_prints() {
    let pages = pages();
    assert!(pages.len() >= 12, "README.md and the docs pages: {pages:?}");
    let (mut ran, mut compared, mut loaded) = (0, 0, 0);
    let mut per_page = Vec::new();
    for page in &pages {
        let (r, c, l) = check_blocks(page);
        per_page.push(format!("{}: ran {r}, compared {c}, loaded {l}", page.display()));
        if page == Path::new("README.md") {
            assert!(
                r >= 1 && c >= 1,
                "the README's own commands are run and compared: {r}, {c}"
            );
        }
        (ran, compared, loaded) = (ran + r, compared + c, loaded + l);
    }
    assert!(
        ran >= 5 && compared >= 10 && loaded >= 1,
        "ran {ran}, compared {compared}, loaded {loaded}:\n{}",
        per_page.join("\n")
    );
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces as
/// `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The lines of a Markdown text outside fenced blocks, with their line numbers.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// The anchors of a page's headings (a repeated heading gets `-1`, `-2`, … as on GitHub).
fn anchors(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, line) in prose(text) {
        let t = line.trim_start();
        let hashes = t.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && t[hashes..].starts_with(' ') {
            let base = slug(&t[hashes..]);
            let mut s = base.clone();
            let mut n = 0;
            while out.contains(&s) {
                n += 1;
                s = format!("{base}-{n}");
            }
            out.push(s);
        }
    }
    out
}

/// The targets of a line's Markdown links and images (`[text](target)`), outside code spans.
fn link_targets(line: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut code = false;
    for c in line.chars() {
        if c == '`' {
            code = !code;
        } else if !code {
            plain.push(c);
        }
    }
    let mut out = Vec::new();
    let mut rest = plain.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let end = after.find(')').unwrap_or(after.len());
        out.push(after[..end].trim().to_string());
        rest = &after[end..];
    }
    out
}

/// Every broken relative link of a page, as `page:line: target (why)`.
fn broken_links(root: &Path, page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join(page)).unwrap();
    let dir = page.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for (n, line) in prose(&text) {
        for target in link_targets(line) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let file = if file.is_empty() {
                page.to_path_buf()
            } else {
                dir.join(file)
            };
            let at = format!("{}:{n}: {target}", page.display());
            if !root.join(&file).exists() {
                out.push(format!("{at} (no file {})", file.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let linked = std::fs::read_to_string(root.join(&file)).unwrap_or_default();
                if !anchors(&linked).iter().any(|a| a == anchor) {
                    out.push(format!("{at} (no heading #{anchor} in {})", file.display()));
                }
            }
        }
    }
    out
}

#[test]
fn every_relative_link_leads_somewhere_and_every_page_is_linked_from_the_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pages = pages();
    let broken: Vec<String> = pages
        .iter()
        .chain([PathBuf::from("CHANGELOG.md")].iter())
        .flat_map(|p| broken_links(root, p))
        .collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let linked: Vec<String> = prose(&readme)
        .into_iter()
        .flat_map(|(_, l)| link_targets(l))
        .map(|t| t.split('#').next().unwrap().to_string())
        .collect();
    for page in pages.iter().skip(1) {
        let text = std::fs::read_to_string(root.join(page)).unwrap();
        let first = text.lines().next().unwrap_or("");
        assert!(first.starts_with("# "), "{}: opens with its title", page.display());
        let second = text
            .lines()
            .find(|l| !l.trim().is_empty() && !l.starts_with("# "))
            .unwrap_or("");
        assert!(
            second.contains("](../README.md"),
            "{}: the line after the title says what the page holds and links back to the README: {second}",
            page.display()
        );
        assert!(
            linked.iter().any(|l| Path::new(l) == page),
            "{} is not linked from README.md",
            page.display()
        );
    }
}

#[test]
fn the_link_checker_sees_headings_and_broken_links() {
    assert_eq!(slug(" `flux-sim run`: how many, 2×?"), "flux-sim-run-how-many-2");
    assert_eq!(
        anchors("# A\n```\n# not a heading\n```\n## A\n### Live API (and TLS)\n"),
        ["a", "a-1", "live-api-and-tls"]
    );
    assert_eq!(
        link_targets("see [x](docs/a.md#b), ![c](d.png) and `[no](code)` [e](https://x.y)"),
        ["docs/a.md#b", "d.png", "https://x.y"]
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(
        dir.path().join("docs/p.md"),
        "# P\n[ok](../R.md#top) [bad](../R.md#nope) [gone](x.md)\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("R.md"), "# Top\n").unwrap();
    let broken = broken_links(dir.path(), Path::new("docs/p.md"));
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].contains("#nope") && broken[1].contains("x.md"), "{broken:?}");
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
    let (ok, out, _) = bash("flux-sim strategies | head -1", dir.path());
    assert!(ok && out.starts_with("Built-in strategies"), "{out}");
    let (ok, _, err) = bash("cargo test", dir.path());
    assert!(!ok && err.contains("only cargo run"), "{err}");
}
