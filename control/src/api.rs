//! The REST API, served by the control thread (axum on a current-thread tokio
//! runtime), loopback by default. Documented for operators in `docs/api.md`.
//!
//! Every mutation goes the same way, one at a time (the [`Control`] lock):
//! 1. the change is applied to a copy of the model through the model's own
//!    operations, which validate all of it first (all-or-nothing, spec §6);
//!    an invalid change answers 4xx with every error and changes nothing;
//! 2. the new model is saved in the state directory (crash-safe);
//! 3. it is compiled (incrementally) and the snapshot published;
//! 4. the answer waits until every worker runs that snapshot's generation, so
//!    `200` means enforced. A worker that does not adopt it within the
//!    timeout turns into a 503 that says the change is saved and published.
//!
//! Authentication: `Authorization: Bearer <token>` on every `/v1` request
//! (401 otherwise). `/health` is open. Errors are JSON:
//! `{"code","message","subject","field","errors":[...]}`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rampart_dataplane::handoff::Doorbell;
use rampart_dataplane::snapshot::Snapshot;
use rampart_dataplane::stats::Counters;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::compile::Compiler;
use crate::config::{Config, Summary};
use crate::explain;
use crate::metrics::Metrics;
use crate::model::{
    ErrorCode, Errors, GroupSpec, GroupUpdate, InterfaceSpec, Model, ModelError, PrefixListSpec, RuleSpec,
    VpcSpec,
};
use crate::state::StateDir;

/// Largest request body accepted (413 beyond).
pub const BODY_LIMIT: usize = 4 << 20;
/// How long a mutation waits for every worker to run its snapshot.
pub const ENFORCE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the control thread owns.
pub struct Control {
    pub config_path: PathBuf,
    /// The live configuration: the file's settings and appliance table, and
    /// the model (from the state directory or the file).
    pub config: Config,
    pub compiler: Compiler,
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    pub counters: Vec<Arc<Counters>>,
    /// Rung after publishing, so sleeping workers adopt the snapshot now.
    pub bells: Vec<Arc<Doorbell>>,
    pub state: Option<StateDir>,
    /// The model is the config file's, unchanged through the API.
    pub from_file: bool,
    pub enforce_timeout: Duration,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("config_path", &self.config_path)
            .field("from_file", &self.from_file)
            .finish_non_exhaustive()
    }
}

/// A change that was made: the generation enforcing it.
#[derive(Clone, Copy, Debug)]
pub struct Applied {
    pub generation: u64,
    pub compile_ms: f64,
    pub rebuilt: usize,
}

impl Control {
    /// Saves, compiles and publishes `model` (already validated); does not wait.
    pub fn publish(&mut self, model: Model, from_file: bool) -> Result<Applied, ApiError> {
        if let Some(state) = &self.state {
            state.save(&model, from_file).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "persist_failed",
                    format!(
                        "saving the model in {}: {e}; nothing changed",
                        state.path().display()
                    ),
                )
            })?;
        }
        let started = Instant::now();
        let (snap, stats) = self.compiler.compile(&model, &self.config.settings);
        let generation = snap.generation;
        self.snapshots.store(Arc::new(snap));
        for bell in &self.bells {
            bell.ring();
        }
        self.config.model = model;
        self.from_file = from_file;
        Ok(Applied {
            generation,
            compile_ms: started.elapsed().as_secs_f64() * 1e3,
            rebuilt: stats.rebuilt,
        })
    }

    /// The generation the slowest worker runs.
    pub fn enforced_generation(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.generation.get())
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Re-reads the config file. Refused (model kept) when the file is
    /// invalid, or when the live model holds changes made through the API and
    /// `force` is not given: applying the file would drop them.
    pub fn reload(&mut self, force: bool) -> Result<(Applied, String), ApiError> {
        let new = Config::load(&self.config_path).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_config",
                format!("reload refused, running model kept: {e}"),
            )
        })?;
        if !self.from_file && !force {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "model_changed",
                format!(
                    "reload refused: the running model has changes made through the API that {} does not have; \
                     applying the file would drop them. Export the model into the file first, or reload with force",
                    self.config_path.display()
                ),
            ));
        }
        let mut note = String::new();
        if new.appliance != self.config.appliance {
            note = "[appliance] changes take effect at the next start".to_owned();
        }
        self.config.settings = new.settings;
        let applied = self.publish(new.model, true)?;
        Ok((applied, note))
    }
}

/// Shared by the handlers.
#[derive(Debug)]
pub struct Api {
    pub control: Mutex<Control>,
    pub token: String,
    pub metrics: Metrics,
}

impl Api {
    /// Records a change's compile time and its call-to-enforced latency.
    /// Counts a change's outcome by its answer.
    fn outcome(&self, answer: &Answer) {
        let result = match answer {
            Ok(_) => "applied",
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => "not_enforced",
            Err(e) if e.status.is_server_error() => "failed",
            Err(_) => "refused",
        };
        self.metrics.changes.with_label_values(&[result]).inc();
    }

    fn observe(&self, applied: Applied, called: Instant) {
        self.metrics.compile_seconds.observe(applied.compile_ms / 1e3);
        self.metrics
            .update_seconds
            .observe(called.elapsed().as_secs_f64());
    }
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

#[derive(Serialize)]
struct ErrorItem<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError {
            status,
            body: json!({ "code": code, "message": message, "errors": [{ "code": code, "message": message }] }),
        }
    }

    fn field(code: &str, field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "code": code, "message": message, "field": field,
                          "errors": [{ "code": code, "message": message, "field": field }] }),
        }
    }

    fn model(errors: &Errors) -> ApiError {
        let status = match errors.0.first().map(|e| e.code) {
            Some(ErrorCode::NotFound) => StatusCode::NOT_FOUND,
            Some(ErrorCode::AlreadyExists | ErrorCode::InUse | ErrorCode::QuotaExceeded) => {
                StatusCode::CONFLICT
            }
            Some(ErrorCode::Forbidden) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        let items: Vec<ErrorItem<'_>> = errors
            .0
            .iter()
            .map(|e: &ModelError| ErrorItem {
                code: e.code.as_str(),
                message: &e.message,
                subject: Some(&e.subject),
                field: e.field,
            })
            .collect();
        let first = &errors.0[0];
        ApiError {
            status,
            body: json!({
                "code": first.code.as_str(),
                "message": format!("{first}"),
                "subject": first.subject,
                "field": first.field,
                "errors": items,
            }),
        }
    }
}

impl From<Errors> for ApiError {
    fn from(e: Errors) -> Self {
        ApiError::model(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// A JSON body: a size limit (413), then a parse whose error names the path
/// of the offending field (400). Never axum's plain-text rejections.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r: BytesRejection| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the body is over the limit of {BODY_LIMIT} bytes"),
                    )
                } else {
                    ApiError::new(StatusCode::BAD_REQUEST, "bad_body", r.body_text())
                }
            })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(Body).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", inner.to_string())
            } else {
                ApiError::field("invalid_json", &path, format!("{path}: {inner}"))
            }
        })
    }
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
        next.run(req).await
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
    let v1 = Router::new()
        .route("/version", get(version))
        .route("/stats", get(stats))
        .route("/model", get(get_model).put(put_model))
        .route("/reload", post(reload))
        .route("/explain", post(explain_packet))
        .route("/vpcs", get(list_vpcs).post(create_vpc))
        .route("/vpcs/{vpc}", get(show_vpc).put(update_vpc).delete(delete_vpc))
        .route("/vpcs/{vpc}/security-groups", get(list_groups).post(create_group))
        .route(
            "/vpcs/{vpc}/security-groups/{sg}",
            get(show_group).patch(update_group).delete(delete_group),
        )
        .route("/vpcs/{vpc}/security-groups/{sg}/copy", post(copy_group))
        .route(
            "/vpcs/{vpc}/security-groups/{sg}/rules",
            post(add_rules).put(replace_rules),
        )
        .route(
            "/vpcs/{vpc}/security-groups/{sg}/rules/{rule}",
            put(update_rule).delete(delete_rule),
        )
        .route(
            "/vpcs/{vpc}/interfaces",
            get(list_interfaces).post(create_interface),
        )
        .route(
            "/vpcs/{vpc}/interfaces/{name}",
            get(show_interface).put(update_interface).delete(delete_interface),
        )
        .route("/vpcs/{vpc}/interfaces/{name}/groups", put(set_groups))
        .route(
            "/vpcs/{vpc}/interfaces/{name}/groups/{sg}",
            put(bind).delete(unbind),
        )
        .route(
            "/vpcs/{vpc}/prefix-lists",
            get(list_prefix_lists).post(create_prefix_list),
        )
        .route(
            "/vpcs/{vpc}/prefix-lists/{name}",
            get(show_prefix_list)
                .put(update_prefix_list)
                .delete(delete_prefix_list),
        )
        .layer(middleware::from_fn_with_state(Arc::clone(&api), auth));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .nest("/v1", v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(api)
}

/// Serves `listener` on the current thread until `stop` is set; re-reads the
/// config file when `hup` is set.
pub fn serve(
    listener: std::net::TcpListener,
    api: Arc<Api>,
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = router(Arc::clone(&api));
        let server =
            axum::serve(listener, app).with_graceful_shutdown(async move {
                while !stop.load(Ordering::Relaxed) {
                    if hup.swap(false, Ordering::Relaxed) {
                        let mut c = api.control.lock().await;
                        let result = c.reload(false);
                        let outcome = if result.is_ok() { "applied" } else { "refused" };
                        api.metrics.changes.with_label_values(&[outcome]).inc();
                        match result {
                            Ok((applied, note)) => {
                                api.metrics.compile_seconds.observe(applied.compile_ms / 1e3);
                                log(format!(
                                    "reloaded {}: {}; snapshot generation {} ({} group sets rebuilt) in {:.1} ms{}",
                                    c.config_path.display(),
                                    Summary::of(&c.config.model),
                                    applied.generation,
                                    applied.rebuilt,
                                    applied.compile_ms,
                                    if note.is_empty() { String::new() } else { format!("; {note}") }
                                ));
                            }
                            Err(e) => log(e.body["message"].as_str().unwrap_or("reload refused").to_owned()),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        server.await
    })
}

fn log(msg: String) {
    eprintln!("rampart: {msg}");
}

/// Binds the API's address (a clear error names it).
pub fn bind_address(addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    std::net::TcpListener::bind(addr).map_err(|e| format!("--listen {addr}: {e}"))
}

// ------------------------------------------------------------------ handlers

type Answer = Result<Json<Value>, ApiError>;

async fn health(State(api): State<Arc<Api>>) -> Json<Value> {
    let c = api.control.lock().await;
    let published = c.snapshots.load().generation;
    Json(json!({
        "status": "ok",
        "generation": published,
        "enforced_generation": c.enforced_generation(),
        "workers": c.counters.len(),
    }))
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let names = {
        let c = api.control.lock().await;
        let m = &c.config.model;
        m.interfaces()
            .map(|i| {
                let vpc = m.vpc(i.vpc).map_or("?", |v| v.name.as_str());
                (i.id.0, format!("{vpc}/{}", i.name))
            })
            .collect()
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        api.metrics.render(names),
    )
        .into_response()
}

async fn stats(State(api): State<Arc<Api>>) -> Json<Value> {
    let c = api.control.lock().await;
    let t = rampart_dataplane::stats::Totals::sum(c.counters.iter().map(|w| &**w));
    let m = &c.config.model;
    let ports: Vec<Value> = ["a", "b"]
        .iter()
        .zip(&t.ports)
        .map(|(name, p)| {
            json!({
                "port": name, "received": p.rx_packets, "received_bytes": p.rx_bytes,
                "forwarded": p.forwarded_packets, "forwarded_bytes": p.forwarded_bytes,
                "dropped": p.dropped_packets, "dropped_bytes": p.dropped_bytes,
            })
        })
        .collect();
    let drops: serde_json::Map<String, Value> = rampart_dataplane::reason::DropReason::ALL
        .iter()
        .filter(|r| t.drop_count(**r) > 0)
        .map(|r| (r.name().to_owned(), json!(t.drop_count(*r))))
        .collect();
    let mut rules: Vec<Value> = t
        .rules
        .iter()
        .map(|(id, hits)| {
            let found = m
                .groups()
                .flat_map(|g| g.rules.iter().map(move |r| (g, r)))
                .find(|(_, r)| r.id.0 == *id);
            json!({
                "id": format!("sgr-{id}"),
                "group": found.map(|(g, _)| g.name.clone()),
                "text": found.map(|(_, r)| m.rule_text(r)),
                "flows": hits,
            })
        })
        .collect();
    rules.sort_by_key(|r| std::cmp::Reverse(r["flows"].as_u64().unwrap_or(0)));
    Json(json!({
        "ports": ports, "drops": drops,
        "flows": { "active": t.flows_active, "capacity": t.flows_capacity, "created": t.flows_created,
                   "expired": t.flows_expired, "evicted": t.flows_evicted, "revoked": t.flows_revoked },
        "related_icmp": t.related, "arp_nd": t.unevaluated,
        "generation": c.snapshots.load().generation, "enforced_generation": c.enforced_generation(),
        "workers": c.counters.len(), "rules": rules, "rules_other": t.rules_other,
    }))
}

async fn version() -> Json<Value> {
    Json(json!({ "name": "rampart", "version": env!("CARGO_PKG_VERSION") }))
}

/// Applies `change` to a copy of the model; on success saves, publishes and
/// waits for enforcement, answering `extra` plus the generation.
async fn mutate(api: &Api, change: impl FnOnce(&mut Model) -> Result<Value, ApiError>) -> Answer {
    let called = Instant::now();
    let mut c = api.control.lock().await;
    let mut model = c.config.model.clone();
    let extra = change(&mut model)?;
    let applied = c.publish(model, false)?;
    wait_enforced(&c, applied).await?;
    api.observe(applied, called);
    let mut body = json!({ "generation": applied.generation, "enforced": true });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    Ok(Json(body))
}

async fn wait_enforced(c: &Control, applied: Applied) -> Result<(), ApiError> {
    let started = Instant::now();
    loop {
        if c.enforced_generation() >= applied.generation {
            return Ok(());
        }
        if started.elapsed() > c.enforce_timeout {
            let late: Vec<usize> = c
                .counters
                .iter()
                .enumerate()
                .filter(|(_, w)| w.generation.get() < applied.generation)
                .map(|(i, _)| i)
                .collect();
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_enforced",
                format!(
                    "the change is saved and published as generation {}, but worker(s) {late:?} did not run it within {} ms",
                    applied.generation,
                    c.enforce_timeout.as_millis()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// [`mutate`] within the VPC named (or id'd) `vpc` in the path, resolved
/// under the same lock as the change.
async fn mutate_in(
    api: &Api,
    vpc: &str,
    change: impl FnOnce(&mut Model, &str) -> Result<Value, ApiError>,
) -> Answer {
    mutate(api, |m| {
        let name = vpc_name(m, vpc)?;
        change(m, &name)
    })
    .await
}

/// The id of the VPC named (or id'd) `vpc`.
fn vpc_id(model: &Model, vpc: &str) -> Result<crate::model::VpcId, ApiError> {
    let name = vpc_name(model, vpc)?;
    model
        .vpc_by_name(&name)
        .map(|v| v.id)
        .ok_or_else(|| not_found("vpc"))
}

fn vpc_name(model: &Model, vpc: &str) -> Result<String, ApiError> {
    model
        .vpc_by_name(vpc)
        .or_else(|| crate::model::VpcId::parse(vpc).and_then(|id| model.vpc(id)))
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
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        ApiError::field("invalid_json", &path, format!("{path}: {}", e.into_inner()))
    })
}

// -- views

fn vpc_view(m: &Model, v: &crate::model::Vpc) -> Value {
    json!({
        "id": v.id.to_string(), "name": v.name, "description": v.description, "vlan": v.vlan,
        "default_group": m.group(v.default_group).map(|g| g.name.clone()),
        "groups": m.groups_in(v.id).count(),
        "interfaces": m.interfaces().filter(|i| i.vpc == v.id).count(),
    })
}

fn group_view(m: &Model, g: &crate::model::SecurityGroup) -> Value {
    let rules: Vec<Value> = g
        .rules
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut v {
                o.insert("id".into(), Value::String(r.id.to_string()));
                o.insert("text".into(), Value::String(m.rule_text(r)));
            }
            v
        })
        .collect();
    json!({
        "id": g.id.to_string(), "name": g.name,
        "vpc": m.vpc(g.vpc).map(|v| v.name.clone()),
        "description": g.description, "stateful": g.stateful, "kind": g.kind.as_str(),
        "intra_group": g.intra_group.as_str(), "rules": rules,
    })
}

fn interface_view(m: &Model, i: &crate::model::Interface) -> Value {
    json!({
        "id": i.id.to_string(), "name": i.name,
        "vpc": m.vpc(i.vpc).map(|v| v.name.clone()),
        "addresses": i.addresses, "mac": i.mac.map(|x| x.to_string()),
        "groups": m.interface_groups(i).map(|g| g.name.clone()).collect::<Vec<_>>(),
        "bare_metal": i.bare_metal,
    })
}

fn prefix_list_view(m: &Model, p: &crate::model::PrefixList) -> Value {
    json!({
        "id": p.id.to_string(), "name": p.name, "vpc": m.vpc(p.vpc).map(|v| v.name.clone()),
        "description": p.description, "cidrs": p.cidrs,
    })
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
}

// -- model

async fn get_model(State(api): State<Arc<Api>>) -> Json<Value> {
    let c = api.control.lock().await;
    let m = &c.config.model;
    Json(json!({
        "vpcs": m.vpcs().map(|v| vpc_view(m, v)).collect::<Vec<_>>(),
        "security_groups": m.groups().map(|g| group_view(m, g)).collect::<Vec<_>>(),
        "interfaces": m.interfaces().map(|i| interface_view(m, i)).collect::<Vec<_>>(),
        "prefix_lists": m.prefix_lists().map(|p| prefix_list_view(m, p)).collect::<Vec<_>>(),
        "from_file": c.from_file,
        "generation": c.snapshots.load().generation,
    }))
}

/// The model part of the config document, as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelDocument {
    #[serde(default)]
    quotas: Option<Value>,
    #[serde(default)]
    vpc: Vec<Value>,
    #[serde(default)]
    prefix_list: Vec<Value>,
    #[serde(default)]
    security_group: Vec<Value>,
    #[serde(default)]
    interface: Vec<Value>,
}

async fn put_model(State(api): State<Arc<Api>>, Body(doc): Body<ModelDocument>) -> Answer {
    let answer = put_model_inner(&api, doc).await;
    api.outcome(&answer);
    answer
}

async fn put_model_inner(api: &Api, doc: ModelDocument) -> Answer {
    let called = Instant::now();
    let mut c = api.control.lock().await;
    let mut text = json!({
        "vpc": doc.vpc, "prefix_list": doc.prefix_list,
        "security_group": doc.security_group, "interface": doc.interface,
    });
    if let Some(q) = doc.quotas {
        text["quotas"] = q;
    }
    let new = Config::parse_json(&text.to_string(), "the request").map_err(|e| match e {
        crate::config::ConfigError::Invalid { errors, .. } => ApiError::model(&errors),
        other => ApiError::new(StatusCode::BAD_REQUEST, "invalid", other.to_string()),
    })?;
    let changes = Summary::diff(&c.config.model, &new.model);
    let applied = c.publish(new.model, false)?;
    wait_enforced(&c, applied).await?;
    api.observe(applied, called);
    Ok(Json(
        json!({ "generation": applied.generation, "enforced": true, "changed": changes }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    #[serde(default)]
    force: bool,
}

async fn reload(State(api): State<Arc<Api>>, body: Bytes) -> Answer {
    let req: ReloadRequest = if body.is_empty() {
        ReloadRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?
    };
    let called = Instant::now();
    let mut c = api.control.lock().await;
    let result = c.reload(req.force);
    let outcome = match &result {
        Ok(_) => "applied",
        Err(e) if e.status.is_server_error() => "failed",
        Err(_) => "refused",
    };
    api.metrics.changes.with_label_values(&[outcome]).inc();
    let (applied, note) = result?;
    wait_enforced(&c, applied).await?;
    api.observe(applied, called);
    Ok(Json(
        json!({ "generation": applied.generation, "enforced": true, "note": note }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainRequest {
    packet: String,
    #[serde(default)]
    vlan: Option<u16>,
    #[serde(default)]
    vpc: Option<String>,
}

async fn explain_packet(State(api): State<Arc<Api>>, Body(req): Body<ExplainRequest>) -> Answer {
    let c = api.control.lock().await;
    let m = &c.config.model;
    let vlan = match &req.vpc {
        None => req.vlan,
        Some(name) => m.vpc(vpc_id(m, name)?).and_then(|v| v.vlan),
    };
    let words: Vec<String> = req.packet.split_whitespace().map(str::to_owned).collect();
    let pkt = explain::parse_packet(&words, vlan).map_err(|e| ApiError::field("invalid", "packet", e))?;
    let e = explain::explain(m, &c.config.settings, &pkt);
    Ok(Json(json!({
        "allowed": e.allowed,
        "stateful": e.tracked,
        "text": e.text,
    })))
}

// -- vpcs

async fn list_vpcs(State(api): State<Arc<Api>>) -> Json<Value> {
    let c = api.control.lock().await;
    let m = &c.config.model;
    Json(json!({ "vpcs": m.vpcs().map(|v| vpc_view(m, v)).collect::<Vec<_>>() }))
}

async fn show_vpc(State(api): State<Arc<Api>>, Path(vpc): Path<String>) -> Answer {
    let c = api.control.lock().await;
    let m = &c.config.model;
    let v = m.vpc(vpc_id(m, &vpc)?).ok_or_else(|| not_found("vpc"))?;
    Ok(Json(vpc_view(m, v)))
}

async fn create_vpc(State(api): State<Arc<Api>>, Body(spec): Body<VpcSpec>) -> Answer {
    mutate(&api, |m| {
        let id = m.create_vpc(&spec)?;
        Ok(json!({ "id": id.to_string() }))
    })
    .await
}

async fn update_vpc(
    State(api): State<Arc<Api>>,
    Path(vpc): Path<String>,
    Body(spec): Body<VpcSpec>,
) -> Answer {
    mutate_in(&api, &vpc, |m, name| {
        Ok(m.update_vpc(name, &spec).map(|()| json!({}))?)
    })
    .await
}

async fn delete_vpc(State(api): State<Arc<Api>>, Path(vpc): Path<String>) -> Answer {
    mutate_in(&api, &vpc, |m, name| {
        Ok(m.delete_vpc(name).map(|()| json!({}))?)
    })
    .await
}

// -- groups

async fn list_groups(State(api): State<Arc<Api>>, Path(vpc): Path<String>) -> Answer {
    let c = api.control.lock().await;
    let m = &c.config.model;
    let id = vpc_id(m, &vpc)?;
    Ok(Json(
        json!({ "security_groups": m.groups_in(id).map(|g| group_view(m, g)).collect::<Vec<_>>() }),
    ))
}

async fn show_group(State(api): State<Arc<Api>>, Path((vpc, sg)): Path<(String, String)>) -> Answer {
    let c = api.control.lock().await;
    let m = &c.config.model;
    let id = vpc_id(m, &vpc)?;
    let g = m
        .resolve_group(id, &sg)
        .map_err(|e| ApiError::model(&Errors::one(e)))?;
    Ok(Json(group_view(m, g)))
}

async fn create_group(
    State(api): State<Arc<Api>>,
    Path(vpc): Path<String>,
    Body(body): Body<Value>,
) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        let spec: GroupSpec = with_vpc(body, vpc)?;
        let id = m.create_group(&spec)?;
        let g = m.group(id).map(|g| group_view(m, g)).unwrap_or(Value::Null);
        Ok(json!({ "id": id.to_string(), "security_group": g }))
    })
    .await
}

async fn update_group(
    State(api): State<Arc<Api>>,
    Path((vpc, sg)): Path<(String, String)>,
    Body(update): Body<GroupUpdate>,
) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        Ok(m.update_group(vpc, &sg, &update).map(|()| json!({}))?)
    })
    .await
}

async fn delete_group(State(api): State<Arc<Api>>, Path((vpc, sg)): Path<(String, String)>) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        Ok(m.delete_group(vpc, &sg).map(|()| json!({}))?)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyRequest {
    name: String,
}

async fn copy_group(
    State(api): State<Arc<Api>>,
    Path((vpc, sg)): Path<(String, String)>,
    Body(req): Body<CopyRequest>,
) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        let id = m.copy_group(vpc, &sg, &req.name)?;
        Ok(json!({ "id": id.to_string() }))
    })
    .await
}

fn rules_from(body: Value) -> Result<Vec<RuleSpec>, ApiError> {
    // A list, or one rule: each parsed on its own so an error names its path.
    match body {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                serde_path_to_error::deserialize(v).map_err(|e| {
                    let path = format!("[{i}].{}", e.path());
                    ApiError::field("invalid_json", &path, format!("{path}: {}", e.into_inner()))
                })
            })
            .collect(),
        other => serde_path_to_error::deserialize::<_, RuleSpec>(other)
            .map(|r| vec![r])
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::field("invalid_json", &path, format!("{path}: {}", e.into_inner()))
            }),
    }
}

async fn add_rules(
    State(api): State<Arc<Api>>,
    Path((vpc, sg)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Answer {
    let rules = rules_from(body)?;
    mutate_in(&api, &vpc, |m, vpc| {
        let ids = m.add_rules(vpc, &sg, &rules)?;
        Ok(json!({ "ids": ids.iter().map(ToString::to_string).collect::<Vec<_>>() }))
    })
    .await
}

async fn replace_rules(
    State(api): State<Arc<Api>>,
    Path((vpc, sg)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Answer {
    let rules = rules_from(body)?;
    mutate_in(&api, &vpc, |m, vpc| {
        let ids = m.replace_rules(vpc, &sg, &rules)?;
        Ok(json!({ "ids": ids.iter().map(ToString::to_string).collect::<Vec<_>>() }))
    })
    .await
}

async fn update_rule(
    State(api): State<Arc<Api>>,
    Path((vpc, sg, rule)): Path<(String, String, String)>,
    Body(spec): Body<RuleSpec>,
) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        Ok(m.update_rule(vpc, &sg, &rule, &spec).map(|()| json!({}))?)
    })
    .await
}

async fn delete_rule(
    State(api): State<Arc<Api>>,
    Path((vpc, sg, rule)): Path<(String, String, String)>,
) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        Ok(m.delete_rule(vpc, &sg, &rule).map(|()| json!({}))?)
    })
    .await
}

// -- interfaces

async fn list_interfaces(State(api): State<Arc<Api>>, Path(vpc): Path<String>) -> Answer {
    let c = api.control.lock().await;
    let m = &c.config.model;
    let id = vpc_id(m, &vpc)?;
    Ok(Json(json!({
        "interfaces": m.interfaces().filter(|i| i.vpc == id).map(|i| interface_view(m, i)).collect::<Vec<_>>()
    })))
}

async fn show_interface(State(api): State<Arc<Api>>, Path((vpc, name)): Path<(String, String)>) -> Answer {
    let c = api.control.lock().await;
    let m = &c.config.model;
    let id = vpc_id(m, &vpc)?;
    let i = m
        .interface_by_name(id, &name)
        .ok_or_else(|| not_found(&format!("interface {name:?} in vpc {vpc:?}")))?;
    Ok(Json(interface_view(m, i)))
}

async fn create_interface(
    State(api): State<Arc<Api>>,
    Path(vpc): Path<String>,
    Body(body): Body<Value>,
) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        let spec: InterfaceSpec = with_vpc(body, vpc)?;
        let id = m.create_interface(&spec)?;
        Ok(json!({ "id": id.to_string() }))
    })
    .await
}

async fn update_interface(
    State(api): State<Arc<Api>>,
    Path((vpc, name)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        let spec: InterfaceSpec = with_vpc(body, vpc)?;
        Ok(m.update_interface(vpc, &name, &spec).map(|()| json!({}))?)
    })
    .await
}

async fn delete_interface(State(api): State<Arc<Api>>, Path((vpc, name)): Path<(String, String)>) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        Ok(m.delete_interface(vpc, &name).map(|()| json!({}))?)
    })
    .await
}

async fn set_groups(
    State(api): State<Arc<Api>>,
    Path((vpc, name)): Path<(String, String)>,
    Body(groups): Body<Vec<String>>,
) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        Ok(m.set_interface_groups(vpc, &name, &groups).map(|()| json!({}))?)
    })
    .await
}

async fn bind(State(api): State<Arc<Api>>, Path((vpc, name, sg)): Path<(String, String, String)>) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        Ok(m.bind_group(vpc, &name, &sg).map(|()| json!({}))?)
    })
    .await
}

async fn unbind(
    State(api): State<Arc<Api>>,
    Path((vpc, name, sg)): Path<(String, String, String)>,
) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        Ok(m.unbind_group(vpc, &name, &sg).map(|()| json!({}))?)
    })
    .await
}

// -- prefix lists

async fn list_prefix_lists(State(api): State<Arc<Api>>, Path(vpc): Path<String>) -> Answer {
    let c = api.control.lock().await;
    let m = &c.config.model;
    let id = vpc_id(m, &vpc)?;
    Ok(Json(json!({
        "prefix_lists": m.prefix_lists().filter(|p| p.vpc == id).map(|p| prefix_list_view(m, p)).collect::<Vec<_>>()
    })))
}

async fn show_prefix_list(State(api): State<Arc<Api>>, Path((vpc, name)): Path<(String, String)>) -> Answer {
    let c = api.control.lock().await;
    let m = &c.config.model;
    let id = vpc_id(m, &vpc)?;
    let p = m
        .prefix_list_by_name(id, &name)
        .ok_or_else(|| not_found(&format!("prefix list {name:?} in vpc {vpc:?}")))?;
    Ok(Json(prefix_list_view(m, p)))
}

async fn create_prefix_list(
    State(api): State<Arc<Api>>,
    Path(vpc): Path<String>,
    Body(body): Body<Value>,
) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        let spec: PrefixListSpec = with_vpc(body, vpc)?;
        let id = m.create_prefix_list(&spec)?;
        Ok(json!({ "id": id.to_string() }))
    })
    .await
}

async fn update_prefix_list(
    State(api): State<Arc<Api>>,
    Path((vpc, name)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        let spec: PrefixListSpec = with_vpc(body, vpc)?;
        Ok(m.update_prefix_list(vpc, &name, &spec).map(|()| json!({}))?)
    })
    .await
}

async fn delete_prefix_list(
    State(api): State<Arc<Api>>,
    Path((vpc, name)): Path<(String, String)>,
) -> Answer {
    mutate_in(&api, &vpc, |m, vpc| {
        Ok(m.delete_prefix_list(vpc, &name).map(|()| json!({}))?)
    })
    .await
}
