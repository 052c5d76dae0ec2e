//! Quota dumps → scenario limits (`flux-sim limits import`): the per-model limits of Gemini API
//! projects read from the Service Usage API's `services.consumerQuotaMetrics.list` (v1beta1,
//! `{"metrics": [ConsumerQuotaMetric…], "nextPageToken": …}`) or from `gcloud alpha services
//! quota list --format=json` (a bare array of the same objects), turned into a scenario's
//! `[models."M"]` limits and per-project `[topology.project."P"] limits."M"` and `tier`.
//!
//! The schema is Google's (ConsumerQuotaMetric → consumerQuotaLimits[] → quotaBuckets[], each
//! bucket with `effectiveLimit`, `defaultLimit`, `dimensions` and producer/admin/consumer
//! overrides, int64 as JSON strings, -1 = unlimited). What each Gemini metric counts is not
//! documented by Google: [`METRICS`] reads it from the quota ids the 429 bodies pair with each
//! metric (see its comment). Pure: text in, tables out; the command line reads and writes files.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use toml_edit::{value, DocumentMut, InlineTable, Item, Table};

/// The service whose metrics are Gemini API limits.
const SERVICE: &str = "generativelanguage.googleapis.com/";

/// A tier's metrics (the scenario's `tier` names, `scenario::TIERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// `generate_content_free_tier_*`.
    Free,
    /// Paid tier 1: `generate_requests_per_model`, `…_per_day`, `generate_content_paid_tier_input_token_count`.
    Tier1,
    /// `generate_content_paid_tier_2_*`.
    Tier2,
    /// `generate_content_paid_tier_3_*`.
    Tier3,
}

impl Tier {
    /// The scenario's name of the tier.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Tier1 => "tier1",
            Tier::Tier2 => "tier2",
            Tier::Tier3 => "tier3",
        }
    }

    /// `free`, `tier1` (or `paid`: the metrics named `paid_tier` without a number), `tier2`, `tier3`.
    pub fn parse(text: &str) -> Result<Tier, String> {
        match text {
            "free" => Ok(Tier::Free),
            "tier1" | "paid" => Ok(Tier::Tier1),
            "tier2" => Ok(Tier::Tier2),
            "tier3" => Ok(Tier::Tier3),
            _ => Err(format!(
                "unknown tier {text:?}; expected free, tier1 (or paid), tier2 or tier3"
            )),
        }
    }
}

/// The Gemini API metrics this import knows: (name, tier, what it counts). Google documents none of them; what each
/// counts is read from the 429 bodies that name them with a quota id (public issue threads and
/// code: `generate_content_free_tier_requests` with `GenerateRequestsPerMinute…-FreeTier` and
/// `GenerateRequestsPerDay…-FreeTier`; `generate_content_free_tier_input_token_count` with
/// `GenerateContentInputTokensPerModelPerMinute-FreeTier`; `generate_requests_per_model` with
/// `GenerateRequestsPerMinutePerProjectPerModel`, `…_per_day` with
/// `GenerateRequestsPerDayPerProjectPerModel`; `generate_content_paid_tier_input_token_count`
/// with `GenerateContentPaidTierInputTokensPerModelPerMinute`; the `paid_tier_2`/`_3` metrics
/// from quota-increase requests and `gcloud … quota update` calls). Minute or day is never
/// taken from the name: it is the limit's unit (`1/min/…`, `1/d/…`). Any other metric is listed
/// as not imported.
pub const METRICS: [(&str, Tier, &str); 9] = [
    ("generate_content_free_tier_requests", Tier::Free, "requests"),
    (
        "generate_content_free_tier_input_token_count",
        Tier::Free,
        "input tokens",
    ),
    ("generate_requests_per_model", Tier::Tier1, "requests"),
    ("generate_requests_per_model_per_day", Tier::Tier1, "requests"),
    (
        "generate_content_paid_tier_input_token_count",
        Tier::Tier1,
        "input tokens",
    ),
    ("generate_content_paid_tier_2_requests", Tier::Tier2, "requests"),
    (
        "generate_content_paid_tier_2_input_token_count",
        Tier::Tier2,
        "input tokens",
    ),
    ("generate_content_paid_tier_3_requests", Tier::Tier3, "requests"),
    (
        "generate_content_paid_tier_3_input_token_count",
        Tier::Tier3,
        "input tokens",
    ),
];

/// Live model ids whose quota is counted under a model family's bucket (kazunori279/interpretab
/// tests/quota-close.mjs, 2026-08: "there is no `gemini-3.1-flash-live` bucket at all";
/// an override on the id "is accepted and does nothing"). `--family ID=FAMILY` adds others.
pub const FAMILIES: [(&str, &str); 2] = [
    ("gemini-3.1-flash-live-preview", "gemini-3-flash-live"),
    ("gemini-3.5-live-translate-preview", "gemini-3.5-live-translate"),
];

/// The scenario's limit fields, in the order [`Limits`] holds them.
pub const DIMS: [&str; 4] = ["rpm", "tpm", "rpd", "tpd"];

/// rpm, tpm, rpd, tpd; `None` is unlimited (-1 in the dump, or no field in a scenario).
pub type Limits = [Option<u64>; 4];

/// One dump file to import.
#[derive(Debug, Clone)]
pub struct DumpInput {
    /// How errors name the file (its path).
    pub label: String,
    /// The project's name when neither `--project` nor the metrics' names give one.
    pub stem: String,
    /// The JSON text.
    pub text: String,
    /// `--project` for this file.
    pub project: Option<String>,
    /// `--tier` for this file.
    pub tier: Option<Tier>,
}

/// Options of the import that are not per file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--family ID=FAMILY`, on top of [`FAMILIES`].
    pub families: Vec<(String, String)>,
    /// `--live MODEL`: Live models whose name does not say so.
    pub live: Vec<String>,
    /// `--model NAME`: import only these (model ids are mapped to their families); all if empty.
    pub models: Vec<String>,
}

/// A model's imported limits (the scenario's defaults for every project).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLimits {
    /// The model, or for a Live family bucket the family.
    pub name: String,
    /// Its limits on most projects.
    pub limits: Limits,
    /// `live = true`.
    pub live: bool,
    /// Model ids whose quota counts under this family's bucket.
    pub members: Vec<String>,
}

/// One project of the dumps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectLimits {
    /// Its name (`--project`, the metrics' `projects/N/…`, or the file's stem).
    pub name: String,
    /// The tier whose metrics were read.
    pub tier: Tier,
    /// The limits that differ from the model's defaults (`Some` only where they differ).
    pub overrides: BTreeMap<String, Limits>,
}

/// What an import found.
#[derive(Debug, Clone)]
pub struct Import {
    /// Models, sorted by name.
    pub models: Vec<ModelLimits>,
    /// Projects, in the order of the files.
    pub projects: Vec<ProjectLimits>,
    /// Remarks for stderr and the output's comments: overrides, ignored buckets, unknown metrics.
    pub notes: Vec<String>,
}

/// A bucket of a per-model limit.
#[derive(Debug, Clone)]
struct Bucket {
    /// The `model` dimension, `None` for the default bucket.
    model: Option<String>,
    limit: Option<u64>,
    /// "consumer override 100 (default 250)", when an override is set.
    overridden: Option<String>,
}

/// A per-model limit of a known metric.
#[derive(Debug, Clone)]
struct LimitEntry {
    tier: Tier,
    dim: usize,
    metric: String,
    unit: String,
    buckets: Vec<Bucket>,
}

/// One file, parsed.
#[derive(Debug, Clone, Default)]
struct Dump {
    project: Option<String>,
    limits: Vec<LimitEntry>,
    skipped: Vec<String>,
    next_page: bool,
}

/// JSON text shown in an error, shortened.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// An int64 of the proto3 JSON mapping: a decimal string (as Google writes them) or a number;
/// -1 is unlimited, other negatives are errors.
fn quota(v: &Value, label: &str, path: &str) -> Result<Option<u64>, String> {
    let n = match v {
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    };
    match n {
        Some(-1) => Ok(None),
        Some(n) if n >= 0 => Ok(Some(n as u64)),
        _ => Err(format!(
            "{label}: {path}: expected an int64 limit (a decimal string such as \"250\", or \"-1\" for unlimited), got {}",
            shown(v)
        )),
    }
}

fn object<'a>(v: &'a Value, label: &str, path: &str) -> Result<&'a serde_json::Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{label}: {path}: expected an object, got {}", shown(v)))
}

fn array<'a>(v: Option<&'a Value>, label: &str, path: &str) -> Result<&'a [Value], String> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(format!("{label}: {path}: expected an array, got {}", shown(v))),
    }
}

fn string<'a>(v: Option<&'a Value>, label: &str, path: &str) -> Result<Option<&'a str>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(format!("{label}: {path}: expected a string, got {}", shown(v))),
    }
}

/// `projects/N/…` → `N` (the docs call resource names opaque: `--project` overrides this).
fn project_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("projects/")?;
    let p = rest.split('/').next()?;
    (!p.is_empty()).then_some(p)
}

/// The tighter of two limits (`None` is unlimited).
fn tighter(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn fmt_limit(l: Option<u64>) -> String {
    l.map_or_else(|| "-1 (unlimited)".into(), |v| v.to_string())
}

/// One quota bucket: its effective limit (`effectiveLimit`, which the API says equals
/// `defaultLimit` unless overridden; without it, the producer override or default tightened by
/// the admin and consumer overrides) and a word on its overrides. A missing int64 is 0, as the
/// proto3 JSON mapping omits zero values.
fn bucket(v: &Value, label: &str, path: &str) -> Result<Bucket, String> {
    let b = object(v, label, path)?;
    let int = |key: &str| -> Result<Option<Option<u64>>, String> {
        b.get(key)
            .map(|x| quota(x, label, &format!("{path}.{key}")))
            .transpose()
    };
    let default = int("defaultLimit")?.unwrap_or(Some(0));
    let mut overrides = Vec::new();
    for key in ["producerOverride", "adminOverride", "consumerOverride"] {
        if let Some(o) = b.get(key).filter(|o| !o.is_null()) {
            let p = format!("{path}.{key}");
            let o = object(o, label, &p)?;
            let v = match o.get("overrideValue") {
                Some(x) => quota(x, label, &format!("{p}.overrideValue"))?,
                None => Some(0),
            };
            overrides.push((key.trim_end_matches("Override"), v));
        }
    }
    let effective = match int("effectiveLimit")? {
        Some(e) => e,
        None => {
            let mut l = overrides
                .iter()
                .find(|(k, _)| *k == "producer")
                .map_or(default, |o| o.1);
            for (_, v) in overrides.iter().filter(|(k, _)| *k != "producer") {
                l = tighter(l, *v);
            }
            l
        }
    };
    let overridden = (!overrides.is_empty()).then(|| {
        let list: Vec<String> = overrides
            .iter()
            .map(|(k, v)| format!("{k} override {}", fmt_limit(*v)))
            .collect();
        format!("{} (default {})", list.join(", "), fmt_limit(default))
    });
    let mut model = None;
    if let Some(d) = b.get("dimensions").filter(|d| !d.is_null()) {
        let dp = format!("{path}.dimensions");
        for (k, x) in object(d, label, &dp)? {
            let x = x
                .as_str()
                .ok_or_else(|| format!("{label}: {dp}.{k}: expected a string, got {}", shown(x)))?;
            if k == "model" {
                model = Some(x.strip_prefix("models/").unwrap_or(x).to_string());
            }
        }
    }
    Ok(Bucket {
        model,
        limit: effective,
        overridden,
    })
}

/// Parses one dump: the known per-model limits, and a line for each limit it does not import.
fn parse_dump(label: &str, text: &str) -> Result<Dump, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "{label}:{}:{}: not a quota dump: {e} (expected the JSON of consumerQuotaMetrics.list or of gcloud alpha services quota list --format=json)",
            e.line(),
            e.column()
        )
    })?;
    let mut dump = Dump::default();
    let (metrics, base) = match &root {
        Value::Array(a) => (a.as_slice(), "$".to_string()),
        Value::Object(o) => {
            if let Some(t) = string(o.get("nextPageToken"), label, "$.nextPageToken")? {
                dump.next_page = !t.is_empty();
            }
            (array(o.get("metrics"), label, "$.metrics")?, "$.metrics".to_string())
        }
        v => {
            return Err(format!(
                "{label}: $: expected {{\"metrics\": […]}} (consumerQuotaMetrics.list) or an array (gcloud), got {}",
                shown(v)
            ))
        }
    };
    let mut project_from: Option<(String, String)> = None;
    for (i, m) in metrics.iter().enumerate() {
        let mp = format!("{base}[{i}]");
        let mo = object(m, label, &mp)?;
        let metric = string(mo.get("metric"), label, &format!("{mp}.metric"))?
            .ok_or_else(|| format!("{label}: {mp}.metric: missing (the metric's name, e.g. \"{SERVICE}generate_content_free_tier_requests\")"))?;
        if let Some(name) = string(mo.get("name"), label, &format!("{mp}.name"))? {
            if let Some(p) = project_of(name) {
                match &project_from {
                    Some((q, at)) if q != p => {
                        return Err(format!(
                            "{label}: {mp}.name: project {p:?}, but {at} is of project {q:?}: a dump is one project's; split the file"
                        ))
                    }
                    Some(_) => {}
                    None => project_from = Some((p.to_string(), format!("{mp}.name"))),
                }
            }
        }
        let known = metric
            .strip_prefix(SERVICE)
            .and_then(|short| METRICS.iter().find(|(n, _, _)| *n == short));
        for (j, l) in array(
            mo.get("consumerQuotaLimits"),
            label,
            &format!("{mp}.consumerQuotaLimits"),
        )?
        .iter()
        .enumerate()
        {
            let lp = format!("{mp}.consumerQuotaLimits[{j}]");
            let lo = object(l, label, &lp)?;
            let unit = string(lo.get("unit"), label, &format!("{lp}.unit"))?
                .ok_or_else(|| format!("{label}: {lp}.unit: missing (e.g. \"1/min/{{project}}/{{model}}\")"))?;
            let buckets = array(lo.get("quotaBuckets"), label, &format!("{lp}.quotaBuckets"))?
                .iter()
                .enumerate()
                .map(|(k, b)| bucket(b, label, &format!("{lp}.quotaBuckets[{k}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let per = if unit.starts_with("1/min/") {
                Some(0)
            } else if unit.starts_with("1/d/") {
                Some(2)
            } else {
                None
            };
            match (known, per) {
                (Some(&(_, tier, counts)), Some(per)) if unit.contains("{model}") => {
                    let dim = per + usize::from(counts == "input tokens");
                    dump.limits.push(LimitEntry {
                        tier,
                        dim,
                        metric: metric.to_string(),
                        unit: unit.to_string(),
                        buckets,
                    })
                }
                (Some(_), _) => dump.skipped.push(format!(
                    "{metric} {unit}: not a per-minute or per-day limit per model (not imported)"
                )),
                (None, _) => dump
                    .skipped
                    .push(format!("{metric} {unit}: unknown metric (not imported)")),
            }
        }
    }
    dump.project = project_from.map(|p| p.0);
    Ok(dump)
}

/// Whether a model name says Live (`…-live`, `…-live-…`).
fn says_live(name: &str) -> bool {
    name.split('-').any(|c| c == "live")
}

/// Why dumps cannot be imported, by what the user gave that is at fault (the caller names how
/// it was given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportError {
    /// A dump cannot be read, or holds no limits (the message names the file).
    Dump(String),
    /// The tier given does not fit the dumps, or one is needed.
    Tier(String),
    /// A model asked for is not in the dumps (the message starts with it).
    Model(String),
}

/// Imports dumps: each file is a project (files of the same project are pages, merged).
pub fn import(files: &[DumpInput], opts: &Options) -> Result<Import, ImportError> {
    let mut families: BTreeMap<String, String> = FAMILIES.iter().map(|(i, f)| (i.to_string(), f.to_string())).collect();
    for (i, f) in &opts.families {
        families.insert(i.clone(), f.clone());
    }
    let family = |m: &str| families.get(m).cloned().unwrap_or_else(|| m.to_string());
    let mut notes = Vec::new();
    // (project, its tier, its dumps' labels, its limits)
    type Pages = (String, Option<Tier>, Vec<String>, Vec<LimitEntry>);
    let mut projects: Vec<Pages> = Vec::new();
    for f in files {
        let d = parse_dump(&f.label, &f.text).map_err(ImportError::Dump)?;
        if d.next_page {
            notes.push(format!(
                "{}: has a nextPageToken: it is one page of several; pass every page (files of one project are merged)",
                f.label
            ));
        }
        for s in d.skipped {
            notes.push(format!("{}: {s}", f.label));
        }
        let name = f.project.clone().or(d.project).unwrap_or_else(|| f.stem.clone());
        match projects.iter_mut().find(|p| p.0 == name) {
            Some(p) => {
                if f.tier.is_some() && p.1.is_some() && f.tier != p.1 {
                    return Err(ImportError::Tier(format!(
                        "{} and {} are both project {name:?} but are given different tiers",
                        p.2[0], f.label
                    )));
                }
                p.1 = p.1.or(f.tier);
                p.2.push(f.label.clone());
                p.3.extend(d.limits);
            }
            None => projects.push((name, f.tier, vec![f.label.clone()], d.limits)),
        }
    }
    // Per project: its tier and its limits per model.
    let mut per_project: Vec<(String, Tier, BTreeMap<String, Limits>)> = Vec::new();
    let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, tier, labels, limits) in projects {
        let files = labels.join(", ");
        let present: BTreeSet<Tier> = limits.iter().map(|l| l.tier).collect();
        let names: Vec<&str> = present.iter().map(|t| t.name()).collect();
        let tier = match tier {
            Some(t) if present.contains(&t) => t,
            Some(t) => {
                return Err(ImportError::Tier(format!(
                    "{files} (project {name:?}) holds no per-model limit of tier {}; it holds {names:?}",
                    t.name()
                )))
            }
            None if present.len() == 1 => *present.iter().next().expect("one"),
            None if present.is_empty() => {
                return Err(ImportError::Dump(format!(
                    "{files}: no Gemini API per-model limit in it (known metrics: {:?}); is it the dump of {SERVICE}?",
                    METRICS.iter().map(|m| m.0).collect::<Vec<_>>()
                )))
            }
            None => {
                return Err(ImportError::Tier(format!(
                    "{files} (project {name:?}) holds the limits of tiers {names:?}: give the one the project is on (free, tier1, tier2 or tier3)"
                )))
            }
        };
        let chosen: Vec<&LimitEntry> = limits.iter().filter(|l| l.tier == tier).collect();
        let mut models: BTreeSet<String> = BTreeSet::new();
        for l in &chosen {
            for b in &l.buckets {
                if let Some(m) = &b.model {
                    let f = family(m);
                    if f != *m {
                        members.entry(f.clone()).or_default().insert(m.clone());
                    }
                    models.insert(f);
                }
            }
        }
        let mut table: BTreeMap<String, Limits> = models.iter().map(|m| (m.clone(), [None; 4])).collect();
        // Whether (model, dim) has been set, to tighten duplicates rather than overwrite.
        let mut set: BTreeSet<(String, usize)> = BTreeSet::new();
        for l in &chosen {
            let default = l.buckets.iter().find(|b| b.model.is_none());
            let mut here: BTreeSet<String> = BTreeSet::new();
            for b in &l.buckets {
                let Some(m) = &b.model else { continue };
                let f = family(m);
                if f != *m {
                    notes.push(format!(
                        "project {name:?}: {} {}: the bucket of model id {m} ({}) is ignored: Google accepts a limit on a Live model id and it does nothing; the quota is {f}'s bucket",
                        l.metric,
                        l.unit,
                        b.overridden.clone().unwrap_or_else(|| format!("limit {}", fmt_limit(b.limit)))
                    ));
                    continue;
                }
                if let Some(o) = &b.overridden {
                    notes.push(format!(
                        "project {name:?}: {m} {}: {o}: effective {}",
                        DIMS[l.dim],
                        fmt_limit(b.limit)
                    ));
                }
                here.insert(f.clone());
                let cell = &mut table.get_mut(&f).expect("collected")[l.dim];
                if set.insert((f.clone(), l.dim)) {
                    *cell = b.limit;
                } else {
                    notes.push(format!(
                        "project {name:?}: {f} {}: more than one bucket; the tightest is kept",
                        DIMS[l.dim]
                    ));
                    *cell = tighter(*cell, b.limit);
                }
            }
            for m in &models {
                if here.contains(m) || set.contains(&(m.clone(), l.dim)) {
                    continue;
                }
                match default {
                    Some(d) => {
                        table.get_mut(m).expect("collected")[l.dim] = d.limit;
                        set.insert((m.clone(), l.dim));
                    }
                    None => notes.push(format!(
                        "project {name:?}: {m} {}: no bucket for it and no default bucket in {} {}: left unlimited",
                        DIMS[l.dim], l.metric, l.unit
                    )),
                }
            }
        }
        per_project.push((name, tier, table));
    }
    // Which models.
    let mut all: BTreeSet<String> = per_project.iter().flat_map(|p| p.2.keys().cloned()).collect();
    if !opts.models.is_empty() {
        let mut wanted = BTreeSet::new();
        for m in &opts.models {
            let f = family(m);
            if !all.contains(&f) {
                return Err(ImportError::Model(format!(
                    "{m}: not in the dumps{}; they have {:?}",
                    if f != *m {
                        format!(" (as family {f})")
                    } else {
                        String::new()
                    },
                    all
                )));
            }
            wanted.insert(f);
        }
        all = wanted;
    }
    // Defaults: unlimited if any project is, else the value most projects share (ties: the
    // first project's), so that every project's limits are defaults or per-project values.
    let mut models = Vec::new();
    for m in &all {
        let mut limits: Limits = [None; 4];
        for (d, cell) in limits.iter_mut().enumerate() {
            let values: Vec<Option<u64>> = per_project.iter().filter_map(|p| p.2.get(m)).map(|l| l[d]).collect();
            if values.contains(&None) {
                continue;
            }
            let mut best = values[0];
            let mut best_n = 0;
            for v in &values {
                let n = values.iter().filter(|x| *x == v).count();
                if n > best_n {
                    (best, best_n) = (*v, n);
                }
            }
            *cell = best;
        }
        let live = says_live(m) || opts.live.iter().any(|l| family(l) == *m);
        models.push(ModelLimits {
            name: m.clone(),
            limits,
            live,
            members: members.get(m).map(|s| s.iter().cloned().collect()).unwrap_or_default(),
        });
    }
    let projects = per_project
        .into_iter()
        .map(|(name, tier, table)| {
            let mut overrides = BTreeMap::new();
            for m in &models {
                let Some(l) = table.get(&m.name) else { continue };
                let mut o: Limits = [None; 4];
                for d in 0..4 {
                    if l[d] != m.limits[d] {
                        o[d] = l[d];
                    }
                }
                if o.iter().any(Option::is_some) {
                    overrides.insert(m.name.clone(), o);
                }
            }
            ProjectLimits { name, tier, overrides }
        })
        .collect();
    Ok(Import {
        models,
        projects,
        notes,
    })
}

impl Import {
    /// Comment lines saying where the limits come from and what was not imported.
    fn header(&self, sources: &[String]) -> String {
        let mut s = format!(
            "# Limits imported by `flux-sim limits import` from {} (Service Usage API,\n# services.consumerQuotaMetrics). ",
            sources.join(", ")
        );
        let tiers: Vec<String> = self
            .projects
            .iter()
            .map(|p| format!("{:?} on tier {:?}", p.name, p.tier.name()))
            .collect();
        s.push_str(&format!("Projects: {}.\n", tiers.join(", ")));
        s.push_str("# TPM and TPD are input tokens (the metrics are *_input_token_count): [server] tpm_counts = \"input\", the default.\n");
        if self.projects.len() == 1 {
            s.push_str(&format!(
                "# One project: its limits are the model defaults, every project's. It is on tier {:?}: a project with\n# `tier = {:?}` in [topology.project.\"P\"] gets serve's 429s with that tier's quota ids.\n",
                self.projects[0].tier.name(),
                self.projects[0].tier.name()
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("# note: {n}\n"));
        }
        s
    }

    /// The comment above a model's table.
    fn model_comment(m: &ModelLimits) -> String {
        let mut c = String::new();
        if m.live {
            c.push_str("# Live: the bucket is the model family");
            if !m.members.is_empty() {
                c.push_str(&format!(" (the quota of {} counts here)", m.members.join(", ")));
            }
            c.push_str(
                "; a limit set on a model id inside the family is accepted by Google and does nothing (reported).\n",
            );
        }
        let unlimited: Vec<&str> = DIMS
            .iter()
            .zip(m.limits)
            .filter(|(_, l)| l.is_none())
            .map(|(d, _)| *d)
            .collect();
        if !unlimited.is_empty() {
            c.push_str(&format!(
                "# {}: unlimited in the dump (-1, or no such limit), so not set.\n",
                unlimited.join(", ")
            ));
        }
        c
    }

    /// The tables alone, as a TOML document with comments (what `limits import` prints).
    pub fn tables(&self, sources: &[String]) -> DocumentMut {
        let mut doc = DocumentMut::new();
        doc.decor_mut().set_prefix(self.header(sources));
        let mut models = Table::new();
        models.set_implicit(true);
        for m in &self.models {
            let mut t = Table::new();
            set_limits(&mut t, &m.limits);
            if m.live {
                t.insert("live", value(true));
            }
            t.decor_mut().set_prefix(format!("\n{}", Self::model_comment(m)));
            models.insert_formatted(&quoted(&m.name), Item::Table(t));
        }
        doc.insert("models", Item::Table(models));
        if self.projects.len() > 1 {
            let mut topo = Table::new();
            topo.set_implicit(true);
            let names: Vec<&str> = self.projects.iter().map(|p| p.name.as_str()).collect();
            topo.decor_mut().set_prefix(format!(
                "\n# The projects (name them in your [topology], e.g. projects = {names:?}).\n"
            ));
            let mut project = Table::new();
            project.set_implicit(true);
            for p in &self.projects {
                project.insert_formatted(&quoted(&p.name), Item::Table(project_table(p)));
            }
            topo.insert("project", Item::Table(project));
            doc.insert("topology", Item::Table(topo));
        }
        doc
    }

    /// Replaces `base`'s limit fields by the import's: each imported model's rpm/tpm/rpd/tpd
    /// (and `live`), and, with several projects, each project's `tier` and `limits`. Projects
    /// BASE does not define are put in `topology.projects` when BASE lists them there.
    /// `base_projects` are the project names BASE defines. Returns remarks for stderr.
    pub fn apply(
        &self,
        base: &mut DocumentMut,
        base_projects: &[String],
        sources: &[String],
    ) -> Result<Vec<String>, String> {
        let mut said = Vec::new();
        let models = base.entry("models").or_insert_with(implicit_table);
        if !models.is_table_like() {
            return Err("`models` is not a table".into());
        }
        for m in &self.models {
            match models.get_mut(&m.name).and_then(Item::as_table_like_mut) {
                Some(t) => {
                    for (d, name) in DIMS.iter().enumerate() {
                        set_field(t, name, m.limits[d]);
                    }
                    if m.live {
                        t.insert("live", value(true));
                    }
                }
                None => {
                    let mut t = Table::new();
                    set_limits(&mut t, &m.limits);
                    if m.live {
                        t.insert("live", value(true));
                    }
                    t.decor_mut().set_prefix(format!("\n{}", Self::model_comment(m)));
                    insert_quoted(models, &m.name, Item::Table(t));
                    said.push(format!("added model {:?} (not in the scenario)", m.name));
                }
            }
        }
        if self.projects.len() > 1 {
            let missing: Vec<&str> = self
                .projects
                .iter()
                .map(|p| p.name.as_str())
                .filter(|n| !base_projects.iter().any(|b| b == n))
                .collect();
            let topo = base
                .get_mut("topology")
                .filter(|t| t.is_table_like())
                .ok_or("no [topology] table")?;
            if !missing.is_empty() {
                if topo.get("projects").is_none() {
                    return Err(format!(
                        "the dumps' projects {missing:?} are not in the scenario, whose projects are {base_projects:?} (under [[topology.accounts]]); name them there, or give each dump a project of the scenario"
                    ));
                }
                let names: toml_edit::Array = self.projects.iter().map(|p| p.name.as_str()).collect();
                set_value(topo.as_table_like_mut().expect("checked"), "projects", names.into());
                said.push(format!(
                    "topology.projects: now the dumps' projects {:?}",
                    self.projects.iter().map(|p| &p.name).collect::<Vec<_>>()
                ));
            }
            let project = topo
                .as_table_like_mut()
                .expect("checked")
                .entry("project")
                .or_insert_with(implicit_table);
            if !project.is_table_like() {
                return Err("topology.project is not a table".into());
            }
            for p in &self.projects {
                match project.get_mut(&p.name).and_then(Item::as_table_like_mut) {
                    Some(t) => {
                        set_value(t, "tier", p.tier.name().into());
                        let limits = t.entry("limits").or_insert_with(|| {
                            let mut l = Table::new();
                            l.set_dotted(true);
                            Item::Table(l)
                        });
                        if !limits.is_table_like() {
                            return Err(format!("topology.project.{:?}.limits is not a table", p.name));
                        }
                        for m in &self.models {
                            let over = p.overrides.get(&m.name);
                            if let Some(l) = limits.get_mut(&m.name).and_then(Item::as_table_like_mut) {
                                for (d, name) in DIMS.iter().enumerate() {
                                    set_field(l, name, over.and_then(|o| o[d]));
                                }
                            } else if let Some(o) = over {
                                insert_quoted(limits, &m.name, Item::Value(inline_limits(o).into()));
                            }
                        }
                    }
                    None => insert_quoted(project, &p.name, Item::Table(project_table(p))),
                }
            }
        }
        base.decor_mut().set_suffix(format!(
            "\n{}",
            self.header(sources)
                .replace("# Limits imported", "# The limits above were imported")
        ));
        Ok(said)
    }
}

fn implicit_table() -> Item {
    let mut t = Table::new();
    t.set_implicit(true);
    Item::Table(t)
}

/// A key written quoted, as the shipped scenarios write model and project names.
fn quoted(name: &str) -> toml_edit::Key {
    let repr = toml_edit::Value::from(name).to_string();
    toml_edit::Key::parse(repr.trim())
        .ok()
        .and_then(|k| k.into_iter().next())
        .unwrap_or_else(|| toml_edit::Key::new(name))
}

/// `quoted` for a key-value pair (`"name" = …`).
fn quoted_kv(name: &str) -> toml_edit::Key {
    let mut k = quoted(name);
    k.leaf_decor_mut().set_suffix(" ");
    k
}

/// Inserts `item` under a quoted `name` into the table or inline table `parent`.
fn insert_quoted(parent: &mut Item, name: &str, item: Item) {
    if let Some(t) = parent.as_table_mut() {
        let key = if item.is_value() { quoted_kv(name) } else { quoted(name) };
        t.insert_formatted(&key, item);
    } else if let Some(t) = parent.as_inline_table_mut() {
        if let Ok(v) = item.into_value() {
            t.insert_formatted(&quoted_kv(name), v);
        }
    }
}

/// Sets a value, keeping the comments around the old one.
fn set_value(t: &mut dyn toml_edit::TableLike, name: &str, v: toml_edit::Value) {
    let mut v = v;
    // In place: `insert` would reset the key's formatting, and with it the comment above it.
    if let Some(old) = t.get_mut(name).and_then(Item::as_value_mut) {
        *v.decor_mut() = old.decor().clone();
        *old = v;
    } else {
        t.insert(name, Item::Value(v));
    }
}

/// Sets a limit field (`None`: removes it, which is unlimited).
fn set_field(t: &mut dyn toml_edit::TableLike, name: &str, v: Option<u64>) {
    match v {
        Some(v) => set_value(t, name, (v as i64).into()),
        None => {
            t.remove(name);
        }
    }
}

fn set_limits(t: &mut Table, l: &Limits) {
    for (d, name) in DIMS.iter().enumerate() {
        if let Some(v) = l[d] {
            t.insert(name, value(v as i64));
        }
    }
}

fn inline_limits(l: &Limits) -> InlineTable {
    let mut t = InlineTable::new();
    for (d, name) in DIMS.iter().enumerate() {
        if let Some(v) = l[d] {
            t.insert(*name, (v as i64).into());
        }
    }
    t
}

fn project_table(p: &ProjectLimits) -> Table {
    let mut t = Table::new();
    t.insert("tier", value(p.tier.name()));
    if !p.overrides.is_empty() {
        let mut limits = Table::new();
        limits.set_dotted(true);
        for (m, o) in &p.overrides {
            limits.insert_formatted(&quoted_kv(m), Item::Value(inline_limits(o).into()));
        }
        t.insert("limits", Item::Table(limits));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(label: &str, text: &str) -> DumpInput {
        DumpInput {
            label: label.into(),
            stem: label.trim_end_matches(".json").into(),
            text: text.into(),
            project: None,
            tier: None,
        }
    }

    fn metric(project: &str, name: &str, limits: &[(&str, &str)]) -> String {
        let limits: Vec<String> = limits
            .iter()
            .map(|(unit, buckets)| format!(r#"{{"unit": "{unit}", "quotaBuckets": [{buckets}]}}"#))
            .collect();
        format!(
            r#"{{"name": "projects/{project}/services/generativelanguage.googleapis.com/consumerQuotaMetrics/x", "metric": "generativelanguage.googleapis.com/{name}", "consumerQuotaLimits": [{}]}}"#,
            limits.join(",")
        )
    }

    const MIN: &str = "1/min/{project}/{model}";
    const DAY: &str = "1/d/{project}/{model}";

    fn free(project: &str, flash_rpd: &str) -> String {
        format!(
            r#"{{"metrics": [{}, {}]}}"#,
            metric(
                project,
                "generate_content_free_tier_requests",
                &[
                    (
                        MIN,
                        r#"{"effectiveLimit": "5", "defaultLimit": "5"}, {"effectiveLimit": "10", "defaultLimit": "10", "dimensions": {"model": "gemini-2.5-flash"}}"#
                    ),
                    (
                        DAY,
                        &format!(
                            r#"{{"effectiveLimit": "20", "defaultLimit": "20"}}, {{"dimensions": {{"model": "gemini-2.5-flash"}}, {flash_rpd}}}"#
                        )
                    ),
                ]
            ),
            metric(
                project,
                "generate_content_free_tier_input_token_count",
                &[(
                    MIN,
                    r#"{"effectiveLimit": "250000", "defaultLimit": "250000"}, {"effectiveLimit": "20000", "defaultLimit": "20000", "dimensions": {"model": "gemini-3-flash-live"}}"#
                )]
            )
        )
    }

    #[test]
    fn minute_and_day_by_the_unit_requests_and_tokens_by_the_metric() {
        let i = import(
            &[input(
                "a.json",
                &free("111", r#""effectiveLimit": "250", "defaultLimit": "250""#),
            )],
            &Options::default(),
        )
        .unwrap();
        let flash = i.models.iter().find(|m| m.name == "gemini-2.5-flash").unwrap();
        assert_eq!(flash.limits, [Some(10), Some(250_000), Some(250), None]);
        assert!(!flash.live);
        // The live family takes the default buckets of the request limits.
        let live = i.models.iter().find(|m| m.name == "gemini-3-flash-live").unwrap();
        assert_eq!(live.limits, [Some(5), Some(20_000), Some(20), None]);
        assert!(live.live);
        assert_eq!(i.projects[0].name, "111");
        assert_eq!(i.projects[0].tier, Tier::Free);
        assert!(i.projects[0].overrides.is_empty());
    }

    #[test]
    fn consumer_override_and_minus_one() {
        // effectiveLimit given: trusted; absent: default tightened by the consumer override.
        for flash in [
            r#""effectiveLimit": "100", "defaultLimit": "250", "consumerOverride": {"overrideValue": "100"}"#,
            r#""defaultLimit": "250", "consumerOverride": {"overrideValue": "100"}"#,
        ] {
            let i = import(&[input("a.json", &free("1", flash))], &Options::default()).unwrap();
            assert_eq!(
                i.models.iter().find(|m| m.name == "gemini-2.5-flash").unwrap().limits[2],
                Some(100)
            );
            assert!(
                i.notes
                    .iter()
                    .any(|n| n.contains("consumer override 100 (default 250)")),
                "{:?}",
                i.notes
            );
        }
        let i = import(
            &[input(
                "a.json",
                &free("1", r#""effectiveLimit": "-1", "defaultLimit": "-1""#),
            )],
            &Options::default(),
        )
        .unwrap();
        assert_eq!(
            i.models.iter().find(|m| m.name == "gemini-2.5-flash").unwrap().limits[2],
            None
        );
        let doc = i.tables(&["a.json".into()]).to_string();
        assert!(doc.contains("# rpd, tpd: unlimited in the dump"), "{doc}");
    }

    #[test]
    fn live_model_id_bucket_is_ignored_for_its_family() {
        let text = format!(
            r#"{{"metrics": [{}]}}"#,
            metric(
                "1",
                "generate_content_free_tier_input_token_count",
                &[(
                    MIN,
                    r#"{"effectiveLimit": "250000"}, {"effectiveLimit": "20000", "dimensions": {"model": "gemini-3-flash-live"}}, {"effectiveLimit": "100", "defaultLimit": "20000", "consumerOverride": {"overrideValue": "100"}, "dimensions": {"model": "gemini-3.1-flash-live-preview"}}"#
                )]
            )
        );
        let i = import(&[input("a.json", &text)], &Options::default()).unwrap();
        assert_eq!(i.models.len(), 1, "{:?}", i.models);
        let live = &i.models[0];
        assert_eq!(
            (live.name.as_str(), live.limits[1], live.live),
            ("gemini-3-flash-live", Some(20_000), true)
        );
        assert_eq!(live.members, ["gemini-3.1-flash-live-preview"]);
        assert!(i.notes.iter().any(|n| n.contains("does nothing")), "{:?}", i.notes);
        let doc = i.tables(&["a.json".into()]).to_string();
        assert!(
            doc.contains("the quota of gemini-3.1-flash-live-preview counts here"),
            "{doc}"
        );
        // --family maps other ids; --model by id picks its family.
        let opts = Options {
            families: vec![("gemini-3.1-flash-live-preview".into(), "elsewhere".into())],
            ..Options::default()
        };
        let i = import(&[input("a.json", &text)], &opts).unwrap();
        assert!(i.models.iter().any(|m| m.name == "elsewhere"));
        let opts = Options {
            models: vec!["gemini-3.1-flash-live-preview".into()],
            ..Options::default()
        };
        assert_eq!(
            import(&[input("a.json", &text)], &opts).unwrap().models[0].name,
            "gemini-3-flash-live"
        );
    }

    #[test]
    fn tiers_choose_the_metrics_and_both_need_the_flag() {
        let text = format!(
            r#"[{}, {}]"#,
            metric(
                "1",
                "generate_content_free_tier_requests",
                &[
                    (MIN, r#"{"effectiveLimit": "5"}"#),
                    (DAY, r#"{"effectiveLimit": "20", "dimensions": {"model": "m"}}"#)
                ]
            ),
            metric(
                "1",
                "generate_requests_per_model_per_day",
                &[(DAY, r#"{"effectiveLimit": "10000", "dimensions": {"model": "m"}}"#)]
            )
        );
        let err = import(&[input("a.json", &text)], &Options::default()).unwrap_err();
        assert!(
            matches!(&err, ImportError::Tier(m) if m.contains("give the one the project is on") && m.contains("\"free\", \"tier1\"")),
            "{err:?}"
        );
        let mut f = input("a.json", &text);
        f.tier = Some(Tier::Tier1);
        let i = import(&[f.clone()], &Options::default()).unwrap();
        assert_eq!(i.models[0].limits, [None, None, Some(10_000), None]);
        assert_eq!(i.projects[0].tier, Tier::Tier1);
        f.tier = Some(Tier::Tier3);
        let err = import(&[f], &Options::default()).unwrap_err();
        assert!(
            matches!(&err, ImportError::Tier(m) if m.starts_with("a.json (project") && m.contains("of tier tier3")),
            "{err:?}"
        );
        assert_eq!(Tier::parse("paid"), Ok(Tier::Tier1));
        assert!(Tier::parse("gold").is_err());
    }

    #[test]
    fn several_projects_differ_from_the_defaults() {
        let files = [
            input("a.json", &free("111", r#""effectiveLimit": "250""#)),
            input(
                "b.json",
                &free(
                    "222",
                    r#""effectiveLimit": "100", "defaultLimit": "250", "consumerOverride": {"overrideValue": "100"}"#,
                ),
            ),
            input("c.json", &free("333", r#""effectiveLimit": "250""#)),
        ];
        let i = import(&files, &Options::default()).unwrap();
        let flash = i.models.iter().find(|m| m.name == "gemini-2.5-flash").unwrap();
        assert_eq!(flash.limits[2], Some(250), "the value most projects have");
        assert_eq!(
            i.projects[1].overrides["gemini-2.5-flash"],
            [None, None, Some(100), None]
        );
        assert!(i.projects[0].overrides.is_empty() && i.projects[2].overrides.is_empty());
        let doc = i.tables(&[]).to_string();
        assert!(
            doc.contains("[topology.project.\"222\"]\ntier = \"free\"\nlimits.\"gemini-2.5-flash\" = { rpd = 100 }"),
            "{doc}"
        );
        // One project unlimited: the default is unlimited and the others say their value.
        let files = [
            input("a.json", &free("111", r#""effectiveLimit": "250""#)),
            input("b.json", &free("222", r#""effectiveLimit": "-1""#)),
        ];
        let i = import(&files, &Options::default()).unwrap();
        assert_eq!(
            i.models.iter().find(|m| m.name == "gemini-2.5-flash").unwrap().limits[2],
            None
        );
        assert_eq!(i.projects[0].overrides["gemini-2.5-flash"][2], Some(250));
        // --project names a file's project; the same name twice merges pages.
        let mut a = input("a.json", &free("111", r#""effectiveLimit": "250""#));
        a.project = Some("mine".into());
        assert_eq!(import(&[a], &Options::default()).unwrap().projects[0].name, "mine");
    }

    #[test]
    fn unknown_metrics_are_listed() {
        let text = format!(
            r#"{{"metrics": [{}, {}], "nextPageToken": "abc"}}"#,
            metric(
                "1",
                "generate_content_free_tier_requests",
                &[(MIN, r#"{"effectiveLimit": "5", "dimensions": {"model": "m"}}"#)]
            ),
            metric("1", "embed_text_requests", &[(MIN, r#"{"effectiveLimit": "1500"}"#)])
        );
        let i = import(&[input("a.json", &text)], &Options::default()).unwrap();
        assert!(
            i.notes
                .iter()
                .any(|n| n == &format!("a.json: {SERVICE}embed_text_requests {MIN}: unknown metric (not imported)")),
            "{:?}",
            i.notes
        );
        assert!(i.notes.iter().any(|n| n.contains("nextPageToken")));
        let doc = i.tables(&["a.json".into()]).to_string();
        assert!(
            doc.contains("# note: a.json: generativelanguage.googleapis.com/embed_text_requests"),
            "{doc}"
        );
    }

    #[test]
    fn malformed_dumps_name_the_file_and_the_json_path() {
        let cases = [
            ("{", "a.json:1:1: not a quota dump"),
            ("42", "a.json: $: expected"),
            (r#"{"metrics": {}}"#, "a.json: $.metrics: expected an array"),
            (
                r#"{"metrics": [{"consumerQuotaLimits": []}]}"#,
                "a.json: $.metrics[0].metric: missing",
            ),
            (
                r#"[{"metric": "m", "consumerQuotaLimits": [{"unit": "1/min/{project}/{model}", "quotaBuckets": [{"effectiveLimit": "ten"}]}]}]"#,
                "a.json: $[0].consumerQuotaLimits[0].quotaBuckets[0].effectiveLimit: expected an int64 limit",
            ),
            (
                r#"[{"metric": "m", "consumerQuotaLimits": [{"unit": "u", "quotaBuckets": [{"effectiveLimit": "-5"}]}]}]"#,
                "quotaBuckets[0].effectiveLimit: expected an int64",
            ),
            (
                r#"[{"metric": "m", "consumerQuotaLimits": [{"quotaBuckets": []}]}]"#,
                "a.json: $[0].consumerQuotaLimits[0].unit: missing",
            ),
            (
                r#"[{"metric": "m", "consumerQuotaLimits": [{"unit": "u", "quotaBuckets": [{"consumerOverride": {"overrideValue": true}}]}]}]"#,
                "$[0].consumerQuotaLimits[0].quotaBuckets[0].consumerOverride.overrideValue",
            ),
            (
                r#"[{"name": "projects/1/x", "metric": "m"}, {"name": "projects/2/x", "metric": "m"}]"#,
                "a.json: $[1].name: project \"2\", but $[0].name is of project \"1\"",
            ),
            (r#"{"metrics": []}"#, "a.json: no Gemini API per-model limit"),
        ];
        for (text, want) in cases {
            let err = import(&[input("a.json", text)], &Options::default()).unwrap_err();
            assert!(
                matches!(&err, ImportError::Dump(m) if m.contains(want)),
                "{text}: {err:?} !~ {want}"
            );
        }
    }

    #[test]
    fn apply_replaces_limits_and_keeps_comments() {
        let base = "# my scenario\nname = \"x\"\n\n[models.\"gemini-2.5-flash\"]\n# the flash\nrpm = 1\ntpd = 9  # gone\nprice_input = 0.3\n\n[topology]\nprojects = 2\n";
        let mut doc: DocumentMut = base.parse().unwrap();
        let files = [
            input("a.json", &free("111", r#""effectiveLimit": "250""#)),
            input("b.json", &free("222", r#""effectiveLimit": "100""#)),
        ];
        let i = import(&files, &Options::default()).unwrap();
        let said = i
            .apply(&mut doc, &["default-1".into(), "default-2".into()], &[])
            .unwrap();
        let out = doc.to_string();
        assert!(out.starts_with("# my scenario\n"), "{out}");
        assert!(out.contains("# the flash\nrpm = 10\n"), "{out}");
        assert!(!out.contains("tpd = 9") && out.contains("price_input = 0.3"), "{out}");
        assert!(out.contains("projects = [\"111\", \"222\"]"), "{out}");
        assert!(said.iter().any(|s| s.contains("gemini-3-flash-live")), "{said:?}");
        let back: DocumentMut = out.parse().unwrap();
        assert_eq!(
            back["topology"]["project"]["222"]["limits"]["gemini-2.5-flash"]["rpd"].as_integer(),
            Some(100)
        );
        assert_eq!(back["topology"]["project"]["111"]["tier"].as_str(), Some("free"));
    }
}
