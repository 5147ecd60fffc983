//! How every backend stores the records: JSON values, the `term` key as a decimal
//! number, and the decoding of stored key-value pairs into a [`ClusterView`] that never
//! fails as a whole (a bad value becomes a [`CorruptKey`] naming its key).

use crate::dcs::{ClusterView, CorruptKey, Event, Key, LeaderRecord, MemberRecord, Value};
use crate::types::{Term, Version, Versioned};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest value a backend writes or accepts. No record of ours comes near this, so
/// anything larger is not ours.
pub const MAX_VALUE_BYTES: usize = 512 * 1024;

/// Events kept in the `events` key.
pub const MAX_EVENTS: usize = 100;

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

/// Decodes one record, refusing oversized values with a message naming the limit.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(format!("value of {} bytes exceeds the {MAX_VALUE_BYTES}-byte limit", bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let shown: String = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).chars().take(40).collect();
        format!("not a valid record ({e}); value starts with {shown:?}")
    })
}

/// Decodes the `events` list.
pub fn decode_events(bytes: &[u8]) -> Result<Vec<Event>, String> {
    decode(bytes)
}

/// Adds one stored pair to `view`; a value that does not decode is recorded in
/// [`ClusterView::corrupt`] and its reason returned (for the backend's log).
pub fn decode_into(view: &mut ClusterView, key: Key, bytes: &[u8], version: Version) -> Result<(), String> {
    let r = decode_one(view, &key, bytes, version);
    if let Err(reason) = &r {
        view.corrupt.push(CorruptKey { key, version, reason: reason.clone() });
    }
    r
}

/// Puts the view in its canonical order (members by name) once every pair was added.
pub fn finish(view: &mut ClusterView) {
    view.members.sort_by(|a, b| a.value.name.cmp(&b.value.name));
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
            view.members.push(Versioned { version, value: m.into() });
        }
        Key::Config => view.config = v(version, decode(bytes)?),
        Key::Switchover => view.switchover = v(version, decode(bytes)?),
        Key::Sync => view.sync = v(version, decode(bytes)?),
        Key::History => view.history = v(version, decode(bytes)?),
        Key::Initialize => view.initialize = v(version, decode(bytes)?),
        Key::Failsafe => view.failsafe = v(version, decode(bytes)?),
        Key::Events => view.events = decode_events(bytes)?,
    }
    Ok(())
}
