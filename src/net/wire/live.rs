//! The Live API's WebSocket messages (BidiGenerateContent), both directions, pure: what a
//! client's JSON frame asks for (`setup`, `clientContent`/`client_content`,
//! `realtimeInput`/`realtime_input`, `toolResponse`), and the server's frames (`setupComplete`,
//! `serverContent` with audio or text parts, transcription, `generationComplete`,
//! `turnComplete`, `usageMetadata`, `goAway`). Field names are taken in camelCase and in
//! snake_case, as Google's JSON parser does; an unknown field is refused with Google's wording.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::error::duration_string;
use super::media;
use super::request::decode_base64;
use crate::core::time::Nanos;

/// Text's tokens by serve's rule: a token per 4 characters, rounded up.
fn count_text(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Close code for a message the server cannot take (invalid payload data).
pub const CLOSE_INVALID: u16 = 1007;
/// Close code for a policy violation (unknown model, missing key, lifetime over).
pub const CLOSE_POLICY: u16 = 1008;

/// The services a Live client connects to under `/ws/` (google-genai uses `v1` when given a
/// base URL).
pub const SERVICES: [&str; 3] = [
    "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
    "google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent",
    "google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent",
];

/// The bytes a close reason may carry (a close frame holds 125, two are the code).
pub const MAX_REASON: usize = 123;

/// Audio the server sends: 16-bit mono PCM at 24 kHz.
pub const AUDIO_MIME: &str = "audio/pcm;rate=24000";
/// Bytes of that audio per second.
pub const AUDIO_BYTES_PER_SECOND: u64 = 48_000;

/// What a session's `setup` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// The model id (without `models/`).
    pub model: String,
    /// Answers in audio (`responseModalities` has `AUDIO`, or none given: the native-audio
    /// models' default is audio).
    pub audio: bool,
    /// `outputAudioTranscription` was asked for.
    pub transcription: bool,
    /// Tokens of the system instruction (charged with the first turn).
    pub system_tokens: u64,
    /// `sessionResumption` as asked: `None` when absent (no handles), `Some(None)` for a new
    /// session that wants handles, `Some(Some(handle))` to resume the session of `handle`.
    pub resumption: Option<Option<String>>,
}

/// One client message after `setup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Content for the conversation: its tokens, and whether the client's turn is complete
    /// (the model answers then).
    Content {
        /// Input tokens.
        tokens: u64,
        /// `turnComplete`.
        turn_complete: bool,
    },
    /// Streamed input: its tokens, whether it ends the user's turn (text, `activityEnd` or
    /// `audioStreamEnd`), and whether it carried video frames.
    Realtime {
        /// Input tokens (audio 32 per second of 16 kHz PCM, text as counted, 258 per frame).
        tokens: u64,
        /// The user's turn is over: the model answers.
        ends_turn: bool,
        /// An image/video frame came with it.
        video: bool,
    },
    /// A tool's answer (taken, answered by nothing).
    ToolResponse,
}

/// Cuts `reason` to the bytes a close frame can carry (at a character boundary).
pub fn close_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON {
        return reason.to_string();
    }
    let mut end = MAX_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

fn invalid(what: impl std::fmt::Display) -> String {
    close_reason(&format!("Invalid JSON payload received. {what}"))
}

fn unknown_name(name: &str) -> String {
    invalid(format!("Unknown name \"{name}\": Cannot find field."))
}

/// `obj[camel]` or `obj[snake]`.
fn field<'a>(obj: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    obj.get(camel).or_else(|| obj.get(snake))
}

/// Refuses fields outside `known` (each given as camelCase and snake_case).
fn only(obj: &Map<String, Value>, known: &[(&str, &str)]) -> Result<(), String> {
    match obj.keys().find(|k| !known.iter().any(|(c, s)| k == c || k == s)) {
        Some(k) => Err(unknown_name(k)),
        None => Ok(()),
    }
}

/// The one message of a frame: `{"setup": {…}}` and the like, as (name, body).
fn one_message(text: &str) -> Result<(String, Map<String, Value>), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| invalid(format!("Unexpected token: {e}")))?;
    let Value::Object(top) = v else {
        return Err(invalid("Expected a JSON object."));
    };
    if top.len() != 1 {
        return Err(invalid(
            "A message must hold exactly one of setup, clientContent, realtimeInput or toolResponse.",
        ));
    }
    let (name, body) = top.into_iter().next().expect("one entry");
    match body {
        Value::Object(o) => Ok((name, o)),
        _ => Err(invalid(format!("Invalid value at '{name}': expected an object."))),
    }
}

/// Tokens of `parts` (text by serve's rule; inline data by Gemini's media rules).
fn parts_tokens(parts: &Value, at: &str) -> Result<u64, String> {
    let Some(parts) = parts.as_array() else {
        return Err(invalid(format!("Invalid value at '{at}': expected a list.")));
    };
    let mut tokens = 0u64;
    for p in parts {
        let Some(o) = p.as_object() else {
            return Err(invalid(format!("Invalid value at '{at}': expected objects.")));
        };
        if let Some(t) = o.get("text") {
            let t = t
                .as_str()
                .ok_or_else(|| invalid(format!("Invalid value at '{at}.text': expected a string.")))?;
            tokens = tokens.saturating_add(count_text(t));
        }
        if let Some(d) = field(o, "inlineData", "inline_data") {
            tokens = tokens.saturating_add(inline_tokens(d, at)?);
        }
    }
    Ok(tokens)
}

/// Tokens of an inline blob `{mimeType, data}`, by Gemini's media rules (audio 32 a second,
/// raw PCM at the rate its type names; images by their tiles).
fn inline_tokens(blob: &Value, at: &str) -> Result<u64, String> {
    let o = blob
        .as_object()
        .ok_or_else(|| invalid(format!("Invalid value at '{at}': expected a blob.")))?;
    let mime = field(o, "mimeType", "mime_type").and_then(Value::as_str).unwrap_or("");
    let data = o.get("data").and_then(Value::as_str).unwrap_or("");
    let bytes = decode_base64(data).ok_or_else(|| {
        invalid(format!(
            "Invalid value at '{at}.data' (TYPE_BYTES), Base64 decoding failed."
        ))
    })?;
    Ok(media::tokens(mime, &bytes))
}

/// The first message of a session, which must be `setup`.
pub fn parse_setup(text: &str) -> Result<Setup, String> {
    let (name, o) = one_message(text)?;
    if name != "setup" {
        return Err(invalid(format!("The first message must be setup, not {name}.")));
    }
    only(
        &o,
        &[
            ("model", "model"),
            ("generationConfig", "generation_config"),
            ("systemInstruction", "system_instruction"),
            ("tools", "tools"),
            ("realtimeInputConfig", "realtime_input_config"),
            ("sessionResumption", "session_resumption"),
            ("contextWindowCompression", "context_window_compression"),
            ("inputAudioTranscription", "input_audio_transcription"),
            ("outputAudioTranscription", "output_audio_transcription"),
            ("proactivity", "proactivity"),
            ("explicitVadSignal", "explicit_vad_signal"),
        ],
    )?;
    let model = o
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("setup.model is required."))?;
    let model = model.strip_prefix("models/").unwrap_or(model).to_string();
    let audio = match field(&o, "generationConfig", "generation_config")
        .and_then(|g| g.as_object())
        .and_then(|g| field(g, "responseModalities", "response_modalities"))
    {
        None => true,
        Some(Value::Array(m)) => m
            .iter()
            .any(|x| x.as_str().is_some_and(|s| s.eq_ignore_ascii_case("audio"))),
        Some(_) => {
            return Err(invalid(
                "Invalid value at 'setup.generation_config.response_modalities': expected a list.",
            ))
        }
    };
    let system_tokens = match field(&o, "systemInstruction", "system_instruction") {
        Some(Value::Object(c)) => match c.get("parts") {
            Some(p) => parts_tokens(p, "setup.system_instruction.parts")?,
            None => 0,
        },
        Some(Value::String(t)) => count_text(t),
        Some(_) => {
            return Err(invalid(
                "Invalid value at 'setup.system_instruction': expected content.",
            ))
        }
        None => 0,
    };
    Ok(Setup {
        model,
        audio,
        transcription: field(&o, "outputAudioTranscription", "output_audio_transcription").is_some(),
        system_tokens,
        resumption: match field(&o, "sessionResumption", "session_resumption") {
            None => None,
            Some(Value::Object(r)) => match r.get("handle") {
                None | Some(Value::Null) => Some(None),
                Some(Value::String(h)) if h.is_empty() => Some(None),
                Some(Value::String(h)) => Some(Some(h.clone())),
                Some(_) => {
                    return Err(invalid(
                        "Invalid value at 'setup.session_resumption.handle' (TYPE_STRING).",
                    ))
                }
            },
            Some(_) => {
                return Err(invalid(
                    "Invalid value at 'setup.session_resumption': expected an object.",
                ))
            }
        },
    })
}

/// A message after `setup`.
pub fn parse_message(text: &str) -> Result<ClientMessage, String> {
    let (name, o) = one_message(text)?;
    match name.as_str() {
        "clientContent" | "client_content" => {
            only(&o, &[("turns", "turns"), ("turnComplete", "turn_complete")])?;
            let mut tokens = 0u64;
            if let Some(turns) = o.get("turns") {
                let turns = turns
                    .as_array()
                    .ok_or_else(|| invalid("Invalid value at 'client_content.turns': expected a list."))?;
                for (i, t) in turns.iter().enumerate() {
                    let parts = t.get("parts").cloned().unwrap_or(Value::Array(vec![]));
                    tokens = tokens.saturating_add(parts_tokens(&parts, &format!("client_content.turns[{i}].parts"))?);
                }
            }
            let turn_complete = match field(&o, "turnComplete", "turn_complete") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid("Invalid value at 'client_content.turn_complete' (TYPE_BOOL).")),
            };
            Ok(ClientMessage::Content { tokens, turn_complete })
        }
        "realtimeInput" | "realtime_input" => {
            only(
                &o,
                &[
                    ("mediaChunks", "media_chunks"),
                    ("audio", "audio"),
                    ("video", "video"),
                    ("text", "text"),
                    ("activityStart", "activity_start"),
                    ("activityEnd", "activity_end"),
                    ("audioStreamEnd", "audio_stream_end"),
                ],
            )?;
            let mut tokens = 0u64;
            let mut video = false;
            if let Some(chunks) = field(&o, "mediaChunks", "media_chunks") {
                for c in chunks.as_array().into_iter().flatten() {
                    video |= c
                        .get("mimeType")
                        .or_else(|| c.get("mime_type"))
                        .and_then(Value::as_str)
                        .is_some_and(|m| m.starts_with("image/") || m.starts_with("video/"));
                    tokens = tokens.saturating_add(inline_tokens(c, "realtime_input.media_chunks")?);
                }
            }
            if let Some(a) = o.get("audio") {
                tokens = tokens.saturating_add(inline_tokens(a, "realtime_input.audio")?);
            }
            if let Some(v) = o.get("video") {
                video = true;
                tokens = tokens.saturating_add(inline_tokens(v, "realtime_input.video")?);
            }
            let text = match o.get("text") {
                None => None,
                Some(Value::String(t)) => Some(t),
                Some(_) => return Err(invalid("Invalid value at 'realtime_input.text' (TYPE_STRING).")),
            };
            if let Some(t) = text {
                tokens = tokens.saturating_add(count_text(t));
            }
            let ends_turn = text.is_some()
                || field(&o, "activityEnd", "activity_end").is_some()
                || field(&o, "audioStreamEnd", "audio_stream_end").is_some_and(|v| v.as_bool() != Some(false));
            Ok(ClientMessage::Realtime {
                tokens,
                ends_turn,
                video,
            })
        }
        "toolResponse" | "tool_response" => Ok(ClientMessage::ToolResponse),
        "setup" => Err(invalid("setup may be sent only once, as the first message.")),
        other => Err(unknown_name(other)),
    }
}

/// `{"setupComplete": {}}`.
pub fn setup_complete() -> Value {
    json!({"setupComplete": {}})
}

/// A piece of the model's turn: `samples` of audio (16-bit PCM bytes, silence) or `text`, with
/// the transcription of the same piece when asked for.
pub fn model_turn(audio_bytes: Option<u64>, text: &str, transcription: bool) -> Value {
    let part = match audio_bytes {
        Some(n) => {
            let pcm = vec![0u8; n as usize];
            json!({"inlineData": {"mimeType": AUDIO_MIME, "data": base64::engine::general_purpose::STANDARD.encode(pcm)}})
        }
        None => json!({"text": text}),
    };
    let mut content = json!({"modelTurn": {"parts": [part]}});
    if transcription && audio_bytes.is_some() {
        content["outputTranscription"] = json!({"text": text});
    }
    json!({"serverContent": content})
}

/// `generationComplete`.
pub fn generation_complete() -> Value {
    json!({"serverContent": {"generationComplete": true}})
}

/// `turnComplete`, with the turn's usage.
pub fn turn_complete(prompt: u64, response: u64) -> Value {
    json!({
        "serverContent": {"turnComplete": true},
        "usageMetadata": {
            "promptTokenCount": prompt,
            "responseTokenCount": response,
            "totalTokenCount": prompt + response,
        }
    })
}

/// A new resumption handle for the session (`resumable`: it can be resumed from here).
pub fn resumption_update(handle: &str) -> Value {
    json!({"sessionResumptionUpdate": {"newHandle": handle, "resumable": true}})
}

/// `goAway` with the time left before the connection closes.
pub fn go_away(time_left: Nanos) -> Value {
    json!({"goAway": {"timeLeft": duration_string(time_left)}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_s_setup_and_turns_parse() {
        let s = parse_setup(
            r#"{"setup": {"model": "models/gemini-2.0-flash-live-001", "generationConfig": {"responseModalities": ["AUDIO"]},
                "outputAudioTranscription": {}, "systemInstruction": {"parts": [{"text": "you are a helpful assistant."}]}}}"#,
        )
        .unwrap();
        assert_eq!(s.model, "gemini-2.0-flash-live-001");
        assert!(s.audio && s.transcription && s.system_tokens > 0);
        let text = parse_setup(r#"{"setup": {"model": "m", "generation_config": {"response_modalities": ["TEXT"]}}}"#)
            .unwrap();
        assert!(!text.audio && !text.transcription);
        let m = parse_message(r#"{"client_content": {"turns": [{"role": "user", "parts": [{"text": "Hi, give me 100+ words"}]}], "turn_complete": true}}"#).unwrap();
        assert!(matches!(m, ClientMessage::Content { tokens, turn_complete: true } if tokens > 0));
        // One second of 16 kHz PCM: 32 tokens.
        let audio = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 32_000]);
        let m = parse_message(&format!(
            r#"{{"realtimeInput": {{"audio": {{"mimeType": "audio/pcm;rate=16000", "data": "{audio}"}}}}}}"#
        ))
        .unwrap();
        assert_eq!(
            m,
            ClientMessage::Realtime {
                tokens: 32,
                ends_turn: false,
                video: false
            }
        );
        let huge = format!(
            r#"{{"realtimeInput": {{"audio": {{"mimeType": "audio/pcm;rate=18446744073709551615", "data": "{audio}"}}}}}}"#
        );
        assert!(
            parse_message(&huge).is_ok(),
            "a rate at u64::MAX counts, without overflow"
        );
        let m = parse_message(r#"{"realtime_input": {"audio_stream_end": true}}"#).unwrap();
        assert!(matches!(m, ClientMessage::Realtime { ends_turn: true, .. }));
    }

    #[test]
    fn malformed_messages_get_google_s_wording_within_a_close_frame() {
        for bad in [
            "not json",
            "[]",
            r#"{"setup": {"model": "m"}, "clientContent": {}}"#,
            r#"{"clientContent": {}}"#,
            r#"{"setup": {"modle": "m"}}"#,
            r#"{"setup": {}}"#,
            r#"{"setup": 3}"#,
        ] {
            let e = parse_setup(bad).unwrap_err();
            assert!(e.starts_with("Invalid JSON payload received."), "{bad}: {e}");
            assert!(e.len() <= MAX_REASON, "{e}");
        }
        assert_eq!(
            parse_message(r#"{"clientContent": {"turns": [], "prompt": 1}}"#).unwrap_err(),
            "Invalid JSON payload received. Unknown name \"prompt\": Cannot find field."
        );
        assert!(parse_message(r#"{"setup": {"model": "m"}}"#).is_err());
        assert!(parse_message(r#"{"realtimeInput": {"audio": {"mimeType": "audio/pcm", "data": "!!"}}}"#).is_err());
        assert_eq!(close_reason(&"é".repeat(100)).len(), 122, "cut at a character boundary");
    }

    #[test]
    fn server_frames_have_the_live_api_s_shape() {
        let a = model_turn(Some(4), "Elon", true);
        assert_eq!(
            a["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["mimeType"],
            AUDIO_MIME
        );
        assert_eq!(a["serverContent"]["outputTranscription"]["text"], "Elon");
        assert_eq!(
            model_turn(None, "Elon", true)["serverContent"]["modelTurn"]["parts"][0]["text"],
            "Elon"
        );
        assert_eq!(turn_complete(3, 4)["usageMetadata"]["totalTokenCount"], 7);
        assert_eq!(go_away(50 * crate::core::time::SECOND)["goAway"]["timeLeft"], "50s");
    }
}
