//! `index.html`: one self-contained page (works offline) with the table and every chart
//! inlined as SVG, each linking to its PNG and SVG files.

use super::markdown::{human_ms, retry_line, summary_cells, verdict, NOTES, RATES_FROM, SUMMARY_HEADER};
use crate::sim::metrics::RunResult;

/// Text made safe for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The start of a page, up to and including `<body>`: the style keeps every table and chart
/// within a 1280-pixel window.
pub fn page_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>flux-sim: {}</title>\n\
         <style>body{{font-family:sans-serif;margin:1.5em auto;max-width:1180px;padding:0 1em}}\
         table{{border-collapse:collapse;font-size:14px;margin:0.5em 0}}\
         th,td{{border:1px solid #ccc;padding:3px 7px;text-align:right}}th:first-child,td:first-child{{text-align:left}}\
         p.notes{{font-size:13px;color:#333;max-width:1100px}}figure{{margin:2em 0}}svg{{max-width:100%;height:auto}}\
         pre{{font-size:14px}}</style>\n</head>\n<body>\n",
        escape(title)
    )
}

/// One chart inlined as SVG, with links to its PNG and SVG files.
pub fn figure(stem: &str, title: &str, svg: &str) -> String {
    let body = svg.find("<svg").map_or(svg, |i| &svg[i..]);
    format!(
        "<figure id=\"{stem}\">\n<figcaption><b>{}</b> (<a href=\"{stem}.png\">{stem}.png</a>, <a href=\"{stem}.svg\">{stem}.svg</a>)</figcaption>\n{body}\n</figure>\n",
        escape(title)
    )
}

/// One HTML table of the columns `cols` of the summary.
fn table(r: &RunResult, cols: std::ops::Range<usize>) -> String {
    let mut h = String::from("<table>\n<tr>");
    for c in std::iter::once(0).chain(cols.clone()) {
        h.push_str(&format!("<th>{}</th>", escape(SUMMARY_HEADER[c])));
    }
    h.push_str("</tr>\n");
    for x in &r.results {
        let cells = summary_cells(x);
        h.push_str("<tr>");
        for c in std::iter::once(0).chain(cols.clone()) {
            h.push_str(&format!("<td>{}</td>", escape(&cells[c])));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

/// The page; `charts` are (file stem, title, SVG text). The summary is split in two tables
/// (how requests ended; rates and times) so that it fits a 1280-pixel window.
pub fn to_html(r: &RunResult, charts: &[(&str, &str, String)]) -> String {
    let mut h = page_head(&r.scenario);
    h.push_str(&format!(
        "<h1>{}</h1>\n<p>seed {}, {} simulated{}</p>\n",
        escape(&r.scenario),
        r.seed,
        human_ms(r.simulated_seconds * 1000.0),
        r.fleet.as_deref().map_or(String::new(), |f| format!("; {}", escape(f)))
    ));
    for (i, line) in verdict(r).iter().enumerate() {
        let line = escape(line);
        if i == 0 {
            h.push_str(&format!("<p class=\"verdict\"><b>{line}</b></p>\n"));
        } else {
            h.push_str(&format!("<p class=\"notes\">{line}</p>\n"));
        }
    }
    h.push_str("<h2>How requests ended</h2>\n");
    h.push_str(&table(r, 1..RATES_FROM));
    h.push_str("<h2>Rates and times</h2>\n");
    h.push_str(&table(r, RATES_FROM..SUMMARY_HEADER.len()));
    h.push_str("<p class=\"notes\">");
    h.push_str(&escape(&retry_line(r)));
    h.push_str("<br>\n");
    h.push_str(&NOTES.iter().map(|n| escape(n)).collect::<Vec<_>>().join("<br>\n"));
    h.push_str("</p>\n");
    for (stem, title, svg) in charts {
        h.push_str(&figure(stem, title, svg));
    }
    h.push_str("</body>\n</html>\n");
    h
}
