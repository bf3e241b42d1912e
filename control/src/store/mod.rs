//! The fleet store: the model in etcd, one key per object ([`keys`]), for
//! every appliance of a fleet (`[cluster]`, [`crate::cluster`]).
//!
//! - Reading: [`Store::load`] reads `meta` and the objects of its epoch at
//!   one revision, page by page, so the model read is the one of that
//!   revision whatever is written meanwhile.
//! - Writing: [`Store::commit`] writes one change as one transaction
//!   conditioned on the revision of `meta` the change was made against
//!   (the whole model as the node read it); a change too large for one
//!   transaction, and [`Store::replace`], write a new epoch (see [`keys`]).
//!   A transaction that finds `meta` moved answers [`StoreError::Conflict`]
//!   and changes nothing.
//! - Following: [`watch`] turns the store's watch into [`watch::Batch`]es for the
//!   control thread, and publishes this node's enforced revision.
//!
//! etcd's limits are kept: at most [`MAX_TXN_OPS`] operations and
//! [`MAX_TXN_BYTES`] per transaction (etcd's defaults are 128 and 1.5 MiB),
//! pages of [`PAGE`] keys on reads.

pub mod keys;
pub mod watch;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, TxnOp, TxnOpResponse,
};
use serde::de::DeserializeOwned;

use self::keys::{range_end, Key, Keys, Meta, NodeRecord, FORMAT};
use crate::cluster::Cluster;
use crate::model::{Changed, Delta, Model};
use crate::settings::Settings;
use crate::state::StoreMark;

/// Operations per transaction (etcd refuses more than 128 by default).
pub const MAX_TXN_OPS: usize = 120;
/// Bytes of keys and values per transaction (etcd refuses requests over
/// 1.5 MiB by default).
pub const MAX_TXN_BYTES: usize = 1 << 20;
/// Keys per page when reading the model.
pub const PAGE: i64 = 1000;
/// Largest answer accepted from etcd (a page of large groups, a watch
/// response carrying a whole epoch's removal).
const MAX_MESSAGE: usize = 512 << 20;

/// Why the store did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// etcd could not be reached, or refused; nothing was written.
    Unavailable(String),
    /// The request was sent but no answer came: it may have been applied.
    Unknown(String),
    /// `meta` moved since the model the change was made against.
    Conflict { meta_revision: i64, writer: String },
    /// The store holds something rampart cannot use.
    Invalid(String),
    /// One object is larger than one transaction may be.
    TooLarge(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "the fleet store is unavailable: {e}"),
            StoreError::Unknown(e) => write!(
                f,
                "the fleet store did not answer ({e}); the change may or may not be recorded, and is enforced once the store confirms it"
            ),
            StoreError::Conflict {
                meta_revision,
                writer,
            } => write!(
                f,
                "the model changed in the fleet store (revision {meta_revision}, written by {writer}) since this change was made"
            ),
            StoreError::Invalid(e) => write!(f, "the fleet store holds an invalid model: {e}"),
            StoreError::TooLarge(e) => write!(f, "too large for the fleet store: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// An etcd error as a [`StoreError`]: refused before anything was applied,
/// or unknown (cancelled, unknown, deadline exceeded: the gRPC codes 1, 2
/// and 4, where the request may have reached etcd).
fn store_error(e: etcd_client::Error) -> StoreError {
    match &e {
        etcd_client::Error::GRpcStatus(s) => {
            let code = s.code() as i32;
            if matches!(code, 1 | 2 | 4) {
                StoreError::Unknown(s.message().to_owned())
            } else {
                StoreError::Unavailable(format!("{}: {}", code_name(code), s.message()))
            }
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn code_name(code: i32) -> &'static str {
    match code {
        14 => "unavailable",
        7 => "permission denied",
        16 => "unauthenticated",
        3 => "invalid argument",
        8 => "resource exhausted",
        9 => "failed precondition",
        11 => "out of range",
        _ => "error",
    }
}

/// A model read from the store.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub model: Model,
    pub settings: Option<Settings>,
    pub mark: StoreMark,
    pub writer: String,
}

/// How the store is doing, as this node sees it.
#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    /// Why it is down (or the last error).
    error: Mutex<String>,
    /// The newest `meta` revision this node has seen in the store.
    latest: AtomicI64,
    /// The `meta` revision this node enforces.
    applied: AtomicI64,
    /// Since when this node knows of a change it does not enforce, or has
    /// not reached the store.
    stale_since: Mutex<Option<Instant>>,
}

impl Health {
    fn new() -> Health {
        Health {
            up: AtomicBool::new(false),
            error: Mutex::new("not connected yet".to_owned()),
            latest: AtomicI64::new(0),
            applied: AtomicI64::new(0),
            stale_since: Mutex::new(Some(Instant::now())),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn error(&self) -> String {
        self.error.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The newest `meta` revision seen in the store.
    pub fn latest(&self) -> i64 {
        self.latest.load(Ordering::Relaxed)
    }

    /// The `meta` revision this node enforces.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::Relaxed)
    }

    fn refresh(&self) {
        if let Ok(mut s) = self.stale_since.lock() {
            if self.is_up() && self.applied() >= self.latest() {
                *s = None;
            } else {
                s.get_or_insert_with(Instant::now);
            }
        }
    }

    pub(crate) fn saw(&self, meta_revision: i64) {
        self.latest.fetch_max(meta_revision, Ordering::Relaxed);
        self.refresh();
    }

    /// This node enforces `meta_revision`.
    pub(crate) fn enforced(&self, meta_revision: i64) {
        self.applied.fetch_max(meta_revision, Ordering::Relaxed);
        self.latest.fetch_max(meta_revision, Ordering::Relaxed);
        self.refresh();
    }

    pub(crate) fn set_up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            crate::daemon::log("fleet store: connected");
        }
        self.refresh();
    }

    pub(crate) fn set_down(&self, why: &str) {
        if let Ok(mut e) = self.error.lock() {
            e.clear();
            e.push_str(why);
        }
        if self.up.swap(false, Ordering::Relaxed) {
            crate::daemon::log(format_args!("fleet store: {why}; the last model stays enforced"));
        }
        self.refresh();
    }

    /// Seconds since this node was last known to enforce the store's newest
    /// model (0 while it does).
    pub fn lag_seconds(&self) -> f64 {
        self.stale_since
            .lock()
            .ok()
            .and_then(|s| *s)
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}

/// The fleet store of one `[cluster]` table.
pub struct Store {
    pub cluster: Cluster,
    /// This node's name.
    pub node: String,
    pub keys: Keys,
    /// One client per endpoint, connected on first use.
    clients: tokio::sync::Mutex<Vec<Option<Client>>>,
    /// The endpoint in use; the next is tried when it fails.
    current: std::sync::atomic::AtomicUsize,
    pub health: Health,
    /// The live nodes' records, by name (kept by the watch).
    pub fleet: Mutex<std::collections::BTreeMap<String, NodeRecord>>,
    /// The lease this node's record is bound to (0: none).
    lease: AtomicI64,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("endpoints", &self.cluster.endpoints)
            .field("prefix", &self.keys.prefix())
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn parse<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Invalid(format!("{key}: {e}")))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Adds `value` (one object read) to `delta`.
fn add_object(delta: &mut Delta, key: &str, object: Changed, value: &[u8]) -> Result<(), StoreError> {
    match object {
        Changed::Vpc(_) => delta.vpcs.push(parse(key, value)?),
        Changed::Group(_) => delta.groups.push(parse(key, value)?),
        Changed::Interface(_) => delta.interfaces.push(parse(key, value)?),
        Changed::PrefixList(_) => delta.prefix_lists.push(parse(key, value)?),
    }
    Ok(())
}

/// One operation of a write, with its size.
struct Op {
    op: TxnOp,
    bytes: usize,
}

impl Op {
    fn put(key: String, value: Vec<u8>) -> Op {
        Op {
            bytes: key.len() + value.len() + 16,
            op: TxnOp::put(key, value, None),
        }
    }

    fn delete(key: String) -> Op {
        Op {
            bytes: key.len() + 16,
            op: TxnOp::delete(key, None),
        }
    }
}

/// The operations writing `delta`'s objects under `epoch`.
fn object_ops(keys: &Keys, epoch: u64, delta: &Delta) -> Result<Vec<Op>, StoreError> {
    fn put<T: serde::Serialize>(
        keys: &Keys,
        epoch: u64,
        object: Changed,
        value: &T,
    ) -> Result<Op, StoreError> {
        let key = keys.object(epoch, object);
        let value = serde_json::to_vec(value).expect("an object always serializes");
        if key.len() + value.len() > MAX_TXN_BYTES {
            return Err(StoreError::TooLarge(format!(
                "{key} is {} bytes, more than the {MAX_TXN_BYTES} one transaction may carry",
                value.len()
            )));
        }
        Ok(Op::put(key, value))
    }
    let mut ops = Vec::with_capacity(delta.len());
    for r in &delta.removed {
        ops.push(Op::delete(keys.object(epoch, *r)));
    }
    for v in &delta.vpcs {
        ops.push(put(keys, epoch, Changed::Vpc(v.id), v)?);
    }
    for p in &delta.prefix_lists {
        ops.push(put(keys, epoch, Changed::PrefixList(p.id), p)?);
    }
    for g in &delta.groups {
        ops.push(put(keys, epoch, Changed::Group(g.id), g)?);
    }
    for i in &delta.interfaces {
        ops.push(put(keys, epoch, Changed::Interface(i.id), i)?);
    }
    Ok(ops)
}

/// `ops` cut into transactions of at most `room` operations and
/// [`MAX_TXN_BYTES`] (minus `reserve` bytes kept for the last one's extra).
fn chunks(ops: Vec<Op>, room: usize, reserve: usize) -> Vec<Vec<TxnOp>> {
    let mut out: Vec<Vec<TxnOp>> = vec![Vec::new()];
    let mut bytes = 0;
    for op in ops {
        let last = out.last_mut().expect("never empty");
        if !last.is_empty() && (last.len() + 1 > room || bytes + op.bytes > MAX_TXN_BYTES - reserve) {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += op.bytes;
        out.last_mut().expect("never empty").push(op.op);
    }
    out
}

impl Store {
    /// The store of `cluster` (connections are made on first use, and again
    /// whenever etcd was lost).
    pub fn new(cluster: &Cluster) -> Store {
        Store {
            node: cluster.node_name(),
            keys: Keys::new(&cluster.prefix),
            cluster: cluster.clone(),
            clients: tokio::sync::Mutex::new(vec![None; cluster.endpoints.len()]),
            current: std::sync::atomic::AtomicUsize::new(0),
            health: Health::new(),
            fleet: Mutex::new(std::collections::BTreeMap::new()),
            lease: AtomicI64::new(0),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.cluster.request_timeout_ms))
    }

    /// The client of the endpoint in use (connecting first if needed), and
    /// its index.
    pub async fn client(&self) -> Result<(usize, Client), StoreError> {
        let i = self.current.load(Ordering::Relaxed) % self.cluster.endpoints.len().max(1);
        let mut held = self.clients.lock().await;
        if let Some(c) = held.get(i).and_then(Option::as_ref) {
            return Ok((i, c.clone()));
        }
        let endpoint = self
            .cluster
            .endpoints
            .get(i)
            .ok_or_else(|| StoreError::Unavailable("no endpoint".into()))?;
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.timeout())
            .with_timeout(self.timeout())
            .with_keep_alive(Duration::from_secs(2), self.timeout());
        if let (Some(user), Some(file)) = (&self.cluster.user, &self.cluster.password_file) {
            let password = std::fs::read_to_string(file)
                .map_err(|e| StoreError::Unavailable(format!("password_file {}: {e}", file.display())))?;
            opts = opts.with_user(user.clone(), password.trim_end().to_owned());
        }
        if let Some(tls) = &self.cluster.tls {
            let read = |p: &std::path::Path| {
                std::fs::read(p)
                    .map_err(|e| StoreError::Unavailable(format!("[cluster.tls] {}: {e}", p.display())))
            };
            let mut t = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca)?));
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                t = t.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
            }
            if let Some(domain) = &tls.domain {
                t = t.domain_name(domain.clone());
            }
            opts = opts.with_tls(t);
        }
        let connected =
            tokio::time::timeout(self.timeout(), Client::connect([endpoint.as_str()], Some(opts)))
                .await
                .map_err(|_| StoreError::Unavailable(format!("{endpoint}: connecting timed out")))
                .and_then(|r| r.map_err(store_error));
        let client = match connected {
            Ok(c) => c,
            Err(e) => {
                drop(held);
                self.failed(i);
                return Err(e);
            }
        };
        held[i] = Some(client.clone());
        Ok((i, client))
    }

    /// Endpoint `i` failed: the next one is used from now on.
    pub fn failed(&self, i: usize) {
        let n = self.cluster.endpoints.len().max(1);
        let _ = self
            .current
            .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Runs `call` on a KV client, on the next endpoint when one is
    /// unreachable (a refusal before anything was applied, so trying again
    /// is safe), each endpoint at most once.
    async fn kv_call<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: Fn(KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = StoreError::Unavailable("no endpoint".into());
        for _ in 0..self.cluster.endpoints.len().max(1) {
            let (i, client) = match self.client().await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match call(client.kv_client().max_decoding_message_size(MAX_MESSAGE)).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let e = store_error(e);
                    match e {
                        StoreError::Unavailable(_) => {
                            self.failed(i);
                            last = e;
                        }
                        StoreError::Unknown(_) => {
                            // Maybe applied: the caller finds out; the next
                            // call goes to the next endpoint.
                            self.failed(i);
                            return Err(e);
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
        Err(last)
    }

    pub(crate) async fn get(
        &self,
        key: &[u8],
        opts: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        self.kv_call(|mut kv| {
            let (key, opts) = (key.to_vec(), opts.clone());
            async move { kv.get(key, opts).await }
        })
        .await
    }

    async fn txn(&self, txn: etcd_client::Txn) -> Result<etcd_client::TxnResponse, StoreError> {
        self.kv_call(|mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
    }

    /// Runs `call`, recording the store as up or down by its outcome.
    async fn tracked<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let r = call.await;
        match &r {
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::Invalid(_) | StoreError::TooLarge(_)) => {
                self.health.set_up()
            }
            Err(e) => self.health.set_down(&e.to_string()),
        }
        r
    }

    /// The model in the store at revision `at` (the newest without one), or
    /// `None` when the store holds none under this prefix.
    pub async fn load(&self, at: Option<i64>) -> Result<Option<Loaded>, StoreError> {
        self.tracked(async {
            let mut at = at;
            loop {
                match self.load_at(at).await {
                    // The revision asked for is compacted away: the newest
                    // is as good.
                    Err(StoreError::Unavailable(e)) if at.is_some() && e.contains("compacted") => at = None,
                    other => return other,
                }
            }
        })
        .await
    }

    async fn load_at(&self, at: Option<i64>) -> Result<Option<Loaded>, StoreError> {
        let opts = at.map(|r| GetOptions::new().with_revision(r));
        let meta_key = self.keys.meta();
        let resp = self.get(meta_key.as_bytes(), opts).await?;
        let revision = at.unwrap_or_else(|| resp.header().map_or(0, |h| h.revision()));
        let Some(m) = resp.kvs().first() else {
            return Ok(None);
        };
        let meta: Meta = parse(&meta_key, m.value())?;
        if meta.format != FORMAT {
            return Err(StoreError::Invalid(format!(
                "{meta_key}: format {} is not {FORMAT}",
                meta.format
            )));
        }
        let meta_revision = m.mod_revision();
        let prefix = self.keys.epoch(meta.epoch);
        let end = range_end(&prefix);
        let mut from = prefix.into_bytes();
        let mut delta = Delta::empty(meta.quotas, meta.next);
        let mut settings = None;
        loop {
            let page = self
                .get(
                    &from,
                    Some(
                        GetOptions::new()
                            .with_range(end.clone())
                            .with_revision(revision)
                            .with_limit(PAGE),
                    ),
                )
                .await?;
            for kv in page.kvs() {
                let key = text(kv.key());
                match self.keys.parse(&key) {
                    Key::Object { object, .. } => add_object(&mut delta, &key, object, kv.value())?,
                    Key::Settings { .. } => settings = Some(parse(&key, kv.value())?),
                    _ => {}
                }
            }
            match page.kvs().last() {
                Some(last) if page.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        let model = Model::from_delta(delta).map_err(StoreError::Invalid)?;
        self.health.saw(meta_revision);
        Ok(Some(Loaded {
            model,
            settings,
            mark: StoreMark {
                revision,
                meta_revision,
                epoch: meta.epoch,
            },
            writer: meta.writer,
        }))
    }

    /// `meta` for `model` under `epoch`, and the id of the change it
    /// records (unique: this node's name, the process and a counter).
    fn meta_of(&self, model: &Model, epoch: u64) -> (Vec<u8>, String) {
        static CHANGES: AtomicI64 = AtomicI64::new(0);
        let change = format!(
            "{}/{}/{}",
            self.node,
            std::process::id(),
            CHANGES.fetch_add(1, Ordering::Relaxed)
        );
        let meta = serde_json::to_vec(&Meta {
            format: FORMAT,
            epoch,
            quotas: model.quotas(),
            next: model.next_ids(),
            writer: self.node.clone(),
            change: change.clone(),
        })
        .expect("meta always serializes");
        (meta, change)
    }

    /// Whether the change `change`, written conditioned on `meta` at
    /// `expect`, was applied (its revision) after an attempt whose outcome
    /// is unknown: `meta`'s history since `expect` says.
    async fn find_change(&self, expect: Option<i64>, change: &str) -> Result<Option<i64>, StoreError> {
        let key = self.keys.meta();
        let now = self.get(key.as_bytes(), None).await?;
        let Some(m) = now.kvs().first() else {
            return Ok(None);
        };
        let current: Meta = parse(&key, m.value())?;
        if current.change == change {
            return Ok(Some(m.mod_revision()));
        }
        let (Some(from), target) = (expect, m.mod_revision()) else {
            return Ok(None);
        };
        if target <= from {
            return Ok(None);
        }
        let (_, client) = self.client().await?;
        let mut watcher = client.watch_client();
        let mut stream = watcher
            .watch(
                key.clone(),
                Some(etcd_client::WatchOptions::new().with_start_revision(from + 1)),
            )
            .await
            .map_err(store_error)?;
        loop {
            let resp = tokio::time::timeout(self.timeout(), stream.message())
                .await
                .map_err(|_| StoreError::Unknown("reading the store's history timed out".into()))?
                .map_err(store_error)?
                .ok_or_else(|| StoreError::Unknown("the store's history ended".into()))?;
            if resp.canceled() {
                return Err(StoreError::Unknown(format!(
                    "the store's history is gone: {}",
                    resp.cancel_reason()
                )));
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                if serde_json::from_slice::<Meta>(kv.value()).is_ok_and(|m| m.change == change) {
                    return Ok(Some(kv.mod_revision()));
                }
                if kv.mod_revision() >= target {
                    return Ok(None);
                }
            }
        }
    }

    /// The condition every write of the model carries: `meta` is as read
    /// (absent when `expect` is `None`).
    fn unchanged(&self, expect: Option<i64>) -> Compare {
        match expect {
            Some(rev) => Compare::mod_revision(self.keys.meta(), CompareOp::Equal, rev),
            None => Compare::create_revision(self.keys.meta(), CompareOp::Equal, 0),
        }
    }

    /// Runs a transaction conditioned on `meta` being as read; answers the
    /// revision it wrote at, or the conflict with what `meta` is now.
    ///
    /// When an attempt's outcome is unknown (etcd did not answer), `meta`'s
    /// history tells whether it was applied; if not, it is made again on
    /// the next endpoint (it is conditioned, so it cannot apply twice).
    async fn conditional(
        &self,
        expect: Option<i64>,
        ops: Vec<TxnOp>,
        change: &str,
    ) -> Result<i64, StoreError> {
        let txn = etcd_client::Txn::new()
            .when([self.unchanged(expect)])
            .and_then(ops)
            .or_else([TxnOp::get(self.keys.meta(), None)]);
        let mut unknown = None;
        let mut resp = None;
        for _ in 0..=self.cluster.endpoints.len() {
            match self.txn(txn.clone()).await {
                Ok(r) => {
                    resp = Some(r);
                    break;
                }
                Err(StoreError::Unknown(e)) => match self.find_change(expect, change).await {
                    Ok(Some(revision)) => return Ok(revision),
                    Ok(None) => unknown = Some(e),
                    Err(_) => return Err(StoreError::Unknown(e)),
                },
                Err(e) => return Err(e),
            }
        }
        let Some(resp) = resp else {
            return Err(StoreError::Unknown(unknown.unwrap_or_default()));
        };
        if resp.succeeded() {
            return Ok(resp.header().map_or(0, |h| h.revision()));
        }
        let now = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|m| (m.mod_revision(), m.value().to_vec())),
            _ => None,
        });
        let (meta_revision, writer) = match now {
            Some((rev, value)) => (
                rev,
                serde_json::from_slice::<Meta>(&value).map_or_else(|_| "?".to_owned(), |m| m.writer),
            ),
            None => (0, "nobody (the store holds no model)".to_owned()),
        };
        self.health.saw(meta_revision);
        Err(StoreError::Conflict {
            meta_revision,
            writer,
        })
    }

    /// Writes the change from `base` to `model` (which descends from it) as
    /// one transaction conditioned on `mark`'s `meta` revision; a change too
    /// large for one is written as a new epoch. Answers the new mark.
    pub async fn commit(
        &self,
        mark: StoreMark,
        base: &Model,
        model: &Model,
        settings: &Settings,
    ) -> Result<StoreMark, StoreError> {
        let delta = model
            .delta_since(base.changes().version())
            .ok_or_else(|| StoreError::Invalid("the change does not descend from the model".into()))?;
        let mut ops = object_ops(&self.keys, mark.epoch, &delta)?;
        let (meta, change) = self.meta_of(model, mark.epoch);
        let bytes: usize = ops.iter().map(|o| o.bytes).sum::<usize>() + meta.len();
        if ops.len() + 1 > MAX_TXN_OPS || bytes > MAX_TXN_BYTES {
            return self
                .replace(Some(mark.meta_revision), Some(mark.epoch), model, settings)
                .await;
        }
        ops.push(Op::put(self.keys.meta(), meta));
        let ops = ops.into_iter().map(|o| o.op).collect();
        let revision = self
            .tracked(self.conditional(Some(mark.meta_revision), ops, &change))
            .await?;
        Ok(StoreMark {
            revision,
            meta_revision: revision,
            epoch: mark.epoch,
        })
    }

    /// Writes `model` and `settings` whole as a new epoch and switches
    /// `meta` to it, conditioned on `meta` being at `expect` (absent when
    /// `None`); then removes the keys of the epochs before it. Answers the
    /// new mark.
    pub async fn replace(
        &self,
        expect: Option<i64>,
        current: Option<u64>,
        model: &Model,
        settings: &Settings,
    ) -> Result<StoreMark, StoreError> {
        self.tracked(async {
            // A fresh epoch number: the store's revision now, which no
            // earlier epoch (current or left by a writer that died) can have.
            let now = self.get(self.keys.meta().as_bytes(), None).await?;
            let epoch = u64::try_from(now.header().map_or(0, |h| h.revision())).unwrap_or(0) + 1;
            let epoch = epoch.max(current.map_or(0, |c| c + 1));
            let ops = object_ops(&self.keys, epoch, &model.whole())?;
            let settings_value = serde_json::to_vec(settings).expect("settings always serialize");
            let (meta, change) = self.meta_of(model, epoch);
            let reserve = settings_value.len() + meta.len() + 256;
            let mut txns = chunks(ops, MAX_TXN_OPS - 3, reserve);
            let last = txns.pop().unwrap_or_default();
            for t in txns {
                // Under a new epoch nobody reads: unconditional.
                self.txn(etcd_client::Txn::new().and_then(t)).await?;
            }
            let mut last = last;
            last.push(TxnOp::put(self.keys.settings(epoch), settings_value, None));
            last.push(TxnOp::put(self.keys.meta(), meta, None));
            let revision = self.conditional(expect, last, &change).await?;
            self.remove_epochs_before(epoch).await;
            Ok(StoreMark {
                revision,
                meta_revision: revision,
                epoch,
            })
        })
        .await
    }

    /// Removes the keys of every epoch before `keep` (best effort: what
    /// stays is never read, and a later switch removes it). Later epochs
    /// are left alone: one may be a whole model another writer is writing
    /// now, which it can switch to only if `meta` has not moved since it
    /// began, that is after this switch (an epoch is the store's revision
    /// when its writing began, so it is higher than `keep`).
    async fn remove_epochs_before(&self, keep: u64) {
        let from = self.keys.models().into_bytes();
        let to = self.keys.epoch(keep).into_bytes();
        let _ = self
            .kv_call(|mut kv| {
                let (from, to) = (from.clone(), to.clone());
                async move { kv.delete(from, Some(DeleteOptions::new().with_range(to))).await }
            })
            .await;
    }

    /// Revokes this node's lease, so that its record goes at once (at a
    /// stop).
    pub async fn leave(&self) {
        let id = self.lease.swap(0, Ordering::Relaxed);
        if id != 0 {
            if let Ok((_, mut c)) = self.client().await {
                let _ = tokio::time::timeout(self.timeout(), c.lease_revoke(id)).await;
            }
        }
    }

    /// Records this node's enforced revision under its lease.
    pub async fn put_node(&self, lease: i64, record: &NodeRecord) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record).expect("a record always serializes");
        let key = self.keys.node(&self.node);
        self.kv_call(|mut kv| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                kv.put(key, value, Some(etcd_client::PutOptions::new().with_lease(lease)))
                    .await
            }
        })
        .await?;
        Ok(())
    }

    /// The live nodes' records, read now.
    pub async fn read_nodes(&self) -> Result<Vec<(String, NodeRecord)>, StoreError> {
        let resp = self
            .get(
                self.keys.nodes().as_bytes(),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let mut out = Vec::new();
        for kv in resp.kvs() {
            let key = text(kv.key());
            if let Key::Node(name) = self.keys.parse(&key) {
                if let Ok(r) = serde_json::from_slice(kv.value()) {
                    out.push((name.to_owned(), r));
                }
            }
        }
        Ok(out)
    }

    /// Waits until every live node enforces `revision`, or answers the
    /// nodes that do not (with the revision each enforces) after `timeout`.
    pub async fn wait_fleet(&self, revision: i64, timeout: Duration) -> Result<(), Vec<(String, i64)>> {
        let started = Instant::now();
        loop {
            let late: Vec<(String, i64)> = self
                .fleet
                .lock()
                .map(|f| {
                    f.iter()
                        .filter(|(_, r)| r.revision < revision)
                        .map(|(n, r)| (n.clone(), r.revision))
                        .collect()
                })
                .unwrap_or_default();
            let has_self = self.fleet.lock().is_ok_and(|f| f.contains_key(&self.node));
            if late.is_empty() && has_self {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(late);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_cut_within_etcds_limits() {
        let ops: Vec<Op> = (0..1000)
            .map(|i| {
                Op::put(
                    format!("k{i}"),
                    vec![b'x'; if i % 100 == 0 { 400_000 } else { 100 }],
                )
            })
            .collect();
        let sizes: Vec<usize> = ops.iter().map(|o| o.bytes).collect();
        let txns = chunks(ops, MAX_TXN_OPS - 3, 1000);
        let mut at = 0;
        for t in &txns {
            assert!(!t.is_empty() && t.len() <= MAX_TXN_OPS - 3);
            let bytes: usize = sizes[at..at + t.len()].iter().sum();
            assert!(bytes <= MAX_TXN_BYTES - 1000, "{bytes}");
            at += t.len();
        }
        assert_eq!(at, 1000, "every operation once, in order");
    }
}
