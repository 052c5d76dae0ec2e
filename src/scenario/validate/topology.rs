//! The `[topology]` table: accounts, projects (their tiers, limits, spend caps and used quota)
//! and keys (generated, given, invalid).

use crate::core::ledger::Dimension;
use crate::core::server::Model;
use crate::core::topology::{Account, Key, Project, Topology};
use crate::scenario::schema::*;
use crate::scenario::ScenarioError;
use std::collections::HashMap;

use super::{limits, max, Ctx, TIERS};

pub(super) fn topology(cx: &Ctx, raw: &RawTopology, models: &[Model]) -> Result<Topology, ScenarioError> {
    if raw.keys_per_project == 0 {
        return Err(cx.err("topology.keys_per_project", "must be at least 1"));
    }
    cx.at_most("topology.keys_per_project", raw.keys_per_project, max::KEYS)?;
    let mut accounts = Vec::new();
    let mut account_names = std::collections::HashSet::new();
    let mut projects: Vec<Project> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    // (account, field of its projects, projects, its own spend cap and that field)
    let mut groups: Vec<(String, String, &CountOrNames, Option<f64>, String)> = Vec::new();
    if let Some(p) = &raw.projects {
        let field = "topology.spend_cap".to_string();
        groups.push(("default".into(), "topology.projects".into(), p, None, field));
    }
    for (i, a) in raw.accounts.iter().enumerate() {
        if a.name.trim().is_empty() {
            return Err(cx.err(&format!("topology.accounts[{i}].name"), "must not be empty"));
        }
        let (field, cap_field) = (
            format!("topology.accounts[{i}].projects"),
            format!("topology.accounts[{i}].spend_cap"),
        );
        groups.push((a.name.clone(), field, &a.projects, a.spend_cap, cap_field));
    }
    if groups.is_empty() {
        return Err(cx.err(
            "topology",
            "no projects: give `projects = N` or [[topology.accounts]] with projects",
        ));
    }
    for (account, field, spec, cap, cap_field) in groups {
        let cap_field = if cap.is_some() {
            cap_field
        } else {
            "topology.spend_cap".into()
        };
        if !account_names.insert(account.clone()) {
            return Err(cx.err(&field, format!("account {account:?} is defined twice")));
        }
        let a = accounts.len();
        accounts.push(Account {
            name: account.clone(),
            spend_cap: spend_cap(cx, &cap_field, cap.or(raw.spend_cap))?,
        });
        let names: Vec<String> = match spec {
            CountOrNames::Count(0) => return Err(cx.err(&field, "must be at least 1")),
            CountOrNames::Count(n) if projects.len() as u64 + n > max::PROJECTS => {
                return Err(cx.err(
                    &field,
                    format!("{n} projects make more than the most allowed, {}", max::PROJECTS),
                ))
            }
            CountOrNames::Count(n) => (1..=*n).map(|i| format!("{account}-{i}")).collect(),
            CountOrNames::Names(v) if v.is_empty() => return Err(cx.err(&field, "must name at least one project")),
            CountOrNames::Names(v) => v.clone(),
        };
        for name in names {
            if name.trim().is_empty() {
                return Err(cx.err(&field, "project names must not be empty"));
            }
            if by_name.insert(name.clone(), projects.len()).is_some() {
                return Err(cx.err(&field, format!("project {name:?} is defined twice")));
            }
            projects.push(Project {
                name,
                account: a,
                tier: "free".into(),
                limits: models.iter().map(|m| m.limits).collect(),
                rpd_used: 0,
            });
        }
    }

    let mut key_counts = vec![raw.keys_per_project; projects.len()];
    let mut invalid_counts = vec![0u64; projects.len()];
    for (name, s) in &raw.project {
        let field = format!("topology.project.{name:?}");
        let &p = by_name.get(name).ok_or_else(|| {
            cx.err(
                &field,
                format!("no such project; defined projects are {:?}", sorted_names(&by_name)),
            )
        })?;
        if let Some(k) = s.keys {
            key_counts[p] = k;
        }
        invalid_counts[p] = s.invalid_keys;
        projects[p].rpd_used = s.rpd_used;
        if let Some(t) = &s.tier {
            if !TIERS.contains(&t.as_str()) {
                return Err(cx.err(
                    &format!("{field}.tier"),
                    format!(
                        "unknown tier {t:?}; expected one of {TIERS:?} (it names the quota ids in serve's 429 bodies)"
                    ),
                ));
            }
            projects[p].tier = t.clone();
        }
        for (model, l) in &s.limits {
            let lf = format!("{field}.limits.{model:?}");
            let m = cx.model(&lf, models, model)?;
            if models[m].shared_pool.is_some() {
                return Err(cx.err(
                    &lf,
                    format!(
                        "model {model:?} has a shared pool, which has no per-project limits: remove this table \
                         (a project cannot override rpm, tpm, rpd, tpd or concurrent on a pool model)"
                    ),
                ));
            }
            // Every dimension the table gives overrides the model's default, the others stay.
            let over = limits(l);
            let cur = &mut projects[p].limits[m];
            for d in Dimension::ALL {
                if let Some(v) = over.get(d) {
                    cur.set(d, Some(v));
                }
            }
        }
    }

    if projects.len() as u64 > max::PROJECTS {
        return Err(cx.err("topology", format!("more than {} projects", max::PROJECTS)));
    }
    let generated = key_counts
        .iter()
        .zip(&invalid_counts)
        .fold(0u64, |n, (k, i)| n.saturating_add(*k).saturating_add(*i))
        .saturating_add(raw.keys.len() as u64);
    if generated > max::KEYS {
        return Err(cx.err(
            "topology",
            format!("{generated} keys in all, more than the most allowed, {}", max::KEYS),
        ));
    }
    let mut keys = Vec::new();
    // Keys per project so far (linear, not a scan per key: 200,000 projects took 9 s).
    let mut per_project = vec![0u64; projects.len()];
    for (p, project) in projects.iter().enumerate() {
        for i in 0..key_counts[p] + invalid_counts[p] {
            keys.push(Key {
                value: Key::derive(&project.name, i),
                project: p,
                valid: i < key_counts[p],
            });
        }
        per_project[p] = key_counts[p] + invalid_counts[p];
    }
    for (i, k) in raw.keys.iter().enumerate() {
        let field = format!("topology.keys[{i}]");
        let &p = by_name.get(&k.project).ok_or_else(|| {
            cx.err(
                &format!("{field}.project"),
                format!(
                    "no project named {:?}; defined projects are {:?}",
                    k.project,
                    sorted_names(&by_name)
                ),
            )
        })?;
        let n = per_project[p];
        per_project[p] += 1;
        let value =
            match &k.key {
                Some(v) if crate::core::topology::check_key(v).is_err() => return Err(cx.err(
                    &format!("{field}.key"),
                    "must be at least 8 characters with no spaces (8 to 512 printable ASCII characters, any format)",
                )),
                Some(v) => v.clone(),
                None => Key::derive(&projects[p].name, n),
            };
        keys.push(Key {
            value,
            project: p,
            valid: !k.invalid,
        });
    }
    let mut seen = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        if let Some(j) = seen.insert(k.value.clone(), i) {
            let _ = j;
            return Err(cx.err(
                "topology.keys",
                format!("key {} is given twice", crate::core::topology::mask(&k.value)),
            ));
        }
    }
    if !keys.iter().any(|k| k.valid) {
        return Err(cx.err("topology", "every key is invalid; at least one valid key is needed"));
    }
    for (p, project) in projects.iter().enumerate() {
        if per_project[p] == 0 {
            return Err(cx.err(
                &format!("topology.project.{:?}.keys", project.name),
                "a project needs at least one key",
            ));
        }
    }
    Ok(Topology {
        accounts,
        projects,
        keys,
    })
}

fn sorted_names(m: &HashMap<String, usize>) -> Vec<&str> {
    let mut v: Vec<(&usize, &str)> = m.iter().map(|(k, v)| (v, k.as_str())).collect();
    v.sort();
    v.into_iter().map(|(_, k)| k).collect()
}

/// A spend cap in USD as picodollars (to 10⁻⁶ USD).
fn spend_cap(cx: &Ctx, field: &str, usd: Option<f64>) -> Result<Option<u128>, ScenarioError> {
    let Some(usd) = usd else { return Ok(None) };
    if !(usd.is_finite() && usd > 0.0 && usd <= max::SPEND_CAP) {
        return Err(cx.err(
            field,
            format!("must be an amount in USD above 0 and at most {}", max::SPEND_CAP),
        ));
    }
    Ok(Some((usd * 1e6).round() as u128 * 1_000_000))
}

#[cfg(test)]
mod tests {
    use crate::scenario::validate::fixture::{error_with, parse, BASE};

    #[test]
    fn named_projects_with_tiers_and_keys() {
        let s = parse(&BASE.replace(
            "projects = 2",
            "projects = [\"a\", \"b\"]\nkeys_per_project = 3\n[topology.project.b]\ntier = \"tier1\"",
        ))
        .unwrap();
        let names: Vec<&str> = s.topology.projects.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(s.topology.projects[1].tier, "tier1");
        assert_eq!(s.topology.keys.len(), 6);
    }

    #[test]
    fn bad_topology_values_name_their_field() {
        for (to, want) in [
            (
                "projects = [\"a\", \"a\"]",
                "s.toml: topology.projects: project \"a\" is defined twice",
            ),
            (
                "projects = 2\nkeys_per_project = 0",
                "s.toml: topology.keys_per_project: must be at least 1",
            ),
            (
                "projects = 2\n[topology.project.\"default-1\"]\ntier = \"gold\"",
                "unknown tier \"gold\"",
            ),
            ("projects = 2\n[topology.project.nowhere]\nkeys = 1", "no such project"),
            (
                "projects = 2\nkeys_per_project = 1000001",
                "s.toml: topology.keys_per_project: 1000001 is more than the most allowed, 1000000",
            ),
        ] {
            let err = error_with("projects = 2", to);
            assert!(err.contains(want), "{to}: {err} !~ {want}");
        }
    }
}
