//! Loopback TCP ports for the servers that tests, benchmarks and `hashell demo` start
//! (PostgreSQL, etcd, the REST API, the DynamoDB-compatible server).
//!
//! Asking the kernel for port 0 and releasing it is racy twice over: the kernel may hand
//! the same port to the next caller in this or another test process before the server
//! binds it, and the port is in the ephemeral range, where any outgoing connection of the
//! machine may take it as its local port. One CI run lost a standby-cluster test to this:
//! a PostgreSQL and a REST API of the same test were given the same port.
//!
//! [`free_port`] therefore picks ports below the ephemeral range and reserves each one for
//! the life of the process with an advisory lock on a file named after it in a directory
//! shared by every process of the machine. The kernel drops the lock when the process
//! exits, however it exits, so a crashed test never leaks a reservation.

#![deny(missing_docs)]

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Mutex;

/// Reservations held by this process: the open, locked files.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// Lowest port handed out: above the well-known services a test machine may run
/// (PostgreSQL 5432, etcd 2379/2380, DynamoDB Local 8000).
const LOW: u16 = 20_000;

/// A loopback port that no other caller of this function, in this or any other process of
/// the machine, holds, and that nothing was listening on when it was handed out. It stays
/// reserved until the process exits. Falls back to a port the kernel picks when no
/// reservation can be made (no writable temporary directory, every port taken).
pub fn free_port() -> u16 {
    reserve().unwrap_or_else(kernel_port)
}

fn kernel_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// The first port of the kernel's ephemeral range (outgoing connections' local ports).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32_768)
}

fn lock_dir() -> Option<PathBuf> {
    let dir = std::env::temp_dir().join("hashell-ports");
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).ok()?;
        // Shared by every user that runs tests here (sticky, like /tmp itself).
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
    }
    Some(dir)
}

fn reserve() -> Option<u16> {
    let high = ephemeral_low();
    if high <= LOW + 1_000 {
        return None;
    }
    let span = u32::from(high - LOW);
    let dir = lock_dir()?;
    // Start somewhere different in every process so that concurrent test processes do
    // not all contend for the same first ports.
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    (0..span).map(|i| LOW + (seed.wrapping_add(i) % span) as u16).find(|&port| claim(&dir, port) == Claim::Free)
}

#[derive(Debug, PartialEq)]
enum Claim {
    /// Reserved by this call and nothing listens on it.
    Free,
    /// Reserved by this call, but something that does not use this crate listens on it;
    /// the reservation is kept so that no caller tries it again while this process lives.
    Listening,
    /// Reserved by another process, or by this one earlier.
    Held,
}

fn claim(dir: &std::path::Path, port: u16) -> Claim {
    let Ok(file) = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(dir.join(port.to_string()))
    else {
        return Claim::Held; // another user's file we may not open: theirs
    };
    // SAFETY: flock on a descriptor this function owns; no memory is involved. Locks
    // belong to the open file description, so a second open of the same file in this
    // process cannot take the lock either.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Claim::Held;
    }
    let listening = std::net::TcpListener::bind(("127.0.0.1", port)).is_err();
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
    if listening {
        Claim::Listening
    } else {
        Claim::Free
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ports_are_distinct_below_the_ephemeral_range_and_bindable() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice: {ports:?}");
        for p in ports {
            assert!((LOW..ephemeral_low()).contains(&p), "port {p} outside the reserved range");
            std::net::TcpListener::bind(("127.0.0.1", p)).unwrap_or_else(|e| panic!("port {p}: {e}"));
        }
    }

    #[test]
    fn a_port_held_by_another_process_is_not_handed_out() {
        // A child process (this test binary, re-run on the helper below) reserves ports
        // and reports them; none of ours may equal them while it lives.
        if std::env::var_os("LOOPBACK_CHILD").is_some() {
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new(exe)
            .args(["--exact", "tests::child_reserves_and_waits", "--nocapture", "--test-threads=1"])
            .env("LOOPBACK_CHILD", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut theirs = HashSet::new();
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0 {
            // libtest may print the test's name on the same line first.
            if let Some((_, rest)) = line.trim().split_once("RESERVED ") {
                theirs.extend(rest.split(',').map(|p| p.parse::<u16>().unwrap()));
                break;
            }
            line.clear();
        }
        assert_eq!(theirs.len(), 300, "child reported {} ports", theirs.len());
        let dir = lock_dir().unwrap();
        let claimed: Vec<_> = theirs.iter().filter(|&&p| claim(&dir, p) != Claim::Held).collect();
        let ours: HashSet<u16> = (0..300).map(|_| free_port()).collect();
        let shared: Vec<_> = ours.intersection(&theirs).collect();
        drop(child.stdin.take());
        let _ = child.wait();
        assert!(claimed.is_empty(), "ports held by the other process could be claimed: {claimed:?}");
        assert!(shared.is_empty(), "ports held by the other process were handed out: {shared:?}");
        // Once it has exited, its reservations are gone (a few may already have been
        // taken by other test processes running beside this one).
        let after = theirs.iter().filter(|&&p| claim(&dir, p) == Claim::Held).count();
        assert!(after < 30, "{after} of 300 reservations outlived their process");
    }

    #[test]
    fn child_reserves_and_waits() {
        if std::env::var_os("LOOPBACK_CHILD").is_none() {
            return;
        }
        let ports: Vec<String> = (0..300).map(|_| free_port().to_string()).collect();
        println!("RESERVED {}", ports.join(","));
        // Hold the reservations until the parent closes our stdin.
        let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
    }
}
