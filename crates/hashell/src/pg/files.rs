//! What the data directory says without a running server: `pg_controldata` output,
//! `postmaster.pid`, timeline history files. Pure parsers, tested on real outputs.

use hacore::history::TimelineSwitch;
use hacore::types::{Lsn, Timeline};
use std::path::Path;

/// Parses `X/Y` (hex) into an LSN.
pub fn parse_lsn(s: &str) -> Option<Lsn> {
    let (hi, lo) = s.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u32::MAX as u64 && lo <= u32::MAX as u64).then_some(Lsn((hi << 32) | lo))
}

/// The fields of `pg_controldata` the daemon uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlData {
    /// `Database system identifier`.
    pub system_id: u64,
    /// `Database cluster state`, e.g. `in production`, `shut down`, `shut down in recovery`.
    pub state: String,
    /// `Latest checkpoint's TimeLineID`.
    pub timeline: Timeline,
    /// `Latest checkpoint location`.
    pub checkpoint: Lsn,
    /// `Minimum recovery ending location` (0 on a primary).
    pub min_recovery_end: Lsn,
    /// `Min recovery ending loc's timeline`.
    pub min_recovery_timeline: Timeline,
    /// `Data page checksum version` is not 0.
    pub checksums: bool,
    /// `wal_log_hints setting` is on.
    pub wal_log_hints: bool,
}

impl ControlData {
    /// Parses the output of `pg_controldata` (LC_ALL=C). Fails naming the missing field.
    pub fn parse(text: &str) -> Result<ControlData, String> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(str::trim))
                .ok_or_else(|| format!("pg_controldata printed no {name:?}"))
        };
        let num = |name: &str| -> Result<u64, String> {
            field(name)?.parse().map_err(|_| format!("pg_controldata: {name:?} is not a number"))
        };
        let lsn = |name: &str| -> Result<Lsn, String> {
            parse_lsn(field(name)?).ok_or_else(|| format!("pg_controldata: {name:?} is not an LSN"))
        };
        Ok(ControlData {
            system_id: num("Database system identifier")?,
            state: field("Database cluster state")?.to_string(),
            timeline: Timeline(num("Latest checkpoint's TimeLineID")? as u32),
            checkpoint: lsn("Latest checkpoint location")?,
            min_recovery_end: lsn("Minimum recovery ending location")?,
            min_recovery_timeline: Timeline(num("Min recovery ending loc's timeline")? as u32),
            checksums: num("Data page checksum version")? != 0,
            wal_log_hints: field("wal_log_hints setting")? == "on",
        })
    }

    /// Whether the cluster was a standby when it stopped (or is in recovery now).
    pub fn in_recovery(&self) -> bool {
        self.state.contains("recovery")
    }
}

/// The first line of `postmaster.pid`: the postmaster's PID.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok().filter(|p| *p > 0)
}

/// Reaps every zombie child of this process that was a PostgreSQL process. The daemon is a
/// child subreaper ([`become_subreaper`]), so the postmaster `pg_ctl` starts becomes its
/// child once pg_ctl exits, and so do a killed postmaster's backends. A killed postmaster
/// stays a zombie until its parent reaps it, and PostgreSQL refuses to start while the
/// PID in `postmaster.pid` still exists ("lock file already exists"): a crash could not be
/// restarted until then. Only processes named `postgres` are reaped: the daemon never
/// spawns one itself (the runtime reaps the commands it did spawn). Returns how many.
pub fn reap_postgres_zombies() -> usize {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    let mut reaped = 0;
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        let mut f = stat[close + 1..].split_whitespace();
        let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<u32>().ok()));
        if state == Some("Z") && ppid == Some(me) && (comm == "postgres" || comm == "postmaster") {
            let mut status = 0;
            // SAFETY: waitpid on one specific child PID with WNOHANG; `status` is valid.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                reaped += 1;
            }
        }
    }
    reaped
}

/// Makes this process the reaper of its orphaned descendants (Linux
/// `PR_SET_CHILD_SUBREAPER`): the postmaster `pg_ctl` starts becomes our child instead of
/// PID 1's, so [`reap_postgres_zombies`] can reap it at once after a crash whatever the init
/// (a slow or absent reaper in a container would leave it a zombie).
pub fn become_subreaper() -> Result<(), String> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument only.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// Whether `pid` is a live process whose command is a PostgreSQL server (a stale
/// postmaster.pid after a crash may name a PID reused by something else).
pub fn is_postgres(pid: i32) -> bool {
    let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let argv0 = cmd.split(|b| *b == 0).next().unwrap_or_default();
    let name = String::from_utf8_lossy(argv0);
    let base = name.rsplit('/').next().unwrap_or_default();
    base == "postgres" || base == "postmaster"
}

/// Parses a timeline history file (`<tli>.history`): lines `parentTLI <tab> switchpoint
/// <tab> reason`; comments and blank lines are skipped.
pub fn parse_history(text: &str) -> Result<Vec<TimelineSwitch>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(tli), Some(lsn)) = (parts.next(), parts.next()) else {
            return Err(format!("history line {line:?} has no switch point"));
        };
        let timeline = Timeline(tli.parse().map_err(|_| format!("history line {line:?}: bad timeline"))?);
        let lsn = parse_lsn(lsn).ok_or_else(|| format!("history line {line:?}: bad LSN"))?;
        out.push(TimelineSwitch { timeline, lsn });
    }
    Ok(out)
}

/// Reads the history of `timeline` from `pg_wal` (timeline 1 has none).
pub fn read_history(data_dir: &Path, timeline: Timeline) -> Result<Vec<TimelineSwitch>, String> {
    if timeline.0 <= 1 {
        return Ok(Vec::new());
    }
    let path = data_dir.join("pg_wal").join(format!("{:08X}.history", timeline.0));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_history(&text)
}

/// What marks the history files hashell writes so that a promotion skips timelines
/// other members took: they hold the current timeline's history without the switch from
/// it, so they are in no timeline's ancestry: PostgreSQL recovering towards one looks
/// for all of its WAL on that timeline and never becomes consistent (tested against
/// PostgreSQL 15).
pub const PLACEHOLDER_MARK: &str = "# placeholder written by hashell";

fn history_path(wal: &Path, timeline: u32) -> std::path::PathBuf {
    wal.join(format!("{timeline:08X}.history"))
}

fn is_placeholder(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.contains(PLACEHOLDER_MARK))
}

/// The timelines after `timeline` with a history file in `pg_wal`, one by one up to the
/// first missing, as PostgreSQL probes them; bounded, so that a directory full of
/// history files cannot stall the observation.
fn contiguous_after(wal: &Path, timeline: Timeline) -> impl Iterator<Item = u32> + '_ {
    (timeline.0.saturating_add(1)..=timeline.0.saturating_add(1_000)).take_while(|&t| history_path(wal, t).exists())
}

/// The timeline PostgreSQL recovers towards and forks its next promotion from: it probes
/// `pg_wal` for the history files of the timelines after `timeline`, one by one, up to
/// the first missing, and takes the newest (`recovery_target_timeline = latest`). A
/// promotion that died after writing its history file leaves one. hashell's own
/// placeholders count for the probe but are never the answer: PostgreSQL running keeps
/// the target it had (it takes no timeline whose history does not hold its own), and
/// hashell removes trailing placeholders before it starts PostgreSQL.
pub fn newest_timeline(data_dir: &Path, timeline: Timeline) -> Timeline {
    let wal = data_dir.join("pg_wal");
    let real = contiguous_after(&wal, timeline).filter(|&t| !is_placeholder(&history_path(&wal, t))).last();
    Timeline(real.unwrap_or(timeline.0))
}

/// Removes hashell's placeholders after the timeline PostgreSQL would recover towards
/// (the newest real history file of the contiguous run after `timeline`): left by a
/// promotion that failed before PostgreSQL wrote its own file, they would be what a
/// start recovers towards, and it would never become consistent. Called with PostgreSQL stopped; the next promotion writes them again.
pub fn remove_trailing_placeholders(data_dir: &Path, timeline: Timeline) -> Result<Vec<Timeline>, String> {
    let wal = data_dir.join("pg_wal");
    let target = newest_timeline(data_dir, timeline);
    let trailing: Vec<u32> = contiguous_after(&wal, target).collect();
    let mut removed = Vec::new();
    for t in trailing {
        let path = history_path(&wal, t);
        if !is_placeholder(&path) {
            break;
        }
        std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        removed.push(Timeline(t));
    }
    Ok(removed)
}

/// Writes a placeholder history file for every timeline number below `timeline` (from 2)
/// that has none, and returns them. A standby on an older timeline fetches from its
/// upstream the history file of every number up to the upstream's timeline, skipped ones
/// included, and streams nothing while one is missing; a clone (`pg_basebackup -X
/// stream`) holds only its own timeline's file. A placeholder is never what a standby
/// recovers towards: the upstream's real file comes after it.
pub fn fill_history_gaps(data_dir: &Path, timeline: Timeline) -> Result<Vec<Timeline>, String> {
    let wal = data_dir.join("pg_wal");
    let mut filled = Vec::new();
    for t in 2..timeline.0 {
        let path = history_path(&wal, t);
        if !path.exists() {
            std::fs::write(&path, format!("{PLACEHOLDER_MARK}: timeline {t} is taken\n"))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            filled.push(Timeline(t));
        }
    }
    Ok(filled)
}

/// Removes the history files in `pg_wal` of the timelines after `timeline` and returns
/// them. PostgreSQL recovers towards the newest contiguous one it holds: one that a
/// promotion which died wrote (or a placeholder hashell wrote to skip a timeline) holds a
/// standby to a timeline no other member is on, and it follows nothing else. Called only
/// with PostgreSQL stopped and the data just rewound to the leader's timeline; a standby
/// fetches the history files of its upstream's later timelines from the upstream.
pub fn remove_history_after(data_dir: &Path, timeline: Timeline) -> Result<Vec<Timeline>, String> {
    let wal = data_dir.join("pg_wal");
    let entries = std::fs::read_dir(&wal).map_err(|e| format!("{}: {e}", wal.display()))?;
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", wal.display()))?;
        let name = entry.file_name();
        let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".history")) else { continue };
        let Some(t) = (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok()).flatten() else { continue };
        if t > timeline.0 {
            std::fs::remove_file(entry.path()).map_err(|e| format!("{}: {e}", entry.path().display()))?;
            removed.push(Timeline(t));
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_timeline_counts_contiguous_history_files_after_the_current_one() {
        let dir = std::env::temp_dir().join(format!("hashell-newest-tl-{}", std::process::id()));
        let wal = dir.join("pg_wal");
        std::fs::create_dir_all(&wal).unwrap();
        assert_eq!(newest_timeline(&dir, Timeline(3)), Timeline(3), "no history file beyond the current one");
        // A promotion from 3 that died after writing 00000004.history; 6 is not contiguous.
        std::fs::write(wal.join("00000004.history"), "3\t0/5000000\tno recovery target specified\n").unwrap();
        std::fs::write(wal.join("00000006.history"), "").unwrap();
        std::fs::write(wal.join("00000002.history"), "").unwrap();
        assert_eq!(newest_timeline(&dir, Timeline(3)), Timeline(4));
        std::fs::write(wal.join("00000005.history"), "").unwrap();
        assert_eq!(newest_timeline(&dir, Timeline(3)), Timeline(6));
        assert_eq!(newest_timeline(&dir.join("missing"), Timeline(3)), Timeline(3), "no pg_wal: nothing known");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn placeholders_count_for_the_probe_but_are_never_the_target() {
        let dir = std::env::temp_dir().join(format!("hashell-placeholders-{}", std::process::id()));
        let wal = dir.join("pg_wal");
        std::fs::create_dir_all(&wal).unwrap();
        let placeholder = |t: u32| {
            std::fs::write(wal.join(format!("{t:08X}.history")), format!("1\t0/3000000\tx\n{PLACEHOLDER_MARK}\n"))
                .unwrap()
        };
        // A promotion from 3 asked for 6: placeholders 4 and 5, then it failed before
        // PostgreSQL wrote 6's file. PostgreSQL still recovers towards 3.
        placeholder(4);
        placeholder(5);
        assert_eq!(newest_timeline(&dir, Timeline(3)), Timeline(3));
        // The next attempt died after PostgreSQL wrote 6's: it recovers towards 6.
        std::fs::write(wal.join("00000006.history"), "3\t0/5000000\tno recovery target specified\n").unwrap();
        assert_eq!(newest_timeline(&dir, Timeline(3)), Timeline(6));
        // A third asked for 9 and failed early: 7 and 8 would be the start's target.
        placeholder(7);
        placeholder(8);
        assert_eq!(newest_timeline(&dir, Timeline(3)), Timeline(6));
        assert_eq!(remove_trailing_placeholders(&dir, Timeline(3)).unwrap(), vec![Timeline(7), Timeline(8)]);
        assert!(wal.join("00000004.history").exists(), "placeholders below the target stay: they lead to it");
        assert!(wal.join("00000006.history").exists());
        assert_eq!(newest_timeline(&dir, Timeline(3)), Timeline(6));
        assert_eq!(remove_trailing_placeholders(&dir, Timeline(3)).unwrap(), vec![]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn history_files_after_the_timeline_are_removed_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("hashell-drop-tl-{}", std::process::id()));
        let wal = dir.join("pg_wal");
        std::fs::create_dir_all(&wal).unwrap();
        for f in
            ["00000002.history", "00000003.history", "00000005.history", "00000004000000000000000A", "0000000X.history"]
        {
            std::fs::write(wal.join(f), "").unwrap();
        }
        assert_eq!(remove_history_after(&dir, Timeline(3)).unwrap(), vec![Timeline(5)]);
        let mut left: Vec<String> =
            std::fs::read_dir(&wal).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["00000002.history", "00000003.history", "00000004000000000000000A", "0000000X.history"]);
        assert_eq!(newest_timeline(&dir, Timeline(3)), Timeline(3));
        assert!(remove_history_after(&dir.join("missing"), Timeline(3)).is_err(), "no pg_wal: an error");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_killed_child_named_postgres_is_reaped_and_no_other_child_is() {
        let dir = std::env::temp_dir().join(format!("hashell-reap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("postgres");
        std::fs::copy("/bin/sleep", &fake).unwrap();
        let mut pg = std::process::Command::new(&fake).arg("30").spawn().unwrap();
        let mut other = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        pg.kill().unwrap();
        other.kill().unwrap();
        // Both are zombies once the kill lands; only the one named postgres may be reaped.
        let zombie = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.rfind(')').is_some_and(|i| s[i + 1..].trim_start().starts_with('Z')))
        };
        let t0 = std::time::Instant::now();
        while !(zombie(pg.id()) && zombie(other.id())) && t0.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(reap_postgres_zombies() >= 1);
        assert!(!std::path::Path::new(&format!("/proc/{}", pg.id())).exists(), "the postgres zombie is gone");
        assert!(pg.try_wait().is_err(), "already reaped: waiting again finds no child");
        assert!(zombie(other.id()), "a child with another name is left to its owner");
        assert!(other.wait().is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    const CONTROLDATA: &str = "pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7710878525494074959
Database cluster state:               shut down in recovery
pg_control last modified:             Sun 22 Nov 2026 06:40:00 AM UTC
Latest checkpoint location:           0/17414F8
Latest checkpoint's REDO location:    0/17414F8
Latest checkpoint's TimeLineID:       2
Latest checkpoint's PrevTimeLineID:   2
Minimum recovery ending location:     0/3000060
Min recovery ending loc's timeline:   2
wal_log_hints setting:                off
Data page checksum version:           1
";

    #[test]
    fn controldata_fields() {
        let c = ControlData::parse(CONTROLDATA).unwrap();
        assert_eq!(c.system_id, 7710878525494074959);
        assert!(c.in_recovery());
        assert_eq!(c.timeline, Timeline(2));
        assert_eq!(c.checkpoint, Lsn(0x17414F8));
        assert_eq!(c.min_recovery_end, Lsn(0x3000060));
        assert!(c.checksums && !c.wal_log_hints);
        let e = ControlData::parse("Database system identifier: 1\n").unwrap_err();
        assert!(e.contains("Database cluster state"), "{e}");
    }

    #[test]
    fn lsns_and_history() {
        assert_eq!(parse_lsn("0/17414F8"), Some(Lsn(0x17414F8)));
        assert_eq!(parse_lsn("1/0"), Some(Lsn(1 << 32)));
        assert_eq!(parse_lsn("nope"), None);
        assert_eq!(parse_lsn("1FFFFFFFF/0"), None);
        let h = parse_history("1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tbefore 2026\n").unwrap();
        assert_eq!(
            h,
            vec![
                TimelineSwitch { timeline: Timeline(1), lsn: Lsn(0x3000060) },
                TimelineSwitch { timeline: Timeline(2), lsn: Lsn(0x5000000) }
            ]
        );
        assert!(parse_history("1\n").is_err());
    }

    #[test]
    fn stale_pid_files_do_not_count() {
        assert!(!is_postgres(i32::MAX - 1));
        assert!(!is_postgres(std::process::id() as i32), "the test runner is not PostgreSQL");
    }
}
