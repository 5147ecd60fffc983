//! The systemd unit in deploy/ as shipped: systemd accepts it (no unknown key, no
//! missing binary, with this build's binary in place of /usr/local/bin/hashell), and it
//! keeps what the daemon's safety relies on (a daemon restart must not stop PostgreSQL or
//! the fencing guard; SIGHUP reloads).

use std::process::Command;

#[test]
fn the_systemd_unit_verifies_and_keeps_postgres_and_the_guard_across_daemon_restarts() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/hashell.service"))
        .expect("deploy/hashell.service");
    for line in ["KillMode=process", "ExecReload=/bin/kill -HUP $MAINPID", "User=postgres", "Restart=on-failure"] {
        assert!(unit.lines().any(|l| l == line), "the unit must say {line}");
    }
    let exe = e2e::daemon_exe();
    let dir = std::env::temp_dir().join(format!("hashell-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hashell.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/hashell", &exe.display().to_string())).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/test.sh installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");
}
