//! The proxy's request targets, pure: a request's method, raw path and raw query become a
//! [`Route`] the proxy has parsed and classified — a known API version, `models`, a model id,
//! a known method, known query names — or the Google-style error envelope to answer. Upstream
//! URLs are built only from a route's checked parts, each percent-encoded, so no client can
//! add a path, a query or a fragment (issue 29's ledger bypass). No I/O and no clock: the
//! proxy's handlers call it for every request they forward, and `tests/it/fuzz.rs` calls it
//! directly.

use reqwest::Url;
use serde_json::{json, Value};

use crate::net::wire;

/// API versions the proxy forwards (those the google-genai SDK calls).
pub const VERSIONS: [&str; 3] = ["v1beta", "v1", "v1alpha"];

/// Query parameters the proxy understands: `key` (its token, never forwarded), `alt` and
/// `$alt` (the response's format), and the model list's paging. Any other is refused: the
/// proxy forwards only what it has classified.
pub const QUERY_NAMES: [&str; 7] = ["key", "alt", "$alt", "pageSize", "pageToken", "page_size", "page_token"];

/// Longest model id forwarded.
pub const MAX_MODEL_ID: usize = 128;

/// Whether `name` is a model id as Gemini spells them (`gemini-2.5-flash`,
/// `text-embedding-004`): ASCII letters, digits, `.`, `-` and `_`, starting with a letter or
/// digit, at most [`MAX_MODEL_ID`] characters. Nothing else reaches an upstream path (no `/`,
/// `:`, `%`, `#`, `?`, dot segments or spaces).
pub fn is_model_id(name: &str) -> bool {
    name.len() <= MAX_MODEL_ID
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// What a forwarded request asks of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `GET /{version}/models`: the model list (spends no quota).
    ListModels,
    /// `GET /{version}/models/{model}`: a model's entry (spends no quota).
    GetModel,
    /// `POST /{version}/models/{model}:countTokens` (spends no quota).
    CountTokens,
    /// `POST /{version}/models/{model}:generateContent`: scheduled and counted.
    Generate,
    /// `POST /{version}/models/{model}:streamGenerateContent`: scheduled and counted.
    StreamGenerate,
    /// `POST /{version}/models/{model}:embedContent`: scheduled and counted.
    Embed,
    /// `POST /{version}/models/{model}:batchEmbedContents`: scheduled and counted (as serve
    /// counts it: each text one request, or the call one, per `server.embed_batch`).
    BatchEmbed,
}

impl Call {
    /// The method after the model id (`None` for the model list and a model's entry).
    pub fn method(self) -> Option<&'static str> {
        match self {
            Call::ListModels | Call::GetModel => None,
            Call::CountTokens => Some("countTokens"),
            Call::Generate => Some("generateContent"),
            Call::StreamGenerate => Some("streamGenerateContent"),
            Call::Embed => Some("embedContent"),
            Call::BatchEmbed => Some("batchEmbedContents"),
        }
    }

    /// Whether the call is scheduled by the strategy and counted against the quota.
    pub fn spends_quota(self) -> bool {
        matches!(
            self,
            Call::Generate | Call::StreamGenerate | Call::Embed | Call::BatchEmbed
        )
    }
}

/// A request the proxy has parsed and classified: the only kind it forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// One of [`VERSIONS`].
    pub version: &'static str,
    /// The model id ([`is_model_id`]); `None` for the model list.
    pub model: Option<String>,
    /// What the request asks of the upstream.
    pub call: Call,
    /// The query's pairs, decoded, each name one of [`QUERY_NAMES`] (`key` included: the
    /// proxy's token, never forwarded).
    pub query: Vec<(String, String)>,
}

impl Route {
    /// The values of `?key=` (where a client may send the proxy's token).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.query.iter().filter(|(k, _)| k == "key").map(|(_, v)| v.as_str())
    }

    /// The upstream URL of this route on `base` (`http(s)://host[:port][/prefix]`): the base,
    /// then the version, `models`, the model and the method, then the query less `key`, every
    /// part percent-encoded. `model` replaces the route's own model (the one the strategy chose
    /// for a generate call).
    pub fn upstream_url(&self, base: &Url, model: Option<&str>) -> Url {
        let mut url = base.clone();
        url.set_fragment(None);
        let name = model.or(self.model.as_deref()).map(|m| match self.call.method() {
            Some(method) => format!("{m}:{method}"),
            None => m.to_string(),
        });
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push(self.version).push("models");
            if let Some(n) = &name {
                path.push(n);
            }
        }
        forward_query(&mut url, &self.query);
        url
    }
}

/// Sets `url`'s query to the checked `query` less its `key` (the proxy's token never goes
/// upstream), each pair percent-encoded; no query at all when nothing is left.
pub fn forward_query(url: &mut Url, query: &[(String, String)]) {
    let forwarded: Vec<&(String, String)> = query.iter().filter(|(k, _)| k != "key").collect();
    if forwarded.is_empty() {
        url.set_query(None);
    } else {
        let mut pairs = url.query_pairs_mut();
        pairs.clear();
        for (k, v) in forwarded {
            pairs.append_pair(k, v);
        }
    }
}

/// Classifies a request: `method` (`GET`, `POST`…), `path` and `query` as they arrived
/// (percent-encoded; the query without its `?`). `Err` is the envelope to answer, in this
/// order: 404 for a path of another shape than `/{version}/models[/{name}]` (as the router's
/// fallback), 405 for another method, 400 for a path that is not UTF-8 once decoded or a query
/// parameter the proxy does not know, 404 for an API version it does not forward, a name that
/// is not a model id, or a method it does not classify.
pub fn classify(method: &str, path: &str, query: Option<&str>) -> Result<Route, Value> {
    // The shape, on the raw path as the router matches it: an encoded `/` is not a separator.
    let raw: Vec<&str> = match path.strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None => Vec::new(),
    };
    let shaped = matches!(raw.len(), 2 | 3) && raw[1] == "models" && raw.iter().all(|s| !s.is_empty());
    if !shaped {
        let message = format!("The requested URL {method} {path} was not found on this server.");
        return Err(json!({"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}));
    }
    let allowed: &[&str] = if raw.len() == 2 {
        &["GET", "HEAD"]
    } else {
        &["GET", "HEAD", "POST"]
    };
    if !allowed.contains(&method) {
        let message = format!("Method {method} is not allowed for {path}.");
        return Err(json!({"error": {"code": 405, "message": message, "status": "INVALID_ARGUMENT"}}));
    }
    let decoded = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|d| d.into_owned())
            .map_err(|_| {
                let shown: String = s.chars().take(64).collect();
                wire::error::invalid_argument(&format!(
                    "Invalid request path: {shown:?} is not UTF-8 once percent-decoded."
                ))
            })
    };
    let version = decoded(raw[0])?;
    let name = raw.get(2).map(|s| decoded(s)).transpose()?;
    let query = query_pairs(query.unwrap_or(""))?;
    let version = forwarded_version(&version)?;
    let Some(name) = name else {
        return Ok(Route {
            version,
            model: None,
            call: Call::ListModels,
            query,
        });
    };
    let (model, call) = if method == "POST" {
        let Some((model, m)) = name.split_once(':') else {
            return Err(wire::error::unknown_model(&name, version, "generateContent"));
        };
        check_model_id(model)?;
        let call = match m {
            "countTokens" => Call::CountTokens,
            "generateContent" => Call::Generate,
            "streamGenerateContent" => Call::StreamGenerate,
            "embedContent" => Call::Embed,
            "batchEmbedContents" => Call::BatchEmbed,
            _ => {
                let shown: String = m.chars().take(64).collect();
                return Err(wire::error::unknown_model(model, version, &shown));
            }
        };
        (model.to_string(), call)
    } else {
        check_model_id(&name)?;
        (name, Call::GetModel)
    };
    Ok(Route {
        version,
        model: Some(model),
        call,
        query,
    })
}

/// 404 for a name that is not a model id.
fn check_model_id(name: &str) -> Result<(), Value> {
    if is_model_id(name) {
        return Ok(());
    }
    let shown: String = name.chars().take(64).collect();
    let message = format!("models/{shown:?} is not a model id (letters, digits, '.', '-' and '_').");
    Err(json!({"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}))
}

/// `version` (decoded) as one of [`VERSIONS`], or the 404 to answer. Every route checks its
/// API version here (the OpenAI and Live routes too).
pub fn forwarded_version(version: &str) -> Result<&'static str, Value> {
    if let Some(&v) = VERSIONS.iter().find(|v| **v == version) {
        return Ok(v);
    }
    let shown: String = version.chars().take(64).collect();
    let message = format!("API version {shown:?} is not forwarded; use one of {VERSIONS:?}.");
    Err(json!({"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}))
}

/// The raw query's pairs (without its `?`) decoded as a form (`+` is a space), each name
/// checked against [`QUERY_NAMES`]: `Err` is the 400 to answer, in Google's words for an
/// unknown parameter. Every route checks its query here (the OpenAI and Live routes too).
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, Value> {
    let mut out = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if !QUERY_NAMES.contains(&name.as_ref()) {
            let shown: String = name.chars().take(64).collect();
            return Err(wire::error::invalid_argument(&format!(
                "Invalid JSON payload received. Unknown name {shown:?}: Cannot bind query parameter. Field {shown:?} could not be found in request message."
            )));
        }
        out.push((name.into_owned(), value.into_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<Route, Value>) -> u64 {
        r.err().map_or(200, |v| v["error"]["code"].as_u64().unwrap())
    }

    #[test]
    fn the_issues_bypass_and_its_variants_are_refused() {
        for (method, target) in [
            (
                "POST",
                "/v1beta%2Fmodels%2Fgemini-2.5-flash%3AgenerateContent%23/models/x:countTokens",
            ),
            (
                "POST",
                "/v1beta/models/gemini-2.5-flash%3AgenerateContent%23:countTokens",
            ),
            ("POST", "/v1beta/models/..%2Ffiles:countTokens"),
            ("POST", "/v1beta/models/%2E%2E:countTokens"),
            ("POST", "/v1beta/models/x/../../files"),
            ("POST", "/v1beta/./models/gemini-2.5-flash:countTokens"),
            (
                "POST",
                "/v1beta/models/gemini-2.5-flash%253AgenerateContent:countTokens",
            ),
            ("GET", "/v1beta/models/gemini-2.5-flash%3AgenerateContent"),
            ("POST", "/v1beta/models/x:countTokens?upload=1"),
        ] {
            let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
            let c = code(classify(method, path, query));
            assert!([400, 404].contains(&c), "{method} {target}: {c}");
        }
    }

    #[test]
    fn a_classified_request_goes_upstream_built_from_its_parts() {
        let r = classify(
            "POST",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            Some("alt=sse%26key%3Dstolen%23frag&key=token"),
        )
        .unwrap();
        assert_eq!(r.call, Call::StreamGenerate);
        assert_eq!(r.keys().collect::<Vec<_>>(), ["token"]);
        let base = Url::parse("https://up.example/prefix").unwrap();
        let url = r.upstream_url(&base, Some("gemini-2.5-pro"));
        assert_eq!(
            url.as_str(),
            "https://up.example/prefix/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse%26key%3Dstolen%23frag"
        );
        let list = classify("GET", "/v1/models", Some("pageSize=5")).unwrap();
        assert_eq!(list.call, Call::ListModels);
        let url = list.upstream_url(&Url::parse("http://h:1").unwrap(), None);
        assert_eq!(url.as_str(), "http://h:1/v1/models?pageSize=5");
    }

    #[test]
    fn errors_follow_the_routers_order() {
        assert_eq!(code(classify("POST", "/v1beta/models", None)), 405);
        assert_eq!(code(classify("PUT", "/v1beta/models/x", None)), 405);
        assert_eq!(code(classify("GET", "/v1beta/models/", None)), 404);
        assert_eq!(code(classify("GET", "/v1beta/models/%FF", None)), 400);
        assert_eq!(code(classify("GET", "/v2/models/x", Some("a=1"))), 400);
        assert_eq!(code(classify("GET", "/v2/models/x", None)), 404);
        assert_eq!(code(classify("POST", "/v1beta/models/x:predict", None)), 404);
        // serve's every method is classified (issue 28 item 7): embeddings too.
        assert_eq!(
            classify("POST", "/v1beta/models/x:batchEmbedContents", None).map(|r| r.call),
            Ok(Call::BatchEmbed)
        );
        assert_eq!(
            classify("POST", "/v1/models/x:embedContent", None).map(|r| r.call),
            Ok(Call::Embed)
        );
        assert_eq!(code(classify("POST", "/v1beta/models/x", None)), 404);
    }
}
