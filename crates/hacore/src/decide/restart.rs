//! An operator's restart of PostgreSQL: stop fast, then start again in the same role.
//! Outside maintenance mode the usual start after a stop brings it back (under the lease
//! on the leader, after the lineage checks on a standby); in maintenance mode, when
//! nothing starts by itself, the restart starts it (operators restart exactly then, to
//! apply settings).

use super::Cx;
use crate::action::{Action, StopMode};
use crate::memory::PgOpKind;
use crate::reason::Reason;

impl Cx<'_> {
    /// Carries a restart forward. `role_ok`: PostgreSQL runs (or, stopped, last ran) in
    /// the role this situation expects (writable on the leader, a standby elsewhere); `start` issues the role's
    /// start in maintenance mode (it may decline, e.g. until the lease is renewed, and is
    /// asked again next step). Returns whether the restart decided this step.
    pub(super) fn restart(&mut self, role_ok: bool, start: impl FnOnce(&mut Self)) -> bool {
        if self.mem.pending.is_some() {
            // The stop (or anything else) is still running: the usual waiting applies.
            return false;
        }
        let pg = &self.obs.pg;
        if self.mem.restarting {
            let limit = self.cfg.timeouts.stop.saturating_add(self.cfg.timeouts.start);
            if self.mem.restart_since.is_some_and(|t| self.now.saturating_sub(t) > limit) {
                self.end_restart();
                self.note(Reason::OperationFailed, "restart: PostgreSQL did not run again in time".into());
                return false;
            }
            if !pg.running {
                self.mem.restart_saw_down = true;
            }
            if pg.running && !self.mem.restart_saw_down {
                // The stop is reported done but this reading still shows PostgreSQL up (it
                // was taken before the stop ended): look again before judging.
                self.busy();
                return false;
            }
            if pg.running || !self.s.paused {
                // Running again, or down outside maintenance mode: the usual path starts
                // it, with every check a start after a crash gets.
                self.end_restart();
                return false;
            }
            // It stays under way until PostgreSQL is seen running again (a failed start is
            // retried by the role's start, after its back-off).
            self.busy();
            start(self);
            self.set_if_unset(Reason::Restarting, "starting PostgreSQL again");
            return true;
        }
        if !self.obs.requests.restart || !role_ok {
            return false;
        }
        if !pg.running && self.s.paused && pg.system_id().is_some() {
            // Maintenance mode, PostgreSQL down: nothing else would start it; a restart does.
            self.begin_restart();
            return self.restart(role_ok, start);
        }
        if !pg.running || !pg.responsive {
            return false;
        }
        self.begin_restart();
        self.pg_op(PgOpKind::StopFast, |id| Action::Stop { id, mode: StopMode::Fast });
        self.set(Reason::Restarting, "stopping PostgreSQL (fast)");
        true
    }

    fn begin_restart(&mut self) {
        self.mem.restarting = true;
        self.mem.restart_saw_down = false;
        self.mem.restart_since = Some(self.now);
    }

    /// The restart is over (done, given up, or handed to the usual start).
    pub(super) fn end_restart(&mut self) {
        self.mem.restarting = false;
        self.mem.restart_saw_down = false;
        self.mem.restart_since = None;
    }

    /// A restart whose stop failed is over: PostgreSQL runs on as it was.
    pub(super) fn restart_stop_failed(&mut self) {
        if self.mem.restarting && !self.mem.restart_saw_down {
            self.end_restart();
            self.note(Reason::OperationFailed, "restart: the fast stop failed; PostgreSQL runs on".into());
        }
    }
}
