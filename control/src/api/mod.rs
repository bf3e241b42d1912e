//! The REST API, served by the control thread (axum on a tokio runtime of
//! [`API_THREADS`] threads), loopback by default. Documented for operators in
//! `docs/api.md`.
//!
//! - [`types`]: every request and answer body (the contract `rampart ctl`
//!   and the tests share);
//! - [`error`]: error answers and the JSON body extractor;
//! - one module per resource: [`status`] (health, version, stats, metrics),
//!   [`model`] (the whole model, reload, SIGHUP, explain), [`vpcs`],
//!   [`groups`] (with their rules), [`interfaces`], [`prefix_lists`]; the
//!   last two share [`named`]'s handlers.
//!
//! Every change goes through [`crate::apply::Control`] under one lock, its
//! synchronous part (validate, save, compile) in `block_in_place` so the
//! other thread goes on answering: the answer `200` means every worker
//! enforces it. Reads take no lock: they answer from the model as last
//! published ([`crate::apply::Published`]). Authentication:
//! `Authorization: Bearer <token>` on every `/v1` request (401 otherwise);
//! `/health` and `/metrics` are open.

pub mod error;
pub mod groups;
pub mod interfaces;
pub mod model;
pub mod named;
pub mod prefix_lists;
pub mod status;
pub mod types;
pub mod vpcs;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Mutex;

pub use self::error::{ApiError, Body};
use self::types::{Created, Enforced, Nothing};
use crate::apply::{Applied, Control, Published};
use crate::metrics::Metrics;
use crate::model::{Errors, Interface, Model, PrefixList, VpcId};
use crate::store::{Store, StoreError};

/// Largest request body accepted (413 beyond).
pub const BODY_LIMIT: usize = 4 << 20;

/// Shared by the handlers.
#[derive(Debug)]
pub struct Api {
    pub control: Mutex<Control>,
    /// The model as last published (the same view the control publishes).
    pub published: Arc<ArcSwap<Published>>,
    pub token: String,
    pub metrics: Metrics,
    /// The fleet store, when this node is one of a fleet.
    pub store: Option<Arc<Store>>,
}

/// Times a change made against a model that another node changed first is
/// made again against the newer model before it answers `409`.
pub const MAX_ATTEMPTS: usize = 8;

tokio::task_local! {
    /// The request asked (`?wait=fleet`) to be answered once every live node
    /// of the fleet enforces its change.
    static WAIT_FLEET: bool;
}

/// The `wait` query parameter: `wait=fleet`, or nothing.
fn wait_fleet(query: Option<&str>) -> Result<bool, ApiError> {
    let mut wait = false;
    for pair in query.unwrap_or("").split('&') {
        if let Some(v) = pair.strip_prefix("wait=") {
            if v != "fleet" {
                return Err(ApiError::field(
                    "invalid",
                    "wait",
                    format!("wait: {v:?} is not a wait; the one there is is wait=fleet"),
                ));
            }
            wait = true;
        }
    }
    Ok(wait)
}

/// A handler's answer: a body of the contract ([`types`]), or an error.
pub type Answer<T> = Result<Reply<T>, ApiError>;

/// A `200` answer with `T` as its JSON body.
#[derive(Debug)]
pub struct Reply<T>(pub T);

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        json(&self.0).into_response()
    }
}

/// `body` as the JSON of an answer, its keys in sorted order.
pub fn json<T: Serialize>(body: &T) -> Json<Value> {
    Json(serde_json::to_value(body).unwrap_or_default())
}

impl Api {
    /// Counts a change's outcome by its answer.
    fn outcome<T>(&self, answer: &Answer<T>) {
        let result = match answer {
            Ok(_) => "applied",
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => "not_enforced",
            Err(e) if e.status.is_server_error() => "failed",
            Err(_) => "refused",
        };
        self.metrics.changes.with_label_values(&[result]).inc();
    }

    /// Records a change's compile time and its call-to-enforced latency.
    fn observe(&self, applied: Applied, called: Instant) {
        self.metrics.compile_seconds.observe(applied.compile_ms / 1e3);
        self.metrics
            .update_seconds
            .observe(called.elapsed().as_secs_f64());
    }

    /// Applies `change` to a copy of the model; on success saves, publishes
    /// and waits for enforcement, answering what `change` answered with the
    /// generation. The outcome is counted.
    ///
    /// On a node of a fleet the change is first written to the fleet store
    /// (`change` may then run more than once: again against the newer
    /// model when another node's change came first).
    async fn mutate<T: Serialize>(
        &self,
        change: impl Fn(&mut Model) -> Result<T, ApiError>,
    ) -> Answer<Enforced<T>> {
        let answer = match &self.store {
            Some(store) => self.apply_in_fleet(store, change).await,
            None => self.apply(change).await,
        };
        self.outcome(&answer);
        answer
    }

    async fn apply<T: Serialize>(
        &self,
        change: impl FnOnce(&mut Model) -> Result<T, ApiError>,
    ) -> Answer<Enforced<T>> {
        let called = Instant::now();
        let mut c = self.control.lock().await;
        // Validating, saving and compiling run off the runtime's workers, so
        // reads go on meanwhile.
        let (answer, applied) = tokio::task::block_in_place(|| {
            let mut model = c.config.model.clone();
            let answer = change(&mut model)?;
            let applied = c.publish(model, false)?;
            Ok::<_, ApiError>((answer, applied))
        })?;
        c.wait_enforced(applied).await?;
        self.observe(applied, called);
        Ok(Reply(Enforced {
            generation: applied.generation,
            enforced: true,
            revision: None,
            answer,
        }))
    }

    /// [`Api::apply`] on a node of a fleet: `change` is made against this
    /// node's model (with every change the watch has brought applied
    /// first), written to the store in one transaction conditioned on that
    /// model's revision, then published here. When another node's change
    /// came first, this node catches up and makes the change again.
    async fn apply_in_fleet<T: Serialize>(
        &self,
        store: &Store,
        change: impl Fn(&mut Model) -> Result<T, ApiError>,
    ) -> Answer<Enforced<T>> {
        self.write_in_fleet(store, |model| {
            let mut new = model.clone();
            let answer = change(&mut new)?;
            Ok((answer, new, true))
        })
        .await
    }

    /// Writes the model `make` answers for the current one (it also says
    /// whether the new model descends from the current, so that the store
    /// gets only what changed) to the store, and publishes it; see
    /// [`Api::apply_in_fleet`].
    pub(crate) async fn write_in_fleet<T: Serialize>(
        &self,
        store: &Store,
        make: impl Fn(&Model) -> Result<(T, Model, bool), ApiError>,
    ) -> Answer<Enforced<T>> {
        let called = Instant::now();
        let fleet = WAIT_FLEET.try_with(|w| *w).unwrap_or(false);
        let mut c = self.control.lock().await;
        let mut overtaken = Vec::new();
        for _ in 0..MAX_ATTEMPTS {
            if let Some(applied) = tokio::task::block_in_place(|| c.apply_batches()) {
                if c.wait_enforced(applied).await.is_ok() {
                    c.report_enforced();
                }
            }
            let base = c.config.model.clone();
            let (answer, model, descends) = tokio::task::block_in_place(|| make(&base))?;
            let mark = c.sync.as_ref().map(|s| s.mark).unwrap_or_default();
            let settings = c.config.settings;
            let written = if descends {
                store.commit(mark, &base, &model, &settings).await
            } else {
                store
                    .replace(Some(mark.meta_revision), Some(mark.epoch), &model, &settings)
                    .await
            };
            match written {
                Ok(new) => {
                    let applied = tokio::task::block_in_place(|| c.publish_at(model, new, None)).map_err(|e| {
                        ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "persist_failed",
                            format!(
                                "the change is recorded in the fleet store at revision {}, but this node did not publish it: {e}",
                                new.revision
                            ),
                        )
                    })?;
                    c.wait_enforced(applied).await?;
                    c.report_enforced();
                    drop(c);
                    if fleet {
                        let timeout = crate::apply::ENFORCE_TIMEOUT;
                        store.wait_fleet(new.revision, timeout).await.map_err(|late| {
                            let late: Vec<String> = late
                                .iter()
                                .map(|(n, r)| format!("{n} (at revision {r})"))
                                .collect();
                            ApiError::new(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "fleet_lagging",
                                format!(
                                    "the change is enforced here at revision {}, but within {} ms not by: {}",
                                    new.revision,
                                    timeout.as_millis(),
                                    if late.is_empty() {
                                        "this node's own record".to_owned()
                                    } else {
                                        late.join(", ")
                                    }
                                ),
                            )
                        })?;
                    }
                    self.observe(applied, called);
                    return Ok(Reply(Enforced {
                        generation: applied.generation,
                        enforced: true,
                        revision: Some(new.revision),
                        answer,
                    }));
                }
                Err(StoreError::Conflict {
                    meta_revision,
                    writer,
                }) => {
                    overtaken.push(format!("revision {meta_revision} by {writer}"));
                    if !c.catch_up(meta_revision, crate::apply::ENFORCE_TIMEOUT).await {
                        return Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "store_lagging",
                            format!(
                                "the model changed in the fleet store (revision {meta_revision} by {writer}) and this node \
                                 did not catch up within {} ms; nothing changed",
                                crate::apply::ENFORCE_TIMEOUT.as_millis()
                            ),
                        ));
                    }
                }
                Err(e) => return Err(ApiError::from(e)),
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "the model kept changing under this change: {MAX_ATTEMPTS} attempts, each overtaken ({}); nothing changed, retry",
                overtaken.join(", ")
            ),
        ))
    }

    /// [`Api::mutate`] within the VPC named (or id'd) `vpc` in the path,
    /// resolved under the same lock as the change.
    async fn mutate_in<T: Serialize>(
        &self,
        vpc: &str,
        change: impl Fn(&mut Model, &str) -> Result<T, ApiError>,
    ) -> Answer<Enforced<T>> {
        self.mutate(|m| {
            let name = vpc_name(m, vpc)?;
            change(m, &name)
        })
        .await
    }

    /// Creates an object of the VPC in the path from `body`, a spec whose
    /// `vpc` may be left out; answers the new object's id.
    async fn create_in<S: DeserializeOwned, I: ToString>(
        &self,
        vpc: &str,
        body: Value,
        create: impl Fn(&mut Model, &S) -> Result<I, Errors>,
    ) -> Answer<Enforced<Created>> {
        self.mutate_in(vpc, |m, vpc| {
            let spec: S = with_vpc(body.clone(), vpc)?;
            let id = create(m, &spec)?;
            Ok(Created { id: id.to_string() })
        })
        .await
    }

    /// Replaces the object `name` of the VPC in the path with `body`, a spec
    /// whose `vpc` may be left out.
    async fn update_in<S: DeserializeOwned>(
        &self,
        vpc: &str,
        name: &str,
        body: Value,
        update: impl Fn(&mut Model, &str, &str, &S) -> Result<(), Errors>,
    ) -> Answer<Enforced> {
        self.mutate_in(vpc, |m, vpc| {
            let spec: S = with_vpc(body.clone(), vpc)?;
            update(m, vpc, name, &spec)?;
            Ok(Nothing {})
        })
        .await
    }

    /// Answers `view` of the model as last published, without waiting for
    /// a change in flight.
    async fn read<T: Serialize>(&self, view: impl FnOnce(&Published) -> Result<T, ApiError>) -> Answer<T> {
        view(&self.published.load()).map(Reply)
    }
}

/// The id of the VPC named (or id'd) `vpc`.
fn vpc_id(model: &Model, vpc: &str) -> Result<VpcId, ApiError> {
    let name = vpc_name(model, vpc)?;
    model
        .vpc_by_name(&name)
        .map(|v| v.id)
        .ok_or_else(|| ApiError::not_found("vpc"))
}

fn vpc_name(model: &Model, vpc: &str) -> Result<String, ApiError> {
    model
        .vpc_by_name(vpc)
        .or_else(|| VpcId::parse(vpc).and_then(|id| model.vpc(id)))
        .map(|v| v.name.clone())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no vpc {vpc:?}")))
}

/// A body that names its VPC, or takes it from the path.
fn with_vpc<T: DeserializeOwned>(mut body: Value, vpc: &str) -> Result<T, ApiError> {
    if let Value::Object(map) = &mut body {
        match map.get("vpc") {
            None => {
                map.insert("vpc".into(), Value::String(vpc.to_owned()));
            }
            Some(Value::String(v)) if v == vpc => {}
            Some(other) => {
                return Err(ApiError::field(
                    "invalid",
                    "vpc",
                    format!("vpc: the body says {other}, the path says {vpc:?}"),
                ))
            }
        }
    }
    error::parse_value(body, "")
}

async fn auth(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|g| {
        // Constant time in the token's length.
        g.len() == api.token.len()
            && g.bytes()
                .zip(api.token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        match wait_fleet(req.uri().query()) {
            Ok(wait) => WAIT_FLEET.scope(wait, next.run(req)).await,
            Err(e) => e.into_response(),
        }
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (Authorization: Bearer <token from the token file>)",
        )
        .into_response()
    }
}

/// The routes.
pub fn router(api: Arc<Api>) -> Router {
    let groups = "/vpcs/{vpc}/security-groups";
    let interfaces = "/vpcs/{vpc}/interfaces";
    let prefix_lists = "/vpcs/{vpc}/prefix-lists";
    let v1 = Router::new()
        .route("/version", get(status::version))
        .route("/stats", get(status::stats))
        .route("/fleet", get(status::fleet))
        .route("/model", get(model::show).put(model::replace))
        .route("/reload", post(model::reload))
        .route("/explain", post(model::explain))
        .route("/vpcs", get(vpcs::list).post(vpcs::create))
        .route(
            "/vpcs/{vpc}",
            get(vpcs::show).put(vpcs::update).delete(vpcs::delete),
        )
        .route(groups, get(groups::list).post(groups::create))
        .route(
            &format!("{groups}/{{sg}}"),
            get(groups::show).patch(groups::update).delete(groups::delete),
        )
        .route(&format!("{groups}/{{sg}}/copy"), post(groups::copy))
        .route(
            &format!("{groups}/{{sg}}/rules"),
            post(groups::add_rules).put(groups::replace_rules),
        )
        .route(
            &format!("{groups}/{{sg}}/rules/{{rule}}"),
            put(groups::update_rule).delete(groups::delete_rule),
        )
        .route(
            interfaces,
            get(named::list::<Interface>).post(named::create::<Interface>),
        )
        .route(
            &format!("{interfaces}/{{name}}"),
            get(named::show::<Interface>)
                .put(named::replace::<Interface>)
                .delete(named::delete::<Interface>),
        )
        .route(
            &format!("{interfaces}/{{name}}/groups"),
            put(interfaces::set_groups),
        )
        .route(
            &format!("{interfaces}/{{name}}/groups/{{sg}}"),
            put(interfaces::bind).delete(interfaces::unbind),
        )
        .route(
            prefix_lists,
            get(named::list::<PrefixList>).post(named::create::<PrefixList>),
        )
        .route(
            &format!("{prefix_lists}/{{name}}"),
            get(named::show::<PrefixList>)
                .put(named::replace::<PrefixList>)
                .delete(named::delete::<PrefixList>),
        )
        .layer(middleware::from_fn_with_state(Arc::clone(&api), auth));
    Router::new()
        .route("/health", get(status::health))
        .route("/metrics", get(status::metrics))
        .nest("/v1", v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(api)
}

/// Threads of the API's runtime: one can answer reads while another runs
/// the synchronous part of a change.
pub const API_THREADS: usize = 2;

/// What a node of a fleet runs beside the API: the watch of the store, the
/// applier of what it hands on, and the node's record.
#[derive(Debug)]
pub struct FleetTasks {
    pub store: Arc<Store>,
    /// Where the model this node starts with stands in the store.
    pub from: crate::state::StoreMark,
    pub feed: crate::store::watch::Feed,
    pub reload: Arc<tokio::sync::Notify>,
    pub enforcing: tokio::sync::watch::Receiver<crate::store::watch::Enforcing>,
    /// The API's address, for the node's record.
    pub api: String,
}

/// Applies what the watch hands on each time it rings, until `stop`.
async fn apply_from_store(api: Arc<Api>, bell: Arc<tokio::sync::Notify>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let _ = tokio::time::timeout(Duration::from_millis(200), bell.notified()).await;
        let mut c = api.control.lock().await;
        if let Some(applied) = tokio::task::block_in_place(|| c.apply_batches()) {
            match c.wait_enforced(applied).await {
                Ok(()) => c.report_enforced(),
                Err(e) => crate::daemon::log(format_args!("fleet store: {e}")),
            }
        }
    }
}

/// Serves `listener` until `stop` is set; re-reads the config file whenever
/// `hup` is set (SIGHUP); on a node of a fleet, follows the store.
pub fn serve(
    listener: std::net::TcpListener,
    api: Arc<Api>,
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    fleet: Option<FleetTasks>,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(API_THREADS)
        .thread_name("rampart-api")
        .enable_all()
        .build()?;
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = router(Arc::clone(&api));
        let merging = tokio::spawn(merge_by_traffic(Arc::clone(&api), Arc::clone(&stop)));
        let mut fleet_tasks = Vec::new();
        let store = fleet.as_ref().map(|f| Arc::clone(&f.store));
        if let Some(f) = fleet {
            let bell = Arc::clone(&f.feed.bell);
            fleet_tasks.push(tokio::spawn(crate::store::watch::follow(
                Arc::clone(&f.store),
                f.from,
                f.feed,
                f.reload,
                Arc::clone(&stop),
            )));
            fleet_tasks.push(tokio::spawn(apply_from_store(
                Arc::clone(&api),
                bell,
                Arc::clone(&stop),
            )));
            fleet_tasks.push(tokio::spawn(crate::store::watch::report(
                Arc::clone(&f.store),
                f.enforcing,
                f.api,
                Arc::clone(&stop),
            )));
        }
        let hangups = tokio::spawn(model::reload_on_hangup(api, hup, Arc::clone(&stop)));
        let stopped = async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let served = axum::serve(listener, app).with_graceful_shutdown(stopped).await;
        hangups.abort();
        merging.abort();
        for t in fleet_tasks {
            t.abort();
        }
        if let Some(store) = store {
            // The fleet sees at once that this node is gone.
            store.leave().await;
        }
        served
    })
}

/// How often the sets merged for their traffic are re-chosen.
pub const MERGE_PERIOD: Duration = Duration::from_secs(10);

/// Every [`MERGE_PERIOD`], re-chooses the group sets merged for their
/// traffic (`Control::rechoose_merged`), until `stop`.
async fn merge_by_traffic(api: Arc<Api>, stop: Arc<AtomicBool>) {
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(MERGE_PERIOD).await;
        let mut c = api.control.lock().await;
        let period = last.elapsed();
        last = Instant::now();
        if let Some((generation, merged)) = tokio::task::block_in_place(|| c.rechoose_merged(period)) {
            crate::daemon::log(format_args!(
                "merged classifiers re-chosen by traffic: {merged} group sets merged; snapshot generation {generation}"
            ));
        }
    }
}

/// Binds the API's address (a clear error names it).
pub fn bind_address(addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    std::net::TcpListener::bind(addr).map_err(|e| format!("--listen {addr}: {e}"))
}
