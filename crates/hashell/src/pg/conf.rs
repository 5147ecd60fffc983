//! The configuration files the daemon owns in the data directory: `postgresql.conf`
//! (rendered; initdb's original kept as `postgresql.base.conf` and included first),
//! `pg_hba.conf`, `standby.signal` and the upstream marker.
//!
//! Order inside `postgresql.conf`, later lines winning: initdb's base file, the user's
//! `[postgresql.parameters]`, the user's `include_dir`, then the settings safety depends on
//! (port, listen addresses, `synchronous_standby_names`, `primary_conninfo`,
//! `primary_slot_name`), so a file dropped into conf.d cannot silently weaken S2.
//! `ALTER SYSTEM` still overrides everything (PostgreSQL reads `postgresql.auto.conf`
//! last); the daemon observes the settings in effect and sets them again if they differ.

use super::observe::{format_sync_standbys, UPSTREAM_FILE};
use hacore::observation::SyncStandbys;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a standby receives WAL from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Member name (written to the upstream marker).
    pub member: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Replication user.
    pub user: String,
    /// Its password, if any.
    pub password: Option<hacore::Secret>,
    /// Slot on the upstream (this member's name; a standby cluster's configured slot).
    pub slot: Option<String>,
    /// A standby cluster's `restore_command` (replaces `[postgresql] restore_command`
    /// while following the cluster's upstream).
    pub restore_command: Option<String>,
}

/// Everything the daemon decides about the files.
#[derive(Clone, Debug, PartialEq)]
pub struct Managed {
    /// This member's name (`application_name` towards the upstream, `cluster_name`).
    pub member: String,
    /// Port.
    pub port: u16,
    /// `listen_addresses`.
    pub listen: String,
    /// Directory for the Unix socket (None: PostgreSQL's default).
    pub socket_dir: Option<PathBuf>,
    /// The user's parameters.
    pub parameters: BTreeMap<String, toml::Value>,
    /// The user's conf.d.
    pub include_dir: Option<PathBuf>,
    /// `restore_command`.
    pub restore_command: Option<String>,
    /// `synchronous_standby_names`.
    pub sync: SyncStandbys,
    /// Standby: where from (None with `standby` = receiver off).
    pub upstream: Option<Upstream>,
    /// Whether to run as a standby (`standby.signal`).
    pub standby: bool,
    /// pg_hba.conf lines.
    pub hba: Vec<String>,
    /// Recovery to a point in time of a restored backup (`recovery.signal`; empty: none).
    pub recovery: BTreeMap<String, toml::Value>,
}

/// A PostgreSQL configuration string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// A libpq connection-string value.
fn conn_value(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

fn value(v: &toml::Value) -> String {
    match v {
        toml::Value::Boolean(b) => if *b { "on" } else { "off" }.into(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::String(s) => quote(s),
        other => quote(&other.to_string()),
    }
}

/// The password file a standby's `primary_conninfo` names (`passfile=`), next to the
/// data directory: PostgreSQL logs every changed setting's value on reload, so the
/// password itself is never in `postgresql.conf`.
pub fn passfile(data_dir: &Path) -> PathBuf {
    crate::config::sibling(data_dir, "pgpass")
}

/// The `.pgpass` line giving `u`'s password for its host, port and user.
fn pgpass_line(u: &Upstream, password: &hacore::Secret) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    format!("{}:{}:*:{}:{}\n", esc(&u.host), u.port, esc(&u.user), esc(password.expose()))
}

/// `primary_conninfo` for an upstream; its password, if any, is read from `passfile`.
pub fn conninfo(member: &str, u: &Upstream, passfile: &Path) -> String {
    let mut parts = vec![
        format!("host={}", conn_value(&u.host)),
        format!("port={}", u.port),
        format!("user={}", conn_value(&u.user)),
        format!("application_name={}", conn_value(member)),
        "connect_timeout=5".to_string(),
    ];
    if u.password.is_some() {
        parts.push(format!("passfile={}", conn_value(&passfile.to_string_lossy())));
    }
    parts.join(" ")
}

/// The text of `postgresql.conf`.
pub fn render_conf(data_dir: &Path, m: &Managed) -> String {
    let mut out = String::from(
        "# Written by hashell; edits here are overwritten. Put your own settings in the\n\
         # include_dir of the hashell configuration.\ninclude_if_exists 'postgresql.base.conf'\n\n",
    );
    // Defaults for failover speed, before the user's parameters (which may override them):
    // a standby repointed to a new primary retries its connection after this long
    // (PostgreSQL's default, 5 s, delays every replica's return after a failover).
    out.push_str("# hashell's defaults (your parameters below override them)\nwal_retrieve_retry_interval = '1s'\n\n");
    out.push_str("# [postgresql.parameters]\n");
    for (k, v) in &m.parameters {
        out.push_str(&format!("{k} = {}\n", value(v)));
    }
    let upstream_restore = m.upstream.as_ref().filter(|_| m.standby).and_then(|u| u.restore_command.as_ref());
    if let Some(r) = upstream_restore.or(m.restore_command.as_ref()) {
        out.push_str(&format!("restore_command = {}\n", quote(r)));
    }
    if !m.recovery.is_empty() {
        out.push_str("\n# [postgresql.bootstrap_recovery], while the restored backup recovers\n");
        for (k, v) in &m.recovery {
            out.push_str(&format!("{k} = {}\n", value(v)));
        }
        out.push_str("recovery_target_action = 'promote'\n");
    }
    if let Some(d) = &m.include_dir {
        out.push_str(&format!("\n# your own settings\ninclude_dir {}\n", quote(&d.to_string_lossy())));
    }
    out.push_str("\n# managed by hashell (after include_dir on purpose)\n");
    out.push_str(&format!("cluster_name = {}\n", quote(&m.member)));
    out.push_str(&format!("port = {}\n", m.port));
    out.push_str(&format!("listen_addresses = {}\n", quote(&m.listen)));
    if let Some(s) = &m.socket_dir {
        out.push_str(&format!("unix_socket_directories = {}\n", quote(&s.to_string_lossy())));
    }
    out.push_str(&format!("hba_file = {}\n", quote(&data_dir.join("pg_hba.conf").to_string_lossy())));
    out.push_str(&format!("synchronous_standby_names = {}\n", quote(&format_sync_standbys(&m.sync))));
    let (info, slot) = match (&m.upstream, m.standby) {
        // No host: a standby cluster replaying from its archive only.
        (Some(u), true) if u.host.is_empty() => (String::new(), String::new()),
        (Some(u), true) => (conninfo(&m.member, u, &passfile(data_dir)), u.slot.clone().unwrap_or_default()),
        _ => (String::new(), String::new()),
    };
    out.push_str(&format!("primary_conninfo = {}\n", quote(&info)));
    out.push_str(&format!("primary_slot_name = {}\n", quote(&slot)));
    out
}

/// The text of `pg_hba.conf`.
pub fn render_hba(lines: &[String]) -> String {
    let mut out = String::from("# Written by hashell from [postgresql] pg_hba; edits here are overwritten.\n");
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Writes `path` atomically (temp file, fsync, rename) with mode 0600 if its content
/// differs; returns whether it changed.
fn write_if_changed(path: &Path, text: &str, owner: Option<(u32, u32)>) -> std::io::Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    let tmp = path.with_extension("hashell-tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(true)
}

/// What changed on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// `postgresql.conf` or `pg_hba.conf` changed (a reload applies it).
    pub config: bool,
    /// `standby.signal` appeared or disappeared (only a restart applies it).
    pub role: bool,
}

/// Brings the files of `data_dir` to `m`. initdb's `postgresql.conf` is kept once as
/// `postgresql.base.conf`. `owner`: uid/gid the files must belong to (when run as root).
pub fn write(data_dir: &Path, m: &Managed, owner: Option<(u32, u32)>) -> std::io::Result<Written> {
    let conf = data_dir.join("postgresql.conf");
    let base = data_dir.join("postgresql.base.conf");
    if !base.exists() {
        let original = std::fs::read_to_string(&conf).unwrap_or_default();
        if !original.starts_with("# Written by hashell") {
            write_if_changed(&base, &original, owner)?;
        }
    }
    // The password file first: the reload that applies a new primary_conninfo reads it.
    match m.upstream.as_ref().filter(|_| m.standby).and_then(|u| u.password.as_ref().map(|p| (u, p))) {
        Some((u, p)) => {
            write_if_changed(&passfile(data_dir), &pgpass_line(u, p), owner)?;
        }
        None => {
            let _ = std::fs::remove_file(passfile(data_dir));
        }
    }
    let mut w = Written::default();
    w.config |= write_if_changed(&conf, &render_conf(data_dir, m), owner)?;
    w.config |= write_if_changed(&data_dir.join("pg_hba.conf"), &render_hba(&m.hba), owner)?;
    // PostgreSQL removes recovery.signal itself when it promotes at the target.
    let recovery = data_dir.join("recovery.signal");
    if !m.recovery.is_empty() && !recovery.exists() {
        write_if_changed(&recovery, "", owner)?;
    }
    let signal = data_dir.join("standby.signal");
    let marker = data_dir.join(UPSTREAM_FILE);
    if m.standby {
        if !signal.exists() {
            write_if_changed(&signal, "", owner)?;
            w.role = true;
        }
        let name = m.upstream.as_ref().map(|u| u.member.as_str()).unwrap_or("");
        write_if_changed(&marker, &format!("{name}\n"), owner)?;
    } else {
        if signal.exists() {
            std::fs::remove_file(&signal)?;
            w.role = true;
        }
        let _ = std::fs::remove_file(&marker);
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed() -> Managed {
        let mut parameters = BTreeMap::new();
        parameters.insert("max_connections".into(), toml::Value::Integer(50));
        parameters.insert("hot_standby".into(), toml::Value::Boolean(true));
        parameters.insert("log_line_prefix".into(), toml::Value::String("%m [%p] it's ".into()));
        Managed {
            member: "n2".into(),
            port: 5433,
            listen: "127.0.0.1".into(),
            socket_dir: None,
            parameters,
            include_dir: Some("/etc/conf.d".into()),
            restore_command: None,
            sync: SyncStandbys::First(vec!["n3".into()]),
            upstream: Some(Upstream {
                member: "n1".into(),
                host: "10.0.0.1".into(),
                port: 5432,
                user: "replicator".into(),
                password: Some("p'w d".into()),
                slot: Some("n2".into()),
                restore_command: None,
            }),
            standby: true,
            hba: vec!["host replication replicator 10.0.0.0/24 scram-sha-256".into()],
            recovery: BTreeMap::new(),
        }
    }

    #[test]
    fn conf_puts_safety_settings_after_the_users() {
        let text = render_conf(Path::new("/d"), &managed());
        let pos = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle} missing:\n{text}"));
        assert!(pos("include_dir '/etc/conf.d'") < pos("synchronous_standby_names"));
        assert!(pos("max_connections = 50") < pos("include_dir '"));
        assert!(text.contains("hot_standby = on"));
        assert!(text.contains("log_line_prefix = '%m [%p] it''s '"), "{text}");
        assert!(text.contains("synchronous_standby_names = 'FIRST 1 (\"n3\")'"), "{text}");
        assert!(text.contains("primary_slot_name = 'n2'"));
        assert!(
            text.contains(
                "primary_conninfo = 'host=10.0.0.1 port=5432 user=replicator application_name=n2 connect_timeout=5 passfile=/d.pgpass'"
            ),
            "{text}"
        );
        assert!(!text.contains("p'w d"), "the password stays out of postgresql.conf:\n{text}");
        let u = managed().upstream.unwrap_or_else(|| unreachable!());
        assert_eq!(pgpass_line(&u, &"a:b\\c".into()), "10.0.0.1:5432:*:replicator:a\\:b\\\\c\n");
    }

    #[test]
    fn a_standby_clusters_leader_takes_the_upstreams_slot_and_restore_command() {
        let mut m = managed();
        m.restore_command = Some("cp /local/%f %p".into());
        m.upstream = Some(Upstream {
            member: hacore::UPSTREAM.into(),
            host: "dc1".into(),
            port: 5432,
            user: "replicator".into(),
            password: None,
            slot: Some("dr_site".into()),
            restore_command: Some("cp /archive/%f %p".into()),
        });
        let text = render_conf(Path::new("/d"), &m);
        assert!(text.contains("restore_command = 'cp /archive/%f %p'") && !text.contains("/local/"), "{text}");
        assert!(text.contains("primary_slot_name = 'dr_site'"), "{text}");
        assert!(text.contains("primary_conninfo = 'host=dc1 port=5432 user=replicator application_name=n2"), "{text}");
        // Replaying from the archive only: no conninfo at all.
        if let Some(u) = &mut m.upstream {
            u.host.clear();
        }
        let text = render_conf(Path::new("/d"), &m);
        assert!(text.contains("primary_conninfo = ''\n") && text.contains("primary_slot_name = ''\n"), "{text}");
        assert!(text.contains("restore_command = 'cp /archive/%f %p'"), "{text}");
        // A primary keeps its own restore_command (for a later demotion), not the upstream's.
        m.standby = false;
        assert!(render_conf(Path::new("/d"), &m).contains("restore_command = 'cp /local/%f %p'"));
    }

    #[test]
    fn a_primary_has_no_conninfo() {
        let mut m = managed();
        m.standby = false;
        let text = render_conf(Path::new("/d"), &m);
        assert!(text.contains("primary_conninfo = ''\n") && text.contains("primary_slot_name = ''\n"), "{text}");
    }

    #[test]
    fn files_change_only_when_their_content_does() {
        let dir = std::env::temp_dir().join(format!("hashell-conf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("postgresql.conf"), "shared_buffers = 128MB\n").unwrap();
        let m = managed();
        assert_eq!(write(&dir, &m, None).unwrap(), Written { config: true, role: true });
        assert_eq!(std::fs::read_to_string(dir.join("postgresql.base.conf")).unwrap(), "shared_buffers = 128MB\n");
        assert_eq!(std::fs::read_to_string(dir.join(UPSTREAM_FILE)).unwrap(), "n1\n");
        let pass = passfile(&dir);
        assert_eq!(std::fs::read_to_string(&pass).unwrap(), "10.0.0.1:5432:*:replicator:p'w d\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&pass).unwrap().permissions().mode() & 0o777,
            0o600,
            "libpq ignores a readable one"
        );
        assert_eq!(write(&dir, &m, None).unwrap(), Written::default(), "nothing changed, nothing written");
        let mut primary = m.clone();
        primary.standby = false;
        assert_eq!(write(&dir, &primary, None).unwrap(), Written { config: true, role: true });
        assert!(!dir.join("standby.signal").exists() && !dir.join(UPSTREAM_FILE).exists());
        assert!(!pass.exists(), "a primary keeps no password file");
        assert_eq!(std::fs::read_to_string(dir.join("postgresql.base.conf")).unwrap(), "shared_buffers = 128MB\n");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&pass);
    }
}
