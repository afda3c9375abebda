//! Who a request acts for, as the gate in front of the API verified it: the organizations it
//! may write and read, and the key that owns what it starts. The ingest and query crates take
//! this, never a token: how a caller proved who it is (a JWT, or nothing on loopback) is the
//! `auth` crate's business.

use std::collections::BTreeSet;

use crate::partition::PartitionValue;

/// The organizations a caller may write and read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Orgs {
    /// Every organization (operators).
    All,
    /// These organizations (never empty).
    Some(BTreeSet<PartitionValue>),
}

impl Orgs {
    /// Whether `org` is among them.
    pub fn allows(&self, org: &str) -> bool {
        match self {
            Self::All => true,
            Self::Some(set) => set.contains(org),
        }
    }

    /// The organizations as a list for messages: `*` or `a, b`.
    pub fn describe(&self) -> String {
        match self {
            Self::All => "*".into(),
            Self::Some(set) => set.iter().map(PartitionValue::as_str).collect::<Vec<_>>().join(", "),
        }
    }
}

/// A caller of the API: who it is and what it may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who it is (a token's `sub`).
    pub sub: String,
    /// Its organizations.
    pub orgs: Orgs,
}

impl Caller {
    /// The key that owns what this caller starts (query executions, exports) and counts its
    /// places and quotas: the subject and the organizations, so a caller for other
    /// organizations never sees them even with the same subject.
    pub fn owner_key(&self) -> String {
        format!("{}\u{1f}{}", self.sub, self.orgs.describe())
    }
}
