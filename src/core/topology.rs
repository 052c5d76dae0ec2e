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

/// Whether `value` may be an API key: 8 to 512 printable ASCII characters without spaces (what
/// an HTTP header carries as is). Any format is accepted — `AIza…` standard keys, `AQ.`/`IQ.`
/// authorization keys, others — and none says what service it is for. `Err` says what is wrong.
pub fn check_key(value: &str) -> Result<(), &'static str> {
    if value.len() < 8 || value.len() > 512 {
        return Err("must be 8 to 512 characters");
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII with no spaces or control characters");
    }
    Ok(())
}

/// Field names whose value is a secret (`key`, `api_key`, `x-goog-api-key`, `apiKey`,
/// `password`, `token`, `secret`).
const SECRET_NAMES: [&str; 5] = ["key", "password", "passwd", "token", "secret"];

/// Prefixes of key formats masked wherever they appear: standard keys (`AIza`) and
/// authorization keys (`AQ.`, `IQ.`), each followed by at least 8 key characters.
const KEY_PREFIXES: [&str; 3] = ["AIza", "AQ.", "IQ."];

/// `text` with every secret masked, and nothing else: keys of the known formats (`AIza…`,
/// `AQ.…`, `IQ.…`) anywhere; the value of a secret field (`key`, `api_key`, `x-goog-api-key`,
/// `password`, `token`, `secret`) after `=` (`key = "…"`, `?key=…`), or after `:` when
/// quoted (`"key": "…"`) or key-like (12+ characters with a digit) — so `key: must be …`
/// stays as written —; and the password of a URL (`redis://user:***@host`). For error
/// messages and logs that quote what a user wrote.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if let Some((start, end, password)) = secret_at(text, i) {
            out.push_str(&text[i..start]);
            out.push_str(&if password {
                "***".to_string()
            } else {
                mask(&text[start..end])
            });
            i = end;
        } else {
            let c = text[i..].chars().next().expect("i is a char boundary below len");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// A secret whose text begins at `i` (or whose name does): `(start, end, is_password)` of
/// the part to mask.
fn secret_at(text: &str, i: usize) -> Option<(usize, usize, bool)> {
    let from = &text[i..];
    let prev = text[..i].chars().next_back();
    // A key format, as a whole token.
    if prev.is_none_or(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        for prefix in KEY_PREFIXES {
            if let Some(rest) = from.strip_prefix(prefix) {
                let n = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
                    .unwrap_or(rest.len());
                if n >= 8 {
                    return Some((i, i + prefix.len() + n, false));
                }
            }
        }
    }
    // A URL's password: `scheme://user:password@host`.
    if let Some(after) = from.strip_prefix("://") {
        let authority = &after[..after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace())
            .unwrap_or(after.len())];
        if let Some(at) = authority.rfind('@') {
            if let Some(colon) = authority[..at].find(':') {
                let start = i + 3 + colon + 1;
                if colon + 1 < at {
                    return Some((start, i + 3 + at, true));
                }
            }
        }
        return None;
    }
    // A secret field's value.
    let name_ok = |name: &str| {
        let lower = from.get(..name.len()).is_some_and(|s| s.eq_ignore_ascii_case(name));
        let camel = from.starts_with(&format!("{}{}", name[..1].to_ascii_uppercase(), &name[1..]))
            && prev.is_some_and(|c| c.is_ascii_lowercase());
        (lower && prev.is_none_or(|c| !c.is_alphanumeric())) || camel
    };
    let name = SECRET_NAMES.into_iter().find(|n| name_ok(n))?;
    let after = &from[name.len()..];
    let after = after.strip_prefix(['"', '\'']).unwrap_or(after);
    let spaced = after.trim_start_matches([' ', '\t']);
    let sep = spaced.chars().next().filter(|c| matches!(c, '=' | ':'))?;
    let value = spaced[1..].trim_start_matches([' ', '\t']);
    let start = i + (from.len() - value.len());
    let password = name != "key" && name != "token";
    if let Some(q) = value.chars().next().filter(|c| matches!(c, '"' | '\'')) {
        let inner = &value[1..];
        let n = inner.find(q).unwrap_or(inner.len());
        return (n > 0).then_some((start + 1, start + 1 + n, password));
    }
    let n = value
        .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '&' | ',' | ';' | ')' | '}' | ']' | '#'))
        .unwrap_or(value.len());
    let word = &value[..n];
    if word.is_empty() || word.starts_with(['{', '[', '*', '<', '$']) {
        return None;
    }
    let key_like = word.len() >= 12 && word.chars().any(|c| c.is_ascii_digit());
    (sep == '=' || key_like).then_some((start, start + n, password))
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
    fn every_key_format_and_url_passwords_are_masked() {
        let aq = "AQ.Ab8RN6LxYzQ0wErTy-uIoP_aSdFgHjKl";
        let iq = "IQ.Zx9Cv8Bn7Mq6Wr5Et4Yu3Io2Pa1Sd0Fg";
        for (text, secret) in [
            (format!("unknown strategy {aq:?}"), &aq[..12]),
            (format!("key {iq} refused"), &iq[..12]),
            (format!("x-goog-api-key: {aq}"), &aq[..12]),
            (
                "redis://flux:hunter2-secret@10.0.0.5:6379/0: refused".to_string(),
                "hunter2",
            ),
            ("redis://:p4ssw0rd@host/0".to_string(), "p4ssw0rd"),
            ("--upstream https://me:s3cret@example.com/".to_string(), "s3cret"),
            ("password = \"swordfish\"".to_string(), "swordfish"),
            ("\"apiKey\": \"custom-key-value-9\"".to_string(), "custom-key"),
            ("api_key=plainsecretvalue".to_string(), "plainsecret"),
            ("key: opaque-key-000123".to_string(), "opaque-key"),
        ] {
            let m = mask_secrets(&text);
            assert!(!m.contains(secret), "{text} → {m}");
        }
        assert_eq!(
            mask_secrets("redis://flux:hunter2@10.0.0.5:6379/0"),
            "redis://flux:***@10.0.0.5:6379/0"
        );
        assert!(check_key(aq).is_ok() && check_key(iq).is_ok() && check_key("AIzaSyABCDEFGH").is_ok());
        assert!(check_key("").is_err() && check_key("has space in it").is_err());
        assert!(check_key("ctl\u{7}character").is_err() && check_key("ключ-ключ-ключ").is_err());
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
            // issue 29: a message about a key field is not a key.
            "topology.keys[0].key: must be at least 8 characters with no spaces",
            "key: expected a string",
            "AIza keys are refused since 2026-06",
            "max_tokens = 20",
            "totalTokens: 5",
            "keys_file: line 3",
            "redis://127.0.0.1:6379/0",
            "http://user@host:8080/",
        ] {
            assert_eq!(mask_secrets(keep), keep);
        }
    }
}
