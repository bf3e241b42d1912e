//! What the appliance is doing: health, version, counters, Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rampart_dataplane::reason::DropReason;
use rampart_dataplane::stats::Totals;

use axum::http::StatusCode;

use super::types::{FleetNode, FleetView, FlowStats, Health, PortStats, RuleHits, Stats, Version};
use super::{Answer, Api, ApiError, Reply};

/// `GET /health` (open).
///
/// Takes no lock: it answers while a change is in flight.
pub async fn health(State(api): State<Arc<Api>>) -> Reply<Health> {
    let counters = &api.metrics.counters;
    Reply(Health {
        status: "ok".to_owned(),
        generation: api.published.load().generation,
        enforced_generation: counters
            .iter()
            .map(|c| c.generation.get())
            .min()
            .unwrap_or(u64::MAX),
        workers: counters.len(),
    })
}

/// `GET /v1/fleet`: the fleet store as this node sees it, and every live
/// node (404 when this node is not one of a fleet).
pub async fn fleet(State(api): State<Arc<Api>>) -> Answer<FleetView> {
    let Some(store) = &api.store else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_in_fleet",
            "this appliance is not one of a fleet (no [cluster] table in its config file)",
        ));
    };
    let h = &store.health;
    let latest = h.latest();
    let nodes = store
        .fleet
        .lock()
        .map(|f| {
            f.iter()
                .map(|(name, r)| FleetNode {
                    name: name.clone(),
                    revision: r.revision,
                    generation: r.generation,
                    api: r.api.clone(),
                    version: r.version.clone(),
                    behind: r.revision < latest,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Reply(FleetView {
        node: store.node.clone(),
        endpoints: store.cluster.endpoints.clone(),
        prefix: store.keys.prefix().to_owned(),
        store_up: h.is_up(),
        store_error: if h.is_up() { String::new() } else { h.error() },
        latest_revision: latest,
        revision: h.applied(),
        lag_seconds: h.lag_seconds(),
        nodes,
    }))
}

/// `GET /metrics` (open): Prometheus text, interfaces named `vpc/name`.
pub async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let names = {
        let p = api.published.load();
        let m = &p.model;
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

/// `GET /v1/stats`.
pub async fn stats(State(api): State<Arc<Api>>) -> Reply<Stats> {
    let c = api.control.lock().await;
    let t = Totals::sum(c.counters.iter().map(|w| &**w));
    let m = &c.config.model;
    let ports = ["a", "b"]
        .iter()
        .zip(&t.ports)
        .map(|(name, p)| PortStats {
            port: (*name).to_owned(),
            received: p.rx_packets,
            received_bytes: p.rx_bytes,
            forwarded: p.forwarded_packets,
            forwarded_bytes: p.forwarded_bytes,
            dropped: p.dropped_packets,
            dropped_bytes: p.dropped_bytes,
        })
        .collect();
    let drops = DropReason::ALL
        .iter()
        .filter(|r| t.drop_count(**r) > 0)
        .map(|r| (r.name().to_owned(), t.drop_count(*r)))
        .collect();
    let mut rules: Vec<RuleHits> = t
        .rules
        .iter()
        .map(|(id, hits)| {
            let found = m
                .groups()
                .flat_map(|g| g.rules.iter().map(move |r| (g, r)))
                .find(|(_, r)| r.id.0 == *id);
            RuleHits {
                id: format!("sgr-{id}"),
                group: found.map(|(g, _)| g.name.clone()),
                text: found.map(|(_, r)| m.rule_text(r)),
                flows: *hits,
            }
        })
        .collect();
    rules.sort_by_key(|r| std::cmp::Reverse(r.flows));
    Reply(Stats {
        ports,
        drops,
        flows: FlowStats {
            active: t.flows_active,
            capacity: t.flows_capacity,
            created: t.flows_created,
            expired: t.flows_expired,
            evicted: t.flows_evicted,
            revoked: t.flows_revoked,
        },
        related_icmp: t.related,
        arp_nd: t.unevaluated,
        generation: c.published_generation(),
        enforced_generation: c.enforced_generation(),
        workers: c.counters.len(),
        rules,
        rules_other: t.rules_other,
    })
}

/// `GET /v1/version`.
pub async fn version() -> Reply<Version> {
    Reply(Version {
        name: "rampart".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}
