//! Accounts → projects → keys. Quota belongs to a (project, model) pair, so every key of a
//! project spends the same budget. Keys are masked whenever they are shown.

use crate::core::ledger::Limits;

/// A Google account (projects per account are limited, so users spread over several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Account name.
    pub name: String,
    /// What it may spend per spend window, in picodollars (`None`: no cap).
    pub spend_cap: Option<u128>,
}

/// A Cloud project: owner of the quota.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    /// Project name (unique).
    pub name: String,
    /// Index of its account.
    pub account: usize,
    /// Tier name (`free`, `tier1`, …), used to name quotas on the wire.
    pub tier: String,
    /// True limits per model (indexed like the scenario's models).
    pub limits: Vec<Limits>,
    /// Requests already spent today at the scenario start (every model).
    pub rpd_used: u64,
}

/// An API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key string a client sends.
    pub value: String,
    /// Index of its project.
    pub project: usize,
    /// Whether the server accepts it (else 400 API_KEY_INVALID).
    pub valid: bool,
}

impl Key {
    /// A deterministic, Gemini-looking key string (`AIzaSy` + 33 characters) for the `index`-th
    /// key of `project`: the same scenario always yields the same keys.
    pub fn derive(project: &str, index: u64) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        // FNV-1a over the project name and index, then splitmix64 for each character.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in project.bytes().chain(index.to_le_bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut s = String::from("AIzaSy");
        for _ in 0..33 {
            h = crate::core::rng::splitmix64(h);
            s.push(ALPHABET[(h >> 58) as usize] as char);
        }
        s
    }

    /// The key as shown to people: all but the last 4 characters masked.
    pub fn masked(&self) -> String {
        mask(&self.value)
    }
}

/// Masks a key: at most its last 4 characters are shown, and never more than a quarter of it
/// (`Sh0rtKey` → `******ey`).
pub fn mask(key: &str) -> String {
    let n = key.chars().count();
    let shown = (n / 4).min(4);
    let tail: String = key.chars().skip(n - shown).collect();
    format!("{}{}", "*".repeat((n - shown).min(8)), tail)
}

/// `text` with every key-looking string masked: Google API keys (`AIza…`) anywhere, and the
/// value of any `key` field (`key = "…"`, `"key": "…"`, `key=…` in a URL). For error messages
/// that quote what a user wrote.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        // A key value after `key` and `=` or `:` (quoted or not), or a bare AIza… token.
        let at_key = rest
            .char_indices()
            .find(|&(i, _)| starts_key_value(rest, i) || rest[i..].starts_with("AIza"))
            .map(|(i, _)| i);
        let Some(i) = at_key else {
            out.push_str(rest);
            break;
        };
        let (before, from) = rest.split_at(i);
        out.push_str(before);
        let value_start = if from.starts_with("AIza") {
            0
        } else {
            // Skip `key`, spaces, `=` or `:`, spaces and an opening quote.
            let after = &from[3..];
            let skipped = after.len() - after.trim_start_matches(['"', '\'', ' ', '=', ':']).len();
            out.push_str(&from[..3 + skipped]);
            3 + skipped
        };
        let value = &from[value_start..];
        let len = value
            .find(|c: char| c == '"' || c == '\'' || c == '&' || c == ',' || c.is_whitespace())
            .unwrap_or(value.len());
        out.push_str(&mask(&value[..len]));
        rest = &value[len..];
    }
    out
}

/// Whether `text[i..]` starts a `key` field whose value follows (`key =`, `key:`, `"key":`).
fn starts_key_value(text: &str, i: usize) -> bool {
    let from = &text[i..];
    if !from.starts_with("key") {
        return false;
    }
    // A whole word: not `monkey`, not `keys`.
    let before_ok = text[..i]
        .chars()
        .next_back()
        .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
    let after = from[3..].trim_start_matches('"');
    let after = after.trim_start();
    before_ok && (after.starts_with('=') || after.starts_with(':')) && {
        let value = after[1..].trim_start().trim_start_matches(['"', '\'']);
        !value.is_empty() && !value.starts_with(['{', '[', '*'])
    }
}

/// The whole topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Accounts.
    pub accounts: Vec<Account>,
    /// Projects (owners of quota).
    pub projects: Vec<Project>,
    /// Keys, each naming its project.
    pub keys: Vec<Key>,
}

impl Topology {
    /// Index of the key whose string is `value`.
    pub fn key_index(&self, value: &str) -> Option<usize> {
        self.keys.iter().position(|k| k.value == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_stable_distinct_and_gemini_shaped() {
        let a = Key::derive("dub-1", 0);
        assert_eq!(a, Key::derive("dub-1", 0));
        assert_ne!(a, Key::derive("dub-1", 1));
        assert_ne!(a, Key::derive("dub-2", 0));
        assert_eq!(a.len(), 39);
        assert!(a.starts_with("AIzaSy"));
    }

    #[test]
    fn masking_keeps_only_the_last_four() {
        assert_eq!(mask("AIzaSyABCDEFGHIJ1234"), "********1234");
        assert_eq!(mask("abc"), "***");
        // Never more than a quarter of a short key (it showed `****tKey`).
        assert_eq!(mask("Sh0rtKey"), "******ey");
        assert_eq!(mask("AIza0001"), "******01");
        let k = Key {
            value: Key::derive("p", 0),
            project: 0,
            valid: true,
        };
        assert!(k.masked().ends_with(&k.value[35..]));
        assert!(!k.masked().contains(&k.value[..10]));
    }

    #[test]
    fn secrets_in_quoted_text_are_masked() {
        let line = r#"key = "AIzaSyD-secret-value-0001" oops"#;
        let m = mask_secrets(line);
        assert!(!m.contains("secret-value") && m.ends_with("0001\" oops"), "{m}");
        assert!(m.starts_with("key = \""), "{m}");
        let inline = r#"{ project = "p", key = "my-own-key-1234" }"#;
        assert!(!mask_secrets(inline).contains("my-own-key"), "{}", mask_secrets(inline));
        assert!(!mask_secrets("got AIzaSyABCDEFGHIJKLMNOP here").contains("ABCDEFGH"));
        assert!(!mask_secrets("GET /v1beta/models?key=Secret123456&alt=sse").contains("Secret12"));
        assert!(!mask_secrets(r#"{"key": "abcdefghijkl"}"#).contains("abcdefgh"));
        // What is not a key stays: other fields, `keys = [...]`, words containing "key".
        for keep in [
            "keys_per_project = 2",
            "monkey = 3",
            "model = \"gemini-2.5-flash\"",
            "keys = [1]",
        ] {
            assert_eq!(mask_secrets(keep), keep);
        }
    }
}
