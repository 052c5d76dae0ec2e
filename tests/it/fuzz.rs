//! Property-based fuzzing of everything a stranger or a careless user feeds flux-sim: the
//! scenario loader (arbitrary TOML values in every field), the sweep's `--set` parser,
//! serve's handlers (arbitrary methods, paths, headers and bodies through the router, in
//! process) and drive's response reader. No input may panic, allocate without bound or hang;
//! every error must be one clear line (and never show a key whole).
//!
//! CI runs 256 cases per property; a long local run:
//! `PROPTEST_CASES=20000 cargo test --release --test fuzz`.

use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request};
use flux_sim::scenario::setting::Setting;
use flux_sim::scenario::Scenario;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tower::ServiceExt;

const BASE: &str = include_str!("../../scenarios/dubbing.toml");
const SECRET: &str = "AIzaSyFUZZ-secret-key-000000001";

/// Every field path of the scenario reference, as (table, name) with a concrete table path.
fn field_paths() -> Vec<Vec<String>> {
    let table_path = |t: &str| -> Vec<String> {
        match t {
            "" => vec![],
            "models.<name>" => vec!["models".into(), "gemini-2.5-flash".into()],
            "topology.accounts[]" => vec!["topology".into(), "accounts".into(), "#0".into()],
            "topology.project.<name>" => vec!["topology".into(), "project".into(), "studio-main-1".into()],
            "limits" => vec![
                "topology".into(),
                "project".into(),
                "studio-main-1".into(),
                "limits".into(),
                "gemini-2.5-flash".into(),
            ],
            "topology.keys[]" => vec!["topology".into(), "keys".into(), "#0".into()],
            "workload.models[]" => vec!["workload".into(), "models".into(), "#0".into()],
            "tokens" => vec!["workload".into(), "input_tokens".into()],
            "strategies[]" => vec!["strategies".into(), "#2".into()],
            "strategies[].retry" => vec!["strategies".into(), "#2".into(), "retry".into()],
            other => other.split('.').map(str::to_string).collect(),
        }
    };
    flux_sim::scenario::reference::FIELDS
        .iter()
        .map(|f| {
            let mut p = table_path(f.table);
            p.push(f.name.to_string());
            p
        })
        .collect()
}

fn any_toml() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        prop_oneof![Just(0i64), Just(-1), Just(1), Just(i64::MAX), Just(1_000_000_000_000)]
            .prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(1e-300),
            Just(1e300),
            Just(-0.0)
        ]
        .prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        "[a-z0-9_. -]{0,12}".prop_map(toml::Value::String),
        prop_oneof![
            Just("213503d".to_string()),
            Just("0s".to_string()),
            Just("1.5".to_string()),
            Just(SECRET.to_string()),
            Just("gemini-2.5-flash".to_string()),
            Just("fixed".to_string()),
            Just("open".to_string()),
            Just("\u{0}\u{7f}é".to_string()),
        ]
        .prop_map(toml::Value::String),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

/// Sets `path` in `doc` to `v`, creating tables on the way (`#i` indexes an array).
fn set(doc: &mut toml::Value, path: &[String], v: toml::Value) {
    let mut cur = doc;
    for (i, seg) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        if let Some(idx) = seg.strip_prefix('#') {
            let idx: usize = idx.parse().unwrap();
            let Some(arr) = cur.as_array_mut() else { return };
            while arr.len() <= idx {
                arr.push(toml::Value::Table(Default::default()));
            }
            if last {
                arr[idx] = v;
                return;
            }
            cur = &mut arr[idx];
        } else {
            let Some(t) = cur.as_table_mut() else { return };
            if last {
                t.insert(seg.clone(), v);
                return;
            }
            cur = t
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(Default::default()));
        }
    }
}

fn check_error(e: &str) -> Result<(), TestCaseError> {
    prop_assert!(e.starts_with("fuzz.toml"), "an error names the file: {e}");
    prop_assert!(!e.contains('\n'), "one line: {e}");
    prop_assert!(!e.contains("secret-key"), "a key was shown: {e}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/fuzz.txt"))),
        ..ProptestConfig::default()
    })]

    /// Up to four fields of dubbing.toml set to arbitrary TOML values: the loader answers
    /// with a scenario or one clear line, never a panic.
    #[test]
    fn the_scenario_loader_takes_anything(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any_toml()), 1..5)
    ) {
        let paths = field_paths();
        let mut doc: toml::Value = BASE.parse::<toml::Table>().map(toml::Value::Table).unwrap();
        for (i, v) in edits {
            set(&mut doc, &paths[i.index(paths.len())], v);
        }
        let Ok(text) = toml::to_string(&doc) else { return Ok(()) };
        if let Err(e) = Scenario::parse(&text, Path::new("fuzz.toml")) {
            check_error(&e.0)?;
        }
    }

    /// Arbitrary text in a scenario file (mutated TOML): no panic, one clear line.
    #[test]
    fn the_scenario_loader_takes_any_text(cut in 0usize..2000, junk in "[ -~\\n]{0,40}") {
        let at = cut.min(BASE.len());
        let at = (0..=at).rev().find(|&i| BASE.is_char_boundary(i)).unwrap();
        let text = format!("{}{junk}\nkey = \"{SECRET}\" x\n{}", &BASE[..at], &BASE[at..]);
        if let Err(e) = Scenario::parse(&text, Path::new("fuzz.toml")) {
            check_error(&e.0)?;
        }
    }

    /// The sweep's `--set` parser: anything parses or is refused with a one-line message (the
    /// CLI prefixes `--set`).
    #[test]
    fn the_set_parser_takes_anything(arg in "[a-z0-9_.\\[\\]\"=,-]{0,40}") {
        if let Err(e) = Setting::parse(&arg) {
            prop_assert!(!e.is_empty() && !e.contains('\n'), "{e}");
            prop_assert!(!e.starts_with("--"), "a flag below the CLI: {e}");
        }
    }

    /// drive's response reader: any status and any bytes give an outcome, never a panic.
    #[test]
    fn the_response_reader_takes_anything(
        status in prop_oneof![Just(200u16), Just(400), Just(429), Just(503), 100u16..600],
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            any_json().prop_map(|v| v.to_string().into_bytes()),
            any_json().prop_map(|v| serde_json::json!({"error": {"code": 429, "details": [v]}}).to_string().into_bytes()),
        ],
        cost in any::<u64>(),
    ) {
        let _ = flux_sim::net::wire::client::read_response(status, &body, cost);
    }
}

/// JSON Schema-like values: objects whose keys are schema keywords, with hostile values.
fn any_schema() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    let keyword = prop_oneof![
        Just("type"),
        Just("properties"),
        Just("required"),
        Just("items"),
        Just("enum"),
        Just("minItems"),
        Just("maxItems"),
        Just("minimum"),
        Just("maximum"),
        Just("exclusiveMinimum"),
        Just("minLength"),
        Just("maxLength"),
        Just("anyOf"),
        Just("allOf"),
        Just("$ref"),
        Just("$defs"),
        Just("format"),
        Just("nullable"),
        Just("const"),
        Just("prefixItems"),
    ];
    let leaf = prop_oneof![
        prop_oneof![
            Just("object"),
            Just("array"),
            Just("string"),
            Just("integer"),
            Just("number"),
            Just("NULL"),
            Just("#/$defs/a"),
            Just("date-time")
        ]
        .prop_map(|s| json!(s)),
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-1i64),
            Just(0),
            Just(3),
            Just(1_000_000_000)
        ]
        .prop_map(|n| json!(n)),
        prop_oneof![Just(f64::MAX), Just(-f64::MAX), Just(0.5)].prop_map(|f| json!(f)),
        any_json(),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec((keyword.clone(), inner.clone()), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            prop::collection::vec(inner, 0..4).prop_map(Value::Array),
        ]
    })
}

fn any_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9@./:_ -]{0,16}".prop_map(Value::String),
        prop_oneof![
            Just("type.googleapis.com/google.rpc.RetryInfo"),
            Just("type.googleapis.com/google.rpc.QuotaFailure"),
            Just("99999999999999999999s"),
            Just("-1s"),
            Just("1.5s"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("contents".to_string()),
                    Just("parts".to_string()),
                    Just("text".to_string()),
                    Just("generationConfig".to_string()),
                    Just("maxOutputTokens".to_string()),
                    Just("@type".to_string()),
                    Just("retryDelay".to_string()),
                    Just("violations".to_string()),
                    Just("quotaId".to_string()),
                    Just("quotaValue".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const SERVE: &str = r#"
name = "fuzz-serve"
[server.latency]
ttft = "1ms"
tokens_per_second = 1000000
jitter = 0.0
[models."gemini-2.5-flash"]
rpm = 100000
[topology]
projects = 1
[[topology.keys]]
project = "default-1"
key = "AIzaSyFUZZ-serve-key-0000001"
[workload]
kind = "closed"
requests = 1
workers = 1
input_tokens = { dist = "fixed", value = 1 }
output_tokens = { dist = "fixed", value = 2 }
"#;

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/fuzz.txt"))),
        ..ProptestConfig::default()
    })]
    /// Arbitrary requests through serve's router: every answer is a known status, and every
    /// error is Google's JSON envelope with that status.
    #[test]
    fn serve_answers_anything_in_googles_envelope(
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PUT), Just(Method::DELETE)],
        path in prop_oneof![
            Just("/v1beta/models/gemini-2.5-flash:generateContent".to_string()),
            Just("/v1beta/models/gemini-2.5-flash:streamGenerateContent".to_string()),
            Just("/v1beta/models/gemini-2.5-flash:countTokens".to_string()),
            Just("/v1beta/models".to_string()),
            Just("/v1beta/models/gemini-2.5-flash:embedContent".to_string()),
            Just("/v1beta/models/gemini-2.5-flash:batchEmbedContents".to_string()),
            Just("/v1beta/openai/chat/completions".to_string()),
            Just("/v1beta/openai/embeddings".to_string()),
            "/v1beta/openai/[a-z0-9/%.-]{0,20}",
            "/v1beta/models/[a-z0-9%:.-]{0,20}",
            "/[a-z0-9/%]{0,20}",
        ],
        key in prop_oneof![Just(None), Just(Some("AIzaSyFUZZ-serve-key-0000001".to_string())), "[ -~]{0,20}".prop_map(Some)],
        body in prop_oneof![
            any_json().prop_map(|v| v.to_string().into_bytes()),
            any_json().prop_map(|v| serde_json::json!({"contents": [{"parts": [v]}]}).to_string().into_bytes()),
            // Any schema through the structured-output generator, on both endpoints.
            any_schema().prop_map(|v| serde_json::json!({"contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": v}}).to_string().into_bytes()),
            any_json().prop_map(|v| serde_json::json!({"contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"responseMimeType": "application/json", "responseSchema": v}}).to_string().into_bytes()),
            (any_json(), any_json()).prop_map(|(c, v)| serde_json::json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": c}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": v}}}).to_string().into_bytes()),
            any_json().prop_map(|v| serde_json::json!({"model": "gemini-2.5-flash", "input": v}).to_string().into_bytes()),
            any_json().prop_map(|v| serde_json::json!({"requests": [v], "content": v}).to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..100),
        ],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (status, ctype, bytes) = rt.block_on(async {
            let s = Scenario::parse(SERVE, Path::new("fuzz-serve.toml")).unwrap();
            let app = flux_sim::net::serve::router(s, 1000);
            let mut req = Request::builder().method(method).uri(path.as_str());
            if let Some(k) = &key {
                if let Ok(v) = axum::http::HeaderValue::from_str(k) {
                    req = req.header("x-goog-api-key", v);
                }
            }
            let Ok(req) = req.body(Body::from(body)) else { return (0, String::new(), Vec::new()) };
            let resp = tokio::time::timeout(std::time::Duration::from_secs(10), app.oneshot(req))
                .await
                .expect("answered in time")
                .unwrap();
            let status = resp.status().as_u16();
            let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20).await.unwrap().to_vec();
            (status, ctype, bytes)
        });
        if status == 0 {
            return Ok(()); // the URI itself was not valid HTTP: nothing reached serve
        }
        prop_assert!([200, 400, 401, 403, 404, 405, 408, 429, 503].contains(&status), "status {status}");
        if status != 200 {
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(format!("{status}: not JSON: {e}")))?;
            // The OpenAI-compatible endpoint wraps the envelope in an array (server.openai_errors).
            let v = if path.starts_with("/v1beta/openai/") && v.is_array() { v[0].clone() } else { v };
            prop_assert_eq!(v["error"]["code"].as_u64(), Some(status as u64));
            prop_assert!(v["error"]["message"].is_string() && v["error"]["status"].is_string());
            prop_assert!(ctype.starts_with("application/json"), "{ctype}");
        }
    }
}

/// A fake upstream for the proxy: answers every request 200 `{}` and records its target.
async fn recording_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|h| {
                            h.to_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    while buf.len() < end + length {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + length);
                    let line = head.lines().next().unwrap_or("").to_string();
                    log.lock()
                        .unwrap()
                        .push(line.rsplit_once(' ').map_or(line.clone(), |(t, _)| t.to_string()));
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// A path segment a stranger might send: model ids, versions, and what smuggles paths
/// (encoded slashes, `%23`, `%3A`, `%3F`, dot segments, double encoding).
fn hostile_segment() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("v1beta"),
        Just("v1"),
        Just("models"),
        Just("files"),
        Just("cachedContents"),
        Just("gemini-2.5-flash"),
        Just(":generateContent"),
        Just(":countTokens"),
        Just(":streamGenerateContent"),
        Just(":embedContent"),
        Just("%2F"),
        Just("%2f"),
        Just("%23"),
        Just("%3A"),
        Just("%3F"),
        Just("%25"),
        Just("%252F"),
        Just("%2E"),
        Just("."),
        Just(".."),
        Just("x"),
        Just("%20"),
        Just("?alt=sse"),
        Just("&key=k"),
        Just("#"),
    ];
    prop::collection::vec(pieces, 0..6).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/fuzz.txt"))),
        ..ProptestConfig::default()
    })]
    /// Arbitrary paths and queries through the proxy's router, in process, in front of a
    /// recording upstream: every error is Google's envelope, and every request the upstream
    /// sees is one the proxy classified — a known version, `models`, a model id, a known
    /// method, known query names — never a path, query or fragment smuggled in (issue 29).
    #[test]
    fn the_proxy_forwards_only_what_it_classified(
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PUT)],
        segments in prop::collection::vec(hostile_segment(), 1..5),
        query in prop_oneof![Just(String::new()), "[a-z$_=&%0-9A-F]{0,24}".prop_map(|q| format!("?{q}"))],
    ) {
        let path = format!("/{}{query}", segments.join("/"));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (status, bytes, seen) = rt.block_on(async {
            let (upstream, seen) = recording_upstream().await;
            let s = Scenario::parse(SERVE, Path::new("fuzz-proxy.toml")).unwrap();
            let spec = s.builtin_strategy("flux").unwrap();
            let opts = flux_sim::net::proxy::ProxyOptions {
                upstream,
                token: "fuzz-token".into(),
                deadline: std::time::Duration::from_secs(2),
                queue: 16,
                ledger: None,
                margin: 0,
                allow_eviction: false,
            };
            let app = flux_sim::net::proxy::router(s, spec, &opts).await.unwrap();
            let Ok(req) = Request::builder()
                .method(method)
                .uri(path.as_str())
                .header("x-goog-api-key", "fuzz-token")
                .body(Body::from(r#"{"contents": [{"parts": [{"text": "x"}]}]}"#))
            else {
                return (0, Vec::new(), Vec::new());
            };
            let resp = tokio::time::timeout(std::time::Duration::from_secs(10), app.oneshot(req))
                .await
                .expect("answered in time")
                .unwrap();
            let status = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec();
            let seen = seen.lock().unwrap().clone();
            (status, bytes, seen)
        });
        if status == 0 {
            return Ok(());
        }
        if status != 200 {
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| TestCaseError::fail(format!("{status} on {path}: not JSON: {e}")))?;
            prop_assert_eq!(v["error"]["code"].as_u64(), Some(status as u64));
        }
        for target in &seen {
            let (method, rest) = target.split_once(' ').unwrap();
            let (p, q) = rest.split_once('?').unwrap_or((rest, ""));
            let parts: Vec<&str> = p.split('/').collect();
            prop_assert!(parts.len() >= 3 && parts[0].is_empty(), "{target}");
            prop_assert!(["v1beta", "v1", "v1alpha"].contains(&parts[1]), "{target} from {path}");
            prop_assert_eq!(parts[2], "models", "{} from {}", target, path);
            prop_assert!(parts.len() <= 4, "{target} from {path}");
            if let Some(name) = parts.get(3) {
                let (id, m) = name.split_once(':').map_or((*name, None), |(a, b)| (a, Some(b)));
                prop_assert!(flux_sim::net::proxy::is_model_id(id), "{target} from {path}");
                prop_assert!(m.is_none_or(|m| ["countTokens", "generateContent", "streamGenerateContent"].contains(&m)), "{target}");
                prop_assert!(m.is_some() == (method == "POST"), "{target}");
            }
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                prop_assert!(["alt", "%24alt", "pageSize", "pageToken", "page_size", "page_token"].contains(&name), "{target} from {path}");
            }
            prop_assert!(!target.contains('#'), "{target}");
        }
    }
}
