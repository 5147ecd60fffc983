//! Role-change callbacks: user commands run when PostgreSQL starts or stops here, when
//! this node's role changes (a promotion, a demotion), and when it fences.
//!
//! A callback never delays the loop: commands run one after another on their own task,
//! in the order the events happened, each bounded by `callbacks.timeout` (the whole
//! process group is killed at the limit). A failure is logged, counted in `/metrics` and
//! recorded as a `callback_failed` event; the fence or promotion that caused it has
//! already happened. The command is run by `/bin/sh -c` with Patroni's three arguments
//! appended (`<event> <role> <cluster>`), so callback scripts written for Patroni work
//! unchanged, and with the details in `HA_*` environment variables.

use crate::config::Dur;
use hacore::dcs::MemberRole;
use hacore::{NodeStatus, PgObservation, Reason};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// `[callbacks]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksSection {
    /// Run after PostgreSQL was seen running here (also once at daemon start when it runs).
    pub on_start: Option<String>,
    /// Run after PostgreSQL was seen stopped here (also once at daemon start when it is
    /// stopped), with the role it had.
    pub on_stop: Option<String>,
    /// Run when PostgreSQL runs in another role than before: promoted to primary, or
    /// running as a replica after having been the primary.
    pub on_role_change: Option<String>,
    /// Run as soon as this node starts fencing its PostgreSQL (before it is down). An
    /// `on_stop` follows once it is.
    pub on_fence: Option<String>,
    /// Longest a callback may run; its process group is killed then.
    pub timeout: Dur,
}

impl Default for CallbacksSection {
    fn default() -> Self {
        CallbacksSection { on_start: None, on_stop: None, on_role_change: None, on_fence: None, timeout: Dur(30_000) }
    }
}

impl CallbacksSection {
    fn command(&self, e: CallbackEvent) -> Option<&str> {
        match e {
            CallbackEvent::Start => self.on_start.as_deref(),
            CallbackEvent::Stop => self.on_stop.as_deref(),
            CallbackEvent::RoleChange => self.on_role_change.as_deref(),
            CallbackEvent::Fence => self.on_fence.as_deref(),
        }
        .filter(|c| !c.trim().is_empty())
    }

    /// Whether any callback is configured.
    pub fn any(&self) -> bool {
        [CallbackEvent::Start, CallbackEvent::Stop, CallbackEvent::RoleChange, CallbackEvent::Fence]
            .into_iter()
            .any(|e| self.command(e).is_some())
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackEvent {
    /// PostgreSQL started.
    Start,
    /// PostgreSQL stopped.
    Stop,
    /// PostgreSQL runs in another role than before.
    RoleChange,
    /// This node is fencing its PostgreSQL.
    Fence,
}

impl CallbackEvent {
    /// The name passed as the first argument (Patroni's names).
    pub fn name(self) -> &'static str {
        match self {
            CallbackEvent::Start => "on_start",
            CallbackEvent::Stop => "on_stop",
            CallbackEvent::RoleChange => "on_role_change",
            CallbackEvent::Fence => "on_fence",
        }
    }
}

/// The role a callback is told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackRole {
    /// The writable primary holding the leader lease.
    Primary,
    /// A standby.
    Replica,
    /// A standby cluster's leader (streams from the upstream; a DR site's virtual IP
    /// follows it).
    StandbyLeader,
}

impl CallbackRole {
    /// The name passed as the second argument.
    pub fn name(self) -> &'static str {
        match self {
            CallbackRole::Primary => "primary",
            CallbackRole::Replica => "replica",
            CallbackRole::StandbyLeader => "standby_leader",
        }
    }
}

/// What the node's PostgreSQL is, as far as callbacks care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Running {
    /// Running in a role.
    As(CallbackRole),
    /// Not running.
    Stopped,
}

impl Running {
    /// From one tick's observation and decision; `None` while it is unclear (running but
    /// not answering, or writable without holding the lease: a fence follows).
    pub fn of(pg: &PgObservation, status: &NodeStatus) -> Option<Running> {
        if !pg.running {
            return Some(Running::Stopped);
        }
        match pg.in_recovery {
            Some(true) if status.role == MemberRole::StandbyLeader => Some(Running::As(CallbackRole::StandbyLeader)),
            Some(true) => Some(Running::As(CallbackRole::Replica)),
            Some(false) if status.role == MemberRole::Primary => Some(Running::As(CallbackRole::Primary)),
            _ => None,
        }
    }
}

/// Turns the sequence of observed states into callback events. Pure: the daemon feeds it
/// every tick, the tests feed it sequences.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    last: Option<Running>,
    /// A fence was announced since PostgreSQL was last seen stopped.
    fenced: bool,
    /// The role PostgreSQL last ran in (kept across a stop).
    last_role: Option<CallbackRole>,
}

impl Tracker {
    /// The events for a newly observed state (`None`: unclear, nothing changes).
    pub fn observe(&mut self, now: Option<Running>) -> Vec<(CallbackEvent, CallbackRole)> {
        let Some(now) = now else { return Vec::new() };
        if self.last == Some(now) {
            return Vec::new();
        }
        let first = self.last.is_none();
        self.last = Some(now);
        match now {
            Running::Stopped => {
                self.fenced = false;
                // At start-up with nothing known, say "stopped as a replica": a script that
                // holds an address on "primary" only drops a stale one.
                let role = self.last_role.unwrap_or(CallbackRole::Replica);
                vec![(CallbackEvent::Stop, role)]
            }
            Running::As(role) => {
                let before = self.last_role.replace(role);
                if before.is_some_and(|b| b != role) && !first {
                    vec![(CallbackEvent::RoleChange, role)]
                } else {
                    vec![(CallbackEvent::Start, role)]
                }
            }
        }
    }

    /// Whether PostgreSQL was last seen running as the primary.
    pub fn is_primary(&self) -> bool {
        self.last == Some(Running::As(CallbackRole::Primary))
    }

    /// The event for a fence that starts now: once until PostgreSQL is seen stopped.
    pub fn fence(&mut self) -> Option<(CallbackEvent, CallbackRole)> {
        if std::mem::replace(&mut self.fenced, true) {
            return None;
        }
        Some((CallbackEvent::Fence, self.last_role.unwrap_or(CallbackRole::Primary)))
    }
}

/// Details for the `HA_*` environment.
#[derive(Clone, Debug)]
pub struct Context {
    /// Term this node knows.
    pub term: u64,
    /// Current timeline.
    pub timeline: u32,
    /// Current leader, if known.
    pub leader: Option<String>,
    /// The node's decision reason.
    pub reason: Reason,
}

struct Job {
    event: CallbackEvent,
    role: CallbackRole,
    command: String,
    ctx: Context,
}

/// How a callback ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Exit status 0.
    Ok,
    /// Non-zero exit, a signal, or it could not be started.
    Failed(String),
    /// Killed at the timeout.
    TimedOut,
}

/// Reports each ending: event name, role, ending.
pub type Report = Arc<dyn Fn(CallbackEvent, CallbackRole, &str, &Ending) + Send + Sync>;

/// Runs callbacks one at a time, in order, on their own task.
pub struct Runner {
    cfg: CallbacksSection,
    tx: Option<mpsc::UnboundedSender<Job>>,
}

impl Runner {
    /// A runner for `cfg`; `report` hears every ending (for metrics and events). Spawns
    /// its task only when a callback is configured (needs a Tokio runtime then).
    pub fn new(cfg: CallbacksSection, cluster: String, node: String, report: Report) -> Runner {
        if !cfg.any() {
            return Runner { cfg, tx: None };
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let limit = Duration::from_millis(cfg.timeout.0);
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let ending = run(&job, &cluster, &node, limit).await;
                match &ending {
                    Ending::Ok => info!(event = job.event.name(), role = job.role.name(), "callback done"),
                    Ending::Failed(e) => {
                        warn!(event = job.event.name(), role = job.role.name(), command = %job.command, error = %e, "callback failed")
                    }
                    Ending::TimedOut => {
                        warn!(event = job.event.name(), role = job.role.name(), command = %job.command, limit_ms = limit.as_millis() as u64, "callback timed out; its process group was killed")
                    }
                }
                report(job.event, job.role, &job.command, &ending);
            }
        });
        Runner { cfg, tx: Some(tx) }
    }

    /// Queues the callback for `event` if one is configured. Never waits.
    pub fn fire(&self, event: CallbackEvent, role: CallbackRole, ctx: Context) {
        let (Some(tx), Some(command)) = (&self.tx, self.cfg.command(event)) else { return };
        info!(event = event.name(), role = role.name(), "callback queued");
        let _ = tx.send(Job { event, role, command: command.to_string(), ctx });
    }
}

async fn run(job: &Job, cluster: &str, node: &str, limit: Duration) -> Ending {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    // `"$@"` appends Patroni's arguments to the user's command line.
    cmd.arg("-c")
        .arg(format!("{} \"$@\"", job.command))
        .arg("hashell-callback")
        .args([job.event.name(), job.role.name(), cluster])
        .env("HA_EVENT", job.event.name())
        .env("HA_ROLE", job.role.name())
        .env("HA_CLUSTER", cluster)
        .env("HA_NODE", node)
        .env("HA_TERM", job.ctx.term.to_string())
        .env("HA_TIMELINE", job.ctx.timeline.to_string())
        .env("HA_LEADER", job.ctx.leader.as_deref().unwrap_or(""))
        .env("HA_REASON", job.ctx.reason.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ending::Failed(format!("cannot run /bin/sh: {e}")),
    };
    let pgid = child.id();
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Err(_) => {
            if let Some(p) = pgid {
                crate::pg::kill::kill_group(p as i32);
            }
            Ending::TimedOut
        }
        Ok(Err(e)) => Ending::Failed(e.to_string()),
        Ok(Ok(out)) if out.status.success() => Ending::Ok,
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: String = err.trim().chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
            Ending::Failed(format!("{}: {}", out.status, tail))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallbackEvent::*;
    use CallbackRole::*;

    fn feed(states: &[Option<Running>]) -> Vec<(CallbackEvent, CallbackRole)> {
        let mut t = Tracker::default();
        states.iter().flat_map(|s| t.observe(*s)).collect()
    }

    #[test]
    fn a_promotion_is_a_role_change_and_a_demotion_through_a_restart_too() {
        let (p, r, s) = (Some(Running::As(Primary)), Some(Running::As(Replica)), Some(Running::Stopped));
        assert_eq!(feed(&[r, r, None, p, p]), vec![(Start, Replica), (RoleChange, Primary)]);
        assert_eq!(feed(&[p, s, r]), vec![(Start, Primary), (Stop, Primary), (RoleChange, Replica)]);
        // A restart in the same role is a stop and a start.
        assert_eq!(feed(&[r, s, r]), vec![(Start, Replica), (Stop, Replica), (Start, Replica)]);
        // Found stopped at start-up: said once, as a replica (drops a stale address).
        assert_eq!(feed(&[s, s, None, r]), vec![(Stop, Replica), (Start, Replica)]);
    }

    #[test]
    fn a_fence_names_the_role_it_ends() {
        let mut t = Tracker::default();
        t.observe(Some(Running::As(Primary)));
        assert_eq!(t.fence(), Some((Fence, Primary)));
        // Each tick of the same fence does not say it again.
        assert_eq!(t.fence(), None);
        assert_eq!(t.observe(Some(Running::Stopped)), vec![(Stop, Primary)]);
        t.observe(Some(Running::As(Primary)));
        assert_eq!(t.fence(), Some((Fence, Primary)));
    }

    /// A fresh scratch directory, removed when dropped.
    struct Scratch(std::path::PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!("hashell-cb-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn ctx() -> Context {
        Context { term: 4, timeline: 3, leader: Some("pg1".into()), reason: Reason::LeaderHealthy }
    }

    #[tokio::test]
    async fn a_callback_gets_patronis_arguments_and_the_details_in_its_environment() {
        let dir = Scratch::new("args");
        let out = dir.path().join("out");
        let job = Job {
            event: RoleChange,
            role: Primary,
            command: format!(
                "printf '%s|' \"$HA_NODE\" \"$HA_TERM\" \"$HA_LEADER\" \"$HA_REASON\" >{}; true",
                out.display()
            ),
            ctx: ctx(),
        };
        // The arguments land after the user's command line: check them through a script.
        let script = dir.path().join("cb.sh");
        std::fs::write(&script, format!("#!/bin/sh\necho \"$@\" >> {}\n", out.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(run(&job, "main", "pg2", Duration::from_secs(10)).await, Ending::Ok);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "pg2|4|pg1|leader_healthy|");
        let job = Job { command: script.display().to_string(), ..job };
        assert_eq!(run(&job, "main", "pg2", Duration::from_secs(10)).await, Ending::Ok);
        assert!(std::fs::read_to_string(&out).unwrap().ends_with("on_role_change primary main\n"));
    }

    #[tokio::test]
    async fn a_failing_or_hanging_callback_is_reported_and_its_children_killed() {
        let dir = Scratch::new("hang");
        let pidfile = dir.path().join("pid");
        let fail = Job { event: Stop, role: Replica, command: "echo bad thing >&2; exit 3".into(), ctx: ctx() };
        match run(&fail, "main", "pg2", Duration::from_secs(10)).await {
            Ending::Failed(e) => assert!(e.contains("bad thing") && e.contains('3'), "{e}"),
            other => panic!("{other:?}"),
        }
        let hang = Job { command: format!("sleep 1000 & echo $! > {}; wait; :", pidfile.display()), ..fail };
        assert_eq!(run(&hang, "main", "pg2", Duration::from_millis(300)).await, Ending::TimedOut);
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // The grandchild went with the group.
        let mut gone = false;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "the callback's child {pid} survived the timeout");
    }
}
