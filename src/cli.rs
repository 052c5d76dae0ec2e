//! The command line (`flux-sim run …`): parsing, running, printing; every user error is one
//! line on stderr and exit code 2.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::report::{to_json, to_table, trace_line};
use crate::scenario::setting::{Grid, GridError, Setting};
use crate::scenario::Scenario;
use crate::sim::run::{run_detailed, select_strategies, RunOptions};
use crate::sim::sweep::Sweep;

/// Compare API-key rotation strategies against a mock Gemini server with exact quotas.
#[derive(Debug, Parser)]
#[command(name = "flux-sim", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate a scenario's strategies side by side in virtual time.
    Run(RunArgs),
    /// Run a scenario over a grid of settings, in parallel (capacity planning).
    Sweep(SweepArgs),
    /// Every built-in strategy (and flux told wrong limits) on each scenario: one table.
    Compare(CompareArgs),
    /// Serve the scenario's mock Gemini API over HTTP (real time).
    Serve(ServeArgs),
    /// Print every key string a client may use with `serve`.
    Keys(KeysArgs),
    /// Write a self-signed certificate and key for 127.0.0.1 and localhost (serve --tls-cert).
    Cert(CertArgs),
    /// Run one strategy for real against an HTTP endpoint (serve, or Gemini), next to its simulation.
    Drive(DriveArgs),
    /// Put a strategy (flux by default) in front of any Gemini client: it holds each request
    /// until a key has room, then forwards it upstream.
    Proxy(ProxyArgs),
    /// Write a commented scenario to start from.
    Init(InitArgs),
    /// Limits from Google's quota dumps (`limits import FILE…`).
    #[command(subcommand)]
    Limits(LimitsCommand),
    /// Print the reference of every scenario field (Markdown).
    Reference,
    /// List the built-in strategies with their defaults.
    Strategies,
}

/// Arguments of `compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Scenario files (TOML); their own strategy lists are ignored.
    #[arg(required = true)]
    pub scenarios: Vec<PathBuf>,
    /// Seed for every scenario, 0 to 2^64-1 (default: each scenario's own).
    #[arg(long, allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CompareFormat::Markdown)]
    pub format: CompareFormat,
    /// Run the strategies on N threads (default: every core); results do not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
}

/// Output formats of `compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompareFormat {
    /// The table and the claim lines, as in the README.
    Markdown,
    /// One run result per scenario (the `run --format json` shape), in a list.
    Json,
}

/// `limits` subcommands.
#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Read quota dumps (the Service Usage API's consumerQuotaMetrics.list JSON, or `gcloud alpha
    /// services quota list --service=generativelanguage.googleapis.com --consumer=projects/P
    /// --format=json`) and print the scenario's `[models]` limits and per-project limits, or
    /// write BASE with them (--scenario BASE --out NEW).
    Import(LimitsImportArgs),
}

/// Arguments of `limits import`.
#[derive(Debug, clap::Args)]
pub struct LimitsImportArgs {
    /// Quota dumps (JSON), one project each; pages of one project are merged.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The project of each FILE, in order (default: `projects/N` in the metrics' names, else the
    /// file's stem). Give it once per FILE, or not at all.
    #[arg(long = "project", value_name = "NAME")]
    pub projects: Vec<String>,
    /// The tier whose metrics to read: free, tier1 (or paid), tier2, tier3. Needed when a dump
    /// holds several tiers' metrics. Once for every FILE, or once per FILE in order.
    #[arg(long = "tier", value_name = "TIER", value_parser = crate::scenario::quota_dump::Tier::parse)]
    pub tiers: Vec<crate::scenario::quota_dump::Tier>,
    /// A Live model id whose quota counts under a family's bucket (ID=FAMILY); repeatable.
    #[arg(long = "family", value_name = "ID=FAMILY")]
    pub families: Vec<String>,
    /// A Live model whose name does not contain `live`; repeatable.
    #[arg(long = "live", value_name = "MODEL")]
    pub live: Vec<String>,
    /// Import only this model (default: every model of the dumps; with --scenario, BASE's models
    /// that the dumps have); repeatable.
    #[arg(long = "model", value_name = "NAME")]
    pub models: Vec<String>,
    /// A scenario to write the limits into (with --out); its comments are kept.
    #[arg(long, value_name = "BASE", requires = "out")]
    pub scenario: Option<PathBuf>,
    /// Where to write BASE with the imported limits.
    #[arg(long, value_name = "NEW", requires = "scenario")]
    pub out: Option<PathBuf>,
    /// Overwrite NEW if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The scenario file to write.
    pub file: PathBuf,
    /// Which situation to start from.
    #[arg(long, value_enum, default_value_t = Template::Dubbing)]
    pub template: Template,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

/// The templates of `init` (see `scenario::TEMPLATES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Template {
    /// A closed batch of long prompts on free-tier projects (TPM binds).
    Dubbing,
    /// Open, bursty chat traffic on paid tier-1 projects.
    Chat,
    /// An overnight batch of small requests with a model fallback (RPD binds).
    Batch,
}

/// Arguments of `drive`.
#[derive(Debug, clap::Args)]
pub struct DriveArgs {
    /// Scenario file (TOML): its workload, keys, limits and strategies.
    pub scenario: PathBuf,
    /// Base URL of the API, e.g. `http://127.0.0.1:8080` (flux-sim serve) or
    /// `https://generativelanguage.googleapis.com`.
    #[arg(long, value_name = "URL")]
    pub endpoint: String,
    /// The strategy to drive (a name from the scenario, or a built-in kind); needed when the
    /// scenario has several.
    #[arg(long, value_name = "NAME")]
    pub strategy: Option<String>,
    /// Stop after this much wall-clock time, e.g. 90s or 10m (default: the scenario's horizon
    /// divided by the time scale).
    #[arg(long, value_name = "D", value_parser = real_duration)]
    pub duration: Option<std::time::Duration>,
    /// The endpoint's time scale (as given to `serve --time-scale`; 1 for a real API).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub time_scale: u64,
    /// Wall-clock time of quota time 0, for calendar minutes and the daily reset: `now`, or
    /// RFC 3339 (default: the scenario's `start`). Against a real API use `now`, so days end
    /// when Google's do.
    #[arg(long, value_name = "now|TIME", value_parser = start_flag)]
    pub start: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// exact_cooldown's and flux's safety margin in wall-clock time, e.g. 5ms: every cooldown lasts this
    /// much longer, to absorb network delay jitter (default: the scenario's `margin`).
    #[arg(long, value_name = "D", value_parser = real_duration)]
    pub margin: Option<std::time::Duration>,
    /// Seed, output format and trace.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Overwrite an existing --trace file.
    #[arg(long)]
    pub force: bool,
    /// Reset the endpoint first (`POST /flux/reset` to flux-sim serve: empty ledger, virtual
    /// time 0), so this drive is not charged for earlier ones.
    #[arg(long)]
    pub fresh: bool,
}

/// A `--start` flag: `now`, or an RFC 3339 time.
fn start_flag(text: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    if text == "now" {
        return Ok(chrono::Local::now().fixed_offset());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("expected `now` or an RFC 3339 time such as 2025-10-15T09:00:00-07:00 ({e})"))
}

/// Moves `scenario`'s quota time 0 to `start`, if given.
fn restart(scenario: &mut Scenario, start: Option<chrono::DateTime<chrono::FixedOffset>>) {
    if let Some(t) = start {
        scenario.calendar = crate::core::time::Calendar::new(t, scenario.calendar.tz());
    }
}

/// A wall-clock duration flag (`500ms`, `90s`, `10m`).
fn real_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::core::time::parse_duration(text).map(std::time::Duration::from_nanos)
}

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    /// Run quota windows, the day and latencies N times faster (1 for real clients).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub time_scale: u64,
    /// Wall-clock time of quota time 0, for calendar minutes and the daily reset: `now`, or
    /// RFC 3339 (default: the scenario's `start`). With real clients use `now`, so days end at
    /// the real midnight Pacific.
    #[arg(long, value_name = "now|TIME", value_parser = start_flag)]
    pub start: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Serve HTTPS and WSS with this PEM certificate chain (with --tls-key; `flux-sim cert`
    /// makes a self-signed pair). Needed by clients that insist on TLS, such as the google-genai
    /// SDK's Live API.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Arguments of `cert`.
#[derive(Debug, clap::Args)]
pub struct CertArgs {
    /// Directory to write cert.pem and key.pem into (created if missing).
    pub dir: PathBuf,
    /// Replace existing cert.pem and key.pem.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Configuration: a scenario file whose topology, models and limits are the real ones.
    pub config: PathBuf,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub bind: std::net::SocketAddr,
    /// Where to forward: Gemini, or a `flux-sim serve`.
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://generativelanguage.googleapis.com"
    )]
    pub upstream: String,
    /// The strategy (a name from the configuration, or a built-in kind).
    #[arg(long, value_name = "NAME", default_value = "flux")]
    pub strategy: String,
    /// The real keys, one per line as `PROJECT KEY`, KEY written out or as `$NAME` (read from
    /// the environment variable NAME; `#` starts a comment); they replace the configuration's
    /// keys, so that no key is ever written in it. Without it the
    /// configuration's keys are used (those `serve` accepts for the same file).
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// Longest a request may wait for a key with room before it gets a 429.
    #[arg(long, value_name = "D", default_value = "60s", value_parser = real_duration)]
    pub deadline: std::time::Duration,
    /// Requests that may wait at once, 1 to 1,000,000; more get a 429 at once.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub queue: u64,
    /// Share the budgets with other proxies through Redis (`redis://host:port/db`): no
    /// request is sent that the shared ledger has not admitted.
    #[arg(long, value_name = "URL")]
    pub ledger: Option<String>,
    /// How much later than planned a send may reach the upstream (timers, uploads, the
    /// network): flux's and exact_cooldown's plans and --ledger's shared minute windows hold
    /// each entry this much longer than 60 s. (Whatever it is, the proxy itself never sends
    /// more than a per-minute limit into any 60 s: it counts each send until 60 s after its
    /// answer's head came back.)
    #[arg(long, value_name = "D", default_value = "1s", value_parser = real_duration)]
    pub margin: std::time::Duration,
    /// Start even when --ledger's Redis may evict keys (a maxmemory with a policy other than
    /// noeviction): a warning instead of an error. Evicted ledger keys mean over-sending.
    #[arg(long)]
    pub ledger_allow_eviction: bool,
    /// Serve HTTPS and WSS to clients with this PEM certificate chain (with --tls-key; `flux-sim
    /// cert` makes a self-signed pair). Needed by clients that insist on TLS, such as the
    /// google-genai SDK's Live API.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Arguments of `keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
}

/// Arguments of `sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// PATH=VALUES: a setting of the scenario file and the values to try, as A..B (integers,
    /// inclusive) or v1,v2,...; e.g. `topology.accounts[0].projects=1..10`, `workload.rate=10,20,40`.
    /// Repeat for a grid.
    #[arg(long = "set", value_name = "PATH=VALUES", required = true)]
    pub settings: Vec<String>,
    /// Directory for sweep.csv and the charts.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into a non-empty --out directory.
    #[arg(long)]
    pub force: bool,
    /// Refuse grids of more points than this (each point is a whole run of every strategy).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_points: u64,
    /// Run only this strategy (a name from the scenario, or a built-in kind); repeatable.
    #[arg(long = "strategy", value_name = "NAME")]
    pub strategies: Vec<String>,
    /// Run the grid points on N threads (default: every core); results do not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
}

/// The seed and output flags `run` and `drive` share.
#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Seed of the workload, latencies and retry jitter, 0 to 2^64-1 (default: the scenario's).
    #[arg(long, allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write one JSON line per attempt to FILE.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
}

/// Output format of `run` and `drive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned table.
    Table,
    /// JSON (stable schema).
    Json,
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// Run only this strategy (a name from the scenario, or a built-in kind); repeatable.
    #[arg(long = "strategy", value_name = "NAME")]
    pub strategies: Vec<String>,
    /// Seed, output format and trace.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Write a report (summary.json/md, timeseries.csv, charts, index.html) into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Overwrite an existing --trace file, or write into a non-empty --out directory.
    #[arg(long)]
    pub force: bool,
    /// Run the strategies on N threads (default: every core); results do not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Print the table in one block of every column, however wide (default: blocks that fit
    /// 120 columns).
    #[arg(long)]
    pub wide: bool,
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    use clap::{CommandFactory, FromArgMatches};
    // `run --help` lists the built-in strategies and their defaults, from the code itself.
    let strategies = format!(
        "Built-in strategies (usable with --strategy even when the scenario does not list them):\n{}",
        crate::strategy::builtins_help()
    );
    let command = Cli::command().mut_subcommand("run", |c| c.after_help(strategies));
    let cli = match command.try_get_matches().and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match execute(cli) {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("error: {msg}");
            2
        }
    }
}

fn execute(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Run(a) => run_cmd(a),
        Command::Sweep(a) => sweep_cmd(a),
        Command::Compare(a) => compare_cmd(a),
        Command::Serve(a) => serve_cmd(a),
        Command::Keys(a) => keys_cmd(a),
        Command::Cert(a) => cert_cmd(a),
        Command::Drive(a) => drive_cmd(a),
        Command::Proxy(a) => proxy_cmd(a),
        Command::Init(a) => init_cmd(a),
        Command::Limits(LimitsCommand::Import(a)) => limits_import_cmd(a),
        Command::Reference => print(&crate::scenario::reference::markdown()),
        Command::Strategies => print(&format!(
            "Built-in strategies ([[strategies]] kind = NAME, or --strategy NAME):\n{}",
            crate::strategy::builtins_help()
        )),
    }
}

fn init_cmd(a: InitArgs) -> Result<(), String> {
    let name = match a.template {
        Template::Dubbing => "dubbing",
        Template::Chat => "chat",
        Template::Batch => "batch",
    };
    let (_, about, text) = crate::scenario::TEMPLATES
        .iter()
        .find(|(n, _, _)| *n == name)
        .expect("every template is listed");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .create_new(!a.force)
        .open(&a.file)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!(
                "init: {} already exists; pass --force to overwrite it",
                a.file.display()
            ),
            _ => format!("init: cannot create {}: {e}", a.file.display()),
        })?;
    let mut out = BufWriter::new(file);
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| format!("init: cannot write {}: {e}", a.file.display()))?;
    eprintln!(
        "wrote {} ({about}); edit it, then: flux-sim run {}",
        a.file.display(),
        a.file.display()
    );
    Ok(())
}

/// An import error as the command line shows it: naming the flag that carried the value.
fn import_error(e: crate::scenario::quota_dump::ImportError) -> String {
    use crate::scenario::quota_dump::ImportError;
    match e {
        ImportError::Dump(m) => m,
        ImportError::Tier(m) => format!("--tier: {m}"),
        ImportError::Model(m) => format!("--model {m}"),
    }
}

fn limits_import_cmd(a: LimitsImportArgs) -> Result<(), String> {
    use crate::scenario::quota_dump::{import, DumpInput, Options};
    let n = a.files.len();
    if !a.projects.is_empty() && a.projects.len() != n {
        return Err(format!(
            "--project: given {} times for {n} files; give it once per file, in order, or not at all",
            a.projects.len()
        ));
    }
    if a.tiers.len() > 1 && a.tiers.len() != n {
        return Err(format!(
            "--tier: given {} times for {n} files; give it once (every file) or once per file, in order",
            a.tiers.len()
        ));
    }
    let mut families = Vec::new();
    for f in &a.families {
        match f.split_once('=') {
            Some((id, fam)) if !id.trim().is_empty() && !fam.trim().is_empty() => {
                families.push((id.trim().to_string(), fam.trim().to_string()))
            }
            _ => {
                return Err(format!(
                    "--family {f:?}: expected ID=FAMILY, e.g. gemini-3.1-flash-live-preview=gemini-3-flash-live"
                ))
            }
        }
    }
    let mut inputs = Vec::new();
    for (i, path) in a.files.iter().enumerate() {
        let text = crate::scenario::read_capped(path, 64 << 20, "quota dump").map_err(|e| e.0)?;
        inputs.push(DumpInput {
            label: path.display().to_string(),
            stem: path
                .file_stem()
                .map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned()),
            text,
            project: a.projects.get(i).cloned(),
            tier: a.tiers.get(if a.tiers.len() == 1 { 0 } else { i }).copied(),
        });
    }
    let sources: Vec<String> = inputs.iter().map(|f| f.label.clone()).collect();
    let mut opts = Options {
        families,
        live: a.live.clone(),
        models: a.models.clone(),
    };
    let (Some(base_path), Some(out)) = (&a.scenario, &a.out) else {
        let imported = import(&inputs, &opts).map_err(import_error)?;
        for n in &imported.notes {
            eprintln!("note: {n}");
        }
        return print(&imported.tables(&sources).to_string());
    };
    let base_text = crate::scenario::read_capped(base_path, 16 << 20, "scenario").map_err(|e| e.0)?;
    let base = Scenario::parse(&base_text, base_path).map_err(|e| format!("--scenario: {e}"))?;
    if opts.models.is_empty() {
        // BASE's models that the dumps have (a real dump lists dozens).
        let all = import(&inputs, &opts).map_err(import_error)?;
        let family = |m: &str| {
            crate::scenario::quota_dump::FAMILIES
                .iter()
                .map(|(i, f)| (i.to_string(), f.to_string()))
                .chain(opts.families.iter().cloned())
                .rev()
                .find(|(i, _)| i == m)
                .map_or_else(|| m.to_string(), |(_, f)| f)
        };
        for m in &base.models {
            if all.models.iter().any(|x| x.name == family(&m.name)) {
                opts.models.push(m.name.clone());
            } else {
                eprintln!(
                    "note: model {:?} of {} is not in the dumps: its limits are kept",
                    m.name,
                    base_path.display()
                );
            }
        }
        let left: Vec<&str> = all
            .models
            .iter()
            .map(|m| m.name.as_str())
            .filter(|n| !opts.models.iter().any(|m| family(m) == *n))
            .collect();
        if !left.is_empty() && !opts.models.is_empty() {
            eprintln!(
                "note: the dumps' models {left:?} are not in {}: not added (--model NAME adds one)",
                base_path.display()
            );
        }
        if opts.models.is_empty() {
            return Err(format!(
                "--scenario: none of {}'s models {:?} is in the dumps, which have {:?}; pass --model NAME to add one",
                base_path.display(),
                base.models.iter().map(|m| &m.name).collect::<Vec<_>>(),
                all.models.iter().map(|m| &m.name).collect::<Vec<_>>()
            ));
        }
    }
    let imported = import(&inputs, &opts).map_err(import_error)?;
    for n in &imported.notes {
        eprintln!("note: {n}");
    }
    let mut doc: toml_edit::DocumentMut = base_text
        .parse()
        .map_err(|e| format!("--scenario {}: {e}", base_path.display()))?;
    let names: Vec<String> = base.topology.projects.iter().map(|p| p.name.clone()).collect();
    let said = imported
        .apply(&mut doc, &names, &sources)
        .map_err(|e| format!("--scenario {}: {e}", base_path.display()))?;
    for s in said {
        eprintln!("note: {s}");
    }
    let text = doc.to_string();
    // The result must load: check it before writing anything.
    Scenario::parse(&text, out).map_err(|e| format!("the scenario written would not load: {e}"))?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .create_new(!a.force)
        .open(out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!("--out: {} already exists; pass --force to overwrite it", out.display())
            }
            _ => format!("--out: cannot create {}: {e}", out.display()),
        })?;
    let mut w = BufWriter::new(file);
    w.write_all(text.as_bytes())
        .and_then(|_| w.flush())
        .map_err(|e| format!("--out: cannot write {}: {e}", out.display()))?;
    eprintln!(
        "wrote {} ({} models, {} projects imported); run it: flux-sim run {}",
        out.display(),
        imported.models.len(),
        imported.projects.len(),
        out.display()
    );
    Ok(())
}

fn compare_cmd(a: CompareArgs) -> Result<(), String> {
    let threads = a.threads.map_or_else(crate::sim::run::default_threads, |n| n as usize);
    let mut runs = Vec::new();
    for path in &a.scenarios {
        let scenario = Scenario::load(path).map_err(|e| e.to_string())?;
        let seed = a.seed.unwrap_or(scenario.seed);
        let run = crate::sim::compare::compare(&scenario, seed, threads);
        if let Some(livelock) = run.0.livelock() {
            return Err(format!("{}: {livelock}", path.display()));
        }
        runs.push(run);
    }
    match a.format {
        CompareFormat::Markdown => print(&crate::report::comparison(&runs)),
        CompareFormat::Json => {
            let all: Vec<String> = runs.iter().map(|(r, _)| crate::report::to_json(r)).collect();
            print(&format!(
                "[{}]\n",
                all.iter().map(|j| j.trim_end()).collect::<Vec<_>>().join(",\n")
            ))
        }
    }
}

fn run_cmd(a: RunArgs) -> Result<(), String> {
    let scenario = Scenario::load(&a.scenario).map_err(|e| e.to_string())?;
    if let crate::core::workload::Arrivals::Trace { rows, path } = &scenario.workload.arrivals {
        // A default that changes answers is stated where it acts.
        eprintln!(
            "note: {} replays {} requests; the run lasts {} (workload.duration, or the last arrival + workload.tail, {} unless set)",
            path.display(),
            rows.len(),
            crate::core::time::format_duration(scenario.workload.duration),
            crate::core::time::format_duration(crate::scenario::DEFAULT_TAIL)
        );
    }
    let strategies = select_strategies(&scenario, &a.strategies).map_err(|e| format!("--strategy: {e}"))?;
    let seed = a.output.seed.unwrap_or(scenario.seed);
    let threads = a.threads.map_or_else(crate::sim::run::default_threads, |n| n as usize);
    if let (Some(dir), Some(trace)) = (&a.out, &a.output.trace) {
        // The report would overwrite the trace (or the trace a report file) without a word.
        let (d, t) = (
            std::path::absolute(dir).map_err(|e| format!("--out: {e}"))?,
            std::path::absolute(trace).map_err(|e| format!("--trace: {e}"))?,
        );
        if t.starts_with(&d) {
            return Err(format!(
                "--trace {} is inside --out {}, where the report writes; put the trace elsewhere",
                trace.display(),
                dir.display()
            ));
        }
    }
    if let Some(dir) = &a.out {
        prepare_out(dir, a.force)?;
    }
    let details = a.out.is_some();
    // Ctrl-C stops the strategies where they are and reports what was simulated; a progress
    // bar shows on a terminal.
    let control = crate::sim::engine::Control::default();
    let total = crate::sim::engine::Control::total(&scenario, strategies.len());
    // Told when the run ends, so the watcher exits at once rather than at its next tick.
    let finished = tokio::sync::Notify::new();
    let (result, details) = std::thread::scope(|scope| {
        scope.spawn(|| watch(&control, &finished, total, PROGRESS_TICK));
        let r = match &a.output.trace {
            None => Ok(run_detailed(
                &scenario,
                &strategies,
                seed,
                RunOptions {
                    trace: None,
                    threads,
                    details,
                    control: Some(&control),
                },
            )),
            Some(path) => TraceFile::create(path, a.force).and_then(|mut trace| {
                let mut sink =
                    |strategy: &str, rec: &crate::sim::engine::AttemptRecord| trace.write(&scenario, strategy, rec);
                let opts = RunOptions {
                    trace: Some(&mut sink),
                    threads,
                    details,
                    control: Some(&control),
                };
                let r = run_detailed(&scenario, &strategies, seed, opts);
                trace.finish().map(|_| r)
            }),
        };
        finished.notify_one();
        r
    })?;
    if control.stop.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "flux-sim run: interrupted; each row covers the time simulated until then ({} s at most)",
            result.simulated_seconds
        );
    }
    if let Some(livelock) = result.livelock() {
        return Err(format!("{}: {livelock}", a.scenario.display()));
    }
    if let Some(dir) = &a.out {
        crate::report::write_report(dir, &scenario, &strategies, &result, &details)
            .map_err(|e| format!("--out: {e}"))?;
    }
    print(&match a.output.format {
        Format::Table => crate::report::to_table_width(&result, a.wide),
        Format::Json => to_json(&result),
    })
}

/// A progress bar of `total` units drawn with `template` on a terminal; hidden otherwise.
fn progress_bar(total: u64, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(total);
    b.set_style(indicatif::ProgressStyle::with_template(template).expect("valid template"));
    b
}

/// How often `run`'s progress bar moves.
const PROGRESS_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Until `finished` is notified: sets `control.stop` on Ctrl-C, and shows a progress bar of
/// `total` units on a terminal, moved every `tick`. It returns as soon as it is notified, not
/// at its next tick: the process waits for it before exiting.
fn watch(control: &crate::sim::engine::Control, finished: &tokio::sync::Notify, total: u64, tick: std::time::Duration) {
    use std::sync::atomic::Ordering::Relaxed;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let bar = progress_bar(
        total,
        "{bar:40} {percent}% simulated, {elapsed} elapsed, about {eta} left (Ctrl-C stops and reports)",
    );
    let Ok(runtime) = runtime else { return };
    runtime.block_on(async {
        let ctrl_c = tokio::signal::ctrl_c();
        // A notification sent before this waits is kept (notify_one stores a permit).
        let done = finished.notified();
        tokio::pin!(ctrl_c, done);
        loop {
            tokio::select! {
                _ = &mut ctrl_c => {
                    control.stop.store(true, Relaxed);
                    break;
                }
                _ = &mut done => break,
                _ = tokio::time::sleep(tick) => {
                    bar.set_position(control.progress.load(Relaxed).min(total));
                }
            }
        }
    });
    bar.finish_and_clear();
}

/// A `--trace` file: one JSON line per attempt; the first write error is kept for the end.
struct TraceFile {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    failed: Option<std::io::Error>,
}

impl TraceFile {
    /// Creates `path`, refusing to replace an existing file unless `force`.
    fn create(path: &std::path::Path, force: bool) -> Result<TraceFile, String> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .create_new(!force)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => format!(
                    "--trace: {} already exists; pass --force to overwrite it",
                    path.display()
                ),
                _ => format!("--trace: cannot create {}: {e}", path.display()),
            })?;
        Ok(TraceFile {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            failed: None,
        })
    }

    fn write(&mut self, scenario: &Scenario, strategy: &str, rec: &crate::sim::engine::AttemptRecord) {
        if self.failed.is_none() {
            if let Err(e) = writeln!(self.out, "{}", trace_line(scenario, strategy, rec)) {
                self.failed = Some(e);
            }
        }
    }

    /// Removes the file (nothing was traced).
    fn discard(self) {
        drop(self.out);
        let _ = std::fs::remove_file(&self.path);
    }

    fn finish(mut self) -> Result<(), String> {
        match self.failed.take().map_or_else(|| self.out.flush(), Err) {
            Ok(()) => Ok(()),
            Err(e) => Err(format!("--trace: cannot write {}: {e}", self.path.display())),
        }
    }
}

/// Prints `text` on stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("cannot write to stdout: {e}")),
        _ => Ok(()),
    }
}

/// The report directory of `--out`, refused when not empty unless `--force`.
fn prepare_out(dir: &std::path::Path, force: bool) -> Result<(), String> {
    crate::report::prepare_dir(dir, force).map_err(|e| match e {
        crate::report::DirError::NotEmpty => {
            format!("--out: {} is not empty; pass --force to write into it", dir.display())
        }
        crate::report::DirError::Unusable(m) => format!("--out: {m}"),
    })
}

fn sweep_cmd(a: SweepArgs) -> Result<(), String> {
    let settings = a
        .settings
        .iter()
        .map(|s| Setting::parse(s).map_err(|e| format!("--set: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let grid = Grid::load(&a.scenario, settings, a.max_points).map_err(|e| match e {
        GridError::Scenario(m) => m,
        GridError::Setting(m) => format!("--set: {m}"),
        GridError::TooManyPoints { points, sizes, most } => format!(
            "--set: the grid has {points} points ({sizes}), more than --max-points {most}; \
             sweep fewer values, or raise --max-points"
        ),
    })?;
    // Every error of a sweep over valid settings is about the strategies named.
    let sweep = Sweep::new(grid, a.strategies).map_err(|e| format!("--strategy: {e}"))?;
    prepare_out(&a.out, a.force)?;
    let total = sweep.grid.len() as u64;
    let bar = progress_bar(
        total,
        "{bar:40} {pos}/{len} grid points, {elapsed} elapsed, about {eta} left",
    );
    let threads = a.threads.map_or_else(crate::sim::run::default_threads, |n| n as usize);
    let points = sweep.run(threads, &|| bar.inc(1));
    bar.finish_and_clear();
    let answer = crate::report::sweep::answer(&sweep, &points);
    crate::report::sweep::write_sweep(&sweep, &a.out, &points, &answer).map_err(|e| format!("--out: {e}"))?;
    print(&format!(
        "{} grid points; sweep.csv, charts and index.html in {}\n{answer}",
        points.len(),
        a.out.display()
    ))
}

/// The multi-threaded tokio runtime of `serve` and `drive` (the proxy has its own:
/// [`crate::net::proxy::runtime`]).
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Listens on `--bind`, and the address it got (a port of 0 picks a free one).
async fn bind(at: std::net::SocketAddr) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), String> {
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .map_err(|e| format!("--bind {at}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((listener, addr))
}

fn serve_cmd(a: ServeArgs) -> Result<(), String> {
    crate::net::http::return_freed_memory();
    let mut scenario = Scenario::load(&a.scenario).map_err(|e| e.to_string())?;
    restart(&mut scenario, a.start);
    let tls = tls_flags(&a.tls_cert, &a.tls_key)?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let (listener, addr) = bind(a.bind).await?;
        let keys = scenario.topology.keys.len();
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!(
            "flux-sim serve: {} on {scheme}://{addr} (time scale {}, {keys} keys: `flux-sim keys {}` lists them); Ctrl-C stops",
            scenario.name,
            a.time_scale,
            a.scenario.display()
        );
        crate::net::serve::serve_tls(listener, scenario, a.time_scale, tls, crate::net::http::shutdown_signal())
            .await
            .map_err(|e| format!("server failed: {e}"))
    })
}

/// The TLS configuration `--tls-cert`/`--tls-key` give (`serve`, `proxy`), or none; an error
/// names the flag whose file is at fault.
fn tls_flags(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
    let (Some(c), Some(k)) = (cert, key) else {
        return Ok(None);
    };
    crate::net::tls::server_config(c, k).map(Some).map_err(|e| {
        use crate::net::tls::TlsFile;
        let flag = match e.file {
            TlsFile::Cert => "--tls-cert",
            TlsFile::Key => "--tls-key",
            TlsFile::Pair => "--tls-cert/--tls-key:",
        };
        format!("{flag} {}", e.message)
    })
}

fn cert_cmd(a: CertArgs) -> Result<(), String> {
    if !a.force {
        let files = [crate::net::tls::CERT_FILE, crate::net::tls::KEY_FILE].map(|f| a.dir.join(f));
        if let Some(p) = files.iter().find(|p| p.exists()) {
            return Err(format!("{} exists; pass --force to replace it", p.display()));
        }
    }
    let (cert, key) = crate::net::tls::write_self_signed(&a.dir, a.force)?;
    print(&format!(
        "wrote {} and {} (self-signed for 127.0.0.1, ::1 and localhost)\n\
         serve with: flux-sim serve SCENARIO --tls-cert {} --tls-key {}\n\
         trust it in Python clients with: SSL_CERT_FILE={}\n",
        cert.display(),
        key.display(),
        cert.display(),
        key.display(),
        cert.display()
    ))
}

fn keys_cmd(a: KeysArgs) -> Result<(), String> {
    let scenario = Scenario::load(&a.scenario).map_err(|e| e.to_string())?;
    let mut out = String::from("# key\tproject\taccount\tvalid\n");
    for k in &scenario.topology.keys {
        let p = &scenario.topology.projects[k.project];
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            k.value, p.name, scenario.topology.accounts[p.account].name, k.valid
        ));
    }
    print(&out)
}

/// The environment variable holding the token clients send instead of an API key.
pub const PROXY_TOKEN_ENV: &str = "FLUX_PROXY_TOKEN";

fn proxy_cmd(a: ProxyArgs) -> Result<(), String> {
    crate::net::http::return_freed_memory();
    let token = std::env::var(PROXY_TOKEN_ENV)
        .map_err(|_| format!("set {PROXY_TOKEN_ENV} to the token your clients will send as their API key"))?;
    if token.trim().is_empty() {
        return Err(format!("{PROXY_TOKEN_ENV} is empty"));
    }
    let mut scenario = Scenario::load(&a.config).map_err(|e| e.to_string())?;
    if let Some(path) = &a.keys {
        let text = crate::scenario::read_capped(path, 16 << 20, "keys file").map_err(|e| e.0)?;
        scenario.topology.keys = crate::scenario::keys_file(&text, &scenario.topology, |name| std::env::var(name).ok())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let specs =
        select_strategies(&scenario, std::slice::from_ref(&a.strategy)).map_err(|e| format!("--strategy: {e}"))?;
    let spec = specs.into_iter().next().expect("one name, one strategy");
    let tls = tls_flags(&a.tls_cert, &a.tls_key)?;
    let opts = crate::net::proxy::ProxyOptions {
        upstream: a.upstream.clone(),
        token,
        deadline: a.deadline,
        queue: a.queue as usize,
        ledger: a.ledger.clone(),
        margin: a.margin.as_nanos().min(u64::MAX as u128) as u64,
        allow_eviction: a.ledger_allow_eviction,
    };
    let runtime = crate::net::proxy::runtime().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let (listener, addr) = bind(a.bind).await?;
        let (name, keys, projects) = (
            spec.name.clone(),
            scenario.topology.keys.len(),
            scenario.topology.projects.len(),
        );
        // The banner comes once the proxy is ready (its ledger reached, its options checked),
        // so that an error is the only thing printed when it cannot start.
        // The errors below cli.rs name the value; the flag that gave it is named here.
        let (app, closing) = crate::net::proxy::router_and_closing(scenario, spec, &opts).await.map_err(|e| {
            if e.starts_with("upstream URL") {
                format!("--upstream: {e}")
            } else if e.starts_with("Redis URL") && e.contains("may evict") {
                format!("--ledger: {e} (or pass --ledger-allow-eviction to start anyway)")
            } else if e.starts_with("Redis URL") {
                format!("--ledger: {e}")
            } else {
                e
            }
        })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!(
            "flux-sim proxy: {name} on {keys} keys in {projects} projects, forwarding to {}; clients use {scheme}://{addr} with their key set to ${PROXY_TOKEN_ENV}; Ctrl-C stops",
            crate::core::topology::mask_secrets(&a.upstream)
        );
        let served = crate::net::proxy::serve_router(listener, app, tls, crate::net::http::shutdown_signal()).await;
        // Slots the shared ledger admitted in advance and not used go back to the fleet.
        closing.close().await;
        served
    })
}

fn drive_cmd(a: DriveArgs) -> Result<(), String> {
    use crate::net::drive::{beside_simulation, cut, drive, DriveOptions};
    use crate::strategy::Param;
    // A bad --endpoint is refused before anything is printed or created.
    crate::net::drive::check_endpoint(&a.endpoint).map_err(|e| format!("--endpoint {e}"))?;
    let mut scenario = Scenario::load(&a.scenario).map_err(|e| e.to_string())?;
    restart(&mut scenario, a.start);
    let names: Vec<String> = a.strategy.iter().cloned().collect();
    let mut specs = select_strategies(&scenario, &names).map_err(|e| format!("--strategy: {e}"))?;
    if specs.len() != 1 {
        let offered: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        return Err(format!(
            "drive runs one strategy at a time; pass --strategy with one of {offered:?}"
        ));
    }
    let mut spec = specs.remove(0);
    let scale = a.time_scale;
    let to_virtual = |d: std::time::Duration| (d.as_nanos() * scale as u128).min(u64::MAX as u128) as u64;
    if let Some(m) = a.margin {
        if !spec.kind.takes(Param::Margin) {
            return Err(format!(
                "--margin: only {} plan cooldowns; {:?} is {}",
                crate::strategy::kind_names_taking(Param::Margin),
                spec.name,
                spec.kind.name()
            ));
        }
        spec.kind.params.margin = to_virtual(m);
    }
    if let Some(d) = a.duration {
        if d.is_zero() {
            return Err("--duration: must be positive".into());
        }
        cut(&mut scenario, to_virtual(d));
    }
    let runtime = runtime()?;
    // Nothing is said before the endpoint is known to answer (and no trace file is made).
    runtime
        .block_on(crate::net::drive::reachable(&scenario, &a.endpoint))
        .map_err(|e| format!("--endpoint {e}"))?;
    let seed = a.output.seed.unwrap_or(scenario.seed);
    let mut trace = a
        .output
        .trace
        .as_deref()
        .map(|p| TraceFile::create(p, a.force))
        .transpose()?;
    let opts = DriveOptions {
        endpoint: a.endpoint.clone(),
        time_scale: scale,
        seed,
    };
    eprintln!(
        "flux-sim drive: {} with {} against {} (time scale {scale}, up to {} of wall-clock time); Ctrl-C stops and reports",
        scenario.name,
        spec.name,
        crate::core::topology::mask_secrets(&a.endpoint),
        crate::core::time::format_duration(scenario.horizon / scale)
    );
    if a.fresh {
        if let Err(e) = runtime.block_on(crate::net::drive::reset_endpoint(&a.endpoint)) {
            if let Some(t) = trace {
                t.discard();
            }
            return Err(format!("--fresh: {e}"));
        }
    }
    let driven = {
        let mut sink = |rec: &crate::sim::engine::AttemptRecord| {
            if let Some(t) = trace.as_mut() {
                t.write(&scenario, &spec.name, rec);
            }
        };
        runtime.block_on(drive(
            &scenario,
            &spec,
            &opts,
            Some(&mut sink),
            crate::net::http::shutdown_signal(),
        ))
    };
    let driven = match driven {
        Ok(d) => d,
        Err(e) => {
            // Nothing was sent: leave no empty trace behind.
            if let Some(t) = trace {
                t.discard();
            }
            return Err(e);
        }
    };
    if let Some(t) = trace {
        t.finish()?;
    }
    if let Some(e) = &driven.first_transport_error {
        eprintln!(
            "flux-sim drive: {} attempts got no HTTP response (counted as errors and retried like a 503); the first: {e}",
            driven.transport_errors
        );
    }
    if driven.interrupted {
        eprintln!("flux-sim drive: interrupted; both rows cover the time driven");
    }
    let result = beside_simulation(&scenario, &spec, seed, driven);
    print(&match a.output.format {
        Format::Table => to_table(&result),
        Format::Json => to_json(&result),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process waits for `run`'s watcher before exiting: told the run is over, it must
    /// return at once, not at its next tick (here an hour away; the old 100 ms poll held every
    /// `run` of dubbing.toml ten times longer than its simulation).
    #[test]
    fn the_watcher_returns_when_told_not_at_its_next_tick() {
        let control = crate::sim::engine::Control::default();
        let finished = tokio::sync::Notify::new();
        std::thread::scope(|scope| {
            let watcher = scope.spawn(|| watch(&control, &finished, 10, std::time::Duration::from_secs(3600)));
            finished.notify_one();
            watcher.join().expect("the watcher returns");
        });
        assert!(!control.stop.load(std::sync::atomic::Ordering::Relaxed));
    }
}
