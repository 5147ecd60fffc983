//! The daemon's configuration file (TOML), environment overrides, `--set` flags, and
//! validation that names every problem and what to change.
//!
//! Order of precedence: the file, then `HASHELL_<SECTION>__<KEY>` environment variables
//! (double underscore between levels, e.g. `HASHELL_POSTGRESQL__DATA_DIR`), then
//! `--set section.key=value` flags. Override values are read as TOML literals when they
//! parse as one (`30`, `true`, `["a", "b"]`, `"30s"`), else as plain strings.

use hacore::config::ConfigError;
use hacore::{ClusterSettings, SyncMode};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::{Path, PathBuf};

/// A duration in the file: `"500ms"`, `"30s"`, `"2min"`, `"1h"`, or a bare integer of
/// seconds (Patroni's convention, so migrated files keep working).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Dur(pub u64);

impl Dur {
    /// Parses `"30s"`-style text into milliseconds.
    pub fn parse(s: &str) -> Result<Dur, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 =
            num.parse().map_err(|_| format!("{s:?} is not a duration; write e.g. \"500ms\", \"30s\", \"2min\""))?;
        let mult = match unit.trim() {
            "ms" => 1,
            "s" | "" => 1_000,
            "min" | "m" => 60_000,
            "h" => 3_600_000,
            u => return Err(format!("unknown unit {u:?} in {s:?}; use ms, s, min or h")),
        };
        n.checked_mul(mult).map(Dur).ok_or_else(|| format!("{s:?} is too long"))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur(s.saturating_mul(1_000))),
            Raw::Text(t) => Dur::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A byte size: `"1MB"`, `"512kB"`, or a bare integer of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Bytes(n)),
            Raw::Text(t) => {
                let t = t.trim();
                let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
                let (num, unit) = t.split_at(split);
                let n: u64 = num
                    .parse()
                    .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a size; write e.g. \"1MB\"")))?;
                let mult: u64 = match unit.trim() {
                    "" | "B" => 1,
                    "kB" | "KB" => 1 << 10,
                    "MB" => 1 << 20,
                    "GB" => 1 << 30,
                    u => {
                        return Err(serde::de::Error::custom(format!(
                            "unknown unit {u:?} in {t:?}; use B, kB, MB or GB"
                        )))
                    }
                };
                Ok(Bytes(n.saturating_mul(mult)))
            }
        }
    }
}

/// `[cluster]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Cluster name: the DCS key prefix element, shared by every member.
    pub name: String,
    /// DCS key namespace shared by every cluster on the same store.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_namespace() -> String {
    "service".into()
}

/// `[node]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// This member's name, unique in the cluster.
    pub name: String,
    /// Member tags.
    #[serde(default)]
    pub tags: TagsSection,
}

/// `[node.tags]`: the core's tags, with unknown keys refused (a typo such as `nofailvoer`
/// must not silently leave a node eligible). The core's own type accepts unknown fields,
/// so that records of newer daemons stay readable during an upgrade.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagsSection {
    /// Never take over.
    pub nofailover: bool,
    /// Tie-break between equally advanced candidates (higher wins; 0 = nofailover).
    pub failover_priority: u32,
    /// Published for load balancers.
    pub noloadbalance: bool,
    /// Never a synchronous standby.
    pub nosync: bool,
    /// Preferred clone source.
    pub clonefrom: bool,
}

impl Default for TagsSection {
    fn default() -> Self {
        TagsSection::from(&hacore::types::Tags::default())
    }
}

impl From<&hacore::types::Tags> for TagsSection {
    fn from(t: &hacore::types::Tags) -> Self {
        TagsSection {
            nofailover: t.nofailover,
            failover_priority: t.failover_priority,
            noloadbalance: t.noloadbalance,
            nosync: t.nosync,
            clonefrom: t.clonefrom,
        }
    }
}

impl TagsSection {
    /// The core's tags.
    pub fn core(&self) -> hacore::types::Tags {
        hacore::types::Tags {
            nofailover: self.nofailover,
            failover_priority: self.failover_priority,
            noloadbalance: self.noloadbalance,
            nosync: self.nosync,
            clonefrom: self.clonefrom,
        }
    }
}

/// `[dcs.etcd]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSection {
    /// `http(s)://host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// User, when etcd has authentication on.
    pub user: Option<String>,
    /// Password of `user` (or `password_file`).
    pub password: Option<hacore::Secret>,
    /// File holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// CA certificate (PEM) of etcd's server certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), when etcd verifies clients.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM).
    pub key_file: Option<PathBuf>,
}

/// `[dcs.dynamodb]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoSection {
    /// Table (created by `hashell dcs create-table`, never by the daemon).
    pub table: String,
    /// AWS region.
    pub region: Option<String>,
    /// Endpoint override (a local DynamoDB-compatible server).
    pub endpoint: Option<String>,
}

/// `[dcs]`: exactly one store.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DcsSection {
    /// etcd v3.
    pub etcd: Option<EtcdSection>,
    /// DynamoDB.
    pub dynamodb: Option<DynamoSection>,
}

/// A user and password.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password (or `password_file`).
    pub password: Option<hacore::Secret>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
}

/// `[postgresql]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// Directory of `pg_ctl`, `initdb`, `pg_basebackup`, `pg_rewind`, `pg_controldata`.
    #[serde(default = "default_bin_dir")]
    pub bin_dir: PathBuf,
    /// The data directory (PGDATA).
    pub data_dir: PathBuf,
    /// `listen_addresses`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Port.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// `host:port` other members and clients use to reach this PostgreSQL.
    pub connect_address: String,
    /// Superuser the daemon connects as.
    pub superuser: Credentials,
    /// Replication user the standbys connect as.
    pub replication: Credentials,
    /// postgresql.conf parameters the daemon manages (the user's own go in `include_dir`).
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, toml::Value>,
    /// pg_hba.conf lines, in order.
    #[serde(default)]
    pub pg_hba: Vec<String>,
    /// A conf.d directory included last, for the user's own settings.
    pub include_dir: Option<PathBuf>,
    /// Use pg_rewind to rejoin a diverged node (else re-clone it).
    #[serde(default = "yes")]
    pub use_rewind: bool,
    /// `restore_command` for replicas catching up from a WAL archive.
    pub restore_command: Option<String>,
    /// A command that creates a replica instead of pg_basebackup (e.g. a pgBackRest restore).
    pub clone_command: Option<String>,
    /// A command that creates the cluster's first data directory instead of initdb.
    pub bootstrap_command: Option<String>,
    /// Recovery of what `bootstrap_command` restored to a point in time before the cluster
    /// starts (`recovery_target_time`, `_name`, `_lsn`, `_xid`, `_inclusive`,
    /// `_timeline`): WAL from `restore_command` is replayed up to it, then promoted.
    #[serde(default)]
    pub bootstrap_recovery: std::collections::BTreeMap<String, toml::Value>,
    /// `unix_socket_directories`; the daemon connects to its PostgreSQL through it.
    #[serde(default = "default_socket_dir")]
    pub socket_dir: PathBuf,
    /// Server log written by `pg_ctl -l` (default: `<data_dir>.log`, next to the data
    /// directory so a re-clone does not lose it).
    pub log_file: Option<PathBuf>,
}

impl PostgresSection {
    /// The server log file.
    pub fn log_path(&self) -> PathBuf {
        self.log_file.clone().unwrap_or_else(|| sibling(&self.data_dir, "log"))
    }
}

/// `<path>.<ext>` (a sibling of a directory).
pub fn sibling(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn default_socket_dir() -> PathBuf {
    PathBuf::from("/var/run/postgresql")
}

fn default_bin_dir() -> PathBuf {
    PathBuf::from("/usr/lib/postgresql/15/bin")
}
fn default_listen() -> String {
    "127.0.0.1".into()
}
fn default_pg_port() -> u16 {
    5432
}
fn yes() -> bool {
    true
}

/// `[rest]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestSection {
    /// Listen address, `host:port`.
    #[serde(default = "default_rest_listen")]
    pub listen: String,
    /// `host:port` peers and the CLI use to reach this API.
    pub connect_address: String,
    /// Basic auth for unsafe endpoints.
    pub auth: Option<Credentials>,
    /// Server certificate (PEM); TLS is on when set.
    pub cert_file: Option<PathBuf>,
    /// Server key (PEM).
    pub key_file: Option<PathBuf>,
    /// CA to verify client certificates with (optional).
    pub client_ca_file: Option<PathBuf>,
    /// Which clients must present a certificate signed by `client_ca_file`.
    pub verify_client: Option<VerifyClient>,
    /// CA that verifies the other members' API certificates (this node's calls to its
    /// peers and the CLI's calls). Needed when the members serve TLS.
    pub ca_file: Option<PathBuf>,
    /// Networks (`10.0.0.0/8`, `192.168.1.7`, `::1`) allowed to make unsafe requests
    /// (POST, PATCH, DELETE); empty: any. Reads stay open to everyone (load balancers).
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// With an allow-list, also allow the members' API addresses (peers' failsafe pings
    /// and wake-ups are unsafe requests). Host names are not looked up: list such members.
    #[serde(default = "yes")]
    pub allowlist_include_members: bool,
}

/// `rest.verify_client`: when client certificates are required (Patroni's values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyClient {
    /// No client certificates.
    None,
    /// Verified when presented; unsafe requests must present one (load balancers' health
    /// checks need none).
    Optional,
    /// Every connection presents one.
    Required,
}

impl RestSection {
    /// The client-certificate policy in effect: `verify_client`, else `required` when a
    /// client CA is configured, else none.
    pub fn client_policy(&self) -> VerifyClient {
        self.verify_client.unwrap_or(if self.client_ca_file.is_some() {
            VerifyClient::Required
        } else {
            VerifyClient::None
        })
    }

    /// `https` when TLS is on, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.cert_file.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// This API's URL as peers and the CLI reach it.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.connect_address)
    }
}

fn default_rest_listen() -> String {
    "127.0.0.1:8008".into()
}

/// `[settings]`: the cluster-wide settings written to the DCS at bootstrap (afterwards
/// the DCS `config` key is authoritative; change it with `hashell edit-config`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsSection {
    /// Lease time-to-live.
    pub ttl: Dur,
    /// Longest sleep between two loops.
    pub loop_wait: Dur,
    /// Bound on one DCS operation including retries.
    pub retry_timeout: Dur,
    /// Replicas further behind than this may not take over (asynchronous mode).
    pub maximum_lag_on_failover: Bytes,
    /// `off`, `on` or `strict`.
    pub synchronous_mode: SyncMode,
    /// Number of synchronous standbys.
    pub synchronous_node_count: u32,
    /// Keep the primary through a DCS outage while every member confirms it.
    pub failsafe_mode: bool,
    /// Leader's limit to restart a crashed PostgreSQL before releasing the lease.
    pub primary_start_timeout: Dur,
    /// Leader's tolerance of a PostgreSQL that runs but does not answer.
    pub primary_hang_timeout: Dur,
    /// Switchover wait for the candidate to receive the shutdown checkpoint.
    pub switchover_timeout: Dur,
    /// `[settings.standby_cluster]`: found a standby cluster (a disaster-recovery site)
    /// replicating from this upstream (docs/standby-cluster.md).
    pub standby_cluster: Option<hacore::StandbyCluster>,
}

impl Default for SettingsSection {
    fn default() -> Self {
        let d = ClusterSettings::default();
        SettingsSection {
            ttl: Dur(d.ttl),
            loop_wait: Dur(d.loop_wait),
            retry_timeout: Dur(d.retry_timeout),
            maximum_lag_on_failover: Bytes(d.maximum_lag_on_failover),
            synchronous_mode: d.synchronous_mode,
            synchronous_node_count: d.synchronous_node_count,
            failsafe_mode: d.failsafe_mode,
            primary_start_timeout: Dur(d.primary_start_timeout),
            primary_hang_timeout: Dur(d.primary_hang_timeout),
            switchover_timeout: Dur(d.switchover_timeout),
            standby_cluster: None,
        }
    }
}

/// `[watchdog]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchdogSection {
    /// `off`, `automatic` (use it when present) or `required` (refuse to lead without it).
    pub mode: WatchdogMode,
    /// Device.
    pub device: PathBuf,
}

impl Default for WatchdogSection {
    fn default() -> Self {
        WatchdogSection { mode: WatchdogMode::Automatic, device: PathBuf::from("/dev/watchdog") }
    }
}

/// Whether the hardware watchdog is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchdogMode {
    /// Never.
    Off,
    /// When the device exists.
    Automatic,
    /// Refuse to lead without it.
    Required,
}

/// `[guard]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardSection {
    /// Refuse to keep PostgreSQL writable unless the fencing guard acknowledged the deadline.
    pub required: bool,
    /// The guard's Unix socket (default: `<data_dir>.guard`, next to the data directory).
    pub socket: Option<PathBuf>,
}

impl Default for GuardSection {
    fn default() -> Self {
        GuardSection { required: true, socket: None }
    }
}

/// `[log]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter).
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { format: LogFormat::Pretty, level: "info".into() }
    }
}

/// Log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The whole file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[cluster]`
    pub cluster: ClusterSection,
    /// `[node]`
    pub node: NodeSection,
    /// `[dcs]`
    pub dcs: DcsSection,
    /// `[postgresql]`
    pub postgresql: PostgresSection,
    /// `[rest]`
    pub rest: RestSection,
    /// `[settings]`
    #[serde(default)]
    pub settings: SettingsSection,
    /// `[safety]`: the physical assumptions behind the lease margin.
    #[serde(default)]
    pub safety: hacore::config::Safety,
    /// `[timeouts]` of long PostgreSQL operations (ms).
    #[serde(default)]
    pub timeouts: hacore::config::Timeouts,
    /// `[watchdog]`
    #[serde(default)]
    pub watchdog: WatchdogSection,
    /// `[guard]`
    #[serde(default)]
    pub guard: GuardSection,
    /// `[log]`
    #[serde(default)]
    pub log: LogSection,
    /// `[callbacks]`: commands run on start, stop, role change and fence.
    #[serde(default)]
    pub callbacks: crate::callbacks::CallbacksSection,
    /// Replication slots the leader keeps whatever the topology.
    #[serde(default)]
    pub permanent_slots: Vec<String>,
}

/// The settings `[postgresql] bootstrap_recovery` may hold.
pub const BOOTSTRAP_RECOVERY_KEYS: [&str; 7] = [
    "recovery_target",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_lsn",
    "recovery_target_inclusive",
    "recovery_target_timeline",
];

/// Why a configuration cannot be used: every problem, each naming its key.
#[derive(Debug)]
pub struct Invalid {
    /// Where the configuration came from.
    pub source: String,
    /// The problems.
    pub errors: Vec<ConfigError>,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: {} problem(s):", self.source, self.errors.len())?;
        for e in &self.errors {
            writeln!(f, "  - {}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

/// Sets `path` (dotted) in a TOML tree to `raw`, read as a TOML literal when it is one.
pub fn set_path(root: &mut toml::Value, path: &str, raw: &str) -> Result<(), ConfigError> {
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err(path, "is not a key path; write e.g. postgresql.data_dir"));
    }
    let mut cur = root;
    for p in &parts[..parts.len() - 1] {
        let table = cur.as_table_mut().ok_or_else(|| err(path, format!("{p} is not a table")))?;
        cur = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
    let table = cur.as_table_mut().ok_or_else(|| err(path, "its parent is not a table"))?;
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// The environment overrides (`HASHELL_A__B=value` sets `a.b`), sorted by key.
pub fn env_overrides(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix("HASHELL_")?;
            Some((rest.to_ascii_lowercase().replace("__", "."), v))
        })
        .collect();
    out.sort();
    out
}

/// Loads a configuration: `text` from `source` (a file name, for messages), then the
/// environment overrides, then the `--set` overrides; parses and validates it.
pub fn load(
    source: &str,
    text: &str,
    env: &[(String, String)],
    sets: &[(String, String)],
) -> Result<FileConfig, Invalid> {
    let invalid = |errors| Invalid { source: source.to_string(), errors };
    let mut tree: toml::Value = toml::from_str::<toml::Table>(text)
        .map(toml::Value::Table)
        .map_err(|e| invalid(vec![err("(file)", toml_syntax_error(text, &e))]))?;
    let mut errors = Vec::new();
    for (k, v) in env.iter().chain(sets) {
        if let Err(e) = set_path(&mut tree, k, v) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let cfg: FileConfig = FileConfig::deserialize(tree).map_err(|e| {
        let msg = e.to_string();
        invalid(vec![err("(schema)", format!("{}; see `hashell config example` for every key", msg.trim()))])
    })?;
    cfg.validate().map_err(invalid)?;
    Ok(cfg)
}

/// "not valid TOML at line L, column C: <message>", quoting the line, except that a line
/// naming a password shows only its key: the message goes to logs and terminals.
fn toml_syntax_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    let Some(span) = e.span() else { return format!("not valid TOML: {msg}") };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("").trim_end();
    let shown = match line.split_once('=') {
        Some((key, _)) if key.to_ascii_lowercase().contains("password") => format!("{}= <redacted>", key),
        _ if line.to_ascii_lowercase().contains("password") => "<redacted>".to_string(),
        _ => line.to_string(),
    };
    format!("not valid TOML at line {line_no}, column {column}: {msg}\n    {shown}")
}

impl Credentials {
    /// The password, from the file or the text (None: none configured).
    pub fn secret(&self) -> Result<Option<hacore::Secret>, String> {
        match (&self.password, &self.password_file) {
            (Some(p), _) => Ok(Some(p.clone())),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map(|t| Some(hacore::Secret::new(t.lines().next().unwrap_or(""))))
                .map_err(|e| format!("cannot read password_file {}: {e}", f.display())),
            (None, None) => Ok(None),
        }
    }
}

/// Reads and loads a file with the process's environment and the given `--set` pairs.
pub fn load_file(path: &Path, sets: &[(String, String)]) -> Result<FileConfig, Invalid> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Invalid { source: source.clone(), errors: vec![err("(file)", format!("cannot read it: {e}"))] })?;
    load(&source, &text, &env_overrides(std::env::vars()), sets)
}

fn host_port(field: &str, v: &str, errs: &mut Vec<ConfigError>) {
    let ok = v.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        errs.push(err(field, format!("{v:?} is not host:port; write e.g. \"10.0.0.5:8008\"")));
    }
}

fn credentials(field: &str, c: &Credentials, errs: &mut Vec<ConfigError>) {
    if c.username.is_empty() {
        errs.push(err(&format!("{field}.username"), "must not be empty"));
    }
    if c.password.is_some() && c.password_file.is_some() {
        errs.push(err(field, "set password or password_file, not both"));
    }
}

/// What a re-read file changes against the running one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Keys a reload applies: `postgresql.parameters`, `postgresql.pg_hba`,
    /// `postgresql.restore_command`.
    pub live: Vec<String>,
    /// Keys that take effect when the daemon restarts.
    pub later: Vec<String>,
    /// `[settings]` keys: once the cluster exists the store's copy rules; the file's is only
    /// the fallback before the first read. Change them with `hashell edit-config`.
    pub stored: Vec<String>,
}

/// The keys a re-read file changes, by when they take effect.
pub fn reload_changes(running: &FileConfig, new: &FileConfig) -> Changes {
    const LIVE: [&str; 3] = ["parameters", "pg_hba", "restore_command"];
    let (a, b) = (serde_json::to_value(running).unwrap_or_default(), serde_json::to_value(new).unwrap_or_default());
    let (mut live, mut later, mut stored) = (Vec::new(), Vec::new(), Vec::new());
    let empty = serde_json::Map::new();
    let sections = |v: &serde_json::Value| v.as_object().cloned().unwrap_or_default();
    let (sa, sb) = (sections(&a), sections(&b));
    let mut names: Vec<&String> = sa.keys().chain(sb.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (x, y) = (sa.get(name), sb.get(name));
        if x == y {
            continue;
        }
        let (x, y) = (x.and_then(|v| v.as_object()).unwrap_or(&empty), y.and_then(|v| v.as_object()).unwrap_or(&empty));
        if x.is_empty() && y.is_empty() {
            // Not a table (a top-level list such as permanent_slots).
            later.push(name.clone());
            continue;
        }
        let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            if x.get(k) != y.get(k) {
                let key = format!("{name}.{k}");
                if name == "postgresql" && LIVE.contains(&k.as_str()) {
                    live.push(key);
                } else if name == "settings" {
                    // The store's copy rules once the cluster exists; see `reload_changes`.
                    stored.push(key);
                } else {
                    later.push(key);
                }
            }
        }
    }
    Changes { live, later, stored }
}

impl FileConfig {
    /// Every problem, each naming its key and what to change. Checks only the file (no
    /// file system or network access beyond what the keys name).
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errs = Vec::new();
        let c = &self.cluster;
        if c.name.is_empty() || !c.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            errs.push(err("cluster.name", "must be non-empty letters, digits, '-' or '_' (it is part of DCS keys)"));
        }
        if c.namespace.contains("//") || c.namespace.chars().any(char::is_whitespace) {
            errs.push(err("cluster.namespace", "must be a plain path like \"service\""));
        }
        match (&self.dcs.etcd, &self.dcs.dynamodb) {
            (None, None) => errs.push(err("dcs", "configure one store: [dcs.etcd] or [dcs.dynamodb]")),
            (Some(_), Some(_)) => errs.push(err("dcs", "configure one store, not both [dcs.etcd] and [dcs.dynamodb]")),
            #[cfg(not(feature = "dynamodb"))]
            (None, Some(_)) => errs.push(err(
                "dcs.dynamodb",
                "this hashell was built without the DynamoDB store (cargo feature `dynamodb`); \
                 use [dcs.etcd] or a build with the feature",
            )),
            (Some(e), None) => {
                if e.endpoints.is_empty() {
                    errs.push(err("dcs.etcd.endpoints", "list at least one endpoint, e.g. [\"http://10.0.0.1:2379\"]"));
                }
                for ep in &e.endpoints {
                    if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                        errs.push(err("dcs.etcd.endpoints", format!("{ep:?} must start with http:// or https://")));
                    }
                }
                if e.cert_file.is_some() != e.key_file.is_some() {
                    errs.push(err("dcs.etcd", "set both cert_file and key_file, or neither"));
                }
                if e.user.is_some() != (e.password.is_some() || e.password_file.is_some()) {
                    errs.push(err("dcs.etcd", "user needs password or password_file (and the other way round)"));
                }
            }
            #[cfg(feature = "dynamodb")]
            (None, Some(d)) => {
                if d.table.is_empty() {
                    errs.push(err(
                        "dcs.dynamodb.table",
                        "must name the table (create it with `hashell dcs create-table`)",
                    ));
                }
            }
        }
        let pg = &self.postgresql;
        if !pg.data_dir.is_absolute() {
            errs.push(err("postgresql.data_dir", "must be an absolute path"));
        }
        if !pg.bin_dir.is_absolute() {
            errs.push(err("postgresql.bin_dir", "must be an absolute path, e.g. /usr/lib/postgresql/15/bin"));
        }
        if pg.port == 0 {
            errs.push(err("postgresql.port", "must be 1-65535"));
        }
        host_port("postgresql.connect_address", &pg.connect_address, &mut errs);
        credentials("postgresql.superuser", &pg.superuser, &mut errs);
        credentials("postgresql.replication", &pg.replication, &mut errs);
        for managed in [
            "port",
            "listen_addresses",
            "hba_file",
            "data_directory",
            "synchronous_standby_names",
            "primary_conninfo",
            "primary_slot_name",
        ] {
            if pg.parameters.contains_key(managed) {
                errs.push(err(
                    &format!("postgresql.parameters.{managed}"),
                    "is managed by hashell; remove it (use postgresql.port / postgresql.listen, or let the daemon set it)",
                ));
            }
        }
        if pg.pg_hba.is_empty() {
            errs.push(err(
                "postgresql.pg_hba",
                "is empty, so PostgreSQL would accept no connection (not even the daemon's): list at least \
                 \"local all postgres peer\" and \"host replication replicator <members' network> scram-sha-256\"",
            ));
        }
        for (i, line) in pg.pg_hba.iter().enumerate() {
            let first = line.split_whitespace().next().unwrap_or("");
            if ![
                "local",
                "host",
                "hostssl",
                "hostnossl",
                "hostgssenc",
                "hostnogssenc",
                "include",
                "include_dir",
                "include_if_exists",
            ]
            .contains(&first)
            {
                errs.push(err(
                    &format!("postgresql.pg_hba[{i}]"),
                    format!("{line:?} does not start with a connection type (local, host, hostssl, ...)"),
                ));
            }
        }
        host_port("rest.listen", &self.rest.listen, &mut errs);
        host_port("rest.connect_address", &self.rest.connect_address, &mut errs);
        if let Some(a) = &self.rest.auth {
            credentials("rest.auth", a, &mut errs);
            if a.password.is_none() && a.password_file.is_none() {
                errs.push(err("rest.auth", "needs password or password_file"));
            }
        }
        if self.rest.cert_file.is_some() != self.rest.key_file.is_some() {
            errs.push(err("rest", "set both cert_file and key_file, or neither"));
        }
        if self.rest.client_ca_file.is_some() && self.rest.cert_file.is_none() {
            errs.push(err(
                "rest.client_ca_file",
                "verifying client certificates needs TLS: set cert_file and key_file",
            ));
        }
        if self.rest.cert_file.is_some() && self.rest.ca_file.is_none() {
            errs.push(err(
                "rest.ca_file",
                "the members serve TLS (cert_file is set): give the CA that signs their certificates, or this node \
                 cannot reach its peers (elections, failsafe) nor the CLI its members",
            ));
        }
        if self.rest.verify_client.is_some_and(|v| v != VerifyClient::None) && self.rest.client_ca_file.is_none() {
            errs.push(err(
                "rest.verify_client",
                "verifying client certificates needs the CA that signs them: set client_ca_file",
            ));
        }
        for (i, a) in self.rest.allowlist.iter().enumerate() {
            if crate::api::parse_net(a).is_none() {
                errs.push(err(
                    &format!("rest.allowlist[{i}]"),
                    format!("{a:?} is not an address or network; write e.g. \"10.0.0.0/8\" or \"192.168.1.7\""),
                ));
            }
        }
        let pg = &self.postgresql;
        for k in pg.bootstrap_recovery.keys() {
            if k == "recovery_target_action" {
                errs.push(err(
                    "postgresql.bootstrap_recovery.recovery_target_action",
                    "hashell always promotes at the target (to pause there, restore by hand)",
                ));
            } else if !BOOTSTRAP_RECOVERY_KEYS.contains(&k.as_str()) {
                errs.push(err(
                    &format!("postgresql.bootstrap_recovery.{k}"),
                    format!("not a recovery target setting; use one of {}", BOOTSTRAP_RECOVERY_KEYS.join(", ")),
                ));
            }
        }
        if !pg.bootstrap_recovery.is_empty() {
            if pg.bootstrap_command.is_none() {
                errs.push(err(
                    "postgresql.bootstrap_recovery",
                    "needs bootstrap_command (the command that restores the base backup)",
                ));
            }
            if pg.restore_command.is_none() {
                errs.push(err(
                    "postgresql.bootstrap_recovery",
                    "needs restore_command (where the WAL up to the target comes from)",
                ));
            }
        }
        if !(100..=3_600_000).contains(&self.callbacks.timeout.0) {
            errs.push(err("callbacks.timeout", "must be between 100ms and 1h (a callback is killed at this limit)"));
        }
        let mut core = hacore::Config::new(self.node.name.clone());
        core.tags = self.node.tags.core();
        core.safety = self.safety.clone();
        core.timeouts = self.timeouts.clone();
        core.defaults = self.cluster_settings();
        if let Err(e) = core.validate() {
            for mut x in e {
                x.field = match x.field.strip_prefix("defaults.") {
                    Some(f) => format!("settings.{f}"),
                    None if x.field == "name" => "node.name".into(),
                    None => x.field,
                };
                errs.push(x);
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// The `Authorization` header of `[rest.auth]`: what the API demands of unsafe
    /// requests and what this node sends to its peers.
    pub fn rest_auth_header(&self) -> Result<Option<String>, String> {
        match &self.rest.auth {
            Some(a) => Ok(Some(crate::api::basic_auth(&a.username, a.secret()?.unwrap_or_default().expose()))),
            None => Ok(None),
        }
    }

    /// The cluster settings of `[settings]`, in the core's units.
    pub fn cluster_settings(&self) -> ClusterSettings {
        let s = &self.settings;
        ClusterSettings {
            ttl: s.ttl.0,
            loop_wait: s.loop_wait.0,
            retry_timeout: s.retry_timeout.0,
            maximum_lag_on_failover: s.maximum_lag_on_failover.0,
            synchronous_mode: s.synchronous_mode,
            synchronous_node_count: s.synchronous_node_count,
            failsafe_mode: s.failsafe_mode,
            paused: false,
            primary_start_timeout: s.primary_start_timeout.0,
            primary_hang_timeout: s.primary_hang_timeout.0,
            switchover_timeout: s.switchover_timeout.0,
            standby_cluster: s.standby_cluster.clone(),
        }
    }

    /// The core's configuration of this node.
    pub fn core(&self) -> hacore::Config {
        let mut c = hacore::Config::new(self.node.name.clone());
        c.api_url = self.rest.url();
        c.pg_url = format!(
            "host={} port={} user={}",
            self.postgresql.connect_address.rsplit_once(':').map_or("", |(h, _)| h),
            self.postgresql.connect_address.rsplit_once(':').map_or("", |(_, p)| p),
            self.postgresql.replication.username
        );
        c.tags = self.node.tags.core();
        c.safety = self.safety.clone();
        c.timeouts = self.timeouts.clone();
        c.use_rewind = self.postgresql.use_rewind;
        c.permanent_slots = self.permanent_slots.clone();
        c.require_guard = self.guard.required;
        c.defaults = self.cluster_settings();
        c
    }
}

/// The commented example printed by `hashell config example`.
pub const EXAMPLE: &str = include_str!("example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Result<FileConfig, Invalid> {
        load("example.toml", EXAMPLE, &[], &[])
    }

    #[test]
    fn the_example_is_valid_and_means_what_it_says() {
        let c = example().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cluster.name, "main");
        assert_eq!(c.settings.ttl, Dur(25_000));
        let core = c.core();
        core.validate().unwrap();
        assert_eq!(core.defaults.loop_wait, 5_000);
        assert!(core.require_guard);
    }

    #[test]
    fn bootstrap_recovery_takes_targets_only_and_needs_its_commands() {
        let with = |sets: &[(&str, &str)]| {
            let sets: Vec<(String, String)> = sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            load("example.toml", EXAMPLE, &[], &sets)
        };
        let t = ("postgresql.bootstrap_recovery.recovery_target_name", "\"before\"");
        let e = with(&[t]).unwrap_err().to_string();
        assert!(e.contains("needs bootstrap_command") && e.contains("needs restore_command"), "{e}");
        let ok = [
            t,
            ("postgresql.bootstrap_command", "\"cp -a /b/. $PGDATA\""),
            ("postgresql.restore_command", "\"cp /a/%f %p\""),
        ];
        let c = with(&ok).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.postgresql.bootstrap_recovery.len(), 1);
        let mut bad = ok.to_vec();
        bad.push(("postgresql.bootstrap_recovery.recovery_target_action", "\"pause\""));
        bad.push(("postgresql.bootstrap_recovery.shared_buffers", "\"1GB\""));
        let e = with(&bad).unwrap_err().to_string();
        assert!(e.contains("recovery_target_action: hashell always promotes"), "{e}");
        assert!(e.contains("bootstrap_recovery.shared_buffers: not a recovery target setting"), "{e}");
    }

    #[test]
    fn reloads_apply_postgres_tunables_and_name_the_rest() {
        let a = example().unwrap_or_else(|e| panic!("{e}"));
        let sets = [
            ("postgresql.parameters.work_mem".to_string(), "\"64MB\"".to_string()),
            ("postgresql.pg_hba".to_string(), "[\"host all all 10.0.0.0/8 scram-sha-256\"]".to_string()),
            ("rest.listen".to_string(), "\"0.0.0.0:8009\"".to_string()),
            ("settings.ttl".to_string(), "\"40s\"".to_string()),
        ];
        let b = load("example.toml", EXAMPLE, &[], &sets).unwrap_or_else(|e| panic!("{e}"));
        let c = reload_changes(&a, &b);
        assert_eq!(c.live, vec!["postgresql.parameters", "postgresql.pg_hba"]);
        assert_eq!(c.later, vec!["rest.listen"]);
        assert_eq!(c.stored, vec!["settings.ttl"]);
        assert_eq!(reload_changes(&a, &a), Changes::default());
    }

    #[test]
    fn passwords_never_show_in_debug_output_or_errors() {
        const SECRET: &str = "hunter2-do-not-print";
        let q = format!("\"{SECRET}\"");
        let sets: Vec<(String, String)> = [
            "dcs.etcd.user",
            "dcs.etcd.password",
            "postgresql.superuser.password",
            "postgresql.replication.password",
            "rest.auth.username",
            "rest.auth.password",
        ]
        .iter()
        .map(|k| (k.to_string(), if k.ends_with("password") { q.clone() } else { "\"admin\"".into() }))
        .collect();
        let c = load("x", EXAMPLE, &[], &sets).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.postgresql.superuser.secret().ok().flatten().map(|s| s.expose().to_string()).as_deref(),
            Some(SECRET)
        );
        let shown = format!("{c:?}");
        assert!(shown.contains("<redacted>") && !shown.contains(SECRET), "{shown}");
        // A schema error elsewhere in a file holding a password does not quote it.
        let mut bad = sets.clone();
        bad.push(("settings.ttl".into(), "5".into()));
        let e = load("x", EXAMPLE, &[], &bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!e.is_empty() && !e.contains(SECRET), "{e}");
        // Nor does a TOML syntax error on the password's own line.
        let text = format!("{EXAMPLE}\n[rest.auth]\nusername = \"admin\"\npassword = \"{SECRET}\n");
        let e = load("x", &text, &[], &[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!e.is_empty() && !e.contains(SECRET), "{e}");
    }

    #[test]
    fn tls_and_allowlist_keys_are_checked() {
        let bad = [
            ("rest.allowlist", "[\"10.0.0.0/40\"]", "rest.allowlist[0]"),
            ("rest.verify_client", "\"required\"", "rest.verify_client"),
            ("rest.verify_client", "\"sometimes\"", "rest.verify_client"),
        ];
        for (k, v, field) in bad {
            let e = load("x", EXAMPLE, &[], &[(k.into(), v.into())]).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(field), "{k}={v}: {e}");
        }
        let e = load("x", EXAMPLE, &[], &[("node.tags.nofailvoer".into(), "true".into())]).err().map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("nofailvoer"), "a mistyped tag is refused");
        let e = load("x", EXAMPLE, &[], &[("postgresql.pg_hba".into(), "[]".into())]).err().map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("postgresql.pg_hba"), "an empty pg_hba is refused");
        let ok = load("x", EXAMPLE, &[], &[("rest.allowlist".into(), "[\"10.0.0.0/8\", \"::1\"]".into())]);
        assert!(ok.is_ok());
        let c = example().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.rest.url(), format!("http://{}", c.rest.connect_address));
        assert_eq!(c.rest.client_policy(), VerifyClient::None);
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(Dur::parse("500ms"), Ok(Dur(500)));
        assert_eq!(Dur::parse("30s"), Ok(Dur(30_000)));
        assert_eq!(Dur::parse("2min"), Ok(Dur(120_000)));
        assert_eq!(Dur::parse("30"), Ok(Dur(30_000)));
        assert!(Dur::parse("30 parsecs").unwrap_err().contains("unknown unit"));
        assert!(Dur::parse("soon").unwrap_err().contains("not a duration"));
        let c = load("x", EXAMPLE, &[], &[("settings.maximum_lag_on_failover".into(), "\"2MB\"".into())]).unwrap();
        assert_eq!(c.settings.maximum_lag_on_failover, Bytes(2 << 20));
    }

    #[test]
    fn env_then_flags_override_the_file() {
        let env = env_overrides(
            [
                ("HASHELL_NODE__NAME".to_string(), "from-env".to_string()),
                ("HASHELL_POSTGRESQL__PORT".to_string(), "6543".to_string()),
                ("PATH".to_string(), "/bin".to_string()),
            ]
            .into_iter(),
        );
        assert_eq!(env.len(), 2);
        let sets = vec![("node.name".to_string(), "from-flag".to_string())];
        let c = load("x", EXAMPLE, &env, &sets).unwrap();
        assert_eq!(c.node.name, "from-flag");
        assert_eq!(c.postgresql.port, 6543);
    }

    #[test]
    fn every_problem_is_named_with_what_to_change() {
        let sets: Vec<(String, String)> = [
            ("settings.ttl", "\"5s\""),
            ("postgresql.data_dir", "\"relative/dir\""),
            ("rest.connect_address", "\"nohost\""),
            ("postgresql.parameters.port", "5433"),
            ("node.name", "\"bad name\""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let e = load("f.toml", EXAMPLE, &[], &sets).unwrap_err();
        let fields: Vec<&str> = e.errors.iter().map(|e| e.field.as_str()).collect();
        for f in
            ["settings.ttl", "postgresql.data_dir", "rest.connect_address", "postgresql.parameters.port", "node.name"]
        {
            assert!(fields.contains(&f), "{f} not reported: {e}");
        }
        let text = e.to_string();
        assert!(text.contains("raise ttl to at least"), "{text}");
        assert!(text.starts_with("f.toml: 5 problem(s)"), "{text}");
    }

    #[test]
    fn typos_and_bad_toml_are_clear() {
        let e = load("f.toml", &EXAMPLE.replace("loop_wait =", "loop_wiat ="), &[], &[]).unwrap_err();
        assert!(e.to_string().contains("unknown field `loop_wiat`"), "{e}");
        let e = load("f.toml", "[cluster\nname=", &[], &[]).unwrap_err();
        assert!(e.to_string().contains("not valid TOML"), "{e}");
        let e = load("f.toml", "", &[], &[]).unwrap_err();
        assert!(e.to_string().contains("missing field"), "{e}");
    }

    #[test]
    fn exactly_one_store() {
        let mut sets = vec![("dcs.dynamodb.table".to_string(), "\"t\"".to_string())];
        let e = load("f", EXAMPLE, &[], &sets).unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        sets.clear();
        let no_store = EXAMPLE.replace("[dcs.etcd]", "[dcs.unused]");
        let e = load("f", &no_store, &[], &sets).unwrap_err();
        assert!(e.to_string().contains("unknown field `unused`"), "{e}");
    }
}
