//! The daemon's loop: observe (PostgreSQL, one DCS read, the peers, the guard, finished
//! operations) -> `hacore::step` -> execute the actions in order -> sleep until
//! `wake_within`, a DCS change, a finished operation or an API request.
//!
//! Long PostgreSQL operations (initdb, clone, rewind, start, stop, promote, checkpoint)
//! run in their own task and report their outcome into the next observation; everything
//! else runs in order within the batch, which stops at the first failure or passed deadline.

use crate::api::{PeerClient, StatusDoc};
use crate::config::FileConfig;
use crate::guard::GuardClient;
use crate::operator::DynDcs;
use crate::pg::ctl::PgCtl;
use crate::pg::observe::{observe, Trouble};
use backend_etcd::clock::BootClock;
use hacore::action::Action;
use hacore::dcs::{ClusterView, Dcs, DcsError, DcsOp, DcsReply, FailsafeMember, MemberRole};
use hacore::memdcs::Clock;
use hacore::observation::SyncStandbys;
use hacore::{
    step, Done, FailsafeRequest, Failure, GuardState, Memory, Millis, NodeStatus, Observation, OpId, Outcome,
    PeerReport, PeerStatus, Reason, StopMode,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, error, info, warn, Instrument};

/// State shared between the loop and the REST API.
pub struct Shared {
    /// The core's configuration of this node.
    pub cfg: hacore::Config,
    /// Cluster name.
    pub cluster: String,
    inner: Mutex<Inner>,
    /// Wakes the loop early (API requests).
    pub wake: Notify,
    clock: BootClock,
    /// The local PostgreSQL, for answers that must be fresher than the last tick.
    pg_target: crate::pg::observe::PgTarget,
    /// The managed files (a reload rewrites them).
    pg: Arc<PgCtl>,
    /// Where the configuration came from (file and `--set` overrides), and the running
    /// configuration with what reloads applied: `POST /reload` and SIGHUP re-read it.
    reload: Mutex<Option<ReloadSource>>,
}

/// The file a reload re-reads, and what runs now.
struct ReloadSource {
    path: std::path::PathBuf,
    sets: Vec<(String, String)>,
    running: FileConfig,
}

/// What a reload did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Reloaded {
    /// Keys applied now (PostgreSQL reloaded when they changed its files).
    pub applied: Vec<String>,
    /// Keys that changed but take effect only when the daemon restarts.
    pub need_daemon_restart: Vec<String>,
    /// `[settings]` keys that changed in the file: the store's copy rules; change them
    /// with `hashell edit-config`.
    pub settings_in_store: Vec<String>,
    /// PostgreSQL settings now waiting for a PostgreSQL restart (`pending_restart`).
    pub pending_restart: bool,
}

#[derive(Default)]
struct Inner {
    memory: Memory,
    status: NodeStatus,
    running: bool,
    last_loop: Millis,
    loop_wait: Millis,
    /// When a peer last woke the loop (wake-ups closer together are ignored).
    last_peer_wake: Option<Millis>,
    /// The WAL receiver streamed at the last tick.
    streaming: bool,
    /// The last view of the store and what the peers answered at that tick.
    view: Option<ClusterView>,
    peers: Vec<PeerReport>,
    /// The store, once connected (operator requests through the REST API).
    store: Option<Arc<dyn DynDcs>>,
    counters: crate::metrics::Counters,
    /// An operator asked to rebuild this node's data directory (until the clone starts).
    reinitialize: bool,
    /// The restart under way or last finished (`POST /restart`).
    restart: Option<Restart>,
    /// A restart scheduled for later.
    scheduled_restart: Option<ScheduledRestart>,
    /// Whether PostgreSQL has settings changed that need a restart (last tick).
    pending_restart: bool,
    restarts: u64,
}

/// Which restarts a request applies to (Patroni's `role` and `restart_pending`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestartConditions {
    /// Only when this node has this role (`primary` or `replica`).
    pub role: Option<MemberRole>,
    /// Only when PostgreSQL has settings changed that need a restart.
    pub pending_only: bool,
}

/// A restart scheduled for a wall-clock time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduledRestart {
    /// When (ms since the epoch, this machine's wall clock).
    pub at_wall_ms: u64,
    /// Checked when it comes due.
    pub conditions: RestartConditions,
}

/// Where a restart stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPhase {
    /// Asked; the core has not taken it up yet (it waits while leadership is in flux).
    Asked {
        /// Given up when still not taken up by then (boot clock).
        until: Millis,
    },
    /// The core stopped PostgreSQL (or is stopping it); `saw_down` once it was seen down.
    Taken {
        /// PostgreSQL was seen stopped since.
        saw_down: bool,
        /// Given up when PostgreSQL does not run again by then (boot clock).
        until: Millis,
    },
    /// Finished: PostgreSQL runs again after a stop.
    Done,
    /// Not done: the core never took it up, or the stop failed.
    Failed,
}

/// A restart and its progress.
#[derive(Clone, Debug)]
struct Restart {
    id: u64,
    phase: RestartPhase,
    /// Checked again at every tick until the core takes the request up: the node's role
    /// may change in between (an election), and a restart asked of a replica must not
    /// stop a new primary.
    conditions: RestartConditions,
    /// How long PostgreSQL may take to stop and start again once taken up.
    run_limit: Millis,
}

/// Peer wake-ups closer together than this are dropped: a flood of them cannot turn the
/// loop into a busy one.
const PEER_WAKE_MIN_GAP: Millis = 100;

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What peers get from `GET /peer`: the last step's status, with a standby's WAL
    /// position read live. A leader handing over waits for the candidate to receive its
    /// shutdown checkpoint; a position as old as the candidate's last tick would make it
    /// wait up to a loop for nothing.
    pub async fn peer_status(&self) -> PeerStatus {
        let mut st = {
            let i = self.lock();
            i.status.peer_view(i.running)
        };
        if st.running && st.role == hacore::dcs::MemberRole::Replica {
            let mut t = self.pg_target.clone();
            t.timeout = Duration::from_millis(300);
            if let Some(lsn) = crate::pg::observe::standby_position(&t).await {
                st.position.lsn = st.position.lsn.max(lsn);
            }
        }
        st
    }

    /// The document of `GET /status`.
    pub fn status_doc(&self) -> StatusDoc {
        let now = self.clock.now();
        let i = self.lock();
        let s = &i.status;
        StatusDoc {
            name: self.cfg.name.clone(),
            cluster: self.cluster.clone(),
            role: s.role,
            running: i.running,
            term: s.term.0,
            timeline: s.position.timeline.0,
            lsn: s.position.lsn.to_string(),
            leader: s.leader.clone(),
            writable_for_ms: s.writable_until.filter(|&u| u > now).map(|u| u - now),
            reason: s.reason,
            detail: s.detail.clone(),
            paused: s.paused,
            pending_restart: i.pending_restart,
            scheduled_restart: i.scheduled_restart.as_ref().map(|r| crate::commands::rfc3339(r.at_wall_ms)),
        }
    }

    /// Answers a primary's failsafe ping through the core, under the loop's lock.
    pub fn answer_failsafe(&self, req: &FailsafeRequest) -> bool {
        let now = self.clock.now();
        let mut i = self.lock();
        let (ok, mem) = hacore::answer_failsafe(&self.cfg, &i.memory, req, now);
        i.memory = mem;
        ok
    }

    /// The last view of the store, this node's status and the peers' last answers.
    pub fn snapshot(&self) -> (Option<ClusterView>, NodeStatus, bool, Vec<PeerReport>) {
        let i = self.lock();
        (i.view.clone(), i.status.clone(), i.running, i.peers.clone())
    }

    /// The counters behind `/metrics`.
    pub fn counters(&self) -> crate::metrics::Counters {
        self.lock().counters.clone()
    }

    fn count(&self, f: impl FnOnce(&mut crate::metrics::Counters)) {
        f(&mut self.lock().counters)
    }

    fn count_action(&self, kind: &'static str, r: &Result<Done, Failure>) {
        let label = crate::metrics::result_label(r);
        self.count(|c| *c.actions.entry((kind, label)).or_default() += 1);
    }

    /// Asks the loop to rebuild this replica from another member (`POST /reinitialize`).
    /// Refused on the leader.
    pub fn request_reinitialize(&self) -> Result<String, String> {
        {
            let mut i = self.lock();
            if i.status.leader.as_deref() == Some(self.cfg.name.as_str()) || i.status.role == MemberRole::Primary {
                return Err("this node is the leader: switch over to another member first, then reinitialize it".into());
            }
            if i.view.is_none() {
                return Err("this node has not read the store yet; retry in a moment".into());
            }
            if i.status.paused {
                // The core takes no automatic action in maintenance mode, a rebuild included.
                return Err("the cluster is in maintenance mode: resume it first (hashell resume)".into());
            }
            i.reinitialize = true;
        }
        self.wake.notify_one();
        Ok("reinitializing: PostgreSQL stops and the data directory is cloned again from a healthy member".into())
    }

    /// The cluster settings in effect: the store's as last applied, else the file's.
    pub fn settings(&self) -> hacore::ClusterSettings {
        let i = self.lock();
        i.memory.applied.as_ref().map_or_else(|| self.cfg.defaults.clone(), |(_, s)| s.clone())
    }

    /// Remembers where the configuration came from, so reloads can re-read it.
    pub fn set_reload_source(&self, path: std::path::PathBuf, sets: Vec<(String, String)>, running: FileConfig) {
        *self.reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(ReloadSource { path, sets, running });
    }

    /// Re-reads the configuration file: applies the user's PostgreSQL parameters, pg_hba
    /// lines and `restore_command` (rewriting the files, reloading PostgreSQL), and lists
    /// what else changed (that needs a daemon restart). An invalid file changes nothing.
    pub async fn reload(&self) -> Result<Reloaded, String> {
        let (path, sets, running) = {
            let r = self.reload.lock().unwrap_or_else(|e| e.into_inner());
            let r = r.as_ref().ok_or("this daemon was not started from a file; nothing to reload")?;
            (r.path.clone(), r.sets.clone(), r.running.clone())
        };
        let new = crate::config::load_file(&path, &sets)
            .map_err(|e| format!("{}the running configuration is unchanged; fix the file and reload again", e))?;
        let crate::config::Changes { live: applied, later, stored } = crate::config::reload_changes(&running, &new);
        if !applied.is_empty() {
            self.pg.retune(crate::pg::ctl::Tunables::of(&new)).await?;
            let mut r = self.reload.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = r.as_mut() {
                r.running.postgresql.parameters = new.postgresql.parameters.clone();
                r.running.postgresql.pg_hba = new.postgresql.pg_hba.clone();
                r.running.postgresql.restore_command = new.postgresql.restore_command.clone();
            }
        }
        info!(?applied, need_daemon_restart = ?later, settings_in_store = ?stored, "configuration reloaded");
        // The postmaster rereads its files asynchronously after the reload signal.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut t = self.pg_target.clone();
        t.timeout = Duration::from_millis(1_000);
        let pending_restart = crate::pg::observe::pending_restart(&t).await.unwrap_or(false);
        self.wake.notify_one();
        Ok(Reloaded { applied, need_daemon_restart: later, settings_in_store: stored, pending_restart })
    }

    /// Asks the loop to restart PostgreSQL now, if `cond` holds; returns the restart's id
    /// to follow with [`Shared::restart_phase`], or None when the conditions do not hold.
    pub fn request_restart(&self, cond: &RestartConditions) -> Result<Option<u64>, String> {
        let id = {
            let mut i = self.lock();
            if i.view.is_none() {
                return Err("this node has not read the store yet; retry in a moment".into());
            }
            if i.restart
                .as_ref()
                .is_some_and(|r| matches!(r.phase, RestartPhase::Asked { .. } | RestartPhase::Taken { .. }))
            {
                return Err("a restart is already under way on this node; wait for it".into());
            }
            if !Self::conditions_hold(&i, cond) {
                return Ok(None);
            }
            i.restarts += 1;
            let until = self.clock.now() + 2 * i.loop_wait.max(1_000) + self.cfg.defaults.ttl;
            let id = i.restarts;
            let run_limit = self.cfg.timeouts.stop + self.cfg.timeouts.start + self.cfg.defaults.ttl;
            let phase = RestartPhase::Asked { until };
            i.restart = Some(Restart { id, phase, conditions: cond.clone(), run_limit });
            id
        };
        self.wake.notify_one();
        Ok(Some(id))
    }

    fn conditions_hold(i: &Inner, cond: &RestartConditions) -> bool {
        let role_ok = cond.role.is_none_or(|r| r == i.status.role);
        role_ok && (!cond.pending_only || i.pending_restart)
    }

    /// Where restart `id` stands (None: another one replaced it).
    pub fn restart_phase(&self, id: u64) -> Option<RestartPhase> {
        self.lock().restart.as_ref().filter(|r| r.id == id).map(|r| r.phase)
    }

    /// Schedules a restart (one at a time).
    pub fn schedule_restart(&self, s: ScheduledRestart) -> Result<(), String> {
        let mut i = self.lock();
        if let Some(old) = &i.scheduled_restart {
            return Err(format!(
                "a restart is already scheduled for {} UTC; cancel it first (DELETE /restart)",
                crate::commands::wall_time(old.at_wall_ms)
            ));
        }
        i.scheduled_restart = Some(s);
        Ok(())
    }

    /// Cancels the scheduled restart, returning it.
    pub fn cancel_restart(&self) -> Option<ScheduledRestart> {
        self.lock().scheduled_restart.take()
    }

    /// The scheduled restart, if any.
    pub fn scheduled_restart(&self) -> Option<ScheduledRestart> {
        self.lock().scheduled_restart.clone()
    }

    /// Whether the WAL receiver streams, asked of PostgreSQL now (health checks must not
    /// answer from a tick ago); the last tick's answer when PostgreSQL does not reply.
    pub async fn pg_streaming(&self) -> bool {
        let mut t = self.pg_target.clone();
        t.timeout = Duration::from_millis(300);
        match crate::pg::observe::receiver_streaming(&t).await {
            Some(s) => s,
            None => self.lock().streaming,
        }
    }

    /// The store, once the daemon reached it.
    pub fn store(&self) -> Option<Arc<dyn DynDcs>> {
        self.lock().store.clone()
    }

    /// A peer says leadership moved (`POST /wake`): run the loop now. Returns whether it
    /// woke the loop (false: another wake-up came less than 100 ms ago).
    pub fn wake_from_peer(&self) -> bool {
        let now = self.clock.now();
        {
            let mut i = self.lock();
            if i.last_peer_wake.is_some_and(|t| now.saturating_sub(t) < PEER_WAKE_MIN_GAP) {
                return false;
            }
            i.last_peer_wake = Some(now);
            i.counters.peer_wakeups += 1;
        }
        self.wake.notify_one();
        true
    }

    /// Whether the loop ran recently (3 loop waits, at least 10 s).
    pub fn loop_alive(&self) -> bool {
        let i = self.lock();
        self.clock.now().saturating_sub(i.last_loop) <= (3 * i.loop_wait).max(10_000)
    }
}

/// Counts each callback's ending and records failures as `callback_failed` events.
fn callback_report(sh: Arc<Shared>) -> crate::callbacks::Report {
    use crate::callbacks::Ending;
    Arc::new(move |event, role, command, ending| {
        let result = match ending {
            Ending::Ok => "ok",
            Ending::Failed(_) => "failed",
            Ending::TimedOut => "timed_out",
        };
        sh.count(|c| *c.callbacks.entry((event.name(), result)).or_default() += 1);
        let detail = match ending {
            Ending::Ok => return,
            Ending::Failed(e) => format!("{} ({}) `{command}` failed: {e}", event.name(), role.name()),
            Ending::TimedOut => format!("{} ({}) `{command}` timed out and was killed", event.name(), role.name()),
        };
        let (store, schema, term) = {
            let i = sh.lock();
            (i.store.clone(), i.view.as_ref().map_or(1, ClusterView::schema), i.status.term)
        };
        let Some(store) = store else { return };
        let ev = hacore::dcs::Event {
            wall_time_ms: wall_ms(),
            node: sh.cfg.name.clone(),
            term,
            reason: Reason::CallbackFailed.at_schema(schema),
            detail,
        };
        tokio::spawn(async move {
            // Informational: a lost event only leaves the record shorter.
            let _ = store.execute_dyn(&DcsOp::AppendEvent(ev)).await;
        });
    })
}

/// This machine's wall clock, ms since the epoch (data only: schedules, events).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A restart's next phase after a step: taken up once the core's memory shows it, done
/// once PostgreSQL runs again after being seen down with nothing pending.
fn restart_progress(
    phase: RestartPhase,
    mem: &Memory,
    pg: &hacore::PgObservation,
    now: Millis,
    run_limit: Millis,
) -> RestartPhase {
    let settled = mem.pending.is_none() && !mem.restarting;
    match phase {
        RestartPhase::Asked { .. } if mem.restarting => {
            RestartPhase::Taken { saw_down: !pg.running, until: now.saturating_add(run_limit) }
        }
        RestartPhase::Asked { until } if now >= until => RestartPhase::Failed,
        RestartPhase::Taken { saw_down, until } => {
            let saw_down = saw_down || !pg.running;
            match (settled, pg.running && pg.responsive, saw_down) {
                (true, true, true) => RestartPhase::Done,
                (true, true, false) => RestartPhase::Failed,
                _ if now >= until => RestartPhase::Failed,
                _ => RestartPhase::Taken { saw_down, until },
            }
        }
        p => p,
    }
}

/// Connects to the store (retried by the loop until it succeeds).
pub type Connector<D> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<D, DcsError>> + Send>> + Send + Sync>;

/// One node's daemon.
pub struct Daemon<D: Dcs + 'static> {
    file: FileConfig,
    shared: Arc<Shared>,
    pg: Arc<PgCtl>,
    connector: Connector<D>,
    dcs: Option<Arc<D>>,
    dcs_error: Option<String>,
    dcs_failing: bool,
    guard: GuardClient,
    peers: PeerClient,
    clock: BootClock,
    /// Outcomes of long PostgreSQL operations: they wake the loop.
    tx: mpsc::UnboundedSender<Outcome>,
    rx: mpsc::UnboundedReceiver<Outcome>,
    /// Outcomes of informational writes: read at the next loop, never a reason to wake.
    bg_tx: mpsc::UnboundedSender<Outcome>,
    bg_rx: mpsc::UnboundedReceiver<Outcome>,
    outcomes: Vec<Outcome>,
    long: Option<(OpId, tokio::task::JoinHandle<()>)>,
    view: Option<ClusterView>,
    tick: u64,
    said: Option<(Reason, String)>,
    trouble: Option<String>,
    adopted: bool,
    /// The version of the store's settings last written to the settings cache.
    cached: Option<hacore::Version>,
    /// A standby's upstream named on disk, not yet resolved to an address.
    upstream_pending: bool,
    quick_steps: u32,
    callbacks: crate::callbacks::Runner,
    callback_state: crate::callbacks::Tracker,
}

/// Time kept before the writable deadline for the next observation, step and guard arm:
/// store calls and reads end this long before it, however slow the store.
const IO_SLACK: Millis = 500;

/// How often a store without a watch is read while leadership is in flux (no leader
/// record, a switchover requested, a member electing or fencing).
const NO_WATCH_FLUX_POLL: Millis = 1_000;

/// Bound on one peer wake-up call.
const PEER_WAKE_LIMIT: Duration = Duration::from_millis(500);

/// Whether leadership is in flux in `view`: a store without a watch is then polled faster.
fn in_flux(view: &ClusterView) -> bool {
    view.leader.is_none()
        || view.switchover.is_some()
        || view.members.iter().any(|m| matches!(m.value.role, MemberRole::Candidate | MemberRole::Fencing))
}

/// What a batch did that matters after it.
struct Executed {
    /// An outcome calls for the next step at once.
    urgent: bool,
    /// This node acquired, transferred or released the leader record.
    moved: bool,
}

/// Consecutive steps without a sleep after urgent outcomes (a store that keeps refusing
/// must not turn the loop into a busy one).
const MAX_QUICK_STEPS: u32 = 3;

/// The watchdog device the guard holds: none when `mode = off` or (`automatic`) when the
/// device does not exist; `required` refuses to start unless the device opens and answers.
fn watchdog_device(file: &FileConfig) -> Result<Option<std::path::PathBuf>, String> {
    use crate::config::WatchdogMode;
    let w = &file.watchdog;
    match w.mode {
        WatchdogMode::Off => Ok(None),
        WatchdogMode::Automatic => Ok(w.device.exists().then(|| w.device.clone())),
        WatchdogMode::Required => {
            // Opening starts it; dropping it disarms it again (magic close).
            crate::watchdog::Watchdog::open(&w.device, 60).map_err(|e| {
                format!(
                    "watchdog.mode = \"required\" but {e}; load a watchdog driver (e.g. `modprobe softdog`), \
                     give the daemon's user write access to the device, or set watchdog.mode = \"automatic\""
                )
            })?;
            Ok(Some(w.device.clone()))
        }
    }
}

fn is_timeout(e: &str) -> bool {
    e.contains("did not finish within") || e.contains("no answer within") || e.contains("still alive after")
}

fn failure(e: &str) -> Failure {
    if is_timeout(e) {
        Failure::TimedOut
    } else {
        Failure::Failed
    }
}

/// Where the daemon keeps the cluster settings it last applied: next to the data
/// directory (`<data_dir>.settings.json`), so a re-clone keeps it.
pub fn settings_cache(file: &FileConfig) -> std::path::PathBuf {
    crate::config::sibling(&file.postgresql.data_dir, "settings.json")
}

/// The cached settings, if the file exists, parses and passes validation (anything else
/// is ignored with a warning: the file's own settings apply then).
pub fn read_settings_cache(path: &std::path::Path, safety: &hacore::Safety) -> Option<hacore::ClusterSettings> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot read the cached cluster settings; using the file's");
            return None;
        }
    };
    let settings: hacore::ClusterSettings = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "the cached cluster settings do not parse; using the file's");
            return None;
        }
    };
    match settings.validate(safety) {
        Ok(()) => Some(settings),
        Err(errs) => {
            let why: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            warn!(file = %path.display(), errors = %why.join("; "), "the cached cluster settings fail validation; using the file's");
            None
        }
    }
}

/// Writes `settings` to the cache atomically (a temporary file renamed over it).
pub fn write_settings_cache(path: &std::path::Path, settings: &hacore::ClusterSettings) -> std::io::Result<()> {
    let tmp = crate::config::sibling(path, "tmp");
    let json = serde_json::to_string_pretty(settings).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

impl<D: Dcs + 'static> Daemon<D> {
    /// A daemon for `file`, reaching the store through `connector`.
    pub fn new(file: FileConfig, connector: Connector<D>) -> Result<Daemon<D>, String> {
        let mut cfg = file.core();
        cfg.validate().map_err(|e| format!("{e:?}"))?;
        // The cluster's settings as this node last applied them stand in for the file's
        // until the store's are read and valid: a daemon restarted while the store holds
        // settings that fail validation (a hand-written ttl in seconds) must not fall
        // back to the file's, which may contradict the cluster's (a standby cluster
        // promoted since, synchronous mode switched on).
        let cache = settings_cache(&file);
        if let Some(cached) = read_settings_cache(&cache, &cfg.safety) {
            info!(file = %cache.display(), "the cluster settings last applied stand in until the store's are read");
            cfg.defaults = cached;
        }
        let pg = Arc::new(PgCtl::new(&file)?);
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the hashell binary: {e}"))?;
        let socket =
            file.guard.socket.clone().unwrap_or_else(|| crate::config::sibling(&file.postgresql.data_dir, "guard"));
        let guard = GuardClient::new(socket, file.postgresql.data_dir.clone(), exe, watchdog_device(&file)?);
        let (tx, rx) = mpsc::unbounded_channel();
        let (bg_tx, bg_rx) = mpsc::unbounded_channel();
        let peers = PeerClient::for_config(&file)?;
        let shared = Arc::new(Shared {
            cfg,
            cluster: file.cluster.name.clone(),
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            clock: BootClock,
            pg_target: pg.target.clone(),
            pg: pg.clone(),
            reload: Mutex::new(None),
        });
        let callbacks = crate::callbacks::Runner::new(
            file.callbacks.clone(),
            file.cluster.name.clone(),
            file.node.name.clone(),
            callback_report(shared.clone()),
        );
        Ok(Daemon {
            file,
            shared,
            pg,
            connector,
            dcs: None,
            dcs_error: None,
            dcs_failing: false,
            guard,
            peers,
            clock: BootClock,
            tx,
            rx,
            bg_tx,
            bg_rx,
            outcomes: Vec::new(),
            long: None,
            view: None,
            tick: 0,
            said: None,
            trouble: None,
            adopted: false,
            cached: None,
            upstream_pending: false,
            quick_steps: 0,
            callbacks,
            callback_state: Default::default(),
        })
    }

    /// The state the REST API serves.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn settings(&self) -> hacore::ClusterSettings {
        self.shared.settings()
    }

    /// Runs the loop forever.
    pub async fn run(mut self) {
        if let Err(e) = crate::pg::files::become_subreaper() {
            warn!(error = %e, "cannot become the reaper of PostgreSQL's postmaster; after a crash, \
                PostgreSQL can only start again once the init process reaps it");
        }
        tokio::spawn(watch_postmaster(self.file.postgresql.data_dir.clone(), self.shared.clone()));
        loop {
            self.tick += 1;
            let term = self.shared.lock().status.term.0;
            let span = tracing::info_span!("tick", node = %self.shared.cfg.name, term, tick = self.tick);
            let wake = self.once().instrument(span).await;
            self.sleep(wake).await;
        }
    }

    /// Bound on one store call or observation: `retry_timeout`, and while PostgreSQL may be
    /// writable, never past the deadline minus [`IO_SLACK`] (the step that re-arms the guard
    /// with an extension, or fences, must come before the deadline).
    fn io_limit(&self, writable_until: Option<Millis>) -> Millis {
        let limit = self.settings().retry_timeout;
        match writable_until {
            Some(u) => limit.min(u.saturating_sub(self.clock.now()).saturating_sub(IO_SLACK)).max(50),
            None => limit,
        }
    }

    async fn ensure_dcs(&mut self, limit: Millis) {
        if self.dcs.is_some() {
            return;
        }
        let limit = Duration::from_millis(limit);
        let r = match tokio::time::timeout(limit, (self.connector)()).await {
            Ok(r) => r,
            Err(_) => Err(DcsError::Unavailable(format!("no connection within {limit:?}"))),
        };
        match r {
            Ok(d) => {
                info!("connected to the DCS");
                let d = Arc::new(d);
                self.shared.lock().store = Some(d.clone() as Arc<dyn DynDcs>);
                self.dcs = Some(d);
                self.dcs_error = None;
            }
            Err(e) => {
                let msg = e.to_string();
                if self.dcs_error.as_deref() != Some(msg.as_str()) {
                    error!(error = %msg, "cannot reach the DCS; nothing is changed on this node until it can");
                }
                self.dcs_error = Some(msg);
            }
        }
    }

    /// The peers to ping this tick: every member of the last view but this node.
    fn peer_urls(&self) -> Vec<(String, String)> {
        let Some(view) = &self.view else { return Vec::new() };
        let me = &self.shared.cfg.name;
        view.members
            .iter()
            .filter(|m| &m.value.name != me && !m.value.api_url.is_empty())
            .map(|m| (m.value.name.clone(), format!("{}/peer", m.value.api_url.trim_end_matches('/'))))
            .collect()
    }

    /// One loop: returns how long to sleep at most.
    async fn once(&mut self) -> Millis {
        // While PostgreSQL may be writable the step must come before the deadline (to arm
        // the guard with a failsafe extension, or to fence): a hanging read cannot delay it.
        // A daemon that just started does not know whether it holds the lease: PostgreSQL
        // may be writable on nothing but the deadline the guard holds, so its first store
        // calls end by then, and at once when the guard holds none (its first step fences
        // an unleased writable PostgreSQL; a store that does not answer must not delay that).
        let writable_until = if self.tick <= 1 {
            let now = self.clock.now();
            Some(match self.guard.state().await {
                GuardState::Armed { deadline, .. } if deadline > now => deadline,
                _ => now,
            })
        } else {
            self.shared.lock().status.writable_until
        };
        let read_limit = self.io_limit(writable_until);
        self.ensure_dcs(read_limit).await;
        let dcs = self.dcs.clone();
        let started = std::time::Instant::now();
        let read = async {
            let t0 = std::time::Instant::now();
            let r = match &dcs {
                Some(d) => match tokio::time::timeout(Duration::from_millis(read_limit), d.read()).await {
                    Ok(r) => r,
                    Err(_) => Err(DcsError::Unavailable(format!("no reply to the read within {read_limit} ms"))),
                },
                None => Err(DcsError::Unavailable(self.dcs_error.clone().unwrap_or_else(|| "not connected".into()))),
            };
            let ms = t0.elapsed().as_millis() as u64;
            self.shared.count(|c| {
                c.dcs_reads += 1;
                c.dcs_read_ms += ms;
                c.dcs_read_errors += r.is_err() as u64;
            });
            r
        };
        let mut target = self.pg.target.clone();
        target.timeout = target.timeout.min(Duration::from_millis(read_limit));
        let ping_limit = Duration::from_millis((self.settings().retry_timeout / 2).clamp(200, 1_000).min(read_limit));
        let peers = ping_peers(self.peers.clone(), self.peer_urls(), ping_limit);
        // Outcomes first, then the observation: an operation that finished is then always
        // seen in its effect (a stop reported done with PostgreSQL still shown running
        // would be a reading older than the outcome). Later ones wait for the next tick.
        while let Ok(o) = self.rx.try_recv() {
            self.outcomes.push(o);
        }
        let ((pg, trouble), view, peers, guard) = tokio::join!(observe(&target), read, peers, self.guard.state());
        let trouble_text = trouble.map(|t| match t {
            Trouble::CannotConnect(e) => format!("cannot connect to PostgreSQL: {e}"),
            Trouble::QueryFailed(e) => format!("PostgreSQL query failed: {e}"),
            Trouble::ControlData(e) => format!("cannot read the data directory: {e}"),
        });
        if trouble_text != self.trouble {
            if let Some(t) = &trouble_text {
                warn!(trouble = %t, "observing PostgreSQL");
            }
            self.trouble = trouble_text;
        }
        match &view {
            Err(e) => {
                if !self.dcs_failing {
                    error!(error = %e, "cannot reach the DCS; this node changes nothing until it can (a primary fences at its lease deadline unless failsafe holds)");
                }
                self.dcs_failing = true;
                debug!(error = %e, "DCS read failed");
            }
            Ok(_) => {
                if self.dcs_failing {
                    info!("the DCS answers again");
                }
                self.dcs_failing = false;
            }
        }
        self.adopt(&pg, view.as_ref().ok());
        while let Ok(o) = self.bg_rx.try_recv() {
            self.outcomes.push(o);
        }
        let wall_time_ms = wall_ms();
        let switchover_due = view
            .as_ref()
            .ok()
            .and_then(|v| v.switchover.as_ref())
            .and_then(|s| s.value.at_wall_ms)
            .is_some_and(|at| at <= wall_time_ms);
        {
            let mut i = self.shared.lock();
            if let Ok(v) = &view {
                let holder = |v: &ClusterView| v.leader.as_ref().map(|l| (l.value.holder.clone(), l.value.term));
                if i.view.as_ref().is_some_and(|old| holder(old) != holder(v)) {
                    i.counters.leader_changed_at = Some(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0.0, |d| d.as_secs_f64()),
                    );
                }
                i.view = Some(v.clone());
            }
            i.peers = peers.clone();
        }
        // (Each lock is its own statement: a guard in the literal below would live to its end.)
        let reinitialize = self.shared.lock().reinitialize;
        let restart = self.restart_asked(wall_time_ms);
        let requests = hacore::observation::LocalRequests { switchover_due, reinitialize, restart };
        let obs = Observation {
            pg,
            dcs: view,
            peers,
            outcomes: std::mem::take(&mut self.outcomes),
            guard,
            requests,
            wall_time_ms,
        };
        let now = self.clock.now();
        let decision = {
            let mut i = self.shared.lock();
            let d = step(&self.shared.cfg, &i.memory, &obs, now);
            i.memory = d.memory.clone();
            i.status = d.status.clone();
            // The request holds until the clone starts (the first step may only stop
            // PostgreSQL); a node that leads now never runs it.
            if d.actions.iter().any(|a| matches!(a, Action::Clone { .. })) || d.status.role == MemberRole::Primary {
                i.reinitialize = false;
            }
            i.pending_restart = obs.pg.pending_restart;
            if let Some(mut r) = i.restart.take() {
                r.phase = restart_progress(r.phase, &d.memory, &obs.pg, now, r.run_limit);
                i.restart = Some(r);
            }
            i.running = obs.pg.running;
            i.streaming = obs.pg.streaming;
            i.last_loop = now;
            i.loop_wait = d.memory.applied.as_ref().map_or(self.shared.cfg.defaults.loop_wait, |(_, s)| s.loop_wait);
            d
        };
        if let Some((version, settings)) = &decision.memory.applied {
            if self.cached != Some(*version) {
                let cache = settings_cache(&self.file);
                // Tried once per version: a directory that refuses the file warns once,
                // not at every loop.
                self.cached = Some(*version);
                if let Err(e) = write_settings_cache(&cache, settings) {
                    warn!(file = %cache.display(), error = %e, "cannot keep the cluster settings applied; \
                          a restarted daemon will start from the file's [settings] until it reads the store's");
                }
            }
        }
        if let Ok(v) = obs.dcs {
            self.view = Some(v);
        }
        let st = &decision.status;
        let said = (st.reason, st.detail.clone());
        if self.said.as_ref() != Some(&said) {
            let (role, reason, detail, leader) = (st.role, st.reason, &st.detail, &st.leader);
            match reason {
                Reason::SystemIdMismatch => error!(
                    ?role, %reason, %detail, ?leader,
                    "this data directory belongs to another cluster; the daemon will not touch it: \
                     point postgresql.data_dir elsewhere or remove the directory to re-clone"
                ),
                Reason::LeaseExpired | Reason::FencingNotLeader | Reason::GuardLost | Reason::OperationFailed => {
                    warn!(?role, %reason, %detail, ?leader, "decision")
                }
                _ => info!(?role, %reason, %detail, ?leader, "decision"),
            }
            self.said = Some(said);
        }
        for a in &decision.actions {
            debug!(action = ?a, "action");
        }
        self.callbacks_for(&obs.pg, &decision, writable_until, now);
        let done = self.execute(decision.actions, decision.background_from, st.writable_until).await;
        let no_watch = self.dcs.as_ref().is_some_and(|d| !d.has_watch());
        if done.moved && no_watch {
            self.wake_peers();
        }
        let urgent = done.urgent;
        let ms = started.elapsed().as_millis() as u64;
        self.shared.count(|c| {
            c.loops += 1;
            c.last_loop_ms = ms;
        });
        // An outcome that moves leadership (an acquire, a transfer, a leader-side write
        // before a promotion, a failsafe confirmation that extends the deadline) matters
        // now, not after a sleep: step again at once, a few times in a row at most.
        if urgent && self.quick_steps < MAX_QUICK_STEPS {
            self.quick_steps += 1;
            0
        } else {
            self.quick_steps = 0;
            if no_watch && self.view.as_ref().is_some_and(in_flux) {
                decision.wake_within.min(NO_WATCH_FLUX_POLL)
            } else {
                decision.wake_within
            }
        }
    }

    /// Queues the callbacks this tick calls for: a fence as it starts (the core stops
    /// PostgreSQL immediately, or the writable deadline `writable_until` of the last step
    /// passed: the guard kills PostgreSQL then, perhaps before this step sees it), the
    /// rest as they are observed (a promotion is seen at the tick after it finished).
    fn callbacks_for(
        &mut self,
        pg: &hacore::PgObservation,
        d: &hacore::Decision,
        writable_until: Option<Millis>,
        now: Millis,
    ) {
        use crate::callbacks::{Context, Running};
        let ctx = || Context {
            term: d.status.term.0,
            timeline: pg.timeline.0,
            leader: d.status.leader.clone(),
            reason: d.status.reason,
        };
        let mut events = Vec::new();
        let stops_now =
            pg.running && d.actions.iter().any(|a| matches!(a, Action::Stop { mode: StopMode::Immediate, .. }));
        let deadline_passed = writable_until.is_some_and(|t| now >= t) && d.status.writable_until.is_none();
        if stops_now || (deadline_passed && self.callback_state.is_primary()) {
            events.extend(self.callback_state.fence());
        }
        events.extend(self.callback_state.observe(Running::of(pg, &d.status)));
        for (event, role) in events {
            self.callbacks.fire(event, role, ctx());
        }
    }

    /// Whether a restart is asked of the core this tick; a scheduled one that came due
    /// becomes a request first (when its conditions hold then).
    fn restart_asked(&self, wall_ms: u64) -> bool {
        let due = {
            let mut i = self.shared.lock();
            match &i.scheduled_restart {
                Some(s) if s.at_wall_ms <= wall_ms => i.scheduled_restart.take(),
                _ => None,
            }
        };
        if let Some(s) = due {
            match self.shared.request_restart(&s.conditions) {
                Ok(Some(_)) => info!(conditions = ?s.conditions, "scheduled restart due"),
                Ok(None) => info!(conditions = ?s.conditions, "scheduled restart due, but its conditions do not hold"),
                Err(e) => warn!(error = %e, "scheduled restart not started"),
            }
        }
        let mut i = self.shared.lock();
        let Some(r) = i.restart.clone() else { return false };
        if !matches!(r.phase, RestartPhase::Asked { .. }) {
            return false;
        }
        if !Shared::conditions_hold(&i, &r.conditions) {
            info!(conditions = ?r.conditions, "restart request dropped: its conditions no longer hold");
            i.restart = Some(Restart { phase: RestartPhase::Failed, ..r });
            return false;
        }
        true
    }

    /// Tells every peer to run its loop now (`POST /wake`): without a watch they would see
    /// the new leader record only at their next poll. Fire and forget; a peer that misses
    /// it polls anyway.
    fn wake_peers(&self) {
        let me = &self.shared.cfg.name;
        let Some(view) = &self.view else { return };
        let urls: Vec<String> = view
            .members
            .iter()
            .filter(|m| &m.value.name != me && !m.value.api_url.is_empty())
            .map(|m| format!("{}/wake", m.value.api_url.trim_end_matches('/')))
            .collect();
        let client = self.peers.clone();
        tokio::spawn(async move {
            let calls = urls.iter().map(|u| client.call::<serde_json::Value>("POST", u, None, PEER_WAKE_LIMIT));
            for r in futures::future::join_all(calls).await {
                if let Err(e) = r {
                    debug!(error = %e, "peer wake-up");
                }
            }
        });
    }

    /// What the data directory says at start: standby or not and the synchronous standbys
    /// in effect (at once, so no file is ever rewritten from blank defaults), and whom a
    /// standby follows (once a view names that member's address).
    fn adopt(&mut self, pg: &hacore::PgObservation, view: Option<&ClusterView>) {
        if !self.adopted {
            let standby = self.file.postgresql.data_dir.join("standby.signal").exists();
            let sync = if pg.running { pg.sync_standbys.clone() } else { SyncStandbys::Off };
            self.pg.adopt(standby, None, sync);
            self.adopted = true;
            self.upstream_pending = standby && pg.upstream.is_some();
        }
        if self.upstream_pending {
            if let (Some(name), Some(v)) = (&pg.upstream, view) {
                let found = if name == hacore::UPSTREAM {
                    self.shared.settings().standby_cluster.and_then(|sc| self.pg.remote_upstream(&sc).ok())
                } else {
                    v.member(name).and_then(|m| self.pg.upstream(name, &m.value.pg_url).ok())
                };
                if let Some(u) = found {
                    self.pg.set_desired(|d| {
                        if d.standby && d.upstream.is_none() {
                            d.upstream = Some(u);
                        }
                    });
                    self.upstream_pending = false;
                }
            }
        }
    }

    async fn sleep(&mut self, ms: Millis) {
        let dcs = self.dcs.clone();
        let changed = async {
            match &dcs {
                Some(d) => d.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = changed => {}
            o = self.rx.recv() => { if let Some(o) = o { self.outcomes.push(o) } }
            _ = self.shared.wake.notified() => {}
        }
    }

    fn upstream_of(&self, name: &str) -> Result<crate::pg::conf::Upstream, String> {
        if name == hacore::UPSTREAM {
            let settings = self.shared.settings();
            let sc = settings.standby_cluster.as_ref().ok_or("standby_cluster is not set (any more)")?;
            return self.pg.remote_upstream(sc);
        }
        let view = self.view.as_ref().ok_or("no DCS view to find the upstream in")?;
        let m = view.member(name).ok_or_else(|| format!("{name} has no member record"))?;
        self.pg.upstream(name, &m.value.pg_url)
    }

    /// Executes a batch.
    async fn execute(
        &mut self,
        actions: Vec<Action>,
        background_from: usize,
        writable_until: Option<Millis>,
    ) -> Executed {
        let mut failed = false;
        let mut urgent = false;
        let mut moved = false;
        let mut background = Vec::new();
        for (i, action) in actions.into_iter().enumerate() {
            if i >= background_from {
                background.push(action);
                continue;
            }
            let id = action.id();
            if failed {
                self.shared.count_action(crate::metrics::action_kind(&action), &Err(Failure::Skipped));
                if let Some(id) = id {
                    self.outcomes.push(Outcome { id, result: Err(Failure::Skipped) });
                }
                continue;
            }
            if let Some(deadline) = action.writable_deadline() {
                if self.clock.now() >= deadline {
                    warn!(action = ?action, "deadline passed before the action could run");
                    self.shared.count_action(crate::metrics::action_kind(&action), &Err(Failure::TimedOut));
                    if let Some(id) = id {
                        self.outcomes.push(Outcome { id, result: Err(Failure::TimedOut) });
                    }
                    failed = true;
                    continue;
                }
            }
            // After these, the next decision can follow at once: a leadership change, or a
            // candidate's WAL receiver stopped (an election waits for final positions). Not
            // after one that failed: it moved nothing, and stepping again at once on a store
            // that keeps refusing (or a stale cache that keeps showing what was refused)
            // would retry it tens of times a second.
            let urgent_kind = matches!(
                &action,
                Action::Dcs {
                    op: DcsOp::AcquireLeader(_)
                        | DcsOp::TransferLeader { .. }
                        | DcsOp::ReleaseLeader { .. }
                        | DcsOp::LeaderWrite { .. },
                    ..
                } | Action::Follow { upstream: None }
            );
            let moves = matches!(
                &action,
                Action::Dcs {
                    op: DcsOp::AcquireLeader(_) | DcsOp::TransferLeader { .. } | DcsOp::ReleaseLeader { .. },
                    ..
                }
            );
            let kind = crate::metrics::action_kind(&action);
            let result = self.run_action(action, writable_until).await;
            moved |= moves && result.is_ok();
            urgent |= urgent_kind && result.is_ok();
            match &result {
                Ok(Some(d)) => self.shared.count_action(kind, &Ok(*d)),
                Err((f, _)) => self.shared.count_action(kind, &Err(*f)),
                Ok(None) => {}
            }
            if let Err(e) = &result {
                warn!(error = %e.1, "action failed");
                failed = true;
            }
            urgent |= matches!(result, Ok(Some(Done::FailsafeAcked { .. })));
            match (id, result) {
                (Some(id), Ok(Some(done))) => self.outcomes.push(Outcome { id, result: Ok(done) }),
                (Some(id), Err((f, _))) => self.outcomes.push(Outcome { id, result: Err(f) }),
                // A long operation started: its outcome comes when it finishes.
                _ => {}
            }
        }
        if !background.is_empty() {
            if let Some(dcs) = self.dcs.clone() {
                let tx = self.bg_tx.clone();
                let limit = Duration::from_millis(self.settings().retry_timeout);
                let sh = self.shared.clone();
                tokio::spawn(async move {
                    let calls = background.into_iter().map(|a| {
                        let (dcs, sh) = (dcs.clone(), sh.clone());
                        async move {
                            let Action::Dcs { id, op } = a else { return None };
                            let result = dcs_call(&sh, &*dcs, &op, limit).await;
                            sh.count_action("dcs", &result);
                            Some(Outcome { id, result })
                        }
                    });
                    for o in futures::future::join_all(calls).await.into_iter().flatten() {
                        let _ = tx.send(o);
                    }
                });
            }
        }
        Executed { urgent, moved }
    }

    /// Runs one action. `Ok(None)`: a long operation started (its outcome comes later).
    async fn run_action(
        &mut self,
        action: Action,
        writable_until: Option<Millis>,
    ) -> Result<Option<Done>, (Failure, String)> {
        let t = self.shared.cfg.timeouts.clone();
        let ms = Duration::from_millis;
        match action {
            Action::Dcs { op, .. } => {
                let Some(dcs) = self.dcs.clone() else {
                    return Err((Failure::Unavailable, "not connected to the DCS".into()));
                };
                let limit = self.io_limit(writable_until);
                dcs_call(&self.shared, &*dcs, &op, ms(limit))
                    .await
                    .map(Some)
                    .map_err(|f| (f, format!("DCS {}", op_name(&op))))
            }
            Action::ArmGuard { deadline, term, .. } => {
                self.guard.arm(deadline, term).await.map(|()| Some(Done::Ok)).map_err(|e| (Failure::Failed, e))
            }
            Action::FailsafePing { term, ttl, members, .. } => Ok(Some(self.failsafe_round(term, ttl, members).await?)),
            Action::Follow { upstream } => {
                self.upstream_pending = false;
                let u = match &upstream {
                    Some(name) => Some(self.upstream_of(name).map_err(|e| (Failure::Failed, e))?),
                    None => None,
                };
                info!(upstream = ?upstream, "following");
                self.pg.set_desired(|d| {
                    d.standby = true;
                    d.upstream = u;
                });
                self.pg.apply_files().await.map(|_| None).map_err(|e| (Failure::Failed, e))
            }
            Action::SetSyncStandbys(s) => {
                info!(sync = ?s, "synchronous_standby_names");
                self.pg.set_desired(|d| d.sync = s);
                self.pg.apply_files().await.map(|_| None).map_err(|e| (Failure::Failed, e))
            }
            Action::CreateSlot { name } => {
                self.pg.create_slot(&name).await.map(|()| None).map_err(|e| (Failure::Failed, e))
            }
            Action::DropSlot { name } => {
                self.pg.drop_slot(&name).await.map(|()| None).map_err(|e| (Failure::Failed, e))
            }
            long => {
                let id = long.id().unwrap_or(OpId(0));
                let pg = self.pg.clone();
                // Resolve members now, while the view is at hand.
                let source = match &long {
                    Action::Clone { from, .. } | Action::Rewind { from, .. } => {
                        Some(self.upstream_of(from).map_err(|e| (Failure::Failed, e))?)
                    }
                    Action::StartReplica { upstream: Some(u), .. } => {
                        Some(self.upstream_of(u).map_err(|e| (Failure::Failed, e))?)
                    }
                    _ => None,
                };
                if matches!(long, Action::StartReplica { .. } | Action::Clone { .. } | Action::Rewind { .. }) {
                    self.upstream_pending = false;
                }
                if let Some((old, handle)) = self.long.take() {
                    if !handle.is_finished() {
                        handle.abort();
                        warn!(op = old.0, "a running PostgreSQL operation was superseded");
                        let _ = self.tx.send(Outcome { id: old, result: Err(Failure::Failed) });
                    }
                }
                info!(action = ?long, "PostgreSQL operation started");
                let tx = self.tx.clone();
                let sh = self.shared.clone();
                let kind = crate::metrics::action_kind(&long);
                let handle = tokio::spawn(
                    async move {
                        let started = std::time::Instant::now();
                        let r = run_long(&pg, long, source, &t).await;
                        match &r {
                            Ok(d) => info!(done = ?d, ms = started.elapsed().as_millis() as u64, "PostgreSQL operation finished"),
                            Err(e) => warn!(error = %e, "PostgreSQL operation failed"),
                        }
                        let result = r.map_err(|e| failure(&e));
                        sh.count_action(kind, &result);
                        let _ = tx.send(Outcome { id, result });
                    }
                    .in_current_span(),
                );
                self.long = Some((id, handle));
                Ok(None)
            }
        }
    }

    async fn failsafe_round(
        &self,
        term: hacore::Term,
        ttl: Millis,
        members: Vec<FailsafeMember>,
    ) -> Result<Done, (Failure, String)> {
        let sent_at = self.clock.now();
        let me = self.shared.cfg.name.clone();
        let req = FailsafeRequest { leader: me.clone(), term, ttl };
        let body = serde_json::to_vec(&req).unwrap_or_default();
        let limit = Duration::from_millis((self.settings().retry_timeout / 2).clamp(200, 1_000));
        let calls = members.iter().filter(|m| m.name != me).map(|m| {
            let url = format!("{}/failsafe", m.api_url.trim_end_matches('/'));
            let client = self.peers.clone();
            let body = body.clone();
            let name = m.name.clone();
            async move {
                match client.call::<serde_json::Value>("POST", &url, Some(body), limit).await {
                    Ok((200, _)) => Ok(()),
                    Ok((code, _)) => Err(format!("{name} refused ({code})")),
                    Err(e) => Err(format!("{name}: {e}")),
                }
            }
        });
        let refusals: Vec<String> =
            futures::future::join_all(calls).await.into_iter().filter_map(Result::err).collect();
        if refusals.is_empty() {
            Ok(Done::FailsafeAcked { sent_at })
        } else {
            Err((Failure::Failed, format!("failsafe round not acknowledged: {}", refusals.join("; "))))
        }
    }
}

/// A pidfd of `pid` (Linux 5.3+): readable once the process has exited.
fn pidfd(pid: i32) -> Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a PID and flags; a non-negative result is a new descriptor
    // this function owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a valid descriptor nobody else owns.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: `owned` is open, refers to this pidfd for the AsyncFd's lifetime (it owns it)
    // and always returns the same descriptor.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }.ok()
}

/// Wakes the loop when the postmaster appears or goes away (a crash is seen at once, not at
/// the next tick): `postmaster.pid` and `/proc`, nothing else. A running postmaster is
/// waited for through a pidfd (woken by its exit, and once a second in case the file
/// changed under it); while there is none, and while reaping after a change, every 100 ms.
async fn watch_postmaster(data_dir: std::path::PathBuf, shared: Arc<Shared>) {
    use crate::pg::files::{is_postgres, postmaster_pid};
    let mut last = postmaster_pid(&data_dir).filter(|&p| is_postgres(p));
    let mut exit = last.and_then(pidfd);
    // For a few seconds after the postmaster changed, reap what it left (its zombie, its
    // backends'): PostgreSQL cannot start again while its old PID is a zombie.
    let mut reap_until = Some(tokio::time::Instant::now() + Duration::from_secs(3));
    loop {
        let exited = match exit.as_ref().filter(|_| reap_until.is_none()) {
            Some(fd) => tokio::time::timeout(Duration::from_secs(1), fd.readable()).await.is_ok(),
            None => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                false
            }
        };
        if exited {
            // Readable for good: from here on, look every 100 ms until the postmaster changes.
            exit = None;
        }
        let now = postmaster_pid(&data_dir).filter(|&p| is_postgres(p));
        if reap_until.is_some_and(|t| tokio::time::Instant::now() < t) {
            let n = crate::pg::files::reap_postgres_zombies();
            if n > 0 {
                debug!(reaped = n, "reaped exited PostgreSQL processes");
            }
        } else {
            reap_until = None;
        }
        if now != last {
            reap_until = Some(tokio::time::Instant::now() + Duration::from_secs(3));
            debug!(before = ?last, now = ?now, "postmaster changed");
            last = now;
            exit = last.and_then(pidfd);
            shared.wake.notify_one();
        }
    }
}

async fn ping_peers(client: PeerClient, urls: Vec<(String, String)>, limit: Duration) -> Vec<PeerReport> {
    let calls = urls.into_iter().map(|(name, url)| {
        let client = client.clone();
        async move {
            let status = match client.call::<PeerStatus>("GET", &url, None, limit).await {
                Ok((200, Some(s))) => Some(s),
                _ => None,
            };
            PeerReport { name, status }
        }
    });
    futures::future::join_all(calls).await
}

fn op_name(op: &DcsOp) -> &'static str {
    match op {
        DcsOp::AcquireLeader(_) => "acquire",
        DcsOp::RenewLeader { .. } => "renew",
        DcsOp::ReleaseLeader { .. } => "release",
        DcsOp::TransferLeader { .. } => "transfer",
        DcsOp::LeaderWrite { .. } => "leader write",
        DcsOp::KeepAlive { .. } => "keepalive",
        DcsOp::PublishMember(_) => "publish member",
        DcsOp::Put(_) => "put",
        DcsOp::AppendEvent(_) => "append event",
    }
}

async fn dcs_call<D: Dcs>(sh: &Shared, dcs: &D, op: &DcsOp, limit: Duration) -> Result<Done, Failure> {
    let t0 = std::time::Instant::now();
    let r = match tokio::time::timeout(limit, dcs.execute(op)).await {
        Err(_) => Err(Failure::Unavailable),
        Ok(Ok(DcsReply::Done)) => Ok(Done::Ok),
        Ok(Ok(DcsReply::Lease(g))) => Ok(Done::Lease(g)),
        Ok(Err(e)) => {
            debug!(op = op_name(op), error = %e, "DCS operation failed");
            Err(Failure::from(&e))
        }
    };
    let ms = t0.elapsed().as_millis() as u64;
    let key = (op_name(op), crate::metrics::result_label(&r));
    sh.count(|c| {
        let e = c.dcs_ops.entry(key).or_default();
        e.0 += 1;
        e.1 += ms;
    });
    r
}

async fn run_long(
    pg: &PgCtl,
    action: Action,
    source: Option<crate::pg::conf::Upstream>,
    t: &hacore::Timeouts,
) -> Result<Done, String> {
    let ms = Duration::from_millis;
    match action {
        Action::Initdb { .. } => pg.initdb(ms(t.initdb)).await.map(|()| Done::Ok),
        Action::Clone { .. } => {
            let from = source.ok_or("no clone source")?;
            pg.clone_from(&from, ms(t.clone)).await.map(Done::ConsistentAt)
        }
        Action::Rewind { .. } => {
            let from = source.ok_or("no rewind source")?;
            pg.rewind(&from, ms(t.rewind)).await.map(Done::ConsistentAt)
        }
        Action::StartPrimary { sync_standbys, .. } => {
            pg.set_desired(|d| {
                d.standby = false;
                d.upstream = None;
                d.sync = sync_standbys;
            });
            pg.start(ms(t.start)).await?;
            if let Err(e) = pg.ensure_replication_role().await {
                warn!(error = %e, "replication user");
            }
            Ok(Done::Ok)
        }
        Action::StartReplica { .. } => {
            pg.set_desired(|d| {
                d.standby = true;
                d.upstream = source;
                d.sync = SyncStandbys::Off;
            });
            pg.start(ms(t.start)).await.map(|()| Done::Ok)
        }
        Action::Stop { mode: StopMode::Fast, .. } => pg.stop_fast(ms(t.stop)).await.map(|()| Done::Ok),
        Action::Stop { mode: StopMode::Immediate, .. } => pg.stop_immediate(ms(t.stop)).await.map(|()| Done::Ok),
        Action::Promote { timeline, sync_standbys, .. } => {
            pg.set_desired(|d| d.sync = sync_standbys);
            pg.apply_files().await?;
            pg.promote(timeline, ms(t.promote)).await.map(|()| Done::Ok)
        }
        Action::Checkpoint { .. } => pg.sql("CHECKPOINT", ms(t.checkpoint)).await.map(|()| Done::Ok),
        other => Err(format!("not a long operation: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_is_done_only_after_postgres_was_seen_down_and_runs_again() {
        let up = hacore::PgObservation { running: true, responsive: true, ..Default::default() };
        let down = hacore::PgObservation::default();
        let idle = Memory::default();
        let restarting = Memory { restarting: true, ..Memory::default() };
        let asked = RestartPhase::Asked { until: 10_000 };
        let p = |phase, mem, pg, now| restart_progress(phase, mem, pg, now, 60_000);
        assert_eq!(p(asked, &idle, &up, 5_000), asked, "not taken up yet");
        assert_eq!(p(asked, &idle, &up, 10_000), RestartPhase::Failed, "never taken up");
        let taken = p(asked, &restarting, &up, 5_000);
        assert_eq!(taken, RestartPhase::Taken { saw_down: false, until: 65_000 });
        let stopped = p(taken, &restarting, &down, 5_100);
        assert_eq!(stopped, RestartPhase::Taken { saw_down: true, until: 65_000 });
        assert_eq!(p(stopped, &idle, &up, 5_200), RestartPhase::Done);
        // The stop failed: the core gave up the restart while PostgreSQL never went down.
        assert_eq!(p(taken, &idle, &up, 5_200), RestartPhase::Failed);
        // PostgreSQL does not come back: given up at the limit.
        assert_eq!(p(stopped, &restarting, &down, 64_999), stopped);
        assert_eq!(p(stopped, &restarting, &down, 65_000), RestartPhase::Failed);
    }

    #[test]
    fn the_settings_cache_keeps_valid_settings_and_ignores_anything_else() {
        let dir = std::env::temp_dir().join(format!("hashell-settings-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data.settings.json");
        let safety = hacore::Safety::default();
        // Missing: the file's settings apply.
        assert_eq!(read_settings_cache(&path, &safety), None);
        // Written, then read back as written (a promoted cluster: no standby_cluster).
        let mut s = hacore::ClusterSettings::fast();
        s.ttl = 12_345;
        write_settings_cache(&path, &s).unwrap();
        assert_eq!(read_settings_cache(&path, &safety), Some(s.clone()));
        assert!(!crate::config::sibling(&path, "tmp").exists(), "the temporary file is renamed over the cache");
        // Settings that fail validation are ignored, as is text that does not parse.
        s.ttl = 30;
        std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(read_settings_cache(&path, &safety), None);
        std::fs::write(&path, "{ not json").unwrap();
        assert_eq!(read_settings_cache(&path, &safety), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
