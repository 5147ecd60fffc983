//! The [`hacore::dcs::Dcs`] trait over etcd v3.
//!
//! Layout: every record of a cluster lives under `/<namespace>/<cluster>/` as JSON (see
//! [`hacore::dcs::Key`]); many clusters share one etcd. Versions are etcd `mod_revision`s.
//!
//! Leases: each node holds one etcd lease, granted with the cluster's ttl. Its member key
//! and, while it leads, the leader key ride on it. A renewal is a keepalive of that lease
//! (a put does not refresh a lease) whose *send time* is reported in the
//! [`LeaseGrant`](hacore::dcs::LeaseGrant), together with the ttl etcd granted, so the
//! core's deadline counts from the moment before the request left. When the ttl changes,
//! a new lease is granted and the keys move to it by compare-and-swap; the old lease is
//! left to expire on its own (revoking it could free the leader key before the old
//! deadline).
//!
//! Every leader-side write is one transaction conditioned on the leader key's
//! `mod_revision` (S5); acquire is `create_revision == 0` (or a given `mod_revision`),
//! conditioned on the durable `term` key and, in synchronous mode, on the `sync` key (S2).
//!
//! Errors: a failed condition is [`DcsError::Conflict`] with nothing applied; a store that
//! cannot be reached is [`DcsError::Unavailable`]; a write whose reply did not arrive is
//! [`DcsError::Indeterminate`]. Every operation is bounded by the configured timeout.

pub mod clock;
pub mod codec;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

use codec::{decode_events, decode_view, encode_term, encode_value, json, Prefix, RawKv, MAX_EVENTS, MAX_VALUE_BYTES};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use hacore::dcs::{
    Acquire, ClusterView, Dcs, DcsError, DcsOp, DcsReply, Event, Expect, Key, LeaderGuard, LeaderRecord, LeaseGrant,
    MemberRecord, Write,
};
use hacore::memdcs::Clock;
use hacore::types::{Millis, NodeName, Term, Version};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// TLS material for the connection to etcd (PEM).
#[derive(Clone, Debug, Default)]
pub struct EtcdTls {
    /// CA certificate that signed etcd's server certificate.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key, when etcd verifies clients.
    pub client_cert_pem: Option<Vec<u8>>,
    /// Client key (PEM).
    pub client_key_pem: Option<Vec<u8>>,
    /// Server name to verify (default: the endpoint's host).
    pub domain: Option<String>,
}

/// How to reach etcd and which cluster to serve.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port` endpoints of the etcd cluster.
    pub endpoints: Vec<String>,
    /// Key namespace shared by every cluster (e.g. `service`).
    pub namespace: String,
    /// Cluster name: the second path element.
    pub cluster: String,
    /// This node's name.
    pub node: NodeName,
    /// Bound on every operation (the daemon derives it from `retry_timeout`).
    pub timeout: Duration,
    /// User and password, when etcd has authentication enabled.
    pub auth: Option<(String, hacore::Secret)>,
    /// TLS, for `https` endpoints.
    pub tls: Option<EtcdTls>,
}

impl EtcdConfig {
    /// A plain-text configuration for tests and the demo.
    pub fn new(endpoints: Vec<String>, namespace: &str, cluster: &str, node: &str) -> Self {
        EtcdConfig {
            endpoints,
            namespace: namespace.into(),
            cluster: cluster.into(),
            node: node.into(),
            timeout: Duration::from_secs(2),
            auth: None,
            tls: None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct NodeLease {
    id: i64,
    /// ttl the core asked for (ms).
    requested: Millis,
    /// ttl etcd granted (ms).
    granted: Millis,
}

#[derive(Debug, Default)]
struct LeaseState {
    lease: Option<NodeLease>,
    /// The member record last published, re-put when the node moves to a new lease.
    member: Option<MemberRecord>,
}

/// A `Dcs` client of one node over etcd.
pub struct EtcdDcs {
    client: Client,
    prefix: Prefix,
    node: NodeName,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    lease: tokio::sync::Mutex<LeaseState>,
    /// Holder and term of the leader key at a version seen in a read: a guard that matches
    /// it needs no extra read before a conditioned write.
    seen_leader: Mutex<Option<(Version, NodeName, Term)>>,
    wake: tokio::sync::watch::Receiver<u64>,
    /// The watch count the last [`Dcs::changed`] returned for: a change is reported once.
    woke_at: std::sync::atomic::AtomicU64,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdDcs {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Classifies an etcd-client error. `sent` says whether the request may have reached etcd
/// (a write that may have been applied is indeterminate, never a failure).
fn classify(e: etcd_client::Error, write: bool) -> DcsError {
    use etcd_client::Error as E;
    let text = e.to_string();
    let code = match &e {
        E::GRpcStatus(s) => Some(s.code()),
        _ => None,
    };
    use tonic::Code;
    match code {
        Some(Code::PermissionDenied) | Some(Code::Unauthenticated) => {
            DcsError::Unavailable(format!("etcd refused the credentials ({text}); check the user and password"))
        }
        Some(Code::ResourceExhausted) => DcsError::Unavailable(format!(
            "etcd refused the write ({text}); if it is out of space, compact and defragment it and clear the alarm"
        )),
        Some(Code::InvalidArgument) | Some(Code::OutOfRange) => DcsError::Invalid(text),
        Some(Code::FailedPrecondition) | Some(Code::NotFound) if text.contains("lease not found") => {
            DcsError::Conflict(format!("the node's lease expired ({text})"))
        }
        _ if matches!(e, E::LeaseKeepAliveError(_)) && text.contains("lease not found") => {
            DcsError::Conflict("the node's lease expired".into())
        }
        _ if write && !connect_failure(&text) => DcsError::Indeterminate(text),
        _ => DcsError::Unavailable(text),
    }
}

/// Whether the error says the request never left (no connection could be made).
fn connect_failure(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("connection refused") || t.contains("error trying to connect") || t.contains("tcp connect error")
}

fn expect_compare(full_key: &str, e: Expect) -> Option<Compare> {
    match e {
        Expect::Any => None,
        Expect::Absent => Some(Compare::create_revision(full_key, CompareOp::Equal, 0)),
        Expect::Version(v) => Some(Compare::mod_revision(full_key, CompareOp::Equal, v.0 as i64)),
    }
}

fn too_big(bytes: &[u8], what: &str) -> Result<(), DcsError> {
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(DcsError::Invalid(format!(
            "{what} is {} bytes, over the {MAX_VALUE_BYTES}-byte limit",
            bytes.len()
        )));
    }
    Ok(())
}

impl EtcdDcs {
    /// Connects and starts watching the cluster prefix. The clock is the node's monotonic
    /// clock ([`clock::BootClock`] in the daemon).
    pub async fn connect(cfg: &EtcdConfig, clock: Arc<dyn Clock>) -> Result<EtcdDcs, DcsError> {
        if cfg.endpoints.is_empty() {
            return Err(DcsError::Invalid("no etcd endpoints configured; set dcs.etcd.endpoints".into()));
        }
        if cfg.cluster.is_empty() || cfg.cluster.contains('/') || cfg.node.is_empty() || cfg.node.contains('/') {
            return Err(DcsError::Invalid(format!(
                "cluster {:?} and node {:?} must be non-empty and contain no '/'",
                cfg.cluster, cfg.node
            )));
        }
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(cfg.timeout)
            .with_timeout(cfg.timeout)
            .with_keep_alive(Duration::from_secs(10), cfg.timeout);
        if let Some((user, password)) = &cfg.auth {
            opts = opts.with_user(user.clone(), password.expose());
        }
        if let Some(tls) = &cfg.tls {
            // rustls picks a process-wide crypto provider only when exactly one is compiled
            // in; a binary that also links the AWS SDK (aws-lc-rs) has two, and the TLS
            // connection would panic. Choose ring (what tonic uses) unless a provider is set.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut t = etcd_client::TlsOptions::new();
            if let Some(ca) = &tls.ca_pem {
                t = t.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            match (&tls.client_cert_pem, &tls.client_key_pem) {
                (Some(c), Some(k)) => t = t.identity(etcd_client::Identity::from_pem(c, k)),
                (None, None) => {}
                _ => {
                    return Err(DcsError::Invalid(
                        "a client certificate needs its key and the other way round; set both or neither".into(),
                    ))
                }
            }
            if let Some(d) = &tls.domain {
                t = t.domain_name(d.clone());
            }
            opts = opts.with_tls(t);
        }
        let connect = Client::connect(cfg.endpoints.clone(), Some(opts));
        let client = tokio::time::timeout(cfg.timeout, connect)
            .await
            .map_err(|_| {
                DcsError::Unavailable(format!("no answer from etcd {:?} within {:?}", cfg.endpoints, cfg.timeout))
            })?
            .map_err(|e| match (&cfg.auth, classify(e, false)) {
                (Some((user, _)), DcsError::Invalid(t) | DcsError::Unavailable(t)) if t.contains("authentication") => {
                    DcsError::Invalid(format!("etcd rejected user {user:?} ({t}); check the user name and password"))
                }
                (_, e) => e,
            })?;
        let prefix = Prefix::new(&cfg.namespace, &cfg.cluster);
        let (tx, wake) = tokio::sync::watch::channel(0u64);
        let watcher = tokio::spawn(watch_loop(client.clone(), prefix.clone(), tx));
        Ok(EtcdDcs {
            client,
            prefix,
            node: cfg.node.clone(),
            timeout: cfg.timeout,
            clock,
            lease: tokio::sync::Mutex::new(LeaseState::default()),
            seen_leader: Mutex::new(None),
            wake,
            woke_at: std::sync::atomic::AtomicU64::new(0),
            watcher,
        })
    }

    /// The cluster prefix (`/<namespace>/<cluster>/`).
    pub fn prefix(&self) -> &str {
        self.prefix.as_str()
    }

    /// Deletes every key of the cluster (`hashell remove`; the caller checks that no
    /// member runs). Returns how many keys were deleted.
    pub async fn remove_cluster(&self) -> Result<u64, DcsError> {
        let opts = etcd_client::DeleteOptions::new().with_prefix();
        let f = async {
            let r = self.client.kv_client().delete(self.prefix.as_str(), Some(opts)).await;
            r.map(|r| r.deleted().max(0) as u64).map_err(|e| classify(e, true))
        };
        self.bounded(true, f).await
    }

    fn key(&self, k: &Key) -> String {
        self.prefix.key(k)
    }

    async fn bounded<T>(&self, write: bool, f: impl Future<Output = Result<T, DcsError>>) -> Result<T, DcsError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) if write => Err(DcsError::Indeterminate(format!(
                "no reply from etcd within {:?}; the write may have applied",
                self.timeout
            ))),
            Err(_) => Err(DcsError::Unavailable(format!("no reply from etcd within {:?}", self.timeout))),
        }
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, DcsError> {
        self.client.kv_client().txn(txn).await.map_err(|e| classify(e, true))
    }

    async fn read_view(&self) -> Result<ClusterView, DcsError> {
        let resp = self
            .client
            .kv_client()
            .get(self.prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| classify(e, false))?;
        let received_at = self.clock.now();
        let view = decode_view(
            &self.prefix,
            resp.kvs().iter().map(|kv| RawKv { key: kv.key(), value: kv.value(), mod_revision: kv.mod_revision() }),
            received_at,
        );
        *self.seen_leader.lock().unwrap_or_else(|p| p.into_inner()) =
            view.leader.as_ref().map(|l| (l.version, l.value.holder.clone(), l.value.term));
        Ok(view)
    }

    /// Grants a fresh lease; returns it and the send time of the grant.
    async fn grant(&self, ttl: Millis) -> Result<(NodeLease, Millis), DcsError> {
        let secs = ttl.div_ceil(1000).max(1) as i64;
        let sent = self.clock.now();
        let r = self.client.lease_client().grant(secs, None).await.map_err(|e| classify(e, false))?;
        Ok((NodeLease { id: r.id(), requested: ttl, granted: r.ttl().max(0) as u64 * 1000 }, sent))
    }

    /// One keepalive of `lease`: its send time and the ttl etcd granted, or a conflict if
    /// the lease is gone.
    async fn keepalive(&self, lease: NodeLease) -> Result<(Millis, Millis), DcsError> {
        let sent = self.clock.now();
        // Opening the stream sends the first keepalive and waits for its answer: one
        // request, one reply, no stale reply left in a long-lived stream after a timeout.
        match self.client.lease_client().keep_alive(lease.id).await {
            Ok(_) => Ok((sent, lease.granted)),
            Err(e) => Err(classify(e, false)),
        }
    }

    /// Makes sure the node has a live lease for `ttl`: a keepalive of the current one, or
    /// a new grant (moving the member key onto it). Returns the lease and the send time of
    /// the request that refreshed it.
    async fn own_lease(&self, st: &mut LeaseState, ttl: Millis) -> Result<(NodeLease, Millis, bool), DcsError> {
        if let Some(l) = st.lease.filter(|l| l.requested == ttl) {
            match self.keepalive(l).await {
                Ok((sent, _)) => return Ok((l, sent, false)),
                Err(DcsError::Conflict(_)) => st.lease = None,
                Err(e) => return Err(e),
            }
        }
        let (l, sent) = self.grant(ttl).await?;
        st.lease = Some(l);
        if let Some(m) = &st.member {
            // The member key was on the old lease; a failure here leaves it to expire and
            // the next publish rewrites it.
            let _ = self
                .client
                .kv_client()
                .put(self.key(&Key::Member(self.node.clone())), json(m), Some(PutOptions::new().with_lease(l.id)))
                .await;
        }
        Ok((l, sent, true))
    }

    /// Checks that the leader key is `guard`'s: from the last read when the version
    /// matches, else by reading the key. Returns its lease id when it had to read.
    async fn check_guard(&self, guard: &LeaderGuard) -> Result<Option<(LeaderRecord, i64)>, DcsError> {
        if guard.holder != self.node {
            return Err(DcsError::Conflict(format!(
                "the leader record is checked for {}, not this node",
                guard.holder
            )));
        }
        let seen = self.seen_leader.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((v, holder, term)) = seen {
            if v == guard.version {
                return if holder == guard.holder && term == guard.term {
                    Ok(None)
                } else {
                    Err(DcsError::Conflict(format!("the leader record is {holder}'s in term {term}")))
                };
            }
        }
        let (rec, lease) = self.get_leader(guard.version).await?;
        Ok(Some((rec, lease)))
    }

    /// Reads the leader key and checks it is at `version`; returns the record and lease.
    async fn get_leader(&self, version: Version) -> Result<(LeaderRecord, i64), DcsError> {
        let r = self.client.kv_client().get(self.key(&Key::Leader), None).await.map_err(|e| classify(e, false))?;
        let kv = r.kvs().first().ok_or_else(|| DcsError::Conflict("the leader record is gone".into()))?;
        if kv.mod_revision() as u64 != version.0 {
            return Err(DcsError::Conflict(format!(
                "the leader record moved to version {} (expected {})",
                kv.mod_revision(),
                version.0
            )));
        }
        let rec: LeaderRecord = serde_json::from_slice(kv.value())
            .map_err(|e| DcsError::Corrupt { key: self.key(&Key::Leader), reason: e.to_string() })?;
        Ok((rec, kv.lease()))
    }

    fn guard_compare(&self, guard: &LeaderGuard) -> Compare {
        Compare::mod_revision(self.key(&Key::Leader), CompareOp::Equal, guard.version.0 as i64)
    }

    fn write_ops(&self, writes: &[Write]) -> Result<(Vec<Compare>, Vec<TxnOp>), DcsError> {
        Write::check_shape(writes)?;
        let mut cmp = Vec::new();
        let mut ops = Vec::new();
        for w in writes {
            let k = self.key(&w.key);
            cmp.extend(expect_compare(&k, w.expect));
            match &w.value {
                Some(v) => {
                    let bytes = encode_value(v);
                    too_big(&bytes, &w.key.path())?;
                    ops.push(TxnOp::put(k, bytes, None));
                }
                None => ops.push(TxnOp::delete(k, None)),
            }
        }
        Ok((cmp, ops))
    }

    async fn acquire(&self, a: &Acquire) -> Result<DcsReply, DcsError> {
        if a.record.holder != self.node {
            return Err(DcsError::Invalid("a node can only acquire the leader record for itself".into()));
        }
        let mut st = self.lease.lock().await;
        let (lease, sent_at, _) = self.own_lease(&mut st, a.record.ttl).await?;
        let term_key = self.key(&Key::Term);
        let leader_key = self.key(&Key::Leader);
        let mut cmp = vec![if a.term_was == Term(0) {
            Compare::create_revision(term_key.clone(), CompareOp::Equal, 0)
        } else {
            Compare::value(term_key.clone(), CompareOp::Equal, encode_term(a.term_was))
        }];
        cmp.extend(expect_compare(&leader_key, a.expect));
        if let Some(s) = a.sync {
            cmp.extend(expect_compare(&self.key(&Key::Sync), s));
        }
        if let Some(h) = a.history {
            cmp.extend(expect_compare(&self.key(&Key::History), h));
        }
        let term = a.term_was.max(a.record.term);
        let ops = vec![
            TxnOp::put(leader_key, json(&a.record), Some(PutOptions::new().with_lease(lease.id))),
            TxnOp::put(term_key, encode_term(term), None),
        ];
        let r = self.txn(Txn::new().when(cmp).and_then(ops)).await?;
        if !r.succeeded() {
            return Err(DcsError::Conflict("term, leader, sync or history record not in the expected state".into()));
        }
        let version = Version(r.header().map_or(0, |h| h.revision()) as u64);
        *self.seen_leader.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((version, a.record.holder.clone(), a.record.term));
        Ok(DcsReply::Lease(LeaseGrant { sent_at, ttl: lease.granted, version }))
    }

    async fn renew(&self, guard: &LeaderGuard, ttl: Millis) -> Result<DcsReply, DcsError> {
        if guard.holder != self.node {
            return Err(DcsError::Conflict("only the holder renews the leader record".into()));
        }
        let mut st = self.lease.lock().await;
        let current = st.lease.filter(|l| l.requested == ttl);
        if let Some(l) = current {
            // Keepalive and the check of the record at once: the record at this version
            // rides on this lease, which was refreshed no earlier than `sent`.
            let (ka, rec) = tokio::join!(self.keepalive(l), self.get_leader(guard.version));
            let (sent, granted) = ka?;
            let (rec, on) = rec?;
            if rec.holder != guard.holder || rec.term != guard.term {
                return Err(DcsError::Conflict(format!("the leader record is {}'s in term {}", rec.holder, rec.term)));
            }
            if on == l.id {
                return Ok(DcsReply::Lease(LeaseGrant { sent_at: sent, ttl: granted, version: guard.version }));
            }
            // The record rides on another lease (a transfer to us, a restarted daemon):
            // move it to ours by CAS.
            return self.move_leader(l, sent, guard, rec).await;
        }
        // No lease yet, or the ttl changed: a new lease, then the record moves to it.
        let (rec, _) = self.get_leader(guard.version).await?;
        if rec.holder != guard.holder || rec.term != guard.term {
            return Err(DcsError::Conflict(format!("the leader record is {}'s in term {}", rec.holder, rec.term)));
        }
        let (l, sent, _) = self.own_lease(&mut st, ttl).await?;
        self.move_leader(l, sent, guard, LeaderRecord { ttl, ..rec }).await
    }

    async fn move_leader(
        &self,
        l: NodeLease,
        sent_at: Millis,
        guard: &LeaderGuard,
        rec: LeaderRecord,
    ) -> Result<DcsReply, DcsError> {
        let put = TxnOp::put(self.key(&Key::Leader), json(&rec), Some(PutOptions::new().with_lease(l.id)));
        let r = self.txn(Txn::new().when(vec![self.guard_compare(guard)]).and_then(vec![put])).await?;
        if !r.succeeded() {
            return Err(DcsError::Conflict("the leader record moved".into()));
        }
        let version = Version(r.header().map_or(0, |h| h.revision()) as u64);
        *self.seen_leader.lock().unwrap_or_else(|p| p.into_inner()) = Some((version, rec.holder, rec.term));
        Ok(DcsReply::Lease(LeaseGrant { sent_at, ttl: l.granted, version }))
    }

    async fn guarded(&self, guard: &LeaderGuard, mut cmp: Vec<Compare>, ops: Vec<TxnOp>) -> Result<(), DcsError> {
        self.check_guard(guard).await?;
        cmp.push(self.guard_compare(guard));
        let r = self.txn(Txn::new().when(cmp).and_then(ops)).await?;
        if r.succeeded() {
            Ok(())
        } else {
            Err(DcsError::Conflict("the leader record or a written key is not in the expected state".into()))
        }
    }

    async fn transfer(
        &self,
        guard: &LeaderGuard,
        to: &LeaderRecord,
        clear_switchover: Option<Version>,
    ) -> Result<DcsReply, DcsError> {
        if to.term <= guard.term {
            return Err(DcsError::Invalid("a transfer must increase the term".into()));
        }
        self.check_guard(guard).await?;
        // The record goes on a fresh lease nobody keeps alive: if the new holder never
        // claims it, it expires after its ttl.
        let (l, _) = self.grant(to.ttl).await?;
        let mut cmp = vec![self.guard_compare(guard)];
        let mut ops = vec![
            TxnOp::put(self.key(&Key::Leader), json(to), Some(PutOptions::new().with_lease(l.id))),
            TxnOp::put(self.key(&Key::Term), encode_term(to.term), None),
        ];
        if let Some(v) = clear_switchover {
            cmp.extend(expect_compare(&self.key(&Key::Switchover), Expect::Version(v)));
            ops.push(TxnOp::delete(self.key(&Key::Switchover), None));
        }
        let r = self.txn(Txn::new().when(cmp).and_then(ops)).await?;
        if r.succeeded() {
            Ok(DcsReply::Done)
        } else {
            let _ = self.client.lease_client().revoke(l.id).await;
            Err(DcsError::Conflict("the leader record or the switchover request moved".into()))
        }
    }

    async fn keep_alive_op(&self, ttl: Millis) -> Result<DcsReply, DcsError> {
        let mut st = self.lease.lock().await;
        self.own_lease(&mut st, ttl).await?;
        Ok(DcsReply::Done)
    }

    async fn publish(&self, m: &MemberRecord) -> Result<DcsReply, DcsError> {
        if m.name != self.node {
            return Err(DcsError::Invalid("a node can only publish its own member record".into()));
        }
        let bytes = json(m);
        too_big(&bytes, "the member record")?;
        let mut st = self.lease.lock().await;
        st.member = Some(m.clone());
        let lease = match st.lease {
            Some(l) => l,
            None => self.own_lease(&mut st, 30_000).await?.0,
        };
        let key = self.key(&Key::Member(self.node.clone()));
        let put = |id| {
            let mut kv = self.client.kv_client();
            let (key, bytes) = (key.clone(), bytes.clone());
            async move { kv.put(key, bytes, Some(PutOptions::new().with_lease(id))).await }
        };
        match put(lease.id).await.map_err(|e| classify(e, true)) {
            Ok(_) => Ok(DcsReply::Done),
            Err(DcsError::Conflict(_)) => {
                // The lease expired under us: a new one, then the record again.
                st.lease = None;
                let (l, _, _) = self.own_lease(&mut st, lease.requested).await?;
                put(l.id).await.map_err(|e| classify(e, true))?;
                Ok(DcsReply::Done)
            }
            Err(e) => Err(e),
        }
    }

    async fn append_event(&self, e: &Event) -> Result<DcsReply, DcsError> {
        let key = self.key(&Key::Events);
        for _ in 0..5 {
            let r = self.client.kv_client().get(key.clone(), None).await.map_err(|e| classify(e, false))?;
            let (mut events, cmp) = match r.kvs().first() {
                // An unreadable list is replaced, by CAS on the version we could not read.
                Some(kv) => (
                    decode_events(kv.value()).unwrap_or_default(),
                    Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision()),
                ),
                None => (Vec::new(), Compare::create_revision(key.clone(), CompareOp::Equal, 0)),
            };
            events.push(e.clone());
            let skip = events.len().saturating_sub(MAX_EVENTS);
            let r = self
                .txn(Txn::new().when(vec![cmp]).and_then(vec![TxnOp::put(key.clone(), json(&events[skip..]), None)]))
                .await?;
            if r.succeeded() {
                return Ok(DcsReply::Done);
            }
        }
        Err(DcsError::Conflict("the events list kept changing; event dropped".into()))
    }

    async fn execute_op(&self, op: &DcsOp) -> Result<DcsReply, DcsError> {
        match op {
            DcsOp::AcquireLeader(a) => self.acquire(a).await,
            DcsOp::RenewLeader { guard, ttl } => self.renew(guard, *ttl).await,
            DcsOp::ReleaseLeader { guard } => {
                let del = TxnOp::delete(self.key(&Key::Leader), None);
                self.guarded(guard, vec![], vec![del]).await.map(|_| DcsReply::Done)
            }
            DcsOp::TransferLeader { guard, to, clear_switchover } => self.transfer(guard, to, *clear_switchover).await,
            DcsOp::LeaderWrite { guard, writes } => {
                let (cmp, ops) = self.write_ops(writes)?;
                self.guarded(guard, cmp, ops).await.map(|_| DcsReply::Done)
            }
            DcsOp::KeepAlive { ttl } => self.keep_alive_op(*ttl).await,
            DcsOp::PublishMember(m) => self.publish(m).await,
            DcsOp::Put(w) => {
                let (cmp, ops) = self.write_ops(std::slice::from_ref(w))?;
                let r = self.txn(Txn::new().when(cmp).and_then(ops)).await?;
                if r.succeeded() {
                    Ok(DcsReply::Done)
                } else {
                    Err(DcsError::Conflict(format!("{} is not in the expected state", w.key.path())))
                }
            }
            DcsOp::AppendEvent(e) => self.append_event(e).await,
        }
    }
}

impl Dcs for EtcdDcs {
    fn read(&self) -> impl Future<Output = Result<ClusterView, DcsError>> + Send {
        self.bounded(false, self.read_view())
    }

    fn execute(&self, op: &DcsOp) -> impl Future<Output = Result<DcsReply, DcsError>> + Send {
        self.bounded(!matches!(op, DcsOp::KeepAlive { .. }), self.execute_op(op))
    }

    fn changed(&self) -> impl Future<Output = ()> + Send {
        use std::sync::atomic::Ordering;
        let mut rx = self.wake.clone();
        async move {
            loop {
                let count = *rx.borrow_and_update();
                if self.woke_at.swap(count, Ordering::Relaxed) != count {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    fn has_watch(&self) -> bool {
        true
    }
}

/// Watches the prefix and bumps `tx` on every change of a key that wakes the nodes
/// ([`Key::wakes`]); re-establishes the watch after a disconnect or a compaction.
async fn watch_loop(client: Client, prefix: Prefix, tx: tokio::sync::watch::Sender<u64>) {
    let mut next_rev = 0i64;
    loop {
        let mut opts = WatchOptions::new().with_prefix();
        if next_rev > 0 {
            opts = opts.with_start_revision(next_rev);
        }
        match client.watch_client().watch(prefix.as_str(), Some(opts)).await {
            Ok((_watcher, mut stream)) => {
                while let Ok(Some(resp)) = stream.message().await {
                    if resp.compact_revision() > 0 {
                        // Missed changes were compacted away: wake once and start afresh.
                        next_rev = 0;
                        tx.send_modify(|n| *n += 1);
                        break;
                    }
                    if resp.canceled() {
                        break;
                    }
                    // Resume after the last event delivered (not the header's revision:
                    // a slow watcher may still have older events queued).
                    if let Some(r) = resp.events().iter().filter_map(|ev| ev.kv()).map(|kv| kv.mod_revision()).max() {
                        next_rev = next_rev.max(r + 1);
                    }
                    let wakes = resp.events().iter().any(|ev| {
                        ev.event_type() == EventType::Delete
                            || ev.kv().and_then(|kv| prefix.parse(kv.key())).is_none_or(|k| k.wakes())
                    });
                    if wakes {
                        tx.send_modify(|n| *n += 1);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "etcd watch failed; retrying"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
