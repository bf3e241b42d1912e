//! `/metrics` in the Prometheus text format (the `prometheus` crate).
//!
//! The workers' counters are single-writer atomics; a scrape reads and sums
//! them ([`Live`], a collector run at scrape time), so the hot path never
//! takes a lock or does anything for metrics. Histograms of snapshot compile
//! time and of rule-update latency (call to enforced) are observed by the
//! control thread itself.
//!
//! Cardinality is bounded: per worker and per port/queue series grow with the
//! configured workers; `rampart_rule_flows_created_total` has one series per
//! rule that decided a first packet, at most each worker's rule-hit table
//! (16 384 slots), the rest summed under `rule="other"`; likewise
//! `rampart_interface_decisions_total` has at most 16 384 (interface,
//! direction, verdict) series per worker table, the rest under
//! `interface="other"`.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use rampart_dataplane::engine::LoopStats;
use rampart_dataplane::handoff::HandoffView;
use rampart_dataplane::reason::DropReason;
use rampart_dataplane::snapshot::Snapshot;
use rampart_dataplane::stats::{interface_of_key, Counters, Totals};
use rampart_dataplane::xdp;

/// Where the numbers come from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub counters: Vec<Arc<Counters>>,
    pub loops: Vec<Arc<LoopStats>>,
    pub handoff: Option<HandoffView>,
    /// (port name, queue, socket descriptor) of every AF_XDP socket.
    pub sockets: Vec<(String, u32, i32)>,
    pub snapshots: Arc<ArcSwap<Snapshot>>,
}

/// The collector summing the workers' counters at scrape time.
struct Live {
    sources: Sources,
    frames: IntCounterVec,
    bytes: IntCounterVec,
    drops: IntCounterVec,
    flows_active: IntGaugeVec,
    flow_capacity: IntGaugeVec,
    flows_created: IntCounterVec,
    flows_ended: IntCounterVec,
    rule_flows: IntCounterVec,
    interfaces: IntCounterVec,
    related: IntCounterVec,
    unevaluated: IntCounterVec,
    worker_generation: IntGaugeVec,
    generation: IntGauge,
    busy: CounterVec,
    sleeps: IntCounterVec,
    tx_ring_full: IntCounterVec,
    xsk: IntCounterVec,
    handoff: IntCounterVec,
    descs: Vec<Desc>,
    /// Interface names by model id (`vpc/name`), set before each scrape.
    names: Arc<std::sync::Mutex<HashMap<u32, String>>>,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric")
}

impl Live {
    fn new(sources: Sources) -> Live {
        let mut live = Live {
            sources,
            frames: counter("rampart_frames_total", "Frames received per port, and what became of them.", &["port", "verdict"]),
            bytes: counter("rampart_bytes_total", "Bytes received per port, and what became of them.", &["port", "verdict"]),
            drops: counter("rampart_drops_total", "Frames dropped, by reason.", &["reason"]),
            flows_active: gauge("rampart_flows_active", "Connections in the worker's table.", &["worker"]),
            flow_capacity: gauge("rampart_flow_table_capacity", "Connections the worker's table holds.", &["worker"]),
            flows_created: counter("rampart_flows_created_total", "Connections opened.", &["worker"]),
            flows_ended: counter("rampart_flows_ended_total", "Connections removed, by reason (expired, evicted, revoked).", &["worker", "reason"]),
            rule_flows: counter(
                "rampart_rule_flows_created_total",
                "First packets (and stateless packets) decided, by deciding rule; rule=\"other\" beyond the bounded table.",
                &["rule"],
            ),
            interfaces: counter(
                "rampart_interface_decisions_total",
                "First packets decided per protected interface and direction (its own ingress or egress policy), allowed or dropped; interface=\"other\" beyond the bounded table.",
                &["interface", "direction", "verdict"],
            ),
            related: counter("rampart_related_icmp_total", "ICMP errors passed as related to a connection.", &["worker"]),
            unevaluated: counter("rampart_arp_nd_total", "ARP and neighbour discovery frames passed unevaluated.", &["worker"]),
            worker_generation: gauge("rampart_worker_snapshot_generation", "The snapshot generation the worker runs.", &["worker"]),
            generation: IntGauge::new("rampart_snapshot_generation", "The snapshot generation published.").expect("a valid metric"),
            busy: CounterVec::new(
                Opts::new(
                    "rampart_worker_busy_seconds_total",
                    "Time the worker spent on rounds with frames (rate() gives the busy ratio).",
                ),
                &["worker"],
            )
            .expect("a valid metric"),
            sleeps: counter("rampart_worker_sleeps_total", "Times the worker slept in poll(2) (adaptive idle).", &["worker"]),
            tx_ring_full: counter("rampart_tx_ring_full_total", "Forwarded frames dropped on a full AF_XDP TX ring.", &["worker"]),
            xsk: counter(
                "rampart_xsk_events_total",
                "AF_XDP socket statistics (XDP_STATISTICS): rx_dropped, rx_ring_full, fill_ring_empty, tx_ring_empty, rx_invalid, tx_invalid.",
                &["port", "queue", "event"],
            ),
            handoff: counter(
                "rampart_handoff_frames_total",
                "Frames passed between workers (sent, received) and lost on the way (mailbox_full, no_frame).",
                &["worker", "event"],
            ),
            descs: Vec::new(),
            names: Arc::default(),
        };
        let descs: Vec<Desc> = live
            .families()
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        live.descs = descs;
        live
    }

    fn families(&self) -> Vec<&dyn Collector> {
        vec![
            &self.frames,
            &self.bytes,
            &self.drops,
            &self.flows_active,
            &self.flow_capacity,
            &self.flows_created,
            &self.flows_ended,
            &self.rule_flows,
            &self.interfaces,
            &self.related,
            &self.unevaluated,
            &self.worker_generation,
            &self.generation,
            &self.busy,
            &self.sleeps,
            &self.tx_ring_full,
            &self.xsk,
            &self.handoff,
        ]
    }

    fn fill(&self) {
        for v in [
            &self.frames,
            &self.bytes,
            &self.drops,
            &self.flows_created,
            &self.flows_ended,
            &self.rule_flows,
            &self.interfaces,
            &self.related,
            &self.unevaluated,
            &self.sleeps,
            &self.tx_ring_full,
            &self.xsk,
            &self.handoff,
        ] {
            v.reset();
        }
        self.busy.reset();
        for v in [&self.flows_active, &self.flow_capacity, &self.worker_generation] {
            v.reset();
        }
        let s = &self.sources;
        let t = Totals::sum(s.counters.iter().map(|c| &**c));
        for (port, p) in ["a", "b"].iter().zip(&t.ports) {
            for (verdict, frames, bytes) in [
                ("received", p.rx_packets, p.rx_bytes),
                ("forwarded", p.forwarded_packets, p.forwarded_bytes),
                ("dropped", p.dropped_packets, p.dropped_bytes),
            ] {
                self.frames.with_label_values(&[port, verdict]).inc_by(frames);
                self.bytes.with_label_values(&[port, verdict]).inc_by(bytes);
            }
        }
        for reason in DropReason::ALL {
            self.drops
                .with_label_values(&[reason.name()])
                .inc_by(t.drop_count(*reason));
        }
        for (rule, hits) in &t.rules {
            self.rule_flows
                .with_label_values(&[&format!("sgr-{rule}")])
                .inc_by(*hits);
        }
        self.rule_flows
            .with_label_values(&["other"])
            .inc_by(t.rules_other);
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        for (key, n) in &t.interfaces {
            let (iface, egress, allowed) = interface_of_key(*key);
            let name = names
                .get(&iface)
                .cloned()
                .unwrap_or_else(|| format!("if-{iface}"));
            let direction = if egress { "egress" } else { "ingress" };
            let verdict = if allowed { "allowed" } else { "dropped" };
            self.interfaces
                .with_label_values(&[&name, direction, verdict])
                .inc_by(*n);
        }
        if t.interfaces_other > 0 {
            self.interfaces
                .with_label_values(&["other", "any", "any"])
                .inc_by(t.interfaces_other);
        }
        for (i, c) in s.counters.iter().enumerate() {
            let w = i.to_string();
            let w = [w.as_str()];
            self.flows_active
                .with_label_values(&w)
                .set(c.flows_active.get() as i64);
            self.flow_capacity
                .with_label_values(&w)
                .set(c.flows_capacity.get() as i64);
            self.flows_created
                .with_label_values(&w)
                .inc_by(c.flows_created.get());
            for (reason, n) in [
                ("expired", c.flows_expired.get()),
                ("evicted", c.flows_evicted.get()),
                ("revoked", c.flows_revoked.get()),
            ] {
                self.flows_ended.with_label_values(&[w[0], reason]).inc_by(n);
            }
            self.related.with_label_values(&w).inc_by(c.related.get());
            self.unevaluated.with_label_values(&w).inc_by(c.unevaluated.get());
            self.worker_generation
                .with_label_values(&w)
                .set(c.generation.get() as i64);
        }
        self.generation.set(s.snapshots.load().generation as i64);
        for (i, l) in s.loops.iter().enumerate() {
            let w = i.to_string();
            self.busy
                .with_label_values(&[&w])
                .inc_by(l.busy_ns.get() as f64 / 1e9);
            self.sleeps.with_label_values(&[&w]).inc_by(l.sleeps.get());
            self.tx_ring_full
                .with_label_values(&[&w])
                .inc_by(l.tx_ring_full.get());
        }
        for (port, queue, fd) in &s.sockets {
            let Some(x) = xdp::socket_stats(*fd) else { continue };
            let q = queue.to_string();
            for (event, n) in [
                ("rx_dropped", x.rx_dropped),
                ("rx_ring_full", x.rx_ring_full),
                ("fill_ring_empty", x.rx_fill_ring_empty_descs),
                ("tx_ring_empty", x.tx_ring_empty_descs),
                ("rx_invalid", x.rx_invalid_descs),
                ("tx_invalid", x.tx_invalid_descs),
            ] {
                self.xsk.with_label_values(&[port, &q, event]).inc_by(n);
            }
        }
        if let Some(h) = &s.handoff {
            for (i, st) in h.stats().iter().enumerate() {
                let w = i.to_string();
                for (event, n) in [
                    ("sent", st.sent),
                    ("received", st.received),
                    ("mailbox_full", st.mailbox_full),
                    ("no_frame", st.no_frame),
                ] {
                    self.handoff.with_label_values(&[&w, event]).inc_by(n);
                }
            }
        }
    }
}

impl Collector for Live {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.fill();
        self.families().iter().flat_map(|c| c.collect()).collect()
    }
}

/// The registry and the histograms the control thread observes.
pub struct Metrics {
    registry: Registry,
    names: Arc<std::sync::Mutex<HashMap<u32, String>>>,
    /// Snapshot compile time, seconds.
    pub compile_seconds: Histogram,
    /// A change through the API or a reload, from the call to every worker
    /// running it, seconds.
    pub update_seconds: Histogram,
    /// Changes by outcome: `applied`, `refused` (invalid input), `not_enforced`
    /// (a worker did not take it in time), `failed` (could not be saved).
    pub changes: IntCounterVec,
    /// The workers' counters (read without the control lock).
    pub counters: Vec<Arc<Counters>>,
}

/// The fleet store's gauges, read at scrape time.
struct StoreGauges {
    store: Arc<crate::store::Store>,
    up: IntGauge,
    revision: IntGauge,
    latest: IntGauge,
    lag: prometheus::Gauge,
    nodes: IntGauge,
    behind: IntGauge,
    descs: Vec<Desc>,
}

impl Collector for StoreGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let h = &self.store.health;
        self.up.set(i64::from(h.is_up()));
        self.revision.set(h.applied());
        self.latest.set(h.latest());
        self.lag.set(h.lag_seconds());
        let (nodes, behind) = self
            .store
            .fleet
            .lock()
            .map(|f| (f.len(), f.values().filter(|r| r.revision < h.latest()).count()))
            .unwrap_or_default();
        self.nodes.set(nodes as i64);
        self.behind.set(behind as i64);
        let mut out = Vec::new();
        for g in [&self.up, &self.revision, &self.latest, &self.nodes, &self.behind] {
            out.extend(g.collect());
        }
        out.extend(self.lag.collect());
        out
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(sources: Sources) -> Metrics {
        let registry = Registry::new();
        let buckets = vec![
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
        ];
        let compile_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "rampart_snapshot_compile_seconds",
                "Time to compile a model change into a snapshot.",
            )
            .buckets(buckets.clone()),
        )
        .expect("a valid metric");
        let update_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "rampart_rule_update_seconds",
                "A change through the API (or a reload), from the call until every worker runs it.",
            )
            .buckets(buckets),
        )
        .expect("a valid metric");
        let changes = counter(
            "rampart_changes_total",
            "Model changes (API and reloads) by outcome: applied, refused, not_enforced, failed.",
            &["result"],
        );
        for result in ["applied", "refused", "not_enforced", "failed"] {
            changes.with_label_values(&[result]);
        }
        let info = IntGaugeVec::new(
            Opts::new("rampart_build_info", "rampart's version."),
            &["version"],
        )
        .expect("a valid metric");
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let counters = sources.counters.clone();
        let live = Live::new(sources);
        let names = Arc::clone(&live.names);
        for c in [
            Box::new(live) as Box<dyn Collector>,
            Box::new(compile_seconds.clone()),
            Box::new(update_seconds.clone()),
            Box::new(changes.clone()),
            Box::new(info),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            names,
            compile_seconds,
            update_seconds,
            changes,
            counters,
        }
    }

    /// Adds the fleet store's gauges: `rampart_store_up`,
    /// `rampart_store_revision` (enforced here), `rampart_store_latest_revision`,
    /// `rampart_store_lag_seconds`, `rampart_fleet_nodes` and
    /// `rampart_fleet_nodes_behind`.
    pub fn add_store(&self, store: Arc<crate::store::Store>) {
        let int = |name: &str, help: &str| IntGauge::new(name, help).expect("a valid metric");
        let up = int(
            "rampart_store_up",
            "1 while this node reaches the fleet store (etcd), 0 while it does not.",
        );
        let revision = int(
            "rampart_store_revision",
            "The fleet store revision of the model change this node enforces.",
        );
        let latest = int(
            "rampart_store_latest_revision",
            "The newest revision of a model change this node has seen in the fleet store.",
        );
        let lag = prometheus::Gauge::new(
            "rampart_store_lag_seconds",
            "Seconds since this node last enforced the fleet store's newest model (0 while it does; growing while the store is unreachable).",
        )
        .expect("a valid metric");
        let nodes = int(
            "rampart_fleet_nodes",
            "Live nodes of the fleet (records under their leases).",
        );
        let behind = int(
            "rampart_fleet_nodes_behind",
            "Live nodes that do not enforce the newest model change this node has seen.",
        );
        let mut descs = Vec::new();
        for g in [&up, &revision, &latest, &nodes, &behind] {
            descs.extend(g.desc().into_iter().cloned());
        }
        descs.extend(lag.desc().into_iter().cloned());
        let gauges = StoreGauges {
            store,
            up,
            revision,
            latest,
            lag,
            nodes,
            behind,
            descs,
        };
        self.registry
            .register(Box::new(gauges))
            .expect("metric names are unique");
    }

    /// The text exposition; `names` labels interfaces by model id.
    pub fn render(&self, names: HashMap<u32, String>) -> String {
        if let Ok(mut n) = self.names.lock() {
            *n = names;
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
