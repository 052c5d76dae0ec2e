//! Gemini's OpenAI-compatible dialect (`/v1beta/openai/`), pure: chat completion requests
//! (counted by the same rule as generateContent: characters / 4, media by Gemini's rules),
//! completion bodies and stream chunks, the models list, embeddings (and the vectors serve
//! answers for any endpoint), and the shapes Google's errors take on this endpoint.

use serde_json::{json, Value};

use super::structured::{self, Format};
use crate::scenario::OpenAiErrors;

/// A Gemini error envelope in `shape`.
pub fn error_body(envelope: Value, shape: OpenAiErrors) -> Value {
    match shape {
        OpenAiErrors::Object => envelope,
        OpenAiErrors::Array => json!([envelope]),
        OpenAiErrors::BareArray => {
            let e = &envelope["error"];
            json!([{"error": {"code": e["code"], "message": e["message"], "status": e["status"]}}])
        }
    }
}

/// 401 UNAUTHENTICATED for a missing or unknown key on this endpoint, as Google answered an
/// invalid key there (Google AI forum, 2025; the OpenAI SDK raises `AuthenticationError`).
pub fn unauthenticated() -> Value {
    json!({"error": {"code": 401, "message": "API keys are not supported by this API. Expected OAuth2 access token or other authentication credentials that assert a principal. See https://cloud.google.com/docs/authentication", "status": "UNAUTHENTICATED",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "CREDENTIALS_MISSING", "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]}})
}

/// The model a request names: `gemini-2.5-flash` or `models/gemini-2.5-flash`.
pub fn model_name(id: &str) -> &str {
    id.strip_prefix("models/").unwrap_or(id)
}

/// A parsed chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The model named (without `models/`).
    pub model: String,
    /// Input tokens: the characters of every message's text / 4, plus media.
    pub input_tokens: u64,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage: true`.
    pub include_usage: bool,
    /// `response_format` (or a JSON template shown in the prompt).
    pub format: Format,
}

/// The fields Gemini's chat completions endpoint takes; any other is a 400 as Google words it.
const CHAT_FIELDS: [&str; 24] = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "response_format",
    "reasoning_effort",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "extra_body",
    "user",
    "parallel_tool_calls",
    "modalities",
    "metadata",
];

fn unknown_name(name: &str) -> String {
    format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot find field.")
}

fn positive(v: &Value, name: &str) -> Result<Option<u64>, String> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .filter(|&n| n > 0)
            .map(Some)
            .ok_or_else(|| format!("Invalid value at '{name}': expected a positive integer, got {n}")),
    }
}

/// Parses a chat completion body, or says what is wrong with it (a 400).
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    let Some(o) = v.as_object() else {
        return Err("Invalid JSON payload received. The body must be a JSON object.".into());
    };
    if let Some(k) = o.keys().find(|k| !CHAT_FIELDS.contains(&k.as_str())) {
        return Err(unknown_name(k));
    }
    let model = match o.get("model") {
        Some(Value::String(m)) if !m.is_empty() => model_name(m).to_string(),
        _ => return Err("Invalid value at 'model': a model name is required, e.g. \"gemini-2.5-flash\".".into()),
    };
    let messages = match o.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        _ => return Err("Invalid value at 'messages': a non-empty list of messages is required.".into()),
    };
    let mut chars = 0u64;
    let mut media = 0u64;
    let mut prompt = String::new();
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str);
        if !matches!(role, Some("system" | "developer" | "user" | "assistant" | "tool")) {
            return Err(format!(
                "Invalid value at '{at}.role': expected one of system, developer, user, assistant, tool."
            ));
        }
        match m.get("content") {
            Some(Value::String(t)) => {
                chars += t.chars().count() as u64;
                prompt.push_str(t);
            }
            None | Some(Value::Null) if role == Some("assistant") => {}
            Some(Value::Array(parts)) => {
                for (j, p) in parts.iter().enumerate() {
                    let here = format!("{at}.content[{j}]");
                    match p.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            let t = p
                                .get("text")
                                .and_then(Value::as_str)
                                .ok_or(format!("Invalid value at '{here}.text': expected a string."))?;
                            chars += t.chars().count() as u64;
                            prompt.push_str(t);
                        }
                        Some("image_url") => {
                            let url = p
                                .get("image_url")
                                .and_then(|u| u.get("url").or(Some(u)))
                                .and_then(Value::as_str)
                                .ok_or(format!("Invalid value at '{here}.image_url.url': expected a string."))?;
                            media += match url.strip_prefix("data:") {
                                Some(data) => data_url_tokens(data).ok_or(format!(
                                    "Invalid value at '{here}.image_url.url': a data URL must read data:<mime>;base64,<data>."
                                ))?,
                                // A remote image serve cannot see: one tile.
                                None => super::media::TILE_TOKENS,
                            };
                        }
                        Some("input_audio") => {
                            let a = p.get("input_audio");
                            let data = a.and_then(|a| a.get("data")).and_then(Value::as_str);
                            let format = a.and_then(|a| a.get("format")).and_then(Value::as_str).unwrap_or("wav");
                            let bytes = data.and_then(super::request::decode_base64).ok_or(format!(
                                "Invalid value at '{here}.input_audio.data': expected base64 audio."
                            ))?;
                            media += super::media::tokens(&format!("audio/{format}"), &bytes);
                        }
                        _ => {
                            return Err(format!(
                                "Invalid value at '{here}.type': expected \"text\", \"image_url\" or \"input_audio\"."
                            ))
                        }
                    }
                }
            }
            _ => {
                return Err(format!(
                    "Invalid value at '{at}.content': expected a string or a list of parts."
                ))
            }
        }
        prompt.push('\n');
    }
    if let Some(n) = positive(&v, "n")? {
        if n != 1 {
            return Err("Invalid value at 'n': flux-sim serves one choice per request (n = 1).".into());
        }
    }
    let max_tokens = positive(&v, "max_completion_tokens")?.or(positive(&v, "max_tokens")?);
    let stream = match o.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "Invalid value at 'stream': expected true or false, got {other}"
            ))
        }
    };
    let include_usage = o
        .get("stream_options")
        .and_then(|s| s.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let format = match o.get("response_format") {
        None | Some(Value::Null) => {
            structured::template_schema(&prompt).map_or(Format::Text, |s| Format::Json(Some(s)))
        }
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("text") => Format::Text,
            Some("json_object") => Format::Json(None),
            Some("json_schema") => {
                let schema = f
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .filter(|s| s.is_object())
                    .ok_or("Invalid value at 'response_format.json_schema.schema': expected a JSON Schema object.")?;
                structured::check(schema)
                    .map_err(|m| format!("Invalid value at 'response_format.json_schema.schema': {m}"))?;
                Format::Json(Some(schema.clone()))
            }
            _ => {
                return Err(
                    "Invalid value at 'response_format.type': expected \"text\", \"json_object\" or \"json_schema\"."
                        .into(),
                )
            }
        },
    };
    Ok(ChatRequest {
        model,
        input_tokens: chars.div_ceil(4) + media,
        max_tokens,
        stream,
        include_usage,
        format,
    })
}

/// Tokens of the media in a data URL (`<mime>;base64,<data>` after `data:`).
fn data_url_tokens(rest: &str) -> Option<u64> {
    let (head, data) = rest.split_once(',')?;
    let mime = head.strip_suffix(";base64")?;
    Some(super::media::tokens(mime, &super::request::decode_base64(data)?))
}

/// `finish_reason` of a Gemini finish reason.
pub fn finish_reason(gemini: &str) -> &'static str {
    match gemini {
        "MAX_TOKENS" => "length",
        _ => "stop",
    }
}

/// A chat completion.
pub fn completion(
    text: &str,
    prompt: u64,
    completion_tokens: u64,
    finish: &str,
    model: &str,
    id: &str,
    created: u64,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason(finish)}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens},
    })
}

/// One `chat.completion.chunk` of a stream: `piece` of the text (the first carries the
/// role), `finish` on the last; `usage` (prompt, completion) on the last when asked for.
pub fn chunk(
    piece: &str,
    first: bool,
    finish: Option<&str>,
    usage: Option<(u64, u64)>,
    model: &str,
    id: &str,
    created: u64,
) -> Value {
    let mut delta = json!({"content": piece});
    if first {
        delta["role"] = json!("assistant");
    }
    let mut c = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish.map(finish_reason)}],
    });
    if let Some((p, n)) = usage {
        c["usage"] = json!({"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n});
    }
    c
}

/// One entry of the models list.
pub fn model_object(name: &str) -> Value {
    json!({"id": format!("models/{name}"), "object": "model", "created": 0, "owned_by": "google"})
}

/// `GET /v1beta/openai/models`.
pub fn models_list(names: &[&str]) -> Value {
    json!({"object": "list", "data": names.iter().map(|n| model_object(n)).collect::<Vec<_>>()})
}

/// A parsed embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    /// The model named.
    pub model: String,
    /// The texts.
    pub inputs: Vec<String>,
    /// `dimensions`, if given.
    pub dimensions: Option<usize>,
    /// `encoding_format: "base64"` (the OpenAI SDK's default).
    pub base64: bool,
}

/// The most texts one embeddings call may carry.
pub const MAX_EMBED_INPUTS: usize = 100;
/// Dimensions of an embedding unless the request asks for fewer (gemini-embedding-001's).
pub const EMBED_DIMENSIONS: usize = 3072;

/// Checks a requested output dimensionality.
pub fn dimensions(v: Option<&Value>, at: &str) -> Result<Option<usize>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(d) => d
            .as_u64()
            .filter(|&d| (1..=EMBED_DIMENSIONS as u64).contains(&d))
            .map(|d| Some(d as usize))
            .ok_or_else(|| {
                format!("Invalid value at '{at}': expected an integer from 1 to {EMBED_DIMENSIONS}, got {d}")
            }),
    }
}

/// Parses an embeddings body.
pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingsRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    let Some(o) = v.as_object() else {
        return Err("Invalid JSON payload received. The body must be a JSON object.".into());
    };
    if let Some(k) = o
        .keys()
        .find(|k| !["model", "input", "dimensions", "encoding_format", "user"].contains(&k.as_str()))
    {
        return Err(unknown_name(k));
    }
    let model = match o.get("model") {
        Some(Value::String(m)) if !m.is_empty() => model_name(m).to_string(),
        _ => return Err("Invalid value at 'model': a model name is required, e.g. \"gemini-embedding-001\".".into()),
    };
    let inputs: Vec<String> = match o.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).map(String::from).collect()
        }
        _ => return Err("Invalid value at 'input': expected a string or a non-empty list of strings.".into()),
    };
    if inputs.len() > MAX_EMBED_INPUTS {
        return Err(format!(
            "Invalid value at 'input': at most {MAX_EMBED_INPUTS} texts per request, got {}.",
            inputs.len()
        ));
    }
    let base64 = match o.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(format!(
                "Invalid value at 'encoding_format': expected \"float\" or \"base64\", got {other:?}."
            ))
        }
    };
    Ok(EmbeddingsRequest {
        model,
        inputs,
        dimensions: dimensions(o.get("dimensions"), "dimensions")?,
        base64,
    })
}

/// The embedding serve answers for `text`: a unit vector of `dims` values drawn from the seed
/// and the text alone, so the same text always embeds alike.
pub fn embedding(seed: u64, text: &str, dims: usize) -> Vec<f32> {
    let mut h = seed ^ 0x0e3b_ed00;
    for b in text.bytes() {
        h = crate::core::rng::splitmix64(h ^ b as u64);
    }
    let mut r = rand_pcg::Pcg64Mcg::new((h as u128) << 64 | crate::core::rng::splitmix64(h) as u128);
    let mut v: Vec<f64> = (0..dims)
        .map(|_| {
            // Roughly normal: the sum of four uniforms, centred.
            (0..4).map(|_| crate::core::rng::unit(&mut r)).sum::<f64>() - 2.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v.into_iter().map(|x| x as f32).collect()
}

/// The embeddings response: floats, or base64 of little-endian f32s.
pub fn embeddings_response(vectors: &[Vec<f32>], model: &str, tokens: u64, base64: bool) -> Value {
    use base64::Engine;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}
