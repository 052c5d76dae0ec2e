//! `index.html`: one self-contained page (works offline) with the table and every chart
//! inlined as SVG, each linking to its PNG and SVG files.

use super::markdown::{summary_cells, SUMMARY_HEADER};
use crate::sim::metrics::RunResult;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page; `charts` are (file stem, title, SVG text).
pub fn to_html(r: &RunResult, charts: &[(&str, &str, String)]) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str(&format!("<title>flux-sim: {}</title>\n", escape(&r.scenario)));
    h.push_str("<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;font-size:14px}\
                th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}\
                figure{margin:2em 0}svg{max-width:100%;height:auto}</style>\n</head>\n<body>\n");
    h.push_str(&format!(
        "<h1>{}</h1>\n<p>seed {}, {} s simulated</p>\n<table>\n<tr>",
        escape(&r.scenario),
        r.seed,
        r.simulated_seconds
    ));
    for head in SUMMARY_HEADER {
        h.push_str(&format!("<th>{}</th>", escape(head)));
    }
    h.push_str("</tr>\n");
    for x in &r.results {
        h.push_str("<tr>");
        for cell in summary_cells(x) {
            h.push_str(&format!("<td>{}</td>", escape(&cell)));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    for (stem, title, svg) in charts {
        let body = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
        h.push_str(&format!(
            "<figure id=\"{stem}\">\n<figcaption><b>{}</b> (<a href=\"{stem}.png\">{stem}.png</a>, <a href=\"{stem}.svg\">{stem}.svg</a>)</figcaption>\n{body}\n</figure>\n",
            escape(title)
        ));
    }
    h.push_str("</body>\n</html>\n");
    h
}
