//! Access keys of Firehose HTTP endpoint delivery: AWS Firehose sends a fixed key in the
//! `X-Amz-Firehose-Access-Key` header, not a bearer token, so the server holds a list of keys,
//! each bound to its organizations like a token and allowed to write logs only.
//!
//! ```toml
//! [[key]]
//! name = "orders-stream"   # the subject: rate limits count per key
//! sha256 = "9f86d0…"        # of the key (`printf %s KEY | sha256sum`), or `key = "…"` in clear
//! orgs = ["acme"]          # or ["*"] for every organization
//! ```

use std::{collections::BTreeSet, path::Path};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sluice_schemas::{Orgs, PartitionValue};

use crate::token::{Principal, Role};

/// Shortest key accepted: a key is a shared secret, so it must not be guessable.
pub const MIN_KEY_CHARS: usize = 24;

/// The configured access keys (none: Firehose delivery needs `--auth none`).
#[derive(Debug, Clone, Default)]
pub struct AccessKeys(Vec<AccessKey>);

#[derive(Debug, Clone)]
struct AccessKey {
    name: String,
    sha256: [u8; 32],
    orgs: Orgs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    key: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    key: Option<String>,
    sha256: Option<String>,
    orgs: Vec<String>,
}

/// Why a keys file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("access keys {path}: {message}")]
pub struct KeysError {
    path: String,
    message: String,
}

impl AccessKeys {
    /// Reads the keys file at `path`.
    pub fn load(path: &Path) -> Result<Self, KeysError> {
        let fail = |message: String| KeysError { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Self::parse(&text).map_err(fail)
    }

    /// Keys from the text of a keys file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut keys = Vec::with_capacity(file.key.len());
        for e in file.key {
            let sha256 = match (e.key, e.sha256) {
                (Some(key), None) if key.chars().count() >= MIN_KEY_CHARS => Sha256::digest(key.as_bytes()).into(),
                (Some(_), None) => {
                    return Err(format!("key {:?} is shorter than {MIN_KEY_CHARS} characters", e.name));
                }
                (None, Some(hex)) => {
                    parse_hex(&hex).ok_or_else(|| format!("key {:?}: sha256 must be 64 hexadecimal digits", e.name))?
                }
                _ => return Err(format!("key {:?} needs one of `key` and `sha256`", e.name)),
            };
            let orgs = if e.orgs.iter().any(|o| o == "*") {
                Orgs::All
            } else {
                let set = e
                    .orgs
                    .iter()
                    .map(|o| {
                        PartitionValue::new(o).map_err(|err| format!("key {:?}: organization {o:?}: {err}", e.name))
                    })
                    .collect::<Result<BTreeSet<_>, _>>()?;
                if set.is_empty() {
                    return Err(format!("key {:?} names no organization", e.name));
                }
                Orgs::Some(set)
            };
            keys.push(AccessKey { name: e.name, sha256, orgs });
        }
        Ok(Self(keys))
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The caller a presented key stands for: the key's name and organizations, with the one
    /// role `logs:write`. Keys are compared by their SHA-256, all of them every time.
    pub fn principal(&self, presented: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for k in &self.0 {
            if k.sha256.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
                found = Some(k);
            }
        }
        found.map(|k| Principal {
            sub: format!("firehose-key:{}", k.name),
            orgs: k.orgs.clone(),
            roles: BTreeSet::from([Role::LogsWrite]),
        })
    }
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stand_for_their_organizations_and_write_only() {
        let clear = "k".repeat(30);
        let hashed = "another key of thirty chars!!";
        let hex: String = Sha256::digest(hashed.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let keys = AccessKeys::parse(&format!(
            "[[key]]\nname = \"a\"\nkey = \"{clear}\"\norgs = [\"acme\"]\n\n[[key]]\nname = \"b\"\nsha256 = \"{hex}\"\norgs = [\"*\"]\n"
        ))
        .expect("keys");
        let a = keys.principal(&clear).expect("clear key");
        assert_eq!(a.sub, "firehose-key:a");
        assert!(a.orgs.allows("acme") && !a.orgs.allows("other"));
        assert!(a.has(Role::LogsWrite) && !a.has(Role::LogsRead));
        assert_eq!(keys.principal(hashed).expect("hashed key").orgs, Orgs::All);
        assert!(keys.principal("not a key at all, not at all").is_none());
        assert!(keys.principal("").is_none());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, says) in [
            ("[[key]]\nname = \"a\"\nkey = \"short\"\norgs = [\"x\"]\n", "shorter than"),
            ("[[key]]\nname = \"a\"\nsha256 = \"abc\"\norgs = [\"x\"]\n", "64 hexadecimal"),
            ("[[key]]\nname = \"a\"\norgs = [\"x\"]\n", "one of `key` and `sha256`"),
            (&format!("[[key]]\nname = \"a\"\nkey = \"{}\"\norgs = []\n", "k".repeat(30)), "no organization"),
            (&format!("[[key]]\nname = \"a\"\nkey = \"{}\"\norgs = [\"../x\"]\n", "k".repeat(30)), "organization"),
            ("[[key]]\nname = \"a\"\nsecret = \"x\"\norgs = [\"x\"]\n", "unknown field"),
        ] {
            let e = AccessKeys::parse(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
