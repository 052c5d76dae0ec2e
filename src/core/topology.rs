//! Accounts → projects → keys. Quota belongs to a (project, model) pair, so every key of a
//! project spends the same budget. Keys are masked whenever they are shown.

use crate::core::ledger::Limits;

/// A Google account (projects per account are limited, so users spread over several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Account name.
    pub name: String,
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

/// Masks all but the last 4 characters of a key.
pub fn mask(key: &str) -> String {
    let n = key.chars().count();
    let tail: String = key.chars().skip(n.saturating_sub(4)).collect();
    format!("{}{}", "*".repeat(n.saturating_sub(4).min(8)), tail)
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
        assert_eq!(mask("abc"), "abc");
        let k = Key {
            value: Key::derive("p", 0),
            project: 0,
            valid: true,
        };
        assert!(k.masked().ends_with(&k.value[35..]));
        assert!(!k.masked().contains(&k.value[..10]));
    }
}
