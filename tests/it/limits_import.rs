//! `flux-sim limits import`: the commands docs/pending/31-limits-import.md shows, on the example
//! dump: tables on stdout, a scenario written with them that runs and sweeps, several projects,
//! and clear errors (exit 2) for ambiguous tiers, malformed dumps and existing files.

use std::path::Path;

use assert_cmd::Command;
use flux_sim::scenario::Scenario;
use serde_json::Value;

const DUMP: &str = "scenarios/quota-dump.example.json";
const BASE: &str = "scenarios/limits-import.toml";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `flux-sim ARGS` run from the repository's root, as the documentation's commands are.
fn flux(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("flux-sim")
        .unwrap()
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_dump_with_two_tiers_needs_the_flag() {
    let (code, out, err) = flux(&["limits", "import", DUMP]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("error: --tier: scenarios/quota-dump.example.json (project \"123456789012\") holds the limits of tiers [\"free\", \"tier1\"]: give the one"),
        "{err}"
    );
    assert!(out.is_empty());
}

#[test]
fn tables_on_stdout_with_overrides_families_and_unknown_metrics() {
    let (code, out, err) = flux(&["limits", "import", DUMP, "--tier", "free"]);
    assert_eq!(code, 0, "{err}");
    // The consumer override (20 → 15 requests a day) is the effective limit.
    assert!(
        out.contains("[models.\"gemini-3.6-flash\"]\nrpm = 5\ntpm = 250000\nrpd = 15\n"),
        "{out}"
    );
    assert!(
        out.contains("[models.\"gemini-3.5-flash-lite\"]\nrpm = 15\ntpm = 250000\nrpd = 500\n"),
        "{out}"
    );
    // The Live family: RPM/RPD -1 are left out; the override on the id inside it is ignored.
    assert!(
        out.contains("[models.\"gemini-3.5-live-translate\"]\ntpm = 20000\nlive = true\n"),
        "{out}"
    );
    assert!(out.contains("accepted by Google and does nothing"), "{out}");
    assert!(!out.contains("gemini-3.5-live-translate-preview\"]"), "{out}");
    // The unknown metric is listed, in the output and on stderr.
    for text in [&out, &err] {
        assert!(
            text.contains("embed_text_requests 1/min/{project}: unknown metric (not imported)"),
            "{text}"
        );
    }
    // The tier-1 metric is another tier's: the paid 10,000 RPD appears nowhere.
    assert!(!out.contains("10000"), "{out}");
    // The tables paste into a scenario: they parse as TOML.
    toml::from_str::<toml::Value>(&out).unwrap();
}

#[test]
fn import_into_a_scenario_then_run_and_sweep_answer_how_many_projects() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine.toml");
    let args = [
        "limits",
        "import",
        DUMP,
        "--tier",
        "free",
        "--scenario",
        BASE,
        "--out",
        path(&mine),
    ];
    let (code, _, err) = flux(&args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not in scenarios/limits-import.toml: not added"), "{err}");
    let text = std::fs::read_to_string(&mine).unwrap();
    let base = std::fs::read_to_string(root().join(BASE)).unwrap();
    // BASE's comments are kept, its placeholders replaced.
    assert!(text.starts_with(base.lines().next().unwrap()), "{text}");
    assert!(text.contains("# Placeholders until `flux-sim limits import` writes the dump's limits here.\nrpm = 5\nrpd = 15\ntpm = 250000\n"), "{text}");
    let s = Scenario::load(&mine).unwrap();
    let l = s.models[0].limits;
    assert_eq!((l.rpm, l.tpm, l.rpd, l.tpd), (Some(5), Some(250_000), Some(15), None));
    // Never overwritten without --force.
    let (code, _, err) = flux(&args);
    assert_eq!(code, 2);
    assert!(err.contains("already exists; pass --force"), "{err}");
    let mut forced = args.to_vec();
    forced.push("--force");
    assert_eq!(flux(&forced).0, 0);

    // run: 300 requests at 15 a day on each of 20 projects: all done, no 429 for the planners.
    let (code, out, err) = flux(&["run", path(&mine), "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let row = |name: &str| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["strategy"] == name)
            .unwrap()
            .clone()
    };
    for name in ["exact_cooldown", "flux"] {
        let r = row(name);
        assert_eq!(
            (r["completed"].as_u64(), r["rate_limited"].as_u64()),
            (Some(300), Some(0)),
            "{name}: {r}"
        );
    }
    // The placeholders would have said otherwise: the import changed the answer.
    let (_, before, _) = flux(&["run", BASE, "--format", "json"]);
    let before: Value = serde_json::from_str(&before).unwrap();
    let done = |v: &Value| v["results"][1]["completed"].as_u64();
    assert_ne!(done(&before), done(&v));

    // sweep: the smallest number of projects that finishes the job.
    let sweep = dir.path().join("sweep");
    let (code, out, err) = flux(&[
        "sweep",
        path(&mine),
        "--set",
        "topology.projects=10,15,20,25",
        "--out",
        path(&sweep),
    ]);
    assert_eq!(code, 0, "{err}");
    let answer = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{out}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(answer("exact_cooldown"), "20", "{out}");
    assert_eq!(answer("flux"), "20", "{out}");
}

/// A dump of `project` with a per-day input-token limit on `m` (and a per-minute one).
fn tpd_dump(project: &str, tpd: &str) -> String {
    format!(
        r#"[{{"name": "projects/{project}/services/generativelanguage.googleapis.com/consumerQuotaMetrics/x",
            "metric": "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
            "consumerQuotaLimits": [
              {{"unit": "1/min/{{project}}/{{model}}", "quotaBuckets": [{{"effectiveLimit": "0"}}, {{"effectiveLimit": "250000", "dimensions": {{"model": "m"}}}}]}},
              {{"unit": "1/d/{{project}}/{{model}}", "quotaBuckets": [{{"effectiveLimit": "0"}}, {{"effectiveLimit": "{tpd}", "dimensions": {{"model": "m"}}}}]}}
            ]}}]"#
    )
}

#[test]
fn several_projects_get_their_own_limits_tpd_included() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(&a, tpd_dump("111", "1000000")).unwrap();
    std::fs::write(&b, tpd_dump("222", "500000")).unwrap();
    let (code, out, err) = flux(&["limits", "import", path(&a), path(&b)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[models.\"m\"]\ntpm = 250000\ntpd = 1000000\n"), "{out}");
    assert!(
        out.contains("[topology.project.\"222\"]\ntier = \"free\"\nlimits.\"m\" = { tpd = 500000 }\n"),
        "{out}"
    );
    // --project renames; into a scenario whose projects are a count, the list becomes the dumps'.
    let base = dir.path().join("base.toml");
    std::fs::write(
        &base,
        "name = \"b\"\n[models.m]\nrpm = 10\n[topology]\nprojects = 2\n[workload]\nkind = \"closed\"\nrequests = 10\nworkers = 2\n\
         input_tokens = { dist = \"fixed\", value = 10 }\noutput_tokens = { dist = \"fixed\", value = 10 }\n",
    )
    .unwrap();
    let new = dir.path().join("new.toml");
    let (code, _, err) = flux(&[
        "limits",
        "import",
        path(&a),
        path(&b),
        "--project",
        "one",
        "--project",
        "two",
        "--scenario",
        path(&base),
        "--out",
        path(&new),
    ]);
    assert_eq!(code, 0, "{err}");
    let s = Scenario::load(&new).unwrap();
    let names: Vec<&str> = s.topology.projects.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    // The per-project tpd reaches the loaded scenario (validate applied rpm/tpm/rpd only).
    assert_eq!(s.topology.projects[0].limits[0].tpd, Some(1_000_000));
    assert_eq!(s.topology.projects[1].limits[0].tpd, Some(500_000));
    assert_eq!(s.models[0].limits.rpm, None, "no per-minute request limit in the dumps");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"metrics": [{"metric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
           "consumerQuotaLimits": [{"unit": "1/min/{project}/{model}", "quotaBuckets": [{"effectiveLimit": "lots"}]}]}]}"#,
    )
    .unwrap();
    let (code, _, err) = flux(&["limits", "import", path(&bad)]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{}: $.metrics[0].consumerQuotaLimits[0].quotaBuckets[0].effectiveLimit: expected an int64 limit",
            bad.display()
        )),
        "{err}"
    );
    let cases: [(&[&str], &str); 4] = [
        (&[DUMP, "--tier", "gold"], "unknown tier \"gold\""),
        (
            &[DUMP, "--tier", "tier3"],
            "--tier: scenarios/quota-dump.example.json (project \"123456789012\") holds no per-model limit of tier tier3",
        ),
        (
            &[DUMP, "--project", "a", "--project", "b"],
            "--project: given 2 times for 1 files",
        ),
        (&[DUMP, "--tier", "free", "--scenario", BASE], "--out"),
    ];
    for (args, want) in cases {
        let mut all = vec!["limits", "import"];
        all.extend_from_slice(args);
        let (code, _, err) = flux(&all);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
