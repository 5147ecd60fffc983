//! Keys and values under the cluster prefix: paths, JSON encoding, and decoding one range
//! read into a [`ClusterView`] without ever failing as a whole (a bad value becomes a
//! [`CorruptKey`] naming its key).

use hacore::dcs::{ClusterView, Key, LeaseModel};
use hacore::types::{Millis, Version};

pub use hacore::codec::{decode_events, encode_term, encode_value, json, MAX_EVENTS, MAX_VALUE_BYTES};

/// The key prefix of one cluster: `<namespace>/<cluster>/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// `namespace` (leading and trailing slashes are normalised) and cluster name.
    pub fn new(namespace: &str, cluster: &str) -> Prefix {
        let ns = namespace.trim_matches('/');
        if ns.is_empty() {
            Prefix(format!("/{cluster}/"))
        } else {
            Prefix(format!("/{ns}/{cluster}/"))
        }
    }

    /// The prefix itself (ends with `/`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Full etcd key of `key`.
    pub fn key(&self, key: &Key) -> String {
        format!("{}{}", self.0, key.path())
    }

    /// The [`Key`] of a full etcd key under this prefix, if it is one of ours.
    pub fn parse(&self, full: &[u8]) -> Option<Key> {
        let s = std::str::from_utf8(full).ok()?;
        Key::from_path(s.strip_prefix(&self.0)?)
    }
}

/// One stored key-value pair, as the range read returned it.
#[derive(Clone, Debug)]
pub struct RawKv<'a> {
    /// Full key.
    pub key: &'a [u8],
    /// Value bytes.
    pub value: &'a [u8],
    /// etcd `mod_revision`: the record's version.
    pub mod_revision: i64,
}

/// Builds the view from one range read of the prefix. Keys that are not ours (another
/// tool's, or a newer layout's) are skipped; values that do not decode are reported in
/// [`ClusterView::corrupt`] with their key.
pub fn decode_view<'a>(prefix: &Prefix, kvs: impl IntoIterator<Item = RawKv<'a>>, received_at: Millis) -> ClusterView {
    let mut view = ClusterView { received_at, lease_model: LeaseModel::StoreExpiry, ..Default::default() };
    for kv in kvs {
        let Some(key) = prefix.parse(kv.key) else { continue };
        let full = prefix.key(&key);
        let version = Version(kv.mod_revision.max(0) as u64);
        if let Err(reason) = hacore::codec::decode_into(&mut view, key, kv.value, version) {
            tracing::warn!(key = %full, %reason, "corrupt value in the DCS");
        }
    }
    hacore::codec::finish(&mut view);
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use hacore::dcs::{LeaderRecord, MemberRecord, SyncRecord};
    use hacore::types::Term;

    fn kv<'a>(key: &'a str, value: &'a [u8], rev: i64) -> RawKv<'a> {
        RawKv { key: key.as_bytes(), value, mod_revision: rev }
    }

    #[test]
    fn prefixes_are_normalised() {
        assert_eq!(Prefix::new("/service/", "pg").as_str(), "/service/pg/");
        assert_eq!(Prefix::new("", "pg").as_str(), "/pg/");
        let p = Prefix::new("service", "pg");
        assert_eq!(p.key(&Key::Member("n1".into())), "/service/pg/members/n1");
        assert_eq!(p.parse(b"/service/pg/members/n1"), Some(Key::Member("n1".into())));
        assert_eq!(p.parse(b"/service/pg2/leader"), None, "another cluster's key");
        assert_eq!(p.parse(b"/service/pg/unknown"), None);
    }

    #[test]
    fn good_and_bad_values_side_by_side() {
        let p = Prefix::new("service", "pg");
        let leader = json(&LeaderRecord { holder: "n1".into(), term: Term(3), ttl: 10_000 });
        let member = json(&MemberRecord { name: "n2".into(), ..Default::default() });
        let wrong_name = json(&MemberRecord { name: "n9".into(), ..Default::default() });
        let sync = json(&SyncRecord { leader: "n1".into(), term: Term(3), members: vec!["n2".into()].into() });
        let huge = vec![b' '; MAX_VALUE_BYTES + 1];
        let view = decode_view(
            &p,
            [
                kv("/service/pg/leader", &leader, 7),
                kv("/service/pg/term", b"3", 7),
                kv("/service/pg/members/n2", &member, 5),
                kv("/service/pg/members/n3", b"{not json", 6),
                kv("/service/pg/members/n4", &wrong_name, 8),
                kv("/service/pg/sync", &sync, 9),
                kv("/service/pg/config", &huge, 10),
                kv("/service/pg/status", b"[1,2]", 11),
                kv("/service/pg/somebody-elses", b"whatever", 12),
            ],
            42,
        );
        assert_eq!(view.received_at, 42);
        assert_eq!(view.leader.as_ref().map(|l| (l.value.holder.as_str(), l.version)), Some(("n1", Version(7))));
        assert_eq!(view.term, Term(3));
        assert_eq!(view.members.len(), 1);
        assert_eq!(view.sync.map(|s| s.version), Some(Version(9)));
        let bad: Vec<(String, u64)> = view.corrupt.iter().map(|c| (c.key.path(), c.version.0)).collect();
        assert_eq!(
            bad,
            vec![("members/n3".into(), 6), ("members/n4".into(), 8), ("config".into(), 10), ("status".into(), 11)]
        );
        assert!(view.corrupt[2].reason.contains("exceeds"), "{}", view.corrupt[2].reason);
        assert!(view.corrupt[1].reason.contains("names \"n9\""), "{}", view.corrupt[1].reason);
    }
}
