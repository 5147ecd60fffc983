//! Keys and values under the cluster prefix: paths, JSON encoding, and decoding one range
//! read into a [`ClusterView`] without ever failing as a whole (a bad value becomes a
//! [`CorruptKey`] naming its key).

use hacore::dcs::{ClusterView, CorruptKey, Event, Key, LeaderRecord, LeaseModel, MemberRecord, Value};
use hacore::types::{Millis, Term, Version, Versioned};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest value the backend writes or accepts (etcd's default request limit is 1.5 MiB;
/// no record of ours comes near this, so anything larger is not ours).
pub const MAX_VALUE_BYTES: usize = 512 * 1024;

/// Events kept in the `events` key.
pub const MAX_EVENTS: usize = 100;

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

/// JSON of a typed value.
pub fn encode_value(v: &Value) -> Vec<u8> {
    match v {
        Value::Status(x) => json(x),
        Value::Config(x) => json(x),
        Value::Switchover(x) => json(x),
        Value::Sync(x) => json(x),
        Value::History(x) => json(x),
        Value::Initialize(x) => json(x),
        Value::Failsafe(x) => json(x),
    }
}

/// JSON of any record.
pub fn json<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    // Our records are plain data (no maps with non-string keys): serialisation cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// The `term` key's value.
pub fn encode_term(t: Term) -> Vec<u8> {
    t.0.to_string().into_bytes()
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(format!("value of {} bytes exceeds the {MAX_VALUE_BYTES}-byte limit", bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let shown: String = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).chars().take(40).collect();
        format!("not a valid record ({e}); value starts with {shown:?}")
    })
}

/// Decodes the `events` list (used when appending).
pub fn decode_events(bytes: &[u8]) -> Result<Vec<Event>, String> {
    decode(bytes)
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
        let version = Version(kv.mod_revision.max(0) as u64);
        if let Err(reason) = decode_one(&mut view, &key, kv.value, version) {
            tracing::warn!(key = %prefix.key(&key), %reason, "corrupt value in the DCS");
            view.corrupt.push(CorruptKey { key, version, reason });
        }
    }
    view.members.sort_by(|a, b| a.value.name.cmp(&b.value.name));
    view
}

fn decode_one(view: &mut ClusterView, key: &Key, bytes: &[u8], version: Version) -> Result<(), String> {
    fn v<T>(version: Version, value: T) -> Option<Versioned<T>> {
        Some(Versioned { version, value })
    }
    match key {
        Key::Leader => {
            let l: LeaderRecord = decode(bytes)?;
            if l.holder.is_empty() {
                return Err("leader record names no holder".into());
            }
            view.leader = v(version, l);
        }
        Key::Term => view.term = Term(decode(bytes)?),
        Key::Status => view.status = v(version, decode(bytes)?),
        Key::Member(name) => {
            let m: MemberRecord = decode(bytes)?;
            if &m.name != name {
                return Err(format!("member record under members/{name} names {:?}", m.name));
            }
            view.members.push(Versioned { version, value: m });
        }
        Key::Config => view.config = v(version, decode(bytes)?),
        Key::Switchover => view.switchover = v(version, decode(bytes)?),
        Key::Sync => view.sync = v(version, decode(bytes)?),
        Key::History => view.history = v(version, decode(bytes)?),
        Key::Initialize => view.initialize = v(version, decode(bytes)?),
        Key::Failsafe => view.failsafe = v(version, decode(bytes)?),
        Key::Events => {
            decode_events(bytes)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hacore::dcs::SyncRecord;

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
        let sync = json(&SyncRecord { leader: "n1".into(), term: Term(3), members: vec!["n2".into()] });
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
