//! The fencing guard: a small separate process (`hashell guard`) that holds the daemon's
//! writable deadline and kills the whole PostgreSQL instance when it passes. It is not
//! frozen with the daemon (SIGSTOP, stuck IO) and outlives it (SIGKILL): PostgreSQL stops
//! accepting writes before the lease can pass to another node either way.
//!
//! Protocol: one line per request on a Unix socket, one line per answer.
//! * `arm <deadline> <term>` -> `armed <deadline> <term>`: deadlines are absolute
//!   CLOCK_BOOTTIME milliseconds, the daemon's own clock.
//! * `state` -> `armed <deadline> <term>` or `idle`.
//!
//! Once the deadline has passed the guard kills any instance that may accept writes (a late
//! start included) until it is armed again. With no daemon connected and no deadline
//! ahead it exits, so a daemon that died leaves no guard behind for longer than its lease.
//! It logs to `<socket>.log`.
//!
//! With a hardware watchdog (`--watchdog DEVICE`) the guard also holds the device while
//! PostgreSQL may write under a deadline, so that a stalled guard resets the machine before
//! the lease can pass (see [`crate::watchdog`]).

use crate::pg::kill::{kill_instance, maybe_writable};
use crate::watchdog::{ping_timeout, Watchdog};
use backend_etcd::clock::BootClock;
use hacore::memdcs::Clock;
use hacore::{GuardState, Millis, Term};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long the guard lingers without a daemon and without a deadline ahead.
const LINGER: Millis = 3_000;

#[derive(Default)]
struct Shared {
    armed: Option<(Millis, Term)>,
    connections: usize,
    /// A watch on the data directory wakes the loop when an entry appears or goes.
    watching: bool,
}

fn answer(shared: &Mutex<Shared>, line: &str) -> String {
    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["arm", d, t] => match (d.parse::<Millis>(), t.parse::<u64>()) {
            (Ok(d), Ok(t)) => {
                if std::env::var_os("TRACE_HASHELL_GUARD").is_some() {
                    eprintln!("hashell guard: arm {d} term {t} at {}", BootClock.now());
                }
                s.armed = Some((d, Term(t)));
                format!("armed {d} {t}")
            }
            _ => "error: write `arm <deadline ms> <term>`".into(),
        },
        ["state"] => match s.armed {
            Some((d, t)) => format!("armed {d} {}", t.0),
            None => "idle".into(),
        },
        _ => "error: unknown request; use `arm <deadline> <term>` or `state`".into(),
    }
}

/// The guard's state and the signal that it changed (the main loop sleeps on it).
type Guarded = Arc<(Mutex<Shared>, Condvar)>;

fn serve(stream: UnixStream, shared: Guarded) {
    let mut out = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    shared.0.lock().unwrap_or_else(|e| e.into_inner()).connections += 1;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let reply = answer(&shared.0, &line);
        shared.1.notify_all();
        if writeln!(out, "{reply}").is_err() {
            break;
        }
    }
    shared.0.lock().unwrap_or_else(|e| e.into_inner()).connections -= 1;
    shared.1.notify_all();
}

/// Longest sleep of the guard's loop: it wakes at the deadline, when a request changed
/// it, and at least this often (the deadline is on CLOCK_BOOTTIME, the sleep's timer is
/// not: after a suspend it may be this late). It polled every 10 ms before, which cost
/// more CPU than the daemon itself.
const GUARD_TICK: Millis = 100;

/// How long the guard's loop sleeps at `now`: until the deadline, at most [`GUARD_TICK`].
/// Once the deadline has passed a late start of PostgreSQL must be killed at once: the
/// watch on the data directory wakes the loop when `postmaster.pid` appears (and the
/// tick stays a backstop); without a watch (no data directory yet) it looks every 10 ms.
fn guard_sleep(now: Millis, armed: Option<(Millis, Term)>, watching: bool) -> Millis {
    match armed {
        Some((d, _)) if now >= d && !watching => 10,
        Some((d, _)) if now < d => (d - now).clamp(1, GUARD_TICK),
        _ => GUARD_TICK,
    }
}

/// Watches `data_dir` for entries created, moved or removed (PostgreSQL creates
/// `postmaster.pid` as it starts; a promotion removes `standby.signal`) and wakes the loop
/// on each, from a thread of its own; `watching` in [`Shared`] says while it holds. The
/// directory removed (a re-clone) ends the watch; the loop starts another once the
/// directory is back.
fn watch_data_dir(data_dir: &Path, shared: &Guarded) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(data_dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: inotify_init1 takes flags only.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    let mask = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_DELETE_SELF;
    // SAFETY: fd is an inotify descriptor we own; path is a valid C string.
    if unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) } < 0 {
        // SAFETY: closing the descriptor we opened above.
        unsafe { libc::close(fd) };
        return false;
    }
    shared.0.lock().unwrap_or_else(|e| e.into_inner()).watching = true;
    let shared = shared.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads into a buffer we own, at most its length.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            // IN_IGNORED: the watch is gone with its directory.
            let gone = n <= 0 || ignored(&buf[..n as usize]);
            if gone {
                shared.0.lock().unwrap_or_else(|e| e.into_inner()).watching = false;
                shared.1.notify_all();
                // SAFETY: closing the descriptor this thread owns.
                unsafe { libc::close(fd) };
                return;
            }
            shared.1.notify_all();
        }
    });
    true
}

/// Whether a buffer of inotify events holds IN_IGNORED (the watch was removed).
fn ignored(mut buf: &[u8]) -> bool {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    while buf.len() >= HEADER {
        // SAFETY: the kernel writes whole events; read_unaligned copes with the buffer's
        // alignment.
        let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
        if ev.mask & libc::IN_IGNORED != 0 {
            return true;
        }
        buf = &buf[(HEADER + ev.len as usize).min(buf.len())..];
    }
    false
}

/// Runs the guard until it is no longer needed. Blocking, std only: nothing shared with
/// the daemon's runtime.
pub fn run(socket: &Path, data_dir: &Path, watchdog: Option<&Path>) -> Result<(), String> {
    // One guard per instance: the lock is held for the guard's lifetime, and only its
    // holder may replace the socket. A second guard (started while the first was slow to
    // come up) leaves, instead of orphaning the first with a deadline nobody updates.
    let lock_path = crate::config::sibling(socket, "lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own for the rest of this function.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("hashell guard {}: another guard serves {}; leaving", std::process::id(), socket.display());
        return Ok(());
    }
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let shared: Guarded = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
    {
        // Connections are taken as they come, each served by its own thread.
        let shared = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let sh = shared.clone();
                std::thread::spawn(move || serve(stream, sh));
            }
        });
    }
    let clock = BootClock;
    eprintln!(
        "hashell guard {}: serving {} for {} at {}",
        std::process::id(),
        socket.display(),
        data_dir.display(),
        clock.now()
    );
    let mut idle_since = clock.now();
    let mut fired_at: Option<Millis> = None;
    let mut wd = watchdog.map(WatchdogHolder::new);
    loop {
        let now = clock.now();
        let (armed, connections, watching) = {
            let s = shared.0.lock().unwrap_or_else(|e| e.into_inner());
            (s.armed, s.connections, s.watching)
        };
        if !watching && data_dir.is_dir() {
            watch_data_dir(data_dir, &shared);
        }
        if let Some((deadline, term)) = armed {
            if now >= deadline && maybe_writable(data_dir) {
                if let Some(pid) = kill_instance(data_dir) {
                    eprintln!(
                        "hashell guard {}: deadline {deadline} (term {}) passed at {now}: killed PostgreSQL {pid} and its processes",
                        std::process::id(),
                        term.0
                    );
                    fired_at = Some(now);
                }
            }
        }
        if let Some(w) = &mut wd {
            w.tick(now, armed.map(|(d, _)| d), data_dir);
        }
        let needed = connections > 0 || armed.is_some_and(|(d, _)| d > now);
        if needed {
            idle_since = now;
        } else if now.saturating_sub(idle_since) > LINGER {
            let _ = std::fs::remove_file(socket);
            if let Some(t) = fired_at {
                eprintln!("hashell guard: exiting (no daemon, no deadline ahead; last fence at {t})");
            }
            return Ok(());
        }
        let s = shared.0.lock().unwrap_or_else(|e| e.into_inner());
        if (s.armed, s.connections) == (armed, connections) {
            let wait = Duration::from_millis(guard_sleep(clock.now(), armed, s.watching));
            drop(shared.1.wait_timeout(s, wait).unwrap_or_else(|e| e.into_inner()));
        }
    }
}

/// The guard's use of the hardware watchdog: opened while PostgreSQL may write under a
/// deadline, pinged so it fires no later than the deadline plus
/// [`crate::watchdog::ALLOWANCE`], closed
/// (disarmed) once nothing is writable.
struct WatchdogHolder {
    device: PathBuf,
    open: Option<Watchdog>,
    last_check: Millis,
    said: Option<String>,
}

impl WatchdogHolder {
    fn new(device: &Path) -> WatchdogHolder {
        WatchdogHolder { device: device.to_path_buf(), open: None, last_check: 0, said: None }
    }

    fn say(&mut self, msg: String) {
        if self.said.as_ref() != Some(&msg) {
            eprintln!("hashell guard {}: {msg}", std::process::id());
            self.said = Some(msg);
        }
    }

    fn tick(&mut self, now: Millis, deadline: Option<Millis>, data_dir: &Path) {
        if now.saturating_sub(self.last_check) < 100 {
            return;
        }
        self.last_check = now;
        let writable = maybe_writable(data_dir);
        if !writable {
            if self.open.take().is_some() {
                self.say(format!("watchdog {} disarmed: PostgreSQL cannot write", self.device.display()));
            }
            return;
        }
        let Some(deadline) = deadline else { return };
        // Too close to the deadline for another ping: the last one bounds the reset.
        let Some(timeout) = ping_timeout(now, deadline) else { return };
        let result = match &mut self.open {
            Some(w) => w.ping(timeout).map(|()| w.timeout),
            None => Watchdog::open(&self.device, timeout).map(|w| {
                let t = w.timeout;
                self.open = Some(w);
                t
            }),
        };
        match result {
            Ok(actual) if actual > timeout => self.say(format!(
                "watchdog {} rounds the timeout up to {actual} s (asked {timeout} s): it may fire after the lease                  could pass",
                self.device.display()
            )),
            Ok(_) => self.say(format!("watchdog {} armed", self.device.display())),
            Err(e) => {
                self.open = None;
                self.say(e)
            }
        }
    }
}

/// `hashell-guard` in the directory of `exe`, if there is one.
pub fn guard_binary(exe: &Path) -> Option<PathBuf> {
    exe.parent().map(|d| d.join("hashell-guard")).filter(|p| p.is_file())
}

/// The command line of `hashell guard` and `hashell-guard`: `--socket PATH --data-dir PATH
/// [--watchdog DEVICE]`. Parsed by hand so that the small binary links no parser.
pub fn main_with_args(args: impl Iterator<Item = std::ffi::OsString>) -> std::process::ExitCode {
    let (mut socket, mut data_dir, mut watchdog) = (None, None, None);
    let mut args = args;
    while let Some(a) = args.next() {
        let slot = match a.to_str() {
            Some("--socket") => &mut socket,
            Some("--data-dir") => &mut data_dir,
            Some("--watchdog") => &mut watchdog,
            _ => {
                eprintln!("hashell-guard: unexpected argument {a:?}; usage: --socket PATH --data-dir PATH [--watchdog DEVICE]");
                return std::process::ExitCode::from(2);
            }
        };
        match args.next() {
            Some(v) => *slot = Some(PathBuf::from(v)),
            None => {
                eprintln!("hashell-guard: {a:?} needs a value");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let (Some(socket), Some(data_dir)) = (socket, data_dir) else {
        eprintln!(
            "hashell-guard: --socket and --data-dir are required (the daemon starts the guard; not for direct use)"
        );
        return std::process::ExitCode::from(2);
    };
    match run(&socket, &data_dir, watchdog.as_deref()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hashell guard: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The daemon's side: connects to the guard, starting one when none listens.
pub struct GuardClient {
    socket: PathBuf,
    data_dir: PathBuf,
    exe: PathBuf,
    watchdog: Option<PathBuf>,
    /// When a guard was last started: a slow start (a loaded machine) is waited for, not
    /// answered with a second guard.
    spawned_at: Option<std::time::Instant>,
    conn: Option<(tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>, tokio::net::unix::OwnedWriteHalf)>,
}

const IO_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a started guard may take to listen before another is started.
const SPAWN_GRACE: Duration = Duration::from_secs(10);

impl GuardClient {
    /// A client for the guard on `socket` enforcing deadlines on `data_dir`; `exe` is the
    /// `hashell` binary to start it with, `watchdog` the device it holds, if any.
    pub fn new(socket: PathBuf, data_dir: PathBuf, exe: PathBuf, watchdog: Option<PathBuf>) -> GuardClient {
        GuardClient { socket, data_dir, exe, watchdog, spawned_at: None, conn: None }
    }

    async fn connect(&mut self) -> Result<(), String> {
        if self.conn.is_some() {
            return Ok(());
        }
        let stream = match tokio::net::UnixStream::connect(&self.socket).await {
            Ok(s) => s,
            Err(_) => {
                if self.spawned_at.is_none_or(|t| t.elapsed() > SPAWN_GRACE) {
                    self.spawn()?;
                    self.spawned_at = Some(std::time::Instant::now());
                }
                let mut last = String::new();
                let mut got = None;
                for _ in 0..100 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    match tokio::net::UnixStream::connect(&self.socket).await {
                        Ok(s) => {
                            got = Some(s);
                            break;
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                got.ok_or_else(|| format!("the guard did not come up on {}: {last}", self.socket.display()))?
            }
        };
        let (r, w) = stream.into_split();
        self.conn = Some((tokio::io::BufReader::new(r), w));
        Ok(())
    }

    fn spawn(&self) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(crate::config::sibling(&self.socket, "log"))
            .map_err(|e| format!("cannot open the guard's log next to {}: {e}", self.socket.display()))?;
        // The small `hashell-guard` next to the daemon's binary if installed (a fraction of
        // the memory: it maps little of a binary that holds only the guard), else `hashell
        // guard`, the same code.
        let small = guard_binary(&self.exe);
        let mut cmd = std::process::Command::new(small.as_ref().unwrap_or(&self.exe));
        if small.is_none() {
            cmd.arg("guard");
        }
        cmd.arg("--socket").arg(&self.socket).arg("--data-dir").arg(&self.data_dir);
        if let Some(w) = &self.watchdog {
            cmd.arg("--watchdog").arg(w);
        }
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(log);
        // SAFETY: setsid is async-signal-safe; the guard gets its own session so signals
        // for the daemon's process group (a terminal's Ctrl-C, a frozen group) miss it.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot start the guard ({}): {e}", self.exe.display()))?;
        // Reap it whenever it exits.
        std::thread::spawn(move || child.wait());
        Ok(())
    }

    async fn request(&mut self, line: &str) -> Result<String, String> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        self.connect().await?;
        let Some((r, w)) = self.conn.as_mut() else { return Err("not connected".into()) };
        let io = async {
            w.write_all(format!("{line}\n").as_bytes()).await?;
            let mut reply = String::new();
            if r.read_line(&mut reply).await? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the guard closed the connection"));
            }
            Ok(reply.trim().to_string())
        };
        match tokio::time::timeout(IO_TIMEOUT, io).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.conn = None;
                Err(format!("guard: {e}"))
            }
            Err(_) => {
                self.conn = None;
                Err(format!("guard: no answer within {IO_TIMEOUT:?}"))
            }
        }
    }

    /// What the guard holds; `Lost` when it cannot be reached.
    pub async fn state(&mut self) -> GuardState {
        match self.request("state").await.as_deref().map(parse_state) {
            Ok(Some(s)) => s,
            _ => GuardState::Lost,
        }
    }

    /// Hands the guard a deadline; Ok once it acknowledged exactly that deadline.
    pub async fn arm(&mut self, deadline: Millis, term: Term) -> Result<(), String> {
        let reply = self.request(&format!("arm {deadline} {}", term.0)).await?;
        match parse_state(&reply) {
            Some(GuardState::Armed { deadline: d, term: t }) if d == deadline && t == term => Ok(()),
            _ => Err(format!("guard answered {reply:?}")),
        }
    }
}

/// Parses an answer of the guard.
fn parse_state(reply: &str) -> Option<GuardState> {
    let w: Vec<&str> = reply.split_whitespace().collect();
    match w.as_slice() {
        ["idle"] => Some(GuardState::Armed { deadline: 0, term: Term(0) }),
        ["armed", d, t] => Some(GuardState::Armed { deadline: d.parse().ok()?, term: Term(t.parse().ok()?) }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_directory_watch_wakes_the_loop_and_ends_with_the_directory() {
        let dir = std::env::temp_dir().join(format!("hashell-guard-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let shared: Guarded = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        assert!(watch_data_dir(&dir, &shared));
        let pid_file = dir.join("postmaster.pid");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(pid_file, "1\n").unwrap();
        });
        let s = shared.0.lock().unwrap();
        assert!(s.watching);
        let (s, r) = shared.1.wait_timeout(s, Duration::from_secs(5)).unwrap();
        assert!(!r.timed_out(), "a new postmaster.pid wakes the guard");
        drop(s);
        writer.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let t = std::time::Instant::now();
        while shared.0.lock().unwrap().watching && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!shared.0.lock().unwrap().watching, "the watch ends with its directory");
    }

    #[test]
    fn requests_and_answers() {
        let s = Mutex::new(Shared::default());
        assert_eq!(guard_sleep(1_000, None, false), GUARD_TICK);
        assert_eq!(guard_sleep(1_000, Some((1_040, Term(1))), true), 40, "wakes at the deadline");
        assert_eq!(guard_sleep(1_000, Some((9_000, Term(1))), true), GUARD_TICK);
        assert_eq!(guard_sleep(1_000, Some((1_000, Term(1))), false), 10, "past it: looks for a late start");
        assert_eq!(guard_sleep(1_000, Some((1_000, Term(1))), true), GUARD_TICK, "the watch wakes it");
        assert_eq!(answer(&s, "state"), "idle");
        assert_eq!(answer(&s, "arm 1234 7"), "armed 1234 7");
        assert_eq!(answer(&s, "state"), "armed 1234 7");
        assert!(answer(&s, "arm soon").starts_with("error"));
        assert!(answer(&s, "disarm").starts_with("error"));
        assert_eq!(parse_state("armed 1234 7"), Some(GuardState::Armed { deadline: 1234, term: Term(7) }));
        assert_eq!(parse_state("idle"), Some(GuardState::Armed { deadline: 0, term: Term(0) }));
        assert_eq!(parse_state("error: x"), None);
    }
}
