//! A keys file: the real API keys of a configuration's projects, kept out of the configuration
//! itself (`flux-sim proxy --keys FILE`). One key per line as `PROJECT KEY`, where `KEY` may be
//! `$NAME`: the value of the environment variable NAME; blank lines and lines starting with `#`
//! are skipped. Errors name the line, never a key whole.

use crate::core::topology::{mask, Key, Topology};

/// The keys `text` gives the projects of `topology`, in file order; `env` looks up the
/// variables that `$NAME` keys name.
pub fn keys_file(text: &str, topology: &Topology, env: impl Fn(&str) -> Option<String>) -> Result<Vec<Key>, String> {
    let mut keys: Vec<Key> = Vec::new();
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
        let Some(p) = topology.projects.iter().position(|x| x.name == project) else {
            let names: Vec<&str> = topology.projects.iter().map(|x| x.name.as_str()).collect();
            return Err(format!(
                "line {n}: no project {project:?}; the configuration has {names:?}"
            ));
        };
        let value = match value.strip_prefix('$') {
            Some(name) => env(name).ok_or_else(|| format!("line {n}: the environment variable {name} is not set"))?,
            None => value.to_string(),
        };
        let value = value.as_str();
        if keys.iter().any(|k| k.value == value) {
            return Err(format!("line {n}: key {} is given twice", mask(value)));
        }
        keys.push(Key {
            value: value.to_string(),
            project: p,
            valid: true,
        });
    }
    if keys.is_empty() {
        return Err("no keys: expected lines `PROJECT KEY`".into());
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
}
