//! The whole model: show it, replace it, reload it from the config file
//! (`POST /v1/reload` and SIGHUP), and explain a packet against it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;

use super::types::{
    Enforced, ExplainRequest, Explained, GroupView, InterfaceView, ModelDocument, ModelView, PrefixListView,
    ReloadRequest, Reloaded, Replaced, VpcView,
};
use super::{vpc_id, Answer, Api, ApiError, Body, Reply};
use crate::config::{Config, ConfigError, Summary};
use crate::daemon::log;
use crate::explain;

/// `GET /v1/model`.
pub async fn show(State(api): State<Arc<Api>>) -> Reply<ModelView> {
    let p = api.published.load();
    let m = &p.model;
    Reply(ModelView {
        vpcs: m.vpcs().map(|v| VpcView::of(m, v)).collect(),
        security_groups: m.groups().map(|g| GroupView::of(m, g)).collect(),
        interfaces: m.interfaces().map(|i| InterfaceView::of(m, i)).collect(),
        prefix_lists: m.prefix_lists().map(|p| PrefixListView::of(m, p)).collect(),
        from_file: p.from_file,
        generation: p.generation,
    })
}

/// `PUT /v1/model`: the whole model replaced, validated as a config file's.
pub async fn replace(
    State(api): State<Arc<Api>>,
    Body(doc): Body<ModelDocument>,
) -> Answer<Enforced<Replaced>> {
    let answer = replace_model(&api, doc).await;
    api.outcome(&answer);
    answer
}

/// The model a [`ModelDocument`] describes, validated as a config file's.
fn document_model(doc: &ModelDocument) -> Result<crate::model::Model, ApiError> {
    let mut text = serde_json::json!({
        "vpc": doc.vpc, "prefix_list": doc.prefix_list,
        "security_group": doc.security_group, "interface": doc.interface,
    });
    if let Some(q) = &doc.quotas {
        text["quotas"] = q.clone();
    }
    let new = Config::parse_json(&text.to_string(), "the request").map_err(|e| match e {
        ConfigError::Invalid { errors, .. } => ApiError::model(&errors),
        other => ApiError::new(StatusCode::BAD_REQUEST, "invalid", other.to_string()),
    })?;
    Ok(new.model)
}

async fn replace_model(api: &Api, doc: ModelDocument) -> Answer<Enforced<Replaced>> {
    if let Some(store) = &api.store {
        let new = tokio::task::block_in_place(|| document_model(&doc))?;
        return api
            .write_in_fleet(store, |current| {
                let changed = Summary::diff(current, &new);
                Ok((Replaced { changed }, new.clone(), false))
            })
            .await;
    }
    let called = Instant::now();
    let mut c = api.control.lock().await;
    // Off the runtime's workers, as every change (see `Api::apply`).
    let (changed, applied) = tokio::task::block_in_place(|| {
        let new = document_model(&doc)?;
        let changed = Summary::diff(&c.config.model, &new);
        let applied = c.publish(new, false)?;
        Ok::<_, ApiError>((changed, applied))
    })?;
    c.wait_enforced(applied).await?;
    api.observe(applied, called);
    Ok(Reply(Enforced {
        generation: applied.generation,
        enforced: true,
        revision: None,
        answer: Replaced { changed },
    }))
}

/// `POST /v1/reload`, with an empty body or a [`ReloadRequest`].
pub async fn reload(State(api): State<Arc<Api>>, body: Bytes) -> Answer<Enforced<Reloaded>> {
    let req: ReloadRequest = if body.is_empty() {
        ReloadRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?
    };
    let called = Instant::now();
    let mut c = api.control.lock().await;
    let result = tokio::task::block_in_place(|| c.reload(req.force)).map_err(ApiError::from);
    let outcome = match &result {
        Ok(_) => "applied",
        Err(e) if e.status.is_server_error() => "failed",
        Err(_) => "refused",
    };
    api.metrics.changes.with_label_values(&[outcome]).inc();
    let (applied, note) = result?;
    c.wait_enforced(applied).await?;
    api.observe(applied, called);
    Ok(Reply(Enforced {
        generation: applied.generation,
        enforced: true,
        revision: None,
        answer: Reloaded { note },
    }))
}

/// Re-reads the config file each time `hup` is set (SIGHUP), until `stop`;
/// says on stderr what happened.
pub async fn reload_on_hangup(api: Arc<Api>, hup: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if hup.swap(false, Ordering::Relaxed) {
            let mut c = api.control.lock().await;
            let result = tokio::task::block_in_place(|| c.reload(false));
            let outcome = if result.is_ok() { "applied" } else { "refused" };
            api.metrics.changes.with_label_values(&[outcome]).inc();
            match result {
                Ok((applied, note)) => {
                    api.metrics.compile_seconds.observe(applied.compile_ms / 1e3);
                    log(format!(
                        "reloaded {}: {}; snapshot generation {} ({} groups rebuilt) in {:.1} ms{}",
                        c.config_path.display(),
                        Summary::of(&c.config.model),
                        applied.generation,
                        applied.rebuilt,
                        applied.compile_ms,
                        if note.is_empty() {
                            String::new()
                        } else {
                            format!("; {note}")
                        }
                    ));
                }
                Err(e) => log(e),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /v1/explain`: would the packet pass the live model, and why.
pub async fn explain(State(api): State<Arc<Api>>, Body(req): Body<ExplainRequest>) -> Answer<Explained> {
    api.read(|p| {
        let m = &p.model;
        let vlan = match &req.vpc {
            None => req.vlan,
            Some(name) => m.vpc(vpc_id(m, name)?).and_then(|v| v.vlan),
        };
        let words: Vec<String> = req.packet.split_whitespace().map(str::to_owned).collect();
        let pkt = explain::parse_packet(&words, vlan).map_err(|e| ApiError::field("invalid", "packet", e))?;
        let e = explain::explain(m, &p.settings, &pkt);
        Ok(Explained {
            allowed: e.allowed,
            stateful: e.tracked,
            text: e.text,
        })
    })
    .await
}
