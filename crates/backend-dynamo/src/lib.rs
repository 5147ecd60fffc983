//! The [`hacore::dcs::Dcs`] trait over DynamoDB.
//!
//! Layout: one table per deployment, partition key `cluster` (`<namespace>/<cluster>`),
//! sort key `key` (the record's path: `leader`, `term`, `members/<name>`, ...). Each item
//! holds the record as JSON text in `value` and a random `version` below 2^53; the leader item
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
//! an endpoint that cannot be connected to (DNS, refused, TLS handshake, connect timeout),
//! a read without an answer or a transaction conflict is [`DcsError::Unavailable`]; a write
//! whose reply did not arrive (timeout after sending, a broken connection, a 500) is
//! [`DcsError::Indeterminate`]. The SDK never retries on its own: a retried conditional
//! write whose first attempt was applied would fail its own condition and be reported as
//! a conflict, which would be a lie. Every operation is bounded by the configured timeout.
//! There is no watch ([`Dcs::has_watch`] is false): the daemon polls faster while
//! leadership is in flux and peers wake each other directly.

#![deny(missing_docs)]

#[cfg(feature = "testing")]
pub mod testing;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TableDescription, TableStatus, TransactWriteItem,
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
#[derive(Clone)]
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
    /// (environment, profile, web identity, container and instance roles). Never printed.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for DynamoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoConfig")
            .field("table", &self.table)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("namespace", &self.namespace)
            .field("cluster", &self.cluster)
            .field("node", &self.node)
            .field("timeout", &self.timeout)
            .field("credentials", &self.credentials.as_ref().map(|(id, _)| format!("{id} (secret hidden)")))
            .finish()
    }
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

/// Record versions stay below 2^53, so that they survive a trip through JSON readers that
/// hold numbers as doubles (the REST API's clients); 53 random bits still make a repeat
/// between two successive versions of a record a one in 10^15 event.
const VERSION_MASK: u64 = (1 << 53) - 1;

/// A fresh random record version in `1..2^53` (never 0, which stands for "no version
/// attribute").
fn fresh_version() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // No entropy source: fall back to the time and a counter (still unique per process).
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        return ((t ^ N.fetch_add(1, std::sync::atomic::Ordering::Relaxed).rotate_left(32)) & VERSION_MASK) | 1;
    }
    (u64::from_le_bytes(b) & VERSION_MASK).max(1)
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
                // A stored item without a usable version (written by hand), which the read
                // reports at version 0: the item exists and its version is missing or not
                // a number.
                self.names.insert("#k".into(), SK.into());
                self.names.insert("#ver".into(), VERSION.into());
                self.values.insert(":num".into(), s("N"));
                self.parts.push(
                    "(attribute_exists(#k) AND (attribute_not_exists(#ver) OR NOT attribute_type(#ver, :num)))".into(),
                );
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
            let text = d.as_connector_error().map_or_else(|| format!("{d:?}"), |c| chain_text(c));
            // No read timeout is configured: a timeout here is the connect timeout.
            if d.is_timeout() || d.as_connector_error().is_some_and(|c| never_sent(c)) {
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

/// An error and its sources, `: `-separated.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(s) = next {
        parts.push(s.to_string());
        next = s.source();
    }
    parts.join(": ")
}

/// Whether a failed dispatch failed while connecting (DNS, TCP connect, TLS handshake), so
/// that no byte of the request left: the HTTP client reports those as connect errors, the
/// OS as a refused or unreachable address.
fn never_sent(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::HostUnreachable
            ) {
                return true;
            }
        }
        let text = err.to_string();
        if text.contains("client error (Connect)") || text.contains("dns error") || text.contains("Connection refused")
        {
            return true;
        }
        next = err.source();
    }
    false
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

/// How long [`DynamoDcs::create_table`] waits for a new table to become active.
pub const TABLE_READY_WAIT: Duration = Duration::from_secs(120);

/// Whether a described table can serve as this backend's table: active (or updating), with
/// partition key `cluster` and sort key `key`, both strings. The error says what is wrong.
pub fn check_table_description(table: &str, t: &TableDescription) -> Result<(), String> {
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
        let shown: Vec<String> = keys
            .iter()
            .map(|(name, kind)| {
                let ty = types.get(name).map_or("?", |t| t.as_str());
                format!("{name} ({}, type {ty})", if *kind == KeyType::Hash { "partition key" } else { "sort key" })
            })
            .collect();
        return Err(format!(
            "table {table} has the key schema [{}]; hashell needs partition key `{PK}` (string) and sort key `{SK}` \
             (string): use another table name or create it with `hashell dcs create-table`",
            shown.join(", ")
        ));
    }
    match t.table_status() {
        None | Some(TableStatus::Active) | Some(TableStatus::Updating) => Ok(()),
        Some(TableStatus::Creating) => Err(format!("table {table} is still being created; try again in a minute")),
        Some(other) => Err(format!("table {table} is {}, not active", other.as_str())),
    }
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
        if cfg.table.is_empty() {
            return Err(DcsError::Invalid("no DynamoDB table configured; set dcs.dynamodb.table".into()));
        }
        if cfg.cluster.is_empty() || cfg.cluster.contains('/') || cfg.node.is_empty() || cfg.node.contains('/') {
            return Err(DcsError::Invalid(format!(
                "cluster {:?} and node {:?} must be non-empty and contain no '/'",
                cfg.cluster, cfg.node
            )));
        }
        if cfg.timeout.is_zero() {
            return Err(DcsError::Invalid("the DynamoDB operation timeout must be above zero".into()));
        }
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

    /// Creates the table (partition key `cluster`, sort key `key`, both strings; on-demand
    /// capacity) and waits until it is active, at most [`TABLE_READY_WAIT`]. A table that
    /// already exists is fine if its schema is right (see [`DynamoDcs::check_table`]). For
    /// setup only (`hashell dcs create-table`): the daemon never creates tables.
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
            Ok(_) => self.wait_until_active().await,
            Err(e) => {
                let code = e.code().unwrap_or("").to_string();
                if code == "ResourceInUseException" {
                    return self.wait_until_active().await.map_err(|e| format!("the table exists, but {e}"));
                }
                Err(format!("cannot create table {}: {}", self.table, classify(e, true)))
            }
        }
    }

    /// Checks that the table exists, is active and has the schema this backend needs; the
    /// error says what is wrong. Needs `dynamodb:DescribeTable`.
    pub async fn check_table(&self) -> Result<(), String> {
        let t = self.describe_table().await?;
        check_table_description(&self.table, &t)
    }

    async fn describe_table(&self) -> Result<TableDescription, String> {
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| format!("cannot describe table {}: {}", self.table, classify(e, false)))?;
        out.table.ok_or_else(|| format!("DynamoDB described no table {}", self.table))
    }

    async fn wait_until_active(&self) -> Result<(), String> {
        let start = std::time::Instant::now();
        loop {
            let t = self.describe_table().await?;
            if t.table_status() != Some(&TableStatus::Creating) || start.elapsed() >= TABLE_READY_WAIT {
                return check_table_description(&self.table, &t);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
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
        if let Some(history) = a.history.filter(|h| *h != Expect::Any) {
            items.push(self.check(&Key::History, &Cond::expect(history))?);
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
            // A Query for the one item rather than a GetItem: one IAM action fewer.
            let got = self
                .bounded(false, async {
                    self.client
                        .query()
                        .table_name(&self.table)
                        .key_condition_expression("#c = :c AND #k = :k")
                        .expression_attribute_names("#c", PK)
                        .expression_attribute_names("#k", SK)
                        .expression_attribute_values(":c", s(self.partition.clone()))
                        .expression_attribute_values(":k", s(Key::Events.path()))
                        .consistent_read(true)
                        .send()
                        .await
                        .map_err(|e| classify(e, false))
                })
                .await?;
            let (mut events, expect) = match got.items().first() {
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

    /// Deletes every item of the cluster's partition (`hashell remove`; the caller checks
    /// that no member runs). Returns how many items were deleted.
    pub async fn remove_cluster(&self) -> Result<u64, DcsError> {
        let items = tokio::time::timeout(self.timeout, self.query_all())
            .await
            .map_err(|_| DcsError::Unavailable(format!("no reply within {:?}", self.timeout)))??;
        let mut n = 0;
        for item in items {
            let Some(sk) = item.get(SK).cloned() else { continue };
            let del =
                self.client.delete_item().table_name(&self.table).key(PK, s(self.partition.clone())).key(SK, sk).send();
            tokio::time::timeout(self.timeout, del)
                .await
                .map_err(|_| DcsError::Indeterminate(format!("no reply within {:?}", self.timeout)))?
                .map_err(|e| classify(e, true))?;
            n += 1;
        }
        Ok(n)
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
            // A read and a conditional put, retried on conflicts: bounded as a whole.
            DcsOp::AppendEvent(e) => self.bounded(true, self.append_event(e)).await,
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
    fn a_versionless_item_is_replaced_only_while_it_has_no_numeric_version() {
        let c = Cond::expect(Expect::Version(Version(0)));
        assert_eq!(
            c.expression().as_deref(),
            Some("(attribute_exists(#k) AND (attribute_not_exists(#ver) OR NOT attribute_type(#ver, :num)))")
        );
        assert_eq!(c.values().and_then(|v| v.get(":num").cloned()), Some(s("N")));
    }

    #[test]
    fn connect_failures_are_told_from_requests_lost_in_flight() {
        #[derive(Debug)]
        struct Wrap(&'static str, std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.1)
            }
        }
        use std::io::{Error, ErrorKind};
        let refused = Wrap("io error", Error::new(ErrorKind::ConnectionRefused, "refused"));
        assert!(never_sent(&refused));
        let connect = Wrap("client error (Connect)", Error::other("tls handshake eof"));
        assert!(never_sent(&connect));
        let reset = Wrap("client error (SendRequest)", Error::new(ErrorKind::ConnectionReset, "reset by peer"));
        assert!(!never_sent(&reset), "a reset after sending may have been applied");
        assert_eq!(chain_text(&reset), "client error (SendRequest): reset by peer");
    }

    #[test]
    fn table_descriptions_are_judged_with_reasons() {
        use aws_sdk_dynamodb::types::TableDescription;
        let key = |n: &str, k: KeyType| KeySchemaElement::builder().attribute_name(n).key_type(k).build().unwrap();
        let attr = |n: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder().attribute_name(n).attribute_type(t).build().unwrap()
        };
        let good = TableDescription::builder()
            .key_schema(key(PK, KeyType::Hash))
            .key_schema(key(SK, KeyType::Range))
            .attribute_definitions(attr(PK, ScalarAttributeType::S))
            .attribute_definitions(attr(SK, ScalarAttributeType::S))
            .table_status(TableStatus::Active)
            .build();
        assert_eq!(check_table_description("t", &good), Ok(()));
        let with_status = |status: TableStatus| {
            let mut t = good.clone();
            t.table_status = Some(status);
            t
        };
        let e = check_table_description("t", &with_status(TableStatus::Creating)).unwrap_err();
        assert!(e.contains("still being created"), "{e}");
        let e = check_table_description("t", &with_status(TableStatus::Deleting)).unwrap_err();
        assert!(e.contains("DELETING"), "{e}");
        assert_eq!(check_table_description("t", &with_status(TableStatus::Updating)), Ok(()));
        let mut numeric = good.clone();
        numeric.attribute_definitions = Some(vec![attr(PK, ScalarAttributeType::S), attr(SK, ScalarAttributeType::N)]);
        let e = check_table_description("t", &numeric).unwrap_err();
        assert!(e.contains("key (sort key, type N)") && e.contains("sort key `key` (string)"), "{e}");
        let hash_only = TableDescription::builder()
            .key_schema(key("id", KeyType::Hash))
            .attribute_definitions(attr("id", ScalarAttributeType::S))
            .build();
        let e = check_table_description("t", &hash_only).unwrap_err();
        assert!(e.contains("[id (partition key, type S)]") && e.contains("another table name"), "{e}");
    }

    #[test]
    fn the_secret_is_never_printed() {
        let cfg = DynamoConfig {
            credentials: Some(("AKIDEXAMPLE".into(), "wJalrXUtnFEMI-secret".into())),
            ..DynamoConfig::new("t", "ns", "c", "n")
        };
        let shown = format!("{cfg:?}");
        assert!(shown.contains("AKIDEXAMPLE") && !shown.contains("wJalr"), "{shown}");
    }

    #[tokio::test]
    async fn connect_refuses_what_cannot_name_a_partition_or_a_member() {
        let clock: Arc<dyn Clock> = Arc::new(hacore::memdcs::ManualClock::new(0));
        let bad = [
            DynamoConfig::new("", "ns", "c", "n"),
            DynamoConfig::new("t", "ns", "c/d", "n"),
            DynamoConfig::new("t", "ns", "c", "a/b"),
            DynamoConfig::new("t", "ns", "", "n"),
            DynamoConfig { timeout: Duration::ZERO, ..DynamoConfig::new("t", "ns", "c", "n") },
        ];
        for cfg in bad {
            match DynamoDcs::connect(&cfg, clock.clone()).await {
                Err(DcsError::Invalid(_)) => {}
                other => panic!("{cfg:?}: {:?}", other.map(|d| d.location())),
            }
        }
    }

    #[test]
    fn partitions_join_namespace_and_cluster() {
        assert_eq!(DynamoConfig::new("t", "/service/", "c1", "n").partition(), "service/c1");
        assert_eq!(DynamoConfig::new("t", "", "c1", "n").partition(), "c1");
    }

    #[test]
    fn versions_are_random_and_never_zero() {
        let a: Vec<u64> = (0..100).map(|_| fresh_version()).collect();
        assert!(a.iter().all(|&v| v != 0 && v <= VERSION_MASK), "{a:?}");
        let set: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(set.len(), 100);
    }
}
