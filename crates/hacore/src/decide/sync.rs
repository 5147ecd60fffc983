//! Synchronous replication (S2): `synchronous_standby_names` names exactly the published
//! sync set (plus, transiently, one standby being added). Adding: change the setting,
//! wait until the standby's flush LSN reaches the primary's flush LSN read after the
//! change, then publish. Removing: publish first, then change the setting.

use super::Cx;
use crate::action::Action;
use crate::dcs::{ClusterView, Expect, Key, LeaderRecord, SyncRecord, Value, Write};
use crate::memory::SyncAdd;
use crate::observation::SyncStandbys;
use crate::reason::Reason;
use crate::types::{NodeName, Versioned};

impl Cx<'_> {
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
        let Some(sync) = view.sync.as_ref().filter(|s| s.value.leader == me && s.value.term == term) else {
            // Take the record over with an empty set; the setting follows next loop.
            let record = SyncRecord { leader: me, term, members: Vec::new() };
            self.leader_write(
                rec,
                vec![Write::put(Value::Sync(record), Expect::from_current(view.sync.as_ref()))],
                false,
            );
            return;
        };
        let published = &sync.value.members;
        let wanted = self.sync_candidates(view, published);

        // 1. Removal: publish first.
        let keep: Vec<NodeName> = published.iter().filter(|n| wanted.contains(n)).cloned().collect();
        if keep.len() < published.len() {
            let gone: Vec<_> = published.iter().filter(|n| !keep.contains(n)).cloned().collect();
            let record = SyncRecord { leader: me, term, members: keep };
            self.leader_write(rec, vec![Write::put(Value::Sync(record), Expect::Version(sync.version))], false);
            self.note(Reason::SyncSetChanged, format!("removed {}", gone.join(", ")));
            return;
        }

        // 2. The setting names exactly the published set plus the one being added.
        if let Some(a) = &self.mem.sync_add {
            if !wanted.contains(&a.name) || published.contains(&a.name) {
                self.mem.sync_add = None;
            }
        }
        let mut names = published.clone();
        if let Some(a) = &self.mem.sync_add {
            names.push(a.name.clone());
        }
        let target = SyncStandbys::for_names(names, self.strict());
        if pg.sync_standbys != target {
            self.actions.push(Action::SetSyncStandbys(target));
            if let Some(a) = &mut self.mem.sync_add {
                a.target = None;
            }
            return;
        }

        // 3. An addition in progress: publish once the standby has everything acknowledged.
        if let Some(a) = self.mem.sync_add.clone() {
            match a.target {
                None => {
                    if let Some(add) = &mut self.mem.sync_add {
                        add.target = Some(pg.flush_lsn);
                    }
                }
                Some(t) => {
                    let flushed = pg.standbys.iter().find(|s| s.name == a.name).map(|s| s.flush_lsn);
                    if flushed.is_some_and(|f| f >= t) {
                        let mut members = published.clone();
                        members.push(a.name.clone());
                        let record = SyncRecord { leader: me, term, members };
                        self.leader_write(
                            rec,
                            vec![Write::put(Value::Sync(record), Expect::Version(sync.version))],
                            false,
                        );
                        self.note(Reason::SyncSetChanged, format!("added {}", a.name));
                        self.mem.sync_add = None;
                    }
                }
            }
            self.busy();
            return;
        }

        // 4. Start adding one if the set is short.
        let n = self.s.synchronous_node_count as usize;
        if published.len() < n {
            if let Some(next) = wanted.iter().find(|w| !published.contains(w)) {
                self.mem.sync_add = Some(SyncAdd { name: next.clone(), target: None });
                let mut names = published.clone();
                names.push(next.clone());
                self.actions.push(Action::SetSyncStandbys(SyncStandbys::for_names(names, self.strict())));
                self.busy();
            }
        }
    }

    /// Standbys that should be synchronous: streaming members allowed to be, current set
    /// members first (no churn), then most advanced, at most `synchronous_node_count`.
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
