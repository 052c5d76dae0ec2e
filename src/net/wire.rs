//! Gemini REST v1beta wire formats (pure): request parsing, the token-counting rule, response
//! bodies, and error bodies in Google's envelope and wording (QuotaFailure, RetryInfo, Help,
//! ErrorInfo); and the client side: the body `drive` sends, and what it learns from a response.

use serde_json::{json, Value};

use crate::core::ledger::{Dimension, Dims, Limits};
use crate::core::time::{Nanos, SECOND};
use crate::strategy::Outcome;

/// Help link of quota errors.
pub const RATE_LIMITS_URL: &str = "https://ai.google.dev/gemini-api/docs/rate-limits";

pub mod live;
pub mod media;
pub mod openai;
pub mod structured;

use structured::Format;

/// The bytes of a base64 field as protobuf's JSON mapping reads them: the standard or the
/// URL-safe alphabet, padded or not.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    use base64::{alphabet, Engine};
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&alphabet::STANDARD, config)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&alphabet::URL_SAFE, config).decode(text))
        .ok()
}

/// The token-counting rule: every character of every text part (and of the system
/// instruction), divided by 4, rounded up; plus each `inline_data` part by Gemini's rules for
/// images, audio, video and PDFs ([`media::tokens`]; `text/*` inline data counts as text).
pub fn count_tokens(body: &Value) -> u64 {
    let mut cost = Cost::default();
    let mut visit = |v: &Value| {
        for p in v.get("parts").and_then(Value::as_array).into_iter().flatten() {
            cost.add(part_cost(p).unwrap_or_default());
        }
    };
    if let Some(contents) = body.get("contents").and_then(Value::as_array) {
        contents.iter().for_each(&mut visit);
    }
    if let Some(si) = body.get("systemInstruction").or_else(|| body.get("system_instruction")) {
        visit(si);
    }
    cost.tokens()
}

/// Characters of text and tokens of media, summed over parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cost {
    chars: u64,
    media: u64,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.chars += other.chars;
        self.media += other.media;
    }

    /// Tokens by the counting rule.
    fn tokens(self) -> u64 {
        self.chars.div_ceil(4) + self.media
    }
}

/// What one part costs: its text, and its `inlineData` (`inline_data`) by Gemini's rules
/// (`text/*` data counts as text); `None` when the inline data does not decode.
fn part_cost(part: &Value) -> Option<Cost> {
    let mut cost = Cost {
        chars: part
            .get("text")
            .and_then(Value::as_str)
            .map_or(0, |t| t.chars().count() as u64),
        media: 0,
    };
    let Some(d) = part.get("inlineData").or_else(|| part.get("inline_data")) else {
        return Some(cost);
    };
    let mime = d
        .get("mimeType")
        .or_else(|| d.get("mime_type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let data = decode_base64(d.get("data")?.as_str()?)?;
    if mime.starts_with("text/") {
        cost.chars += String::from_utf8_lossy(&data).chars().count() as u64;
    } else {
        cost.media += media::tokens(mime, &data);
    }
    Some(cost)
}

/// All the text of a request's contents, in order (where a JSON template would be shown).
fn prompt_text(body: &Value) -> String {
    let mut out = String::new();
    for c in body.get("contents").and_then(Value::as_array).into_iter().flatten() {
        for p in c.get("parts").and_then(Value::as_array).into_iter().flatten() {
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                out.push_str(t);
                out.push('\n');
            }
        }
    }
    out
}

/// A parsed generateContent request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// Input tokens by [`count_tokens`].
    pub input_tokens: u64,
    /// `generationConfig.maxOutputTokens`, if given.
    pub max_output_tokens: Option<u64>,
    /// What the answer's text is: words, or JSON (`responseMimeType` `application/json` with
    /// `responseSchema` or `responseJsonSchema`, or a prompt showing a JSON template), or one
    /// value of an enum (`text/x.enum`).
    pub format: Format,
}

/// The response MIME types Gemini accepts.
const MIME_TYPES: [&str; 5] = [
    "text/plain",
    "application/json",
    "application/xml",
    "application/yaml",
    "text/x.enum",
];

/// Parses a generateContent (or countTokens) body, or says what is wrong with it, naming the
/// field as Gemini does, for a 400 INVALID_ARGUMENT: the body is an object; `contents` is a
/// non-empty list of objects whose `parts` are non-empty lists of objects; a part's `text` is a
/// string and its `inlineData` has a `mimeType` and base64 `data`; `systemInstruction` is such
/// an object too; `generationConfig` is an object whose `maxOutputTokens` is a positive
/// integer, `responseMimeType` one Gemini accepts and whose schema (`responseSchema` or
/// `responseJsonSchema`, with a JSON or enum MIME type) can be met.
pub fn parse_generate(body: &[u8]) -> Result<GenerateRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    if !v.is_object() {
        return Err(invalid("", "GenerateContentRequest", &v));
    }
    let contents = match v.get("contents") {
        None | Some(Value::Null) => return Err("* GenerateContentRequest.contents: contents is not specified".into()),
        Some(Value::Array(c)) if c.is_empty() => {
            return Err("* GenerateContentRequest.contents: contents is not specified".into())
        }
        Some(Value::Array(c)) => c,
        Some(other) => {
            return Err(invalid(
                "contents",
                "type.googleapis.com/google.ai.generativelanguage.v1beta.Content",
                other,
            ))
        }
    };
    let mut cost = Cost::default();
    for (i, c) in contents.iter().enumerate() {
        cost.add(check_content(c, &format!("contents[{i}]"))?);
    }
    if let Some(si) = v.get("systemInstruction").or_else(|| v.get("system_instruction")) {
        if !si.is_null() {
            cost.add(check_content(si, "system_instruction")?);
        }
    }
    let config = match v.get("generationConfig").or_else(|| v.get("generation_config")) {
        None | Some(Value::Null) => None,
        Some(c) if c.is_object() => Some(c),
        Some(other) => {
            return Err(invalid(
                "generation_config",
                "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig",
                other,
            ))
        }
    };
    let field = |camel: &str, snake: &str| {
        config
            .and_then(|c| c.get(camel).or_else(|| c.get(snake)))
            .filter(|x| !x.is_null())
    };
    let max_output_tokens = match field("maxOutputTokens", "max_output_tokens") {
        None => None,
        Some(m) => Some(
            m.as_u64()
                .filter(|&n| n > 0)
                .ok_or("Invalid value at 'generation_config.max_output_tokens': expected a positive integer")?,
        ),
    };
    let mime = match field("responseMimeType", "response_mime_type") {
        None => "text/plain",
        Some(Value::String(m)) if MIME_TYPES.contains(&m.as_str()) => m.as_str(),
        Some(other) => {
            return Err(format!(
                "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are {}; got {other}.",
                MIME_TYPES.map(|m| format!("`{m}`")).join(", ")
            ))
        }
    };
    let schema =
        match (
            field("responseSchema", "response_schema"),
            field("responseJsonSchema", "response_json_schema"),
        ) {
            (Some(_), Some(_)) => return Err(
                "* GenerateContentRequest.generation_config: set response_schema or response_json_schema, not both."
                    .into(),
            ),
            (a, b) => a.or(b).cloned(),
        };
    let format = match (mime, schema) {
        ("application/json", s) => Format::Json(s),
        ("text/x.enum", Some(s)) => Format::Enum(
            s.get("enum")
                .and_then(Value::as_array)
                .map(|e| e.iter().filter_map(Value::as_str).map(String::from).collect())
                .unwrap_or_default(),
        ),
        (m, Some(_)) => {
            return Err(format!(
                "* GenerateContentRequest.generation_config.response_schema: a response schema needs response_mime_type `application/json` or `text/x.enum`, not `{m}`."
            ))
        }
        ("text/x.enum", None) => Format::Enum(Vec::new()),
        (_, None) => structured::template_schema(&prompt_text(&v)).map_or(Format::Text, |s| Format::Json(Some(s))),
    };
    check_format(&format, "generation_config.response_schema")?;
    Ok(GenerateRequest {
        input_tokens: cost.tokens(),
        max_output_tokens,
        format,
    })
}

/// A parsed embedContent or batchEmbedContents request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedRequest {
    /// The text of each content to embed.
    pub texts: Vec<String>,
    /// Each one's `outputDimensionality`, if given.
    pub dimensions: Vec<Option<usize>>,
}

/// Parses an embedContent body (`{content, outputDimensionality?, taskType?, title?}`) or, with
/// `batch`, a batchEmbedContents body (`{requests: [...]}`, at most 100, each naming
/// `models/<model>` when it names one); `Err` is the message of a 400.
pub fn parse_embed(body: &[u8], model: &str, batch: bool) -> Result<EmbedRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    let one = |r: &Value, at: &str| -> Result<(String, Option<usize>), String> {
        if !r.is_object() {
            return Err(invalid(
                at,
                "type.googleapis.com/google.ai.generativelanguage.v1beta.EmbedContentRequest",
                r,
            ));
        }
        if let Some(m) = r.get("model").and_then(Value::as_str) {
            if openai::model_name(m) != model {
                return Err(format!(
                    "* {at}.model: the model {m:?} differs from the model of the call, models/{model}."
                ));
            }
        }
        let content = r
            .get("content")
            .filter(|c| !c.is_null())
            .ok_or(format!("* {at}.content: content is not specified"))?;
        check_content(content, &format!("{at}.content"))?;
        let text: String = content["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        let dims = openai::dimensions(
            r.get("outputDimensionality").or_else(|| r.get("output_dimensionality")),
            &format!("{at}.output_dimensionality"),
        )?;
        Ok((text, dims))
    };
    let pairs = if batch {
        let requests = match v.get("requests") {
            Some(Value::Array(r)) if !r.is_empty() => r,
            _ => return Err("* BatchEmbedContentsRequest.requests: requests is not specified".into()),
        };
        if requests.len() > openai::MAX_EMBED_INPUTS {
            return Err(format!(
                "* BatchEmbedContentsRequest.requests: at most {} requests can be in one batch, got {}.",
                openai::MAX_EMBED_INPUTS,
                requests.len()
            ));
        }
        requests
            .iter()
            .enumerate()
            .map(|(i, r)| one(r, &format!("requests[{i}]")))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![one(&v, "EmbedContentRequest")?]
    };
    let (texts, dimensions) = pairs.into_iter().unzip();
    Ok(EmbedRequest { texts, dimensions })
}

/// Checks that a format's schema can be met (a 400 naming `at` otherwise).
pub fn check_format(format: &Format, at: &str) -> Result<(), String> {
    match format {
        Format::Json(Some(s)) => structured::check(s).map_err(|m| format!("* GenerateContentRequest.{at}: {m}")),
        Format::Enum(values) if values.is_empty() => Err(format!(
            "* GenerateContentRequest.{at}: response_mime_type `text/x.enum` needs a schema with string enum values."
        )),
        _ => Ok(()),
    }
}

/// A 400 message for a value of the wrong type at `at`, as Google words it.
fn invalid(at: &str, what: &str, got: &Value) -> String {
    let mut shown = got.to_string();
    if shown.len() > 60 {
        shown = format!("{}…", shown.chars().take(60).collect::<String>());
    }
    format!("Invalid JSON payload received. Invalid value at '{at}' ({what}), {shown}")
}

/// Checks one Content object at `at` (its `parts`, their `text` and `inlineData`) and returns
/// what its parts cost (each inline blob decoded once).
fn check_content(c: &Value, at: &str) -> Result<Cost, String> {
    let Some(obj) = c.as_object() else {
        return Err(invalid(
            at,
            "type.googleapis.com/google.ai.generativelanguage.v1beta.Content",
            c,
        ));
    };
    if let Some(role) = obj.get("role") {
        if !(role.is_string() || role.is_null()) {
            return Err(invalid(&format!("{at}.role"), "TYPE_STRING", role));
        }
    }
    let parts = match obj.get("parts") {
        Some(Value::Array(p)) if !p.is_empty() => p,
        None | Some(Value::Null) | Some(Value::Array(_)) => {
            return Err(format!(
                "* GenerateContentRequest.{at}.parts: contents.parts must not be empty."
            ))
        }
        Some(other) => {
            return Err(invalid(
                &format!("{at}.parts"),
                "type.googleapis.com/google.ai.generativelanguage.v1beta.Part",
                other,
            ))
        }
    };
    let mut cost = Cost::default();
    for (j, p) in parts.iter().enumerate() {
        let Some(part) = p.as_object() else {
            return Err(invalid(
                &format!("{at}.parts[{j}]"),
                "type.googleapis.com/google.ai.generativelanguage.v1beta.Part",
                p,
            ));
        };
        if let Some(t) = part.get("text") {
            if !t.is_string() {
                return Err(invalid(&format!("{at}.parts[{j}].text"), "TYPE_STRING", t));
            }
        }
        if let Some(d) = part.get("inlineData").or_else(|| part.get("inline_data")) {
            let here = format!("{at}.parts[{j}].inline_data");
            if !d.is_object() {
                return Err(invalid(
                    &here,
                    "type.googleapis.com/google.ai.generativelanguage.v1beta.Blob",
                    d,
                ));
            }
            match d.get("mimeType").or_else(|| d.get("mime_type")) {
                Some(Value::String(_)) => {}
                None | Some(Value::Null) => {
                    return Err(format!(
                        "* GenerateContentRequest.{here}.mime_type: mime_type is not specified"
                    ))
                }
                Some(other) => return Err(invalid(&format!("{here}.mime_type"), "TYPE_STRING", other)),
            }
            match d.get("data") {
                Some(Value::String(_)) => {}
                None | Some(Value::Null) => {
                    return Err(format!("* GenerateContentRequest.{here}.data: data is not specified"))
                }
                Some(other) => return Err(invalid(&format!("{here}.data"), "TYPE_BYTES", other)),
            }
        }
        match part_cost(p) {
            Some(c) => cost.add(c),
            None => {
                let data = part
                    .get("inlineData")
                    .or_else(|| part.get("inline_data"))
                    .map(|d| &d["data"]);
                let shown: String = data.and_then(Value::as_str).unwrap_or("").chars().take(20).collect();
                return Err(format!(
                    "Invalid value at '{at}.parts[{j}].inline_data.data' (TYPE_BYTES), Base64 decoding failed for \"{shown}\""
                ));
            }
        }
    }
    Ok(cost)
}

/// Text of about `tokens` tokens under the counting rule (4 characters each). Scenarios cap
/// output tokens (1,000,000, so at most 4 MB); this caps again, as no allocation may follow a
/// number from outside.
pub fn generated_text(tokens: u64) -> String {
    let tokens = tokens.min(MAX_GENERATED_TOKENS);
    const WORDS: [&str; 8] = ["the ", "dub ", "cue ", "and ", "for ", "line", " is ", "now "];
    (0..tokens as usize).map(|i| WORDS[i % WORDS.len()]).collect()
}

/// The most tokens of text one response is written out with.
pub const MAX_GENERATED_TOKENS: u64 = 1_000_000;

/// A successful response (or one streamed chunk of it).
pub fn response(text: &str, prompt: u64, candidates: u64, finish: Option<&str>, model: &str, id: &str) -> Value {
    let mut cand = json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
    if let Some(f) = finish {
        cand["finishReason"] = json!(f);
    }
    json!({
        "candidates": [cand],
        "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": candidates, "totalTokenCount": prompt + candidates},
        "modelVersion": model,
        "responseId": id,
    })
}

/// One page of `models.list`: `pageSize` (default 50, at most 1000, as Gemini) entries from
/// the offset `pageToken` names, and the `nextPageToken` when more follow. `Err` is the
/// message of a 400 for a malformed size or token.
pub fn models_page(names: &[&str], page_size: Option<&str>, page_token: Option<&str>) -> Result<Value, String> {
    let size = match page_size {
        None => 50,
        Some(t) => match t.parse::<i64>() {
            Ok(n) if n <= 0 => 50,
            Ok(n) => n.min(1000) as usize,
            Err(_) => return Err(format!("Invalid value at 'page_size' (TYPE_INT32), \"{t}\"")),
        },
    };
    let from = match page_token {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("models-from-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n <= names.len())
            .ok_or_else(|| format!("Invalid page token {t:?}; pass the nextPageToken of the previous page."))?,
    };
    let to = (from + size).min(names.len());
    let mut page = json!({ "models": names[from..to].iter().map(|n| model_entry(n)).collect::<Vec<_>>() });
    if to < names.len() {
        page["nextPageToken"] = json!(format!("models-from-{to}"));
    }
    Ok(page)
}

/// The `models` entry of one model.
pub fn model_entry(name: &str) -> Value {
    json!({
        "name": format!("models/{name}"),
        "version": "001",
        "displayName": name,
        "description": format!("{name} (flux-sim mock)"),
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents"],
    })
}

fn envelope(code: u16, status: &str, message: &str, details: Vec<Value>) -> Value {
    let mut e = json!({"code": code, "message": message, "status": status});
    if !details.is_empty() {
        e["details"] = Value::Array(details);
    }
    json!({ "error": e })
}

/// 429 RESOURCE_EXHAUSTED from `flux-sim proxy` itself (its queue is full, or the request could
/// not be sent before its deadline), with RetryInfo when the proxy knows when to retry.
pub fn proxy_refusal(message: &str, retry: Option<Nanos>) -> Value {
    let mut message = message.to_string();
    let mut details = Vec::new();
    if let Some(d) = retry {
        message.push_str(&format!(" Please retry in {}.", duration_string(d)));
        details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": duration_string(d)}));
    }
    envelope(429, "RESOURCE_EXHAUSTED", &message, details)
}

/// 502 UNAVAILABLE from `flux-sim proxy`: the upstream could not be reached.
pub fn upstream_unreachable(why: &str) -> Value {
    envelope(
        502,
        "UNAVAILABLE",
        &format!("flux-sim proxy: the upstream did not answer: {why}"),
        Vec::new(),
    )
}

/// 503 UNAVAILABLE from `flux-sim proxy`: the ledger it shares with other proxies did not
/// answer, so it sends nothing (it fails closed).
pub fn shared_ledger_down(why: &str) -> Value {
    envelope(
        503,
        "UNAVAILABLE",
        &format!("flux-sim proxy: not sent, {why}; the proxy sends nothing its fleet's ledger has not admitted"),
        Vec::new(),
    )
}

/// 400 API_KEY_INVALID.
pub fn invalid_key() -> Value {
    envelope(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        vec![
            json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"}}),
        ],
    )
}

/// 401 UNAUTHENTICATED, reason `ACCESS_TOKEN_TYPE_UNSUPPORTED`: what users report Google
/// answers a standard (`AIza…`) key since it refuses them (2026-06 unrestricted, 2026-09
/// all). A best reconstruction, not a captured body: the status and reason are reported
/// (google-gemini/gemini-cli#28538, 2026-07-26); the message is Google's 401 wording quoted by
/// Kilo-Org/kilocode#12162 for that rejection; the ErrorInfo domain and metadata follow
/// Google's other ErrorInfo details.
pub fn access_token_type_unsupported() -> Value {
    envelope(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"}
        })],
    )
}

/// 403 for a request without a key.
pub fn missing_key() -> Value {
    envelope(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        Vec::new(),
    )
}

/// 404 for an unknown model.
pub fn unknown_model(model: &str, version: &str, method: &str) -> Value {
    envelope(
        404,
        "NOT_FOUND",
        &format!("models/{model} is not found for API version {version}, or is not supported for {method}. Call ListModels to see the list of available models and their supported methods."),
        Vec::new(),
    )
}

/// 400 INVALID_ARGUMENT with `message`.
pub fn invalid_argument(message: &str) -> Value {
    envelope(400, "INVALID_ARGUMENT", message, Vec::new())
}

/// 429 RESOURCE_EXHAUSTED without details, as Google sends it when it has no capacity (a
/// shared pool is full) rather than a quota is exceeded.
pub fn capacity_exhausted() -> Value {
    envelope(
        429,
        "RESOURCE_EXHAUSTED",
        "Resource exhausted, please try again later.",
        Vec::new(),
    )
}

/// The message of a spend-cap 429. Google documents that spend-based limits answer 429
/// RESOURCE_EXHAUSTED but no body has been recorded: this wording is flux-sim's, and the body
/// carries no details (no QuotaFailure, no RetryInfo).
pub const SPEND_CAP_MESSAGE: &str = "Your billing account has reached its spend limit for the current period. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits";

/// 429 RESOURCE_EXHAUSTED for a billing account whose spend cap is reached.
pub fn spend_cap_exhausted() -> Value {
    envelope(429, "RESOURCE_EXHAUSTED", SPEND_CAP_MESSAGE, Vec::new())
}

/// Whether an error body is a spend-cap 429's.
pub fn names_spend_cap(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(|m| m == SPEND_CAP_MESSAGE)
        })
        .unwrap_or(false)
}

/// 503 UNAVAILABLE.
pub fn unavailable() -> Value {
    envelope(
        503,
        "UNAVAILABLE",
        "The model is overloaded. Please try again later.",
        Vec::new(),
    )
}

/// Quota id and metric of one dimension on one tier (`free`, `tier1`, `tier2`, `tier3`).
/// Google publishes the free-tier ids and the paid TPM ids; the paid RPM/RPD ids follow the
/// same pattern, and concurrency has no published id (ours is marked as such).
pub fn quota_names(d: Dimension, tier: &str) -> (String, String) {
    let m = "generativelanguage.googleapis.com/";
    let (id_suffix, metric_tier) = match tier {
        "free" => ("-FreeTier", "free_tier"),
        "tier1" => ("", "paid_tier"),
        "tier2" => ("-PaidTier2", "paid_tier_2"),
        _ => ("-PaidTier3", "paid_tier_3"),
    };
    match d {
        Dimension::Rpm => (
            format!("GenerateRequestsPerMinutePerProjectPerModel{id_suffix}"),
            format!("{m}generate_content_{metric_tier}_requests"),
        ),
        Dimension::Rpd => (
            format!("GenerateRequestsPerDayPerProjectPerModel{id_suffix}"),
            format!("{m}generate_content_{metric_tier}_requests"),
        ),
        Dimension::Tpm if tier == "free" => (
            "GenerateContentInputTokensPerModelPerMinute-FreeTier".into(),
            format!("{m}generate_content_free_tier_input_token_count"),
        ),
        Dimension::Tpm => (
            format!("GenerateContentPaidTierInputTokensPerModelPerMinute{id_suffix}"),
            format!("{m}generate_content_{metric_tier}_input_token_count"),
        ),
        Dimension::Tpd if tier == "free" => (
            "GenerateContentInputTokensPerModelPerDay-FreeTier".into(),
            format!("{m}generate_content_free_tier_input_token_count"),
        ),
        Dimension::Tpd => (
            format!("GenerateContentPaidTierInputTokensPerModelPerDay{id_suffix}"),
            format!("{m}generate_content_{metric_tier}_input_token_count"),
        ),
        Dimension::Concurrency => (
            format!("ConcurrentRequestsPerProjectPerModel{id_suffix}-FluxSim"),
            format!("{m}concurrent_requests"),
        ),
    }
}

/// A protobuf duration string, exact to the nanosecond (`"38s"`, `"45.837906927s"`).
pub fn duration_string(ns: Nanos) -> String {
    let (s, frac) = (ns / SECOND, ns % SECOND);
    if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:09}").trim_end_matches('0'))
    }
}

/// 429 RESOURCE_EXHAUSTED in the 2026 shape (Help, QuotaFailure with one violation per
/// exceeded dimension, RetryInfo) and Google's message lines. `retry` is `None` for a request
/// that can never fit.
pub fn quota_exceeded(violated: Dims, limits: &Limits, tier: &str, model: &str, retry: Option<Nanos>) -> Value {
    let mut message = String::from(
        "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/rate-limit. ",
    );
    let mut violations = Vec::new();
    for d in violated.iter() {
        let (id, metric) = quota_names(d, tier);
        let value = limits.get(d).unwrap_or(0);
        message.push_str(&format!(
            "\n* Quota exceeded for metric: {metric}, limit: {value}, model: {model}"
        ));
        violations.push(json!({"quotaMetric": metric, "quotaId": id, "quotaDimensions": {"location": "global", "model": model}, "quotaValue": value.to_string()}));
    }
    let mut details = vec![
        json!({"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more about Gemini API quotas", "url": RATE_LIMITS_URL}]}),
        json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations}),
    ];
    if let Some(d) = retry {
        message.push_str(&format!("\nPlease retry in {}.", duration_string(d)));
        details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": duration_string(d)}));
    }
    envelope(429, "RESOURCE_EXHAUSTED", &message, details)
}

/// The generateContent body `drive` sends: a prompt that counts as exactly `input_tokens`
/// under [`count_tokens`], and `maxOutputTokens` = `output_tokens` (when positive).
pub fn generate_body(input_tokens: u64, output_tokens: u64) -> String {
    let mut v = json!({"contents": [{"role": "user", "parts": [{"text": generated_text(input_tokens)}]}]});
    if output_tokens > 0 {
        v["generationConfig"] = json!({ "maxOutputTokens": output_tokens });
    }
    v.to_string()
}

/// Parses a protobuf duration string (`"38s"`, `"45.837906927s"`) exactly; `None` if it is not one.
pub fn parse_duration_string(text: &str) -> Option<Nanos> {
    let digits = text.strip_suffix('s')?;
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !ok(whole) || !ok(frac) || frac.len() > 9 || (digits.contains('.') && frac.is_empty()) {
        return None;
    }
    let ns: Nanos = format!("{frac:0<9}").parse().ok()?;
    whole.parse::<Nanos>().ok()?.checked_mul(SECOND)?.checked_add(ns)
}

/// The dimension a QuotaFailure violation's `quotaId` names (Google's ids, and ours for
/// concurrency), or `None` for an id this rule does not know.
pub fn dimension_of_quota_id(id: &str) -> Option<Dimension> {
    if id.contains("Concurrent") {
        Some(Dimension::Concurrency)
    } else if id.contains("Token") && id.contains("PerDay") {
        Some(Dimension::Tpd)
    } else if id.contains("Token") {
        Some(Dimension::Tpm)
    } else if id.contains("PerDay") {
        Some(Dimension::Rpd)
    } else if id.contains("PerMinute") {
        Some(Dimension::Rpm)
    } else {
        None
    }
}

fn detail<'a>(error: &'a Value, kind: &str) -> Option<&'a Value> {
    error
        .get("details")?
        .as_array()?
        .iter()
        .find(|d| d.get("@type").and_then(Value::as_str) == Some(kind))
}

/// What a client learns from one generateContent response with HTTP `status` and `body`, for
/// a request whose TPM cost is `tpm_cost`: the outcome and the violated dimensions. A 429's
/// violated dimensions come from QuotaFailure and its delay from RetryInfo (in the server's
/// time); a violation whose quota is 0, or a TPM quota below `tpm_cost`, can never be met
/// (unservable). A 200 whose body is not a response, and any status not listed, is an
/// [`Outcome::Error`]: a malformed body never stops a client.
pub fn read_response(status: u16, body: &[u8], tpm_cost: u64) -> (Outcome, Dims) {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let error = v.as_ref().and_then(|v| v.get("error"));
    let outcome = match status {
        200 => match v.as_ref().and_then(|v| v.get("candidates")) {
            Some(Value::Array(_)) => Outcome::Ok,
            _ => Outcome::Error,
        },
        429 => {
            let (violated, quota, impossible) = violations(error, tpm_cost);
            if impossible {
                return (Outcome::Unservable, violated);
            }
            let retry_delay = error
                .and_then(|e| detail(e, "type.googleapis.com/google.rpc.RetryInfo"))
                .and_then(|r| r.get("retryDelay"))
                .and_then(Value::as_str)
                .and_then(parse_duration_string);
            return (
                Outcome::RateLimited {
                    violated,
                    retry_delay,
                    quota,
                },
                violated,
            );
        }
        400 => {
            let reason = error
                .and_then(|e| detail(e, "type.googleapis.com/google.rpc.ErrorInfo"))
                .and_then(|i| i.get("reason"))
                .and_then(Value::as_str);
            if reason == Some("API_KEY_INVALID") {
                Outcome::InvalidKey
            } else {
                Outcome::Error
            }
        }
        // Server-side trouble that Google's SDKs retry.
        500 | 502 | 503 | 504 => Outcome::Unavailable,
        _ => Outcome::Error,
    };
    (outcome, Dims::EMPTY)
}

/// The dimensions an error's QuotaFailure names with the values it states for them, and
/// whether one of them can never be met by a request costing `tpm_cost`.
fn violations(error: Option<&Value>, tpm_cost: u64) -> (Dims, Limits, bool) {
    let mut violated = Dims::EMPTY;
    let mut quota = Limits::default();
    let mut impossible = false;
    let list = error
        .and_then(|e| detail(e, "type.googleapis.com/google.rpc.QuotaFailure"))
        .and_then(|q| q.get("violations"))
        .and_then(Value::as_array);
    for v in list.into_iter().flatten() {
        let Some(d) = v.get("quotaId").and_then(Value::as_str).and_then(dimension_of_quota_id) else {
            continue;
        };
        violated.insert(d);
        let value = v.get("quotaValue").and_then(|q| match q {
            Value::String(s) => s.parse::<u64>().ok(),
            other => other.as_u64(),
        });
        if value.is_some() {
            quota.set(d, value);
        }
        impossible |= value == Some(0) || (d == Dimension::Tpm && value.is_some_and(|l| l < tpm_cost));
    }
    (violated, quota, impossible)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_response_outcome(status: u16, body: &[u8], tpm_cost: u64) -> Outcome {
        read_response(status, body, tpm_cost).0
    }

    #[test]
    fn tokens_are_characters_over_four_rounded_up() {
        let b = json!({"contents": [{"parts": [{"text": "hello"}, {"text": "abc"}]}], "systemInstruction": {"parts": [{"text": "x"}]}});
        assert_eq!(count_tokens(&b), 3);
        assert_eq!(count_tokens(&json!({"contents": []})), 0);
        assert_eq!(generated_text(5).chars().count(), 20);
    }

    #[test]
    fn bad_requests_are_named() {
        assert!(parse_generate(b"{")
            .unwrap_err()
            .starts_with("Invalid JSON payload received."));
        assert!(parse_generate(b"{}").unwrap_err().contains("contents"));
        assert!(parse_generate(br#"{"contents": [], "generationConfig": {"maxOutputTokens": -1}}"#).is_err());
        let ok = parse_generate(
            br#"{"contents": [{"parts": [{"text": "abcdefgh"}]}], "generationConfig": {"maxOutputTokens": 7}}"#,
        )
        .unwrap();
        assert_eq!(
            ok,
            GenerateRequest {
                input_tokens: 2,
                max_output_tokens: Some(7),
                format: Format::Text,
            }
        );
    }

    #[test]
    fn quota_errors_match_googles_shape() {
        let limits = Limits {
            rpm: Some(10),
            tpm: Some(250_000),
            rpd: Some(250),
            tpd: None,
            concurrent: None,
        };
        let v = quota_exceeded(
            [Dimension::Rpm, Dimension::Tpm].into_iter().collect(),
            &limits,
            "free",
            "gemini-2.5-flash",
            Some(38_909_233_000),
        );
        let e = &v["error"];
        assert_eq!(e["code"], 429);
        assert_eq!(e["status"], "RESOURCE_EXHAUSTED");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains("\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10, model: gemini-2.5-flash"));
        assert!(msg.contains("generate_content_free_tier_input_token_count, limit: 250000"));
        assert!(msg.ends_with("\nPlease retry in 38.909233s."));
        let d = e["details"].as_array().unwrap();
        assert_eq!(d[0]["@type"], "type.googleapis.com/google.rpc.Help");
        assert_eq!(
            d[1]["violations"][0]["quotaId"],
            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
        );
        assert_eq!(
            d[1]["violations"][1]["quotaId"],
            "GenerateContentInputTokensPerModelPerMinute-FreeTier"
        );
        assert_eq!(d[1]["violations"][0]["quotaValue"], "10");
        assert_eq!(d[1]["violations"][0]["quotaDimensions"]["model"], "gemini-2.5-flash");
        assert_eq!(d[2]["retryDelay"], "38.909233s");
        assert_eq!(
            quota_names(Dimension::Tpm, "tier1").0,
            "GenerateContentPaidTierInputTokensPerModelPerMinute"
        );
        assert_eq!(
            quota_names(Dimension::Tpm, "tier2").1,
            "generativelanguage.googleapis.com/generate_content_paid_tier_2_input_token_count"
        );
    }

    #[test]
    fn other_errors_use_googles_wording() {
        assert_eq!(invalid_key()["error"]["details"][0]["reason"], "API_KEY_INVALID");
        assert_eq!(missing_key()["error"]["status"], "PERMISSION_DENIED");
        assert!(unknown_model("x", "v1beta", "generateContent")["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("models/x is not found for API version v1beta"));
        assert_eq!(unavailable()["error"]["code"], 503);
        assert_eq!(duration_string(38 * SECOND), "38s");
        assert_eq!(duration_string(45_837_906_927), "45.837906927s");
    }

    #[test]
    fn clients_parse_what_the_server_writes() {
        let limits = Limits {
            rpm: Some(10),
            tpm: Some(250_000),
            rpd: Some(250),
            tpd: Some(6_000_000),
            concurrent: Some(3),
        };
        let body = |v: Dims, retry| quota_exceeded(v, &limits, "free", "m", retry).to_string().into_bytes();
        let all: Dims = Dimension::ALL.into_iter().collect();
        assert_eq!(
            read_response_outcome(429, &body(all, Some(45_837_906_927)), 100),
            Outcome::RateLimited {
                violated: all,
                retry_delay: Some(45_837_906_927),
                quota: limits,
            }
        );
        let tpm: Dims = [Dimension::Tpm].into_iter().collect();
        assert_eq!(
            read_response(429, &body(tpm, None), 300_000),
            (Outcome::Unservable, tpm)
        );
        assert_eq!(
            read_response_outcome(429, &body(tpm, Some(SECOND)), 1_000),
            Outcome::RateLimited {
                violated: tpm,
                retry_delay: Some(SECOND),
                quota: Limits {
                    tpm: Some(250_000),
                    ..Limits::default()
                },
            }
        );
        for tier in ["tier1", "tier2", "tier3"] {
            for d in Dimension::ALL {
                assert_eq!(dimension_of_quota_id(&quota_names(d, tier).0), Some(d), "{tier} {d}");
            }
        }
        let zero = Limits { rpd: Some(0), ..limits };
        let rpd: Dims = [Dimension::Rpd].into_iter().collect();
        let v = quota_exceeded(rpd, &zero, "free", "m", None).to_string();
        assert_eq!(read_response_outcome(429, v.as_bytes(), 1), Outcome::Unservable);
        assert_eq!(
            read_response_outcome(400, invalid_key().to_string().as_bytes(), 1),
            Outcome::InvalidKey
        );
        assert_eq!(
            read_response_outcome(400, invalid_argument("x").to_string().as_bytes(), 1),
            Outcome::Error
        );
        assert_eq!(
            read_response_outcome(503, unavailable().to_string().as_bytes(), 1),
            Outcome::Unavailable
        );
        assert_eq!(
            read_response_outcome(403, missing_key().to_string().as_bytes(), 1),
            Outcome::Error
        );
        let ok = response("hi", 1, 1, Some("STOP"), "m", "r").to_string();
        assert_eq!(read_response_outcome(200, ok.as_bytes(), 1), Outcome::Ok);
    }

    #[test]
    fn malformed_bodies_are_errors_or_bare_429s() {
        for junk in [
            &b"<html>oops"[..],
            b"",
            b"{\"candidates\": 3}",
            b"{\"error\": {}}",
            b"\xff\xfe",
        ] {
            assert_eq!(read_response_outcome(200, junk, 1), Outcome::Error);
            assert_eq!(read_response_outcome(400, junk, 1), Outcome::Error);
            assert_eq!(
                read_response_outcome(429, junk, 1),
                Outcome::RateLimited {
                    violated: Dims::EMPTY,
                    retry_delay: None,
                    quota: Limits::default(),
                }
            );
        }
        let odd =
            br#"{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "soon"},
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "Mystery"}, 7]}]}}"#;
        assert_eq!(
            read_response_outcome(429, odd, 1),
            Outcome::RateLimited {
                violated: Dims::EMPTY,
                retry_delay: None,
                quota: Limits::default(),
            }
        );
    }

    #[test]
    fn duration_strings_round_trip_exactly() {
        for ns in [0, 1, 999_999_999, SECOND, 38 * SECOND, 45_837_906_927, u64::MAX / 2] {
            assert_eq!(parse_duration_string(&duration_string(ns)), Some(ns), "{ns}");
        }
        for bad in [
            "",
            "s",
            "1",
            "1.s",
            ".5s",
            "-1s",
            "1.0000000001s",
            "1e3s",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_duration_string(bad), None, "{bad:?}");
        }
        let body: Value = serde_json::from_str(&generate_body(7, 3)).unwrap();
        assert_eq!(count_tokens(&body), 7);
        assert_eq!(
            parse_generate(generate_body(7, 3).as_bytes()).unwrap(),
            GenerateRequest {
                input_tokens: 7,
                max_output_tokens: Some(3),
                format: Format::Text,
            }
        );
        assert_eq!(
            parse_generate(generate_body(2, 0).as_bytes())
                .unwrap()
                .max_output_tokens,
            None
        );
    }

    #[test]
    fn models_are_listed_page_by_page() {
        let names = ["a", "b", "c"];
        let p1 = models_page(&names, Some("2"), None).unwrap();
        assert_eq!(p1["models"].as_array().unwrap().len(), 2);
        let token = p1["nextPageToken"].as_str().unwrap();
        let p2 = models_page(&names, Some("2"), Some(token)).unwrap();
        assert_eq!(p2["models"][0]["name"], "models/c");
        assert!(p2.get("nextPageToken").is_none());
        assert_eq!(
            models_page(&names, None, None).unwrap()["models"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            models_page(&names, Some("0"), None).unwrap()["models"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert!(models_page(&names, Some("x"), None).unwrap_err().contains("page_size"));
        assert!(models_page(&names, None, Some("models-from-9"))
            .unwrap_err()
            .contains("page token"));
    }
}
