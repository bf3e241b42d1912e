//! Following the fleet store: [`follow`] watches the prefix from the last
//! revision this node has and hands each change of the model to the control
//! thread as a [`Batch`]; [`report`] publishes the revision this node
//! enforces under its lease.
//!
//! The watch resumes from the last revision it handed on whenever it is lost
//! (etcd restarted, a member down, the network), so nothing is missed or
//! applied twice. When etcd has compacted that history away, or `meta`
//! switches to a new epoch, the model is read again whole at one revision.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::{mpsc, watch, Notify};

use super::keys::{Key, Meta, NodeRecord};
use super::{add_object, parse, text, Loaded, Store, StoreError, MAX_MESSAGE};
use crate::daemon::log;
use crate::model::{Changed, Delta};
use crate::state::StoreMark;

/// What the control thread applies.
#[derive(Debug)]
pub enum Batch {
    /// One change of the model, as written in one transaction.
    Change {
        mark: StoreMark,
        delta: Delta,
        writer: String,
    },
    /// The whole model, read at one revision.
    Whole(Loaded),
}

/// Where batches go: a queue, and a bell rung after each.
#[derive(Debug, Clone)]
pub struct Feed {
    pub batches: mpsc::UnboundedSender<Batch>,
    pub bell: Arc<Notify>,
}

impl Feed {
    fn send(&self, b: Batch) {
        let _ = self.batches.send(b);
        self.bell.notify_one();
    }
}

/// Waits before trying etcd again.
const RETRY: Duration = Duration::from_millis(250);

/// One revision's events, gathered.
#[derive(Default)]
struct Revision {
    revision: i64,
    meta: Option<Meta>,
    /// Objects of the current epoch: the value written, or `None` removed.
    objects: Vec<(String, Changed, Option<Vec<u8>>)>,
}

/// Follows the store from `from` (the mark of the model this node has)
/// until `stop`, handing batches to `feed`; `reload` asks for the whole
/// model to be read again.
pub async fn follow(
    store: Arc<Store>,
    from: StoreMark,
    feed: Feed,
    reload: Arc<Notify>,
    stop: Arc<AtomicBool>,
) {
    let mut mark = from;
    while !stop.load(Ordering::Relaxed) {
        match follow_once(&store, &mut mark, &feed, &reload, &stop).await {
            Ok(()) => {}
            Err(e) => {
                store.health.set_down(&e.to_string());
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// One watch, until it is lost (an error) or `stop`.
async fn follow_once(
    store: &Store,
    mark: &mut StoreMark,
    feed: &Feed,
    reload: &Notify,
    stop: &AtomicBool,
) -> Result<(), StoreError> {
    let (endpoint, client) = store.client().await?;
    let watched = follow_with(store, mark, feed, reload, stop, client).await;
    if watched.is_err() {
        store.failed(endpoint);
    }
    watched
}

async fn follow_with(
    store: &Store,
    mark: &mut StoreMark,
    feed: &Feed,
    reload: &Notify,
    stop: &AtomicBool,
    client: etcd_client::Client,
) -> Result<(), StoreError> {
    let mut watcher = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(mark.revision + 1)
        .with_progress_notify();
    let mut stream = watcher
        .watch(store.keys.prefix(), Some(opts))
        .await
        .map_err(super::store_error)?;
    // The nodes alive now (the watch carries every later change of them).
    let nodes = store.read_nodes().await?;
    if let Ok(mut fleet) = store.fleet.lock() {
        *fleet = nodes.into_iter().collect();
    }
    let latest = store.get(store.keys.meta().as_bytes(), None).await?;
    if let Some(m) = latest.kvs().first() {
        store.health.saw(m.mod_revision());
    }
    store.health.set_up();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let message = tokio::select! {
            m = stream.message() => m,
            () = reload.notified() => {
                log("fleet store: reading the whole model again");
                whole(store, mark, feed, None).await?;
                continue;
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => continue,
        };
        let resp = match message {
            Ok(Some(r)) => r,
            Ok(None) => return Err(StoreError::Unavailable("the watch ended".into())),
            Err(e) => return Err(super::store_error(e)),
        };
        if resp.canceled() {
            if resp.compact_revision() > 0 {
                log(format_args!(
                    "fleet store: its history before revision {} is compacted away; reading the whole model",
                    resp.compact_revision()
                ));
                whole(store, mark, feed, None).await?;
                return Ok(());
            }
            return Err(StoreError::Unavailable(format!(
                "the watch was cancelled: {}",
                resp.cancel_reason()
            )));
        }
        let mut current = Revision::default();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let revision = kv.mod_revision();
            if revision != current.revision {
                let done = std::mem::take(&mut current);
                flush(store, mark, feed, done).await?;
                current.revision = revision;
            }
            let key = text(kv.key());
            let put = ev.event_type() == EventType::Put;
            match store.keys.parse(&key) {
                Key::Node(name) => {
                    if let Ok(mut fleet) = store.fleet.lock() {
                        match serde_json::from_slice::<NodeRecord>(kv.value()) {
                            Ok(r) if put => {
                                fleet.insert(name.to_owned(), r);
                            }
                            _ => {
                                fleet.remove(name);
                            }
                        }
                    }
                }
                Key::Meta if put => current.meta = Some(parse(&key, kv.value())?),
                Key::Object { epoch, object } if epoch == mark.epoch => {
                    current
                        .objects
                        .push((key.clone(), object, put.then(|| kv.value().to_vec())));
                }
                _ => {}
            }
        }
        flush(store, mark, feed, current).await?;
    }
}

/// Hands on one revision's change of the model, if it holds one.
async fn flush(store: &Store, mark: &mut StoreMark, feed: &Feed, r: Revision) -> Result<(), StoreError> {
    let Some(meta) = r.meta else {
        if !r.objects.is_empty() {
            log(format_args!(
                "fleet store: revision {} writes {} objects of the model without its meta key; ignored",
                r.revision,
                r.objects.len()
            ));
        }
        return Ok(());
    };
    if r.revision <= mark.revision {
        return Ok(());
    }
    store.health.saw(r.revision);
    if meta.epoch != mark.epoch {
        return whole(store, mark, feed, Some(r.revision)).await;
    }
    let mut delta = Delta::empty(meta.quotas, meta.next);
    for (key, object, value) in r.objects {
        match value {
            Some(v) => add_object(&mut delta, &key, object, &v)?,
            None => delta.removed.push(object),
        }
    }
    *mark = StoreMark {
        revision: r.revision,
        meta_revision: r.revision,
        epoch: meta.epoch,
    };
    feed.send(Batch::Change {
        mark: *mark,
        delta,
        writer: meta.writer,
    });
    Ok(())
}

/// Reads the whole model (at `at`, or the newest) and hands it on.
async fn whole(store: &Store, mark: &mut StoreMark, feed: &Feed, at: Option<i64>) -> Result<(), StoreError> {
    match store.load(at).await? {
        Some(loaded) => {
            *mark = loaded.mark;
            feed.send(Batch::Whole(loaded));
        }
        None => log("fleet store: it holds no model; the last model stays enforced"),
    }
    Ok(())
}

/// What this node enforces: (store revision, `meta` revision, snapshot
/// generation).
pub type Enforcing = (i64, i64, u64);

/// Publishes this node's record (the revision it enforces) under a lease
/// kept alive until `stop`, then revokes it, so the fleet sees at once that
/// the node is gone.
pub async fn report(
    store: Arc<Store>,
    mut enforcing: watch::Receiver<Enforcing>,
    api: String,
    stop: Arc<AtomicBool>,
) {
    let ttl = i64::from(store.cluster.lease_ttl_s);
    let every = Duration::from_millis(u64::from(store.cluster.lease_ttl_s) * 1000 / 3);
    while !stop.load(Ordering::Relaxed) {
        let lease = match lease(&store, ttl).await {
            Ok(l) => l,
            Err(e) => {
                store.health.set_down(&e.to_string());
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let (id, mut keeper, mut answers) = lease;
        store.lease.store(id, Ordering::Relaxed);
        let record = |e: Enforcing| NodeRecord {
            revision: e.0,
            generation: e.2,
            api: api.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let now = *enforcing.borrow_and_update();
        let mut lost = store.put_node(id, &record(now)).await.err();
        while lost.is_none() && !stop.load(Ordering::Relaxed) {
            tokio::select! {
                changed = enforcing.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let now = *enforcing.borrow_and_update();
                    lost = store.put_node(id, &record(now)).await.err();
                }
                () = tokio::time::sleep(every) => {
                    let alive = match keeper.keep_alive().await {
                        Ok(()) => answers.message().await.ok().flatten().is_some_and(|a| a.ttl() > 0),
                        Err(_) => false,
                    };
                    if !alive {
                        lost = Some(StoreError::Unavailable("the node's lease was lost".into()));
                    }
                }
            }
        }
        if let Some(e) = lost {
            store.health.set_down(&e.to_string());
            tokio::time::sleep(RETRY).await;
        }
    }
}

async fn lease(
    store: &Store,
    ttl: i64,
) -> Result<(i64, etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream), StoreError> {
    let (endpoint, mut c) = store.client().await?;
    let granted = async {
        let id = c.lease_grant(ttl, None).await.map_err(super::store_error)?.id();
        let (keeper, answers) = c.lease_keep_alive(id).await.map_err(super::store_error)?;
        Ok((id, keeper, answers))
    }
    .await;
    if granted.is_err() {
        store.failed(endpoint);
    }
    granted
}
