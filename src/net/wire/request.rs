//! Parsing what clients send (pure): generateContent and embedContent bodies checked as Google
//! checks them (same wording), and the token-counting rule (4 characters a token, media by size).

use serde_json::Value;

/// The header that asks Vertex AI for Priority PayGo (facts/gemini-2026-12.md §3.7; the
/// priority-paygo page): `X-Vertex-AI-LLM-Shared-Request-Type: priority`.
pub const PRIORITY_HEADER: &str = "x-vertex-ai-llm-shared-request-type";

/// Whether a request whose Priority PayGo header says `value` asks for priority (the value
/// compared without regard to case; any other value, or none, is a standard request).
pub fn priority_requested(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("priority"))
}

use super::structured::{self, Format};
use super::{media, openai};

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

/// The tokens of one text to embed, as serve counts them (a quarter of its characters,
/// rounded up); the proxy counts them the same way.
pub fn embed_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::wire::response::generated_text;
    use serde_json::json;

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
}
