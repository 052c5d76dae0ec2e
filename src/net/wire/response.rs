//! The bodies of successful answers (pure): generated text, a generateContent response or
//! streamed chunk, and the model list.

use serde_json::{json, Value};

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

#[cfg(test)]
mod tests {
    use super::*;

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
