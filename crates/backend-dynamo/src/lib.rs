//! The [`hacore::dcs::Dcs`] trait over DynamoDB.
//!
//! Layout: one table per deployment, partition key `cluster` (`<namespace>/<cluster>`),
//! sort key `key` (the record's path: `leader`, `term`, `members/<name>`, ...). Each item
//! holds the record as JSON text in `value` and a random 64-bit `version`; the leader item
//! also carries `holder` and `term` as attributes, for conditions. Many clusters share a
//! table. See `docs/dynamodb.md` for the schema, the IAM policy and the costs.
//!
//! Leases ([`LeaseModel::ObserverClock`]): DynamoDB keeps items forever. The holder
//! rewrites the leader item with a fresh random version on every renewal and counts its
//! deadline from the *send time* of that write; another node treats the record as free
//! only after it has seen the same version for a full ttl on its own monotonic clock,
//! counted from the receipt of the first read that returned it (the core does this
//! aging), and then takes it over with a write conditioned on that version. No two
//! machines' wall clocks are ever compared. Member records age the same way.
//!
//! Every compare-and-swap is a condition on `version` (`attribute_not_exists` for
//! create-if-absent); every leader-side write is one `TransactWriteItems` whose first
//! element checks the leader item's holder and term (S5); an acquire is one transaction
//! over the leader item, the durable `term` item and, in synchronous mode, the `sync` item
//! (S2). The read is one strongly consistent `Query` of the partition, all pages: not a
//! cross-item snapshot, which the core tolerates.
//!
//! Errors: a failed condition is [`DcsError::Conflict`] with nothing applied; throttling,
//! an unreachable endpoint or a transaction conflict is [`DcsError::Unavailable`]; a write
//! whose reply did not arrive (timeout after sending, a broken connection, a 500) is
//! [`DcsError::Indeterminate`]. The SDK never retries on its own: a retried conditional
//! write whose first attempt was applied would fail its own condition and be reported as
//! a conflict, which would be a lie. Every operation is bounded by the configured timeout.
//! There is no watch ([`Dcs::has_watch`] is false): the daemon polls faster while
//! leadership is in flux and peers wake each other directly.

#[cfg(feature = "testing")]
pub mod testing;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use hacore::codec::{decode_events, encode_term, encode_value, json, MAX_EVENTS};
use hacore::dcs::{
    Acquire, ClusterView, Dcs, DcsError, DcsOp, DcsReply, Event, Expect, Key, LeaderGuard, LeaderRecord, LeaseGrant,
    LeaseModel, MemberRecord, Write,
};
use hacore::memdcs::Clock;
use hacore::types::{Millis, NodeName, Term, Version};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest record this backend writes: DynamoDB refuses items over 400 KB.
pub const MAX_ITEM_VALUE_BYTES: usize = 350 * 1024;

/// Attribute names.
const PK: &str = "cluster";
const SK: &str = "key";
const VALUE: &str = "value";
const VERSION: &str = "version";
const HOLDER: &str = "holder";
const TERM: &str = "term";

/// How to reach DynamoDB and which cluster to serve.
#[derive(Clone, Debug)]
pub struct DynamoConfig {
    /// Table name.
    pub table: String,
    /// AWS region (None: from the environment's AWS configuration).
    pub region: Option<String>,
    /// Endpoint override, e.g. `http://127.0.0.1:8000` for a local DynamoDB-compatible server.
    pub endpoint: Option<String>,
    /// Namespace shared by every cluster in the table (e.g. `service`).
    pub namespace: String,
    /// Cluster name.
    pub cluster: String,
    /// This node's name.
    pub node: NodeName,
    /// Bound on every operation (the daemon derives it from `retry_timeout`).
    pub timeout: Duration,
    /// Static credentials (access key id, secret); None: the standard AWS chain
    /// (environment, profile, web identity, container and instance roles).
    pub credentials: Option<(String, String)>,
}

impl DynamoConfig {
    /// A configuration with the defaults (standard credential chain, 2 s timeout).
    pub fn new(table: &str, namespace: &str, cluster: &str, node: &str) -> Self {
        DynamoConfig {
            table: table.into(),
            region: None,
            endpoint: None,
            namespace: namespace.into(),
            cluster: cluster.into(),
            node: node.into(),
            timeout: Duration::from_secs(2),
            credentials: None,
        }
    }

    /// The partition key value of this cluster.
    pub fn partition(&self) -> String {
        let ns = self.namespace.trim_matches('/');
        if ns.is_empty() {
            self.cluster.clone()
        } else {
            format!("{ns}/{}", self.cluster)
        }
    }
}

/// A `Dcs` client of one node over DynamoDB.
pub struct DynamoDcs {
    client: Client,
    table: String,
    partition: String,
    node: NodeName,
    timeout: Duration,
    clock: Arc<dyn Clock>,
}

/// A fresh random record version (never 0, which stands for "no version attribute").
fn fresh_version() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // No entropy source: fall back to the time and a counter (still unique per process).
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        return (t ^ N.fetch_add(1, std::sync::atomic::Ordering::Relaxed).rotate_left(32)) | 1;
    }
    u64::from_le_bytes(b).max(1)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A condition expression with its names and values.
#[derive(Default, Clone, Debug)]
struct Cond {
    parts: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Cond {
    fn expect(e: Expect) -> Cond {
        let mut c = Cond::default();
        c.add_expect(e);
        c
    }

    fn add_expect(&mut self, e: Expect) {
        match e {
            Expect::Any => {}
            Expect::Absent => {
                self.names.insert("#k".into(), SK.into());
                self.parts.push("attribute_not_exists(#k)".into());
            }
            Expect::Version(Version(0)) => {
                // A stored item without a version (written by hand): only by its absence.
                self.names.insert("#k".into(), SK.into());
                self.names.insert("#ver".into(), VERSION.into());
                self.parts.push("(attribute_exists(#k) AND attribute_not_exists(#ver))".into());
            }
            Expect::Version(Version(v)) => {
                self.names.insert("#ver".into(), VERSION.into());
                self.values.insert(":ver".into(), n(v));
                self.parts.push("#ver = :ver".into());
            }
        }
    }

    fn guard(g: &LeaderGuard) -> Cond {
        let mut c = Cond::default();
        c.names.insert("#h".into(), HOLDER.into());
        c.names.insert("#t".into(), TERM.into());
        c.values.insert(":h".into(), s(g.holder.clone()));
        c.values.insert(":t".into(), n(g.term.0));
        c.parts.push("#h = :h AND #t = :t".into());
        c
    }

    fn expression(&self) -> Option<String> {
        (!self.parts.is_empty()).then(|| self.parts.join(" AND "))
    }
    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }
    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

fn build_err(e: impl std::fmt::Display) -> DcsError {
    DcsError::Invalid(format!("cannot build the request: {e}"))
}

/// Maps an SDK error. `write`: the request may have changed the table.
fn classify<E>(e: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>, write: bool) -> DcsError
where
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    let unknown = |what: String| if write { DcsError::Indeterminate(what) } else { DcsError::Unavailable(what) };
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().unwrap_or("").to_string();
            let msg = err.message().unwrap_or("").to_string();
            service_error(&code, &msg, write)
        }
        SdkError::TimeoutError(_) => unknown("no reply from DynamoDB within the timeout".into()),
        SdkError::DispatchFailure(d) => {
            let text = format!("{d:?}");
            if text.contains("Connection refused") || text.contains("ConnectionRefused") || text.contains("dns error") {
                DcsError::Unavailable(format!("cannot connect to DynamoDB: {}", short(&text)))
            } else {
                unknown(format!("the request failed in flight: {}", short(&text)))
            }
        }
        SdkError::ResponseError(r) => unknown(format!("unreadable reply: {}", short(&format!("{r:?}")))),
        SdkError::ConstructionFailure(c) => DcsError::Invalid(format!("cannot build the request: {c:?}")),
        other => unknown(format!("{other:?}")),
    }
}

fn short(s: &str) -> String {
    s.chars().take(300).collect()
}

fn service_error(code: &str, msg: &str, write: bool) -> DcsError {
    match code {
        "ConditionalCheckFailedException" => DcsError::Conflict(format!("condition failed: {msg}")),
        "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded" => {
            DcsError::Unavailable(format!("DynamoDB throttled the request ({code}): {msg}"))
        }
        "TransactionConflictException" | "TransactionInProgressException" => {
            DcsError::Unavailable(format!("a concurrent transaction on the same items ({code}); retry"))
        }
        "ResourceNotFoundException" => DcsError::Unavailable(format!(
            "the table does not exist ({msg}); create it once with `hashell dcs create-table`"
        )),
        "ValidationException" | "ItemCollectionSizeLimitExceededException" => {
            DcsError::Invalid(format!("DynamoDB refused the request ({code}): {msg}"))
        }
        "UnrecognizedClientException" | "AccessDeniedException" | "InvalidSignatureException" => {
            DcsError::Unavailable(format!("DynamoDB refused the credentials ({code}): {msg}; check the IAM policy"))
        }
        _ if write => DcsError::Indeterminate(format!("DynamoDB error {code}: {msg}")),
        _ => DcsError::Unavailable(format!("DynamoDB error {code}: {msg}")),
    }
}

/// Maps a failed transaction: any `ConditionalCheckFailed` reason is a conflict (nothing
/// was applied: transactions are all or nothing).
fn classify_txn(e: SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>) -> DcsError {
    if let SdkError::ServiceError(se) = &e {
        if let TransactWriteItemsError::TransactionCanceledException(c) = se.err() {
            let reasons: Vec<String> =
                c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_string()).collect();
            if reasons.iter().any(|r| r == "ConditionalCheckFailed") {
                return DcsError::Conflict(format!("condition failed (per item: {})", reasons.join(", ")));
            }
            if reasons.iter().any(|r| r == "ValidationError") {
                return DcsError::Invalid(format!(
                    "DynamoDB refused the transaction (per item: {})",
                    reasons.join(", ")
                ));
            }
            // Throttling or a conflicting transaction: cancelled, nothing applied.
            return DcsError::Unavailable(format!("transaction cancelled (per item: {})", reasons.join(", ")));
        }
    }
    classify(e, true)
}

fn text(bytes: Vec<u8>) -> Result<String, DcsError> {
    if bytes.len() > MAX_ITEM_VALUE_BYTES {
        return Err(DcsError::Invalid(format!(
            "record of {} bytes exceeds the {MAX_ITEM_VALUE_BYTES}-byte limit (DynamoDB items hold 400 KB)",
            bytes.len()
        )));
    }
    String::from_utf8(bytes).map_err(|e| DcsError::Invalid(e.to_string()))
}

impl DynamoDcs {
    /// Connects (no request is sent: the first operation shows whether the table answers).
    pub async fn connect(cfg: &DynamoConfig, clock: Arc<dyn Clock>) -> Result<DynamoDcs, DcsError> {
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(cfg.timeout)
                    .connect_timeout(cfg.timeout.min(Duration::from_secs(1)))
                    .build(),
            );
        if let Some(r) = &cfg.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(e) = &cfg.endpoint {
            loader = loader.endpoint_url(e);
        }
        if let Some((id, secret)) = &cfg.credentials {
            loader = loader
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(id, secret, None, None, "hashell"));
        }
        let sdk = loader.load().await;
        let mut conf = aws_sdk_dynamodb::config::Builder::from(&sdk);
        if sdk.region().is_none() {
            if cfg.endpoint.is_none() {
                return Err(DcsError::Invalid(
                    "no AWS region: set dcs.dynamodb.region (or AWS_REGION in the environment)".into(),
                ));
            }
            // A local server ignores the region, but requests must name one.
            conf = conf.region(aws_config::Region::new("us-east-1"));
        }
        Ok(DynamoDcs {
            client: Client::from_conf(conf.build()),
            table: cfg.table.clone(),
            partition: cfg.partition(),
            node: cfg.node.clone(),
            timeout: cfg.timeout,
            clock,
        })
    }

    /// The SDK client (for setup tools and tests).
    pub fn sdk(&self) -> &Client {
        &self.client
    }

    /// The table and partition this client serves.
    pub fn location(&self) -> String {
        format!("table {} partition {}", self.table, self.partition)
    }

    /// Creates the table (on-demand capacity). For setup only: the daemon never creates
    /// tables.
    pub async fn create_table(&self) -> Result<(), String> {
        let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
        let attr = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
        };
        let r = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key(PK, KeyType::Hash).map_err(|e| e.to_string())?)
            .key_schema(key(SK, KeyType::Range).map_err(|e| e.to_string())?)
            .attribute_definitions(attr(PK).map_err(|e| e.to_string())?)
            .attribute_definitions(attr(SK).map_err(|e| e.to_string())?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = e.code().unwrap_or("").to_string();
                if code == "ResourceInUseException" {
                    return self.check_table().await.map_err(|e| format!("the table exists, but {e}"));
                }
                Err(format!("cannot create table {}: {}", self.table, classify(e, true)))
            }
        }
    }

    /// Checks that the table exists with the schema this backend needs; the error says
    /// what is wrong.
    pub async fn check_table(&self) -> Result<(), String> {
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| format!("cannot describe table {}: {}", self.table, classify(e, false)))?;
        let t = out.table().ok_or_else(|| format!("DynamoDB described no table {}", self.table))?;
        let keys: Vec<(String, KeyType)> =
            t.key_schema().iter().map(|k| (k.attribute_name().to_string(), k.key_type().clone())).collect();
        let types: HashMap<String, ScalarAttributeType> = t
            .attribute_definitions()
            .iter()
            .map(|a| (a.attribute_name().to_string(), a.attribute_type().clone()))
            .collect();
        let want = [(PK.to_string(), KeyType::Hash), (SK.to_string(), KeyType::Range)];
        let string_keys = [PK, SK].iter().all(|k| types.get(*k) == Some(&ScalarAttributeType::S));
        if keys.len() != 2 || !want.iter().all(|w| keys.contains(w)) || !string_keys {
            return Err(format!(
                "table {} has key schema {keys:?}; hashell needs partition key `{PK}` (string) and sort key `{SK}` \
                 (string): use another table name or create it with `hashell dcs create-table`",
                self.table
            ));
        }
        Ok(())
    }

    fn base_item(&self, key: &Key, value: String, version: u64) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PK.to_string(), s(self.partition.clone())),
            (SK.to_string(), s(key.path())),
            (VALUE.to_string(), s(value)),
            (VERSION.to_string(), n(version)),
        ])
    }

    fn item_key(&self, key: &Key) -> HashMap<String, AttributeValue> {
        HashMap::from([(PK.to_string(), s(self.partition.clone())), (SK.to_string(), s(key.path()))])
    }

    fn leader_item(&self, r: &LeaderRecord, version: u64) -> Result<HashMap<String, AttributeValue>, DcsError> {
        let mut item = self.base_item(&Key::Leader, text(json(r))?, version);
        item.insert(HOLDER.into(), s(r.holder.clone()));
        item.insert(TERM.into(), n(r.term.0));
        Ok(item)
    }

    fn put(&self, item: HashMap<String, AttributeValue>, c: &Cond) -> Result<TransactWriteItem, DcsError> {
        let p = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(c.expression())
            .set_expression_attribute_names(c.names())
            .set_expression_attribute_values(c.values())
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(p).build())
    }

    fn delete(&self, key: &Key, c: &Cond) -> Result<TransactWriteItem, DcsError> {
        let d = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(self.item_key(key)))
            .set_condition_expression(c.expression())
            .set_expression_attribute_names(c.names())
            .set_expression_attribute_values(c.values())
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().delete(d).build())
    }

    fn check(&self, key: &Key, c: &Cond) -> Result<TransactWriteItem, DcsError> {
        let expr = c.expression().ok_or_else(|| DcsError::Invalid("a condition check needs a condition".into()))?;
        let cc = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(self.item_key(key)))
            .condition_expression(expr)
            .set_expression_attribute_names(c.names())
            .set_expression_attribute_values(c.values())
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().condition_check(cc).build())
    }

    /// One write of `w` inside a transaction.
    fn write_item(&self, w: &Write) -> Result<TransactWriteItem, DcsError> {
        let c = Cond::expect(w.expect);
        match &w.value {
            Some(v) => self.put(self.base_item(&w.key, text(encode_value(v))?, fresh_version()), &c),
            None => self.delete(&w.key, &c),
        }
    }

    async fn bounded<T>(
        &self,
        write: bool,
        f: impl std::future::Future<Output = Result<T, DcsError>>,
    ) -> Result<T, DcsError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) if write => Err(DcsError::Indeterminate(format!("no reply within {:?}", self.timeout))),
            Err(_) => Err(DcsError::Unavailable(format!("no reply within {:?}", self.timeout))),
        }
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), DcsError> {
        self.bounded(true, async {
            self.client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
                .map(|_| ())
                .map_err(classify_txn)
        })
        .await
    }

    /// One conditional put or delete (a transaction of one would cost twice the units).
    async fn single(&self, item: TransactWriteItem) -> Result<(), DcsError> {
        self.bounded(true, async {
            if let Some(p) = item.put {
                self.client
                    .put_item()
                    .table_name(p.table_name)
                    .set_item(Some(p.item))
                    .set_condition_expression(p.condition_expression)
                    .set_expression_attribute_names(p.expression_attribute_names)
                    .set_expression_attribute_values(p.expression_attribute_values)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(e, true))
            } else if let Some(d) = item.delete {
                self.client
                    .delete_item()
                    .table_name(d.table_name)
                    .set_key(Some(d.key))
                    .set_condition_expression(d.condition_expression)
                    .set_expression_attribute_names(d.expression_attribute_names)
                    .set_expression_attribute_values(d.expression_attribute_values)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(e, true))
            } else {
                Err(DcsError::Invalid("neither a put nor a delete".into()))
            }
        })
        .await
    }

    async fn acquire(&self, a: &Acquire) -> Result<DcsReply, DcsError> {
        let r = &a.record;
        if r.holder != self.node {
            return Err(DcsError::Invalid("a node can only acquire the leader record for itself".into()));
        }
        // Equal terms: claiming a record handed over by a transfer (which raised the term).
        if r.term < a.term_was {
            return Err(DcsError::Invalid(format!("term {} is below the durable term {}", r.term, a.term_was)));
        }
        let version = fresh_version();
        let mut items = vec![self.put(self.leader_item(r, version)?, &Cond::expect(a.expect))?];
        let mut term_cond = Cond::default();
        if a.term_was == Term(0) {
            term_cond.add_expect(Expect::Absent);
        } else {
            term_cond.names.insert("#val".into(), VALUE.into());
            term_cond.values.insert(":was".into(), s(String::from_utf8_lossy(&encode_term(a.term_was)).into_owned()));
            term_cond.parts.push("#val = :was".into());
        }
        let term_item = self.base_item(&Key::Term, text(encode_term(r.term))?, fresh_version());
        items.push(self.put(term_item, &term_cond)?);
        if let Some(sync) = a.sync {
            if sync != Expect::Any {
                items.push(self.check(&Key::Sync, &Cond::expect(sync))?);
            }
        }
        let sent_at = self.clock.now();
        self.transact(items).await?;
        Ok(DcsReply::Lease(LeaseGrant { sent_at, ttl: r.ttl, version: Version(version) }))
    }

    async fn renew(&self, guard: &LeaderGuard, ttl: Millis) -> Result<DcsReply, DcsError> {
        if guard.holder != self.node {
            return Err(DcsError::Conflict("the leader record is not this node's".into()));
        }
        let record = LeaderRecord { holder: guard.holder.clone(), term: guard.term, ttl };
        let version = fresh_version();
        let mut c = Cond::guard(guard);
        c.add_expect(Expect::Version(guard.version));
        let item = self.put(self.leader_item(&record, version)?, &c)?;
        let sent_at = self.clock.now();
        self.single(item).await?;
        Ok(DcsReply::Lease(LeaseGrant { sent_at, ttl, version: Version(version) }))
    }

    async fn append_event(&self, e: &Event) -> Result<DcsReply, DcsError> {
        for _ in 0..5 {
            let got = self
                .bounded(false, async {
                    self.client
                        .get_item()
                        .table_name(&self.table)
                        .set_key(Some(self.item_key(&Key::Events)))
                        .consistent_read(true)
                        .send()
                        .await
                        .map_err(|e| classify(e, false))
                })
                .await?;
            let (mut events, expect) = match got.item() {
                Some(item) => {
                    let version = item.get(VERSION).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok());
                    let events = item
                        .get(VALUE)
                        .and_then(|v| v.as_s().ok())
                        .and_then(|v| decode_events(v.as_bytes()).ok())
                        .unwrap_or_default();
                    (events, Expect::Version(Version(version.unwrap_or(0))))
                }
                None => (Vec::new(), Expect::Absent),
            };
            events.push(e.clone());
            let skip = events.len().saturating_sub(MAX_EVENTS);
            let item = self.base_item(&Key::Events, text(json(&events[skip..]))?, fresh_version());
            match self.single(self.put(item, &Cond::expect(expect))?).await {
                Ok(()) => return Ok(DcsReply::Done),
                Err(DcsError::Conflict(_)) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(DcsError::Conflict("the events list kept changing; event dropped".into()))
    }

    async fn query_all(&self) -> Result<Vec<HashMap<String, AttributeValue>>, DcsError> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#c = :c")
                .expression_attribute_names("#c", PK)
                .expression_attribute_values(":c", s(self.partition.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify(e, false))?;
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(items),
            }
        }
    }
}

/// Builds the view from the partition's items. Items that are not ours are skipped;
/// undecodable ones are reported in [`ClusterView::corrupt`] with their key.
pub fn decode_items(partition: &str, items: &[HashMap<String, AttributeValue>], received_at: Millis) -> ClusterView {
    let mut view = ClusterView { received_at, lease_model: LeaseModel::ObserverClock, ..Default::default() };
    for item in items {
        let Some(key) = item.get(SK).and_then(|k| k.as_s().ok()).and_then(|k| Key::from_path(k)) else { continue };
        let path = key.path();
        let version = item.get(VERSION).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u64>().ok());
        let r = match (item.get(VALUE).map(|v| v.as_s()), version) {
            (Some(Ok(text)), Some(v)) => hacore::codec::decode_into(&mut view, key, text.as_bytes(), Version(v)),
            (value, v) => {
                let reason = match (value, v) {
                    (None, _) => "the item has no `value` attribute".to_string(),
                    (Some(Err(_)), _) => "the `value` attribute is not a string".to_string(),
                    _ => "the `version` attribute is missing or not a number".to_string(),
                };
                let version = Version(v.unwrap_or(0));
                view.corrupt.push(hacore::dcs::CorruptKey { key, version, reason: reason.clone() });
                Err(reason)
            }
        };
        if let Err(reason) = r {
            tracing::warn!(partition, key = %path, %reason, "corrupt item in DynamoDB");
        }
    }
    hacore::codec::finish(&mut view);
    view
}

impl Dcs for DynamoDcs {
    async fn read(&self) -> Result<ClusterView, DcsError> {
        let items = self.bounded(false, self.query_all()).await?;
        Ok(decode_items(&self.partition, &items, self.clock.now()))
    }

    async fn execute(&self, op: &DcsOp) -> Result<DcsReply, DcsError> {
        match op {
            DcsOp::AcquireLeader(a) => self.acquire(a).await,
            DcsOp::RenewLeader { guard, ttl } => self.renew(guard, *ttl).await,
            DcsOp::ReleaseLeader { guard } => {
                if guard.holder != self.node {
                    return Err(DcsError::Conflict("the leader record is not this node's".into()));
                }
                self.single(self.delete(&Key::Leader, &Cond::guard(guard))?).await.map(|()| DcsReply::Done)
            }
            DcsOp::TransferLeader { guard, to, clear_switchover } => {
                if guard.holder != self.node {
                    return Err(DcsError::Conflict("the leader record is not this node's".into()));
                }
                if to.term <= guard.term {
                    return Err(DcsError::Invalid("a transfer must increase the term".into()));
                }
                let mut items = vec![self.put(self.leader_item(to, fresh_version())?, &Cond::guard(guard))?];
                let term = self.base_item(&Key::Term, text(encode_term(to.term))?, fresh_version());
                items.push(self.put(term, &Cond::default())?);
                if let Some(v) = clear_switchover {
                    items.push(self.delete(&Key::Switchover, &Cond::expect(Expect::Version(*v)))?);
                }
                self.transact(items).await.map(|()| DcsReply::Done)
            }
            DcsOp::LeaderWrite { guard, writes } => {
                if guard.holder != self.node {
                    return Err(DcsError::Conflict("the leader record is not this node's".into()));
                }
                Write::check_shape(writes)?;
                let mut seen = std::collections::HashSet::new();
                if !writes.iter().all(|w| seen.insert(w.key.path())) {
                    return Err(DcsError::Invalid("two writes to the same key in one leader write".into()));
                }
                let mut items = vec![self.check(&Key::Leader, &Cond::guard(guard))?];
                for w in writes {
                    items.push(self.write_item(w)?);
                }
                self.transact(items).await.map(|()| DcsReply::Done)
            }
            DcsOp::KeepAlive { .. } => {
                // The member record gets a fresh version so observers see this node alive.
                let key = Key::Member(self.node.clone());
                let r = self
                    .bounded(true, async {
                        self.client
                            .update_item()
                            .table_name(&self.table)
                            .set_key(Some(self.item_key(&key)))
                            .update_expression("SET #ver = :v")
                            .condition_expression("attribute_exists(#k)")
                            .expression_attribute_names("#ver", VERSION)
                            .expression_attribute_names("#k", SK)
                            .expression_attribute_values(":v", n(fresh_version()))
                            .send()
                            .await
                            .map_err(|e| classify(e, true))
                    })
                    .await;
                match r {
                    // No member record yet: nothing to keep alive.
                    Ok(_) | Err(DcsError::Conflict(_)) => Ok(DcsReply::Done),
                    Err(e) => Err(e),
                }
            }
            DcsOp::PublishMember(record) => {
                if record.name != self.node {
                    return Err(DcsError::Invalid("a node can only publish its own member record".into()));
                }
                let item = self.base_item(
                    &Key::Member(record.name.clone()),
                    text(json::<MemberRecord>(record))?,
                    fresh_version(),
                );
                self.single(self.put(item, &Cond::default())?).await.map(|()| DcsReply::Done)
            }
            DcsOp::Put(w) => {
                Write::check_shape(std::slice::from_ref(w))?;
                if matches!(w.key, Key::Member(_)) {
                    return Err(DcsError::Invalid("member records are published by their node".into()));
                }
                self.single(self.write_item(w)?).await.map(|()| DcsReply::Done)
            }
            DcsOp::AppendEvent(e) => self.append_event(e).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, value: Option<AttributeValue>, version: Option<&str>) -> HashMap<String, AttributeValue> {
        let mut m = HashMap::from([(PK.to_string(), s("ns/c")), (SK.to_string(), s(key))]);
        if let Some(v) = value {
            m.insert(VALUE.into(), v);
        }
        if let Some(v) = version {
            m.insert(VERSION.into(), AttributeValue::N(v.into()));
        }
        m
    }

    #[test]
    fn items_decode_and_bad_ones_are_named() {
        let leader =
            String::from_utf8(json(&LeaderRecord { holder: "n1".into(), term: Term(3), ttl: 10_000 })).unwrap();
        let items = vec![
            item("leader", Some(s(leader)), Some("77")),
            item("term", Some(s("3")), Some("5")),
            item("members/n2", Some(s("{not json")), Some("6")),
            item("config", Some(AttributeValue::B(vec![1, 2].into())), Some("7")),
            item("status", Some(s("{}")), None),
            item("sync", None, Some("8")),
            item("somebody-elses", Some(s("x")), Some("9")),
        ];
        let v = decode_items("ns/c", &items, 42);
        assert_eq!(v.received_at, 42);
        assert_eq!(v.lease_model, LeaseModel::ObserverClock);
        assert_eq!(v.leader.as_ref().map(|l| (l.value.holder.as_str(), l.version)), Some(("n1", Version(77))));
        assert_eq!(v.term, Term(3));
        let bad: Vec<(String, u64)> = v.corrupt.iter().map(|c| (c.key.path(), c.version.0)).collect();
        assert_eq!(bad, vec![("members/n2".into(), 6), ("config".into(), 7), ("status".into(), 0), ("sync".into(), 8)]);
        assert!(v.corrupt[1].reason.contains("not a string"), "{}", v.corrupt[1].reason);
        assert!(v.corrupt[2].reason.contains("version"), "{}", v.corrupt[2].reason);
    }

    #[test]
    fn service_errors_map_to_what_they_mean() {
        assert!(matches!(service_error("ConditionalCheckFailedException", "", true), DcsError::Conflict(_)));
        for code in ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"] {
            assert!(matches!(service_error(code, "", true), DcsError::Unavailable(_)), "{code}");
        }
        assert!(matches!(service_error("ValidationException", "too big", true), DcsError::Invalid(_)));
        assert!(matches!(service_error("InternalServerError", "", true), DcsError::Indeterminate(_)));
        assert!(matches!(service_error("InternalServerError", "", false), DcsError::Unavailable(_)));
        let e = service_error("ResourceNotFoundException", "no table", false);
        assert!(e.to_string().contains("create-table"), "{e}");
    }

    #[test]
    fn conditions_render() {
        assert_eq!(Cond::expect(Expect::Any).expression(), None);
        assert_eq!(Cond::expect(Expect::Absent).expression().as_deref(), Some("attribute_not_exists(#k)"));
        assert_eq!(Cond::expect(Expect::Version(Version(9))).expression().as_deref(), Some("#ver = :ver"));
        let g = LeaderGuard { holder: "a".into(), term: Term(2), version: Version(5) };
        let mut c = Cond::guard(&g);
        c.add_expect(Expect::Version(g.version));
        assert_eq!(c.expression().as_deref(), Some("#h = :h AND #t = :t AND #ver = :ver"));
        assert_eq!(c.values().map(|v| v.len()), Some(3));
    }

    #[test]
    fn versions_are_random_and_never_zero() {
        let a: Vec<u64> = (0..100).map(|_| fresh_version()).collect();
        assert!(a.iter().all(|&v| v != 0));
        let set: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(set.len(), 100);
    }
}
