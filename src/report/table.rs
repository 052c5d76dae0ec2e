//! The aligned comparison table printed by `run`: the verdict first, then the columns,
//! wrapped into blocks that fit a terminal of `WIDTH` columns (each block repeats the
//! strategy column), or in one wide block.

use super::markdown::{retry_line, summary_cells, verdict};
use crate::sim::metrics::RunResult;

/// The terminal width the table fits unless asked for wide output.
pub const WIDTH: usize = 120;

/// The table in blocks no wider than `WIDTH` columns.
pub fn to_table(r: &RunResult) -> String {
    to_table_width(r, false)
}

/// The table: the verdict, one row per strategy (in one block when `wide`, else in blocks no
/// wider than `WIDTH`), then lines explaining the columns.
pub fn to_table_width(r: &RunResult, wide: bool) -> String {
    let header = [
        "strategy",
        "done",
        "failed",
        "unserv",
        "pending",
        "429s",
        "rpm",
        "tpm",
        "rpd",
        "tpd",
        "conc",
        "errors",
        "attempts",
        "done/min",
        "bound/min",
        "eff",
        "wait p50",
        "wait p99",
        "lat p50",
        "lat p99",
        "makespan",
        "ref done",
        "ref pace",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for x in &r.results {
        let mut row = summary_cells(x);
        for cell in &mut row[20..] {
            if cell == "–" {
                *cell = "-".into();
            }
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let fleet = r.fleet.as_deref().map_or(String::new(), |f| format!("; {f}"));
    let mut out = format!(
        "scenario {} (seed {}, {:.0} s simulated{fleet})\n",
        r.scenario, r.seed, r.simulated_seconds
    );
    for line in verdict(r) {
        out.push_str(&wrap(&line, if wide { usize::MAX } else { WIDTH }));
    }
    // Blocks of columns: each starts with the strategy column and takes columns while it fits.
    let mut blocks: Vec<Vec<usize>> = Vec::new();
    let mut width = usize::MAX;
    // Columns no row has a value in (makespan and the reference's shares of an open
    // workload) are left out unless wide.
    let empty = |c: usize| c >= 20 && rows[1..].iter().all(|r| r[c] == "-");
    for c in (1..header.len()).filter(|&c| wide || !empty(c)) {
        if !blocks.is_empty() && (wide || width.saturating_add(2 + widths[c]) <= WIDTH) {
            blocks.last_mut().expect("started").push(c);
            width += 2 + widths[c];
        } else {
            blocks.push(vec![0, c]);
            width = widths[0] + 2 + widths[c];
        }
    }
    for (i, block) in blocks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for row in &rows {
            let cells: Vec<String> = block
                .iter()
                .map(|&c| {
                    let v = &row[c];
                    if c == 0 {
                        format!("{v:<w$}", w = widths[c])
                    } else {
                        format!("{v:>w$}", w = widths[c])
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
    }
    out.push_str(&wrap(&retry_line(r), if wide { usize::MAX } else { WIDTH }));
    out.push_str(
        "429s = rate-limited responses (rpm/tpm/rpd/tpd/conc: by violated dimension); errors = other error responses;\n",
    );
    out.push_str(
        "done/min over the span (a closed batch: at least its shortest possible makespan; the horizon if it gave up on work);\n",
    );
    out.push_str("bound = the most a strategy with its models could complete; eff = done/min / bound/min; wait = arrival to the send;\n");
    out.push_str(
        "ref done/pace = completions/makespan as a share of the clairvoyant reference schedule (- where none).\n",
    );
    if r.results.iter().any(|x| x.sessions.is_some()) {
        out.push_str("Live sessions: done = sessions the client closed; wait = time waiting to connect.\n");
        for x in &r.results {
            if let Some(s) = &x.sessions {
                let used = s
                    .slot_utilisation
                    .map_or(String::new(), |u| format!(", slots {:.0}% used", u * 100.0));
                out.push_str(&format!(
                    "  {}: {} closed 1011 (quota), {} ended 1008 (lifetime), {} ended at the length cap{used}\n",
                    x.strategy, s.closes_1011, s.ends_1008, s.ends_cap
                ));
            }
        }
    }
    out
}

/// `text` broken at spaces into lines of at most `width` columns (a longer word stays whole),
/// each ending with a line break.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}
