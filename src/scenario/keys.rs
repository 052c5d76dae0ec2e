//! A keys file: the real API keys of a configuration's projects, kept out of the configuration
//! itself (`flux-sim proxy --keys FILE`). One key per line as `PROJECT KEY`; blank lines and
//! lines starting with `#` are skipped. Errors name the line, never a key whole.

use crate::core::topology::{mask, Key, Topology};

/// The keys `text` gives the projects of `topology`, in file order.
pub fn keys_file(text: &str, topology: &Topology) -> Result<Vec<Key>, String> {
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
        let keys = keys_file(
            "# ours\nb AIzaSyB0000000000000000000000000000000\n\na AIzaSyA1111111111111111111111111111111\n",
            &t,
        )
        .unwrap();
        assert_eq!((keys[0].project, keys[1].project), (1, 0));
        let e = keys_file(
            "a AIzaSyA1111111111111111111111111111111\nb AIzaSyA1111111111111111111111111111111\n",
            &t,
        )
        .unwrap_err();
        assert!(
            e.starts_with("line 2: key ") && !e.contains("AIzaSyA1111111111111"),
            "{e}"
        );
        assert!(keys_file("c AIzaX\n", &t).unwrap_err().contains("no project \"c\""));
        assert!(keys_file("a\n", &t).unwrap_err().contains("line 1: expected"));
        assert!(keys_file("# nothing\n", &t).is_err());
    }
}
