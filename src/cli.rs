//! The command line (`flux-sim run …`): parsing, running, printing; every user error is one
//! line on stderr and exit code 2.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::export::{to_json, to_table, trace_line};
use crate::run::{run_detailed, select_strategies};
use crate::scenario::Scenario;

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
    /// Serve the scenario's mock Gemini API over HTTP (real time).
    Serve(ServeArgs),
    /// Print every key string a client may use with `serve`.
    Keys(KeysArgs),
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
    /// inclusive) or v1,v2,...; e.g. topology.accounts[0].projects=1..10, workload.rate=10,20,40.
    /// Repeat for a grid.
    #[arg(long = "set", value_name = "PATH=VALUES", required = true)]
    pub settings: Vec<String>,
    /// Directory for sweep.csv and the charts.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into a non-empty --out directory.
    #[arg(long)]
    pub force: bool,
}

/// Output format of `run`.
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
    /// Seed (default: the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write one JSON line per attempt to FILE.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write a report (summary.json/md, timeseries.csv, charts, index.html) into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Overwrite an existing --trace file, or write into a non-empty --out directory.
    #[arg(long)]
    pub force: bool,
    /// Run the strategies on N threads (default: every core); results do not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
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
        Command::Serve(a) => serve_cmd(a),
        Command::Keys(a) => keys_cmd(a),
    }
}

fn run_cmd(a: RunArgs) -> Result<(), String> {
    let scenario = Scenario::load(&a.scenario).map_err(|e| e.to_string())?;
    let strategies = select_strategies(&scenario, &a.strategies)?;
    let seed = a.seed.unwrap_or(scenario.seed);
    let threads = a.threads.map_or_else(crate::run::default_threads, |n| n as usize);
    if let Some(dir) = &a.out {
        crate::report::prepare_dir(dir, a.force)?;
    }
    let details = a.out.is_some();
    let (result, details) = match &a.trace {
        None => run_detailed(&scenario, &strategies, seed, None, threads, details),
        Some(path) => {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .create_new(!a.force)
                .open(path)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => format!(
                        "--trace: {} already exists; pass --force to overwrite it",
                        path.display()
                    ),
                    _ => format!("--trace: cannot create {}: {e}", path.display()),
                })?;
            let mut w = BufWriter::new(file);
            let mut failed: Option<std::io::Error> = None;
            let mut sink = |strategy: &str, rec: &crate::engine::AttemptRecord| {
                if failed.is_none() {
                    if let Err(e) = writeln!(w, "{}", trace_line(&scenario, strategy, rec)) {
                        failed = Some(e);
                    }
                }
            };
            let r = run_detailed(&scenario, &strategies, seed, Some(&mut sink), threads, details);
            if let Some(e) = failed {
                return Err(format!("--trace: cannot write {}: {e}", path.display()));
            }
            w.flush()
                .map_err(|e| format!("--trace: cannot write {}: {e}", path.display()))?;
            r
        }
    };
    if let Some(dir) = &a.out {
        crate::report::write_report(dir, &result, &details)?;
    }
    let out = match a.format {
        Format::Table => to_table(&result),
        Format::Json => to_json(&result),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(format!("cannot write to stdout: {e}"));
        }
    }
    Ok(())
}

fn sweep_cmd(a: SweepArgs) -> Result<(), String> {
    use std::io::IsTerminal;
    let settings = a
        .settings
        .iter()
        .map(|s| crate::sweep::Setting::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let sweep = crate::sweep::Sweep::load(&a.scenario, settings)?;
    crate::report::prepare_dir(&a.out, a.force)?;
    let total = sweep.grid().len() as u64;
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} grid points, {elapsed} elapsed, about {eta} left",
            )
            .expect("valid template"),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let points = sweep.run(&|| bar.inc(1));
    bar.finish_and_clear();
    sweep.write_report(&a.out, &points)?;
    let first = &sweep.settings[0].path;
    let goal = if sweep.closed {
        "99% of the batch"
    } else {
        "99% of the demanded throughput"
    };
    let mut out = format!(
        "{} grid points; sweep.csv and charts in {}\nsmallest {first} reaching {goal} with zero 429s:\n",
        points.len(),
        a.out.display()
    );
    for (strategy, value) in sweep.smallest_meeting(&points) {
        out.push_str(&format!(
            "  {strategy:<20} {}\n",
            value.as_deref().unwrap_or("none in the sweep")
        ));
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

fn serve_cmd(a: ServeArgs) -> Result<(), String> {
    let scenario = Scenario::load(&a.scenario).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.bind).await.map_err(|e| format!("--bind {}: {e}", a.bind))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let keys = scenario.topology.keys.len();
        eprintln!(
            "flux-sim serve: {} on http://{addr} (time scale {}, {keys} keys: `flux-sim keys {}` lists them); Ctrl-C stops",
            scenario.name,
            a.time_scale,
            a.scenario.display()
        );
        crate::serve::serve(listener, scenario, a.time_scale, crate::serve::shutdown_signal()).await.map_err(|e| format!("server failed: {e}"))
    })
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
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}
