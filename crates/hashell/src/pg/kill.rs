//! Fencing: stopping every process of a PostgreSQL instance at once, and telling whether
//! an instance may be accepting writes, from its files alone (no connection: the guard
//! uses this when the server may be hung).

use super::files::{is_postgres, postmaster_pid};
use std::path::Path;

/// Whether a postmaster runs for `data_dir` and it may accept writes: it was not started
/// as a standby (`standby.signal`), or it was promoted (PostgreSQL removes the file before
/// it leaves recovery).
pub fn maybe_writable(data_dir: &Path) -> bool {
    postmaster_pid(data_dir).is_some_and(is_postgres) && !data_dir.join("standby.signal").exists()
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command sits in parentheses and may contain spaces: the ppid follows the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every descendant of `root` (children first found, then theirs).
fn descendants(root: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let all: Vec<(i32, i32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &all {
            if ppid == p && !out.contains(&pid) {
                out.push(pid);
                frontier.push(pid);
            }
        }
    }
    out
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a vanished PID gives ESRCH.
    unsafe { libc::kill(pid, sig) };
}

/// SIGKILLs every process of the process group `pgid` (a callback and its children).
pub fn kill_group(pgid: i32) {
    if pgid > 1 {
        signal(-pgid, libc::SIGKILL);
    }
}

/// Kills the whole instance of `data_dir`: the postmaster is frozen first (so it cannot
/// fork or restart children), every descendant is SIGKILLed, then the postmaster. A backend
/// that outlived its postmaster could otherwise still commit. Returns the postmaster's PID
/// if one was running.
pub fn kill_instance(data_dir: &Path) -> Option<i32> {
    let pid = postmaster_pid(data_dir).filter(|&p| is_postgres(p))?;
    signal(pid, libc::SIGSTOP);
    for child in descendants(pid) {
        signal(child, libc::SIGKILL);
    }
    signal(pid, libc::SIGKILL);
    Some(pid)
}

/// Whether `pid` still exists (zombies included until reaped).
pub fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with('Z')))
            .is_some_and(|zombie| !zombie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_of_this_process_include_a_spawned_child() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let me = std::process::id() as i32;
        assert!(descendants(me).contains(&(child.id() as i32)));
        assert_eq!(parent_of(child.id() as i32), Some(me));
        assert!(alive(child.id() as i32));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!alive(child.id() as i32));
    }
}
