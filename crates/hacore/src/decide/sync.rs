//! Synchronous replication (S2).
//!
//! The invariant: `synchronous_standby_names` names every standby that *may* be in the
//! published sync set, so no commit is acknowledged without a standby that could take
//! over. "May be published" is the union of what the last read shows, what this reign
//! last wrote and saw confirmed (only the leader writes the record, so its confirmed write
//! is authoritative over a read that may lag it), and what writes still in flight or with
//! an unknown outcome would publish.
//!
//! Adding: name the standby in the setting, wait until its flush LSN reaches the
//! primary's flush LSN read after the change, then publish. Removing: publish first;
//! the setting follows once nothing may still publish the name.

use super::Cx;
use crate::action::Action;
use crate::dcs::{ClusterView, Expect, Key, LeaderRecord, SyncRecord, Value, Write};
use crate::memory::SyncAdd;
use crate::observation::{Done, Failure, SyncStandbys};
use crate::reason::Reason;
use crate::types::{NodeName, OpId, Version, Versioned};
use std::sync::Arc;

impl Cx<'_> {
    /// Learns the outcome of a sync-record write.
    pub(super) fn on_sync_write_outcome(&mut self, result: &Result<Done, Failure>) {
        let Some((_, record)) = self.mem.sync_write.take() else { return };
        let expect = self.mem.sync_expect.take();
        self.mem.sync_refused = if matches!(result, Err(Failure::Conflict)) { expect } else { None };
        match result {
            Ok(_) => {
                // The store holds exactly this now (nobody else writes it in this reign).
                self.mem.sync_known = Some(record);
                self.mem.sync_unsure.clear();
            }
            // Nothing was applied.
            Err(Failure::Conflict | Failure::Unavailable | Failure::Skipped | Failure::Failed) => {}
            // Maybe applied: its names may be published, and so may the last confirmed
            // record's, which no longer tells what the store holds (a confirmed record
            // kept past a write that applied would hide the change from this leader for
            // the rest of its reign: the published set would never be completed again).
            Err(Failure::Indeterminate | Failure::TimedOut) => {
                let known = self.mem.sync_known.take().map(|k| k.members).unwrap_or_default();
                for n in known.iter().chain(record.members.iter()) {
                    if !self.mem.sync_unsure.contains(n) {
                        self.mem.sync_unsure.push(n.clone());
                    }
                }
            }
        }
    }

    /// Writes a sync record under the leader guard and remembers it until its outcome.
    pub(super) fn write_sync(&mut self, rec: &Versioned<LeaderRecord>, record: SyncRecord, expect: Expect) -> OpId {
        let id = self.leader_write(rec, vec![Write::put(Value::Sync(record.clone()), expect)], false);
        self.mem.sync_write = Some((id, record));
        self.mem.sync_expect = Some(Self::sync_condition(rec, expect));
        id
    }

    /// A fingerprint of what a sync-record write is conditioned on: the record's version
    /// (or its absence) and the leader record's version its guard names. A write refused
    /// because the leader record moved must be retried on a read that shows the move,
    /// though the sync record did not change.
    fn sync_condition(rec: &Versioned<LeaderRecord>, expect: Expect) -> Version {
        let e = match expect {
            Expect::Any => 0,
            Expect::Absent => u64::MAX,
            Expect::Version(v) => v.0,
        };
        Version(e ^ rec.version.0.rotate_left(29))
    }

    /// What the store holds as far as this node knows (its confirmed write, else its
    /// read), and everything that may be published (that plus the read, writes in flight
    /// and writes with an unknown outcome). None if the record is not this reign's yet.
    pub(super) fn sync_sets(
        &self,
        view: &ClusterView,
        rec: &Versioned<LeaderRecord>,
    ) -> Option<(Vec<NodeName>, Vec<NodeName>)> {
        let term = rec.value.term;
        let me = &self.cfg.name;
        let mine = |s: &SyncRecord| s.leader == *me && s.term == term;
        let read = view.sync.as_ref().filter(|s| mine(&s.value)).map(|s| &s.value.members[..]);
        let known = self.mem.sync_known.as_ref().filter(|s| mine(s)).map(|s| &s.members[..]);
        let published = known.or(read)?.to_vec();
        let mut maybe = published.clone();
        let extra = read
            .into_iter()
            .flatten()
            .chain(self.mem.sync_write.iter().flat_map(|(_, r)| r.members.iter()))
            .chain(self.mem.sync_unsure.iter());
        for n in extra {
            if !maybe.contains(n) {
                maybe.push(n.clone());
            }
        }
        Some((published, maybe))
    }

    pub(super) fn manage_sync(&mut self, view: &ClusterView, rec: &Versioned<LeaderRecord>) {
        let pg = &self.obs.pg;
        if !self.s.synchronous_mode.enabled() {
            self.mem.sync_add = None;
            if pg.sync_standbys != SyncStandbys::Off {
                self.actions.push(Action::SetSyncStandbys(SyncStandbys::Off));
            }
            if let Some(s) = &view.sync {
                self.leader_write(rec, vec![Write::delete(Key::Sync, Expect::Version(s.version))], false);
            }
            return;
        }
        let term = rec.value.term;
        let me = self.cfg.name.clone();
        let cas = view.sync.as_ref().map_or(Expect::Absent, |s| Expect::Version(s.version));
        let Some((published, maybe)) = self.sync_sets(view, rec) else {
            if self.mem.sync_write.is_none() {
                // Take the record over with an empty set; the setting follows.
                self.write_sync(rec, SyncRecord { leader: me, term, members: Arc::default() }, cas);
            }
            return;
        };
        let wanted = self.sync_candidates(view, &published);
        if let Some(a) = &self.mem.sync_add {
            if !wanted.contains(&a.name) && !maybe.contains(&a.name) || published.contains(&a.name) {
                self.mem.sync_add = None;
            }
        }
        let mut names = maybe.clone();
        if let Some(a) = &self.mem.sync_add {
            if !names.contains(&a.name) {
                names.push(a.name.clone());
            }
        }
        let target = SyncStandbys::for_names(names, self.strict());
        if pg.sync_standbys != target {
            // Grows at once; shrinks only once nothing may still publish the name (above).
            self.actions.push(Action::SetSyncStandbys(target));
            if let Some(a) = &mut self.mem.sync_add {
                a.target = None;
            }
            return;
        }
        if self.mem.sync_write.is_some() {
            // One change at a time: wait for the outcome of the last write.
            self.busy();
            return;
        }

        // The last write on a read that showed the record as this one does was refused:
        // this read is stale, and the same write would be refused again.
        let refused = self.mem.sync_refused == Some(Self::sync_condition(rec, cas));

        // Removal: publish first.
        let keep: Vec<NodeName> = published.iter().filter(|n| wanted.contains(n)).cloned().collect();
        if keep.len() < published.len() {
            if refused {
                return;
            }
            let gone: Vec<_> = published.iter().filter(|n| !keep.contains(n)).cloned().collect();
            self.write_sync(rec, SyncRecord { leader: me, term, members: keep.into() }, cas);
            self.note(Reason::SyncSetChanged, format!("removed {}", gone.join(", ")));
            return;
        }

        // An addition in progress: publish once the standby has everything acknowledged.
        if let Some(a) = self.mem.sync_add.clone() {
            match a.target {
                None => {
                    if let Some(add) = &mut self.mem.sync_add {
                        add.target = Some(pg.flush_lsn);
                    }
                }
                Some(t) => {
                    let flushed = pg.standbys.iter().find(|s| s.name == a.name).map(|s| s.flush_lsn);
                    if refused {
                        return;
                    }
                    if flushed.is_some_and(|f| f >= t) {
                        let mut members = published.clone();
                        members.push(a.name.clone());
                        self.write_sync(rec, SyncRecord { leader: me, term, members: members.into() }, cas);
                        self.note(Reason::SyncSetChanged, format!("added {}", a.name));
                    }
                }
            }
            self.busy();
            return;
        }

        // Start adding one if the set is short.
        let n = self.s.synchronous_node_count as usize;
        if published.len() < n {
            if let Some(next) = wanted.iter().find(|w| !published.contains(w)) {
                self.mem.sync_add = Some(SyncAdd { name: next.clone(), target: None });
                let mut names = maybe;
                if !names.contains(next) {
                    names.push(next.clone());
                }
                // PostgreSQL may already name it (a name whose publication is unsure).
                let setting = SyncStandbys::for_names(names, self.strict());
                if self.obs.pg.sync_standbys != setting {
                    self.actions.push(Action::SetSyncStandbys(setting));
                }
                self.busy();
            }
        }
    }

    /// Standbys that should be synchronous: streaming members allowed to be, current set
    /// members first (no churn), then the one being added, then the most advanced; at most
    /// `synchronous_node_count`.
    fn sync_candidates(&self, view: &ClusterView, published: &[NodeName]) -> Vec<NodeName> {
        let pg = &self.obs.pg;
        let mut healthy: Vec<_> = pg
            .standbys
            .iter()
            .filter(|s| s.streaming && s.name != self.cfg.name)
            .filter(|s| view.member(&s.name).is_some_and(|m| !m.value.tags.nosync && m.value.tags.can_lead()))
            .collect();
        // Published members first, then the one being added (no flapping), then the most advanced.
        let adding = self.mem.sync_add.as_ref().map(|a| a.name.as_str());
        let standing = |name: &str| (published.iter().any(|p| p == name), adding == Some(name));
        healthy.sort_by(|a, b| {
            standing(&b.name).cmp(&standing(&a.name)).then(b.flush_lsn.cmp(&a.flush_lsn)).then(a.name.cmp(&b.name))
        });
        healthy.into_iter().take(self.s.synchronous_node_count as usize).map(|s| s.name.clone()).collect()
    }
}
