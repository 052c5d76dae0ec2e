//! A keys file: the real API keys of a configuration's projects, kept out of the configuration
//! itself (`flux-sim proxy --keys FILE`). One key per line as `PROJECT KEY`, where `KEY` may be
//! `$NAME`: the value of the environment variable NAME; blank lines and lines starting with `#`
//! are skipped. Errors name the line, never a key whole.

use std::collections::{HashMap, HashSet};

use crate::core::topology::{check_key, mask, Key, Topology};

/// The most keys a keys file may give (more is an error: the proxy's strategies plan over
/// every key, and a file that long is more likely a mistake). Reading is linear in the file.
pub const MAX_KEYS: usize = 100_000;

/// The keys `text` gives the projects of `topology`, in file order; `env` looks up the
/// variables that `$NAME` keys name. Every project of the topology must get a key; every key
/// must pass [`check_key`] (any format: `AIza…`, `AQ.…`, others) and appear once.
pub fn keys_file(text: &str, topology: &Topology, env: impl Fn(&str) -> Option<String>) -> Result<Vec<Key>, String> {
    let projects: HashMap<&str, usize> = topology
        .projects
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let mut keys: Vec<Key> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        let mut words = line.split_whitespace();
        let (Some(project), Some(value), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("line {n}: expected `PROJECT KEY`"));
        };
        let Some(&p) = projects.get(project) else {
            if projects.contains_key(value) {
                // The columns are swapped: the first word is the key. Never shown whole.
                return Err(format!(
                    "line {n}: expected `PROJECT KEY`, got `KEY PROJECT` (key {}, project {value:?})",
                    mask(project)
                ));
            }
            let mut names: Vec<&str> = projects.keys().copied().collect();
            names.sort_unstable();
            names.truncate(20);
            let shown = if check_key(project).is_ok() && project.len() >= 20 {
                mask(project)
            } else {
                format!("{project:?}")
            };
            return Err(format!("line {n}: no project {shown}; the configuration has {names:?}"));
        };
        let value = match value.strip_prefix('$') {
            Some(name) => env(name).ok_or_else(|| format!("line {n}: the environment variable {name} is not set"))?,
            None => value.to_string(),
        };
        if let Err(why) = check_key(&value) {
            return Err(format!(
                "line {n}: the key of project {project:?} {why} (got {})",
                mask(&value)
            ));
        }
        if keys.len() == MAX_KEYS {
            return Err(format!(
                "line {n}: more than {MAX_KEYS} keys, the most a keys file may give"
            ));
        }
        if !seen.insert(value.clone()) {
            return Err(format!("line {n}: key {} is given twice", mask(&value)));
        }
        keys.push(Key {
            value,
            project: p,
            valid: true,
        });
    }
    if keys.is_empty() {
        return Err("no keys: expected lines `PROJECT KEY`".into());
    }
    let mut has_key = vec![false; topology.projects.len()];
    for k in &keys {
        has_key[k.project] = true;
    }
    if let Some(p) = has_key.iter().position(|h| !h) {
        return Err(format!(
            "project {:?} of the configuration has no key: add a line `{} KEY`, or remove the project from the configuration",
            topology.projects[p].name, topology.projects[p].name
        ));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn topology() -> Topology {
        let text = "name = \"k\"\n[models.m]\nrpm = 1\n[topology]\nprojects = [\"a\", \"b\"]\n[workload]\nkind = \"closed\"\nrequests = 1\nworkers = 1\ninput_tokens = { dist = \"fixed\", value = 1 }\noutput_tokens = { dist = \"fixed\", value = 1 }\n";
        crate::scenario::Scenario::parse(text, Path::new("k.toml"))
            .unwrap()
            .topology
    }

    #[test]
    fn reads_keys_by_project_and_masks_them_in_errors() {
        let t = topology();
        let none = |_: &str| None;
        let keys = keys_file(
            "# ours\nb AIzaSyB0000000000000000000000000000000\n\na $KEY_A\n",
            &t,
            |n| (n == "KEY_A").then(|| "AIzaSyA1111111111111111111111111111111".to_string()),
        )
        .unwrap();
        assert_eq!((keys[0].project, keys[1].project), (1, 0));
        assert_eq!(keys[1].value, "AIzaSyA1111111111111111111111111111111");
        assert!(keys_file("a $NOPE\n", &t, none)
            .unwrap_err()
            .contains("NOPE is not set"));
        let e = keys_file(
            "a AIzaSyA1111111111111111111111111111111\nb AIzaSyA1111111111111111111111111111111\n",
            &t,
            none,
        )
        .unwrap_err();
        assert!(
            e.starts_with("line 2: key ") && !e.contains("AIzaSyA1111111111111"),
            "{e}"
        );
        assert!(keys_file("c AIzaX\n", &t, none)
            .unwrap_err()
            .contains("no project \"c\""));
        assert!(keys_file("a\n", &t, none).unwrap_err().contains("line 1: expected"));
        assert!(keys_file("# nothing\n", &t, none).is_err());
    }

    #[test]
    fn swapped_columns_bad_keys_and_keyless_projects_are_errors_that_show_no_key() {
        let t = topology();
        let none = |_: &str| None;
        let aq = "AQ.Ab8RN6LxYzQ0wErTy-uIoP_aSdFgHjKl";
        // issue 29: the columns swapped printed the whole key.
        let e = keys_file(&format!("{aq} a\nb AIzaSyB0000000000000000000000000000000\n"), &t, none).unwrap_err();
        assert!(e.contains("KEY PROJECT") && !e.contains(&aq[..20]), "{e}");
        let e = keys_file(&format!("{aq}x0000000000 {aq}\n"), &t, none).unwrap_err();
        assert!(!e.contains(&aq[..20]), "{e}");
        // issue 29: a project left without a key made the proxy panic at start.
        let e = keys_file(&format!("a {aq}\n"), &t, none).unwrap_err();
        assert!(e.contains("project \"b\" of the configuration has no key"), "{e}");
        // Authorization keys and any other format are keys; empty or control characters are not.
        let keys = keys_file(&format!("a {aq}\nb IQ.Zx9Cv8Bn7Mq6Wr5Et4Yu3Io2Pa1Sd0Fg\n"), &t, none).unwrap();
        assert_eq!(keys.len(), 2);
        let bad = |v: &'static str| move |_: &str| Some(v.to_string());
        for v in ["", "short", "tab\there-key", "bell\u{7}key-value"] {
            let e = keys_file("a $K\nb AIzaSyB0000000000000000000000000000000\n", &t, bad(v)).unwrap_err();
            assert!(e.starts_with("line 1: the key of project \"a\""), "{e}");
        }
    }

    #[test]
    fn a_long_keys_file_reads_in_linear_time_up_to_its_maximum() {
        let t = topology();
        let mut text = String::new();
        for i in 0..MAX_KEYS {
            text.push_str(&format!("{} AIzaSy{i:033}\n", if i % 2 == 0 { "a" } else { "b" }));
        }
        let started = std::time::Instant::now();
        assert_eq!(keys_file(&text, &t, |_| None).unwrap().len(), MAX_KEYS);
        // Quadratic took 30-36 s for 10^5 keys.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        text.push_str("a AIzaSyTHEONETOOMANY0000000000000000000\n");
        assert!(keys_file(&text, &t, |_| None)
            .unwrap_err()
            .contains("more than 100000 keys"));
    }
}
