//! End-to-end forwarding through AF_XDP on veth, in namespaces: the delivered
//! rate of the full rampart worker (policy, connection tracking) next to a
//! minimal AF_XDP forwarder, measured alternately in the same run on the same
//! topology and the same traffic. Three forwarders, the same poll loop with a
//! different stage:
//! - `blind`: sends every frame on without reading a byte of it
//!   ([`Blind`]);
//! - `ceiling`: reads each frame's Ethernet header, as any bridge does, and
//!   sends it on ([`ReadHeader`]); no parsing beyond, no state, no policy. The
//!   ratio is taken against this one;
//! - `rampart`: the full worker.
//!
//! In copy mode the kernel writes each frame into the UMEM on the core that
//! sent it (the generator's), so the forwarder's first read of a frame misses
//! its cache; `blind` never pays that, which is why it is shown but is not
//! the baseline.
//!
//! With `RAMPART_BENCH_ROUNDS` set in the environment, each round's rates and
//! ring losses (frames the kernel dropped before the forwarder saw them,
//! frames dropped on a full TX ring) go to standard error.
//!
//! ```text
//!   <p>-gen                <p>-fw                    <p>-gen
//!   g0 ==== a0  [forwarder under test]  b0 ==== g1
//! ```
//! One generator thread sends 64-byte UDP frames of `flows` flows on g0 as fast
//! as its TX ring takes them and counts what arrives on g1 (both AF_XDP); the
//! forwarder thread runs in the middle, pinned to the other core. Needs root.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use rampart_control::compile::Compiler;
use rampart_control::config::Config;
use rampart_dataplane::engine::{poll_loop, Idle, Links, Pipeline, Stage};
use rampart_dataplane::worker::{Config as WorkerConfig, Worker, BATCH};
use rampart_dataplane::xdp::{FrameDesc, Io, PortOptions};
use rampart_testkit::frames::Spec;
use rampart_testkit::stages::{Blind, ReadHeader};
use serde::Serialize;

use crate::classify::median;
use crate::netns::{spawn_in, veth, Namespaces};

/// The policy the rampart run enforces: the sink is a protected interface
/// whose group admits the benchmark's UDP port from the generator's network,
/// among rules for other ports.
pub(crate) const POLICY: &str = r#"
[[vpc]]
name = "bench"

[[security_group]]
vpc = "bench"
name = "sink"
kind = "advanced"
rules = [
  { direction = "ingress", protocol = "tcp", ports = "22", remote = "198.19.0.0/16" },
  { direction = "ingress", protocol = "tcp", ports = "80" },
  { direction = "ingress", protocol = "tcp", ports = "443" },
  { direction = "ingress", protocol = "udp", ports = "9", remote = "198.18.0.0/24" },
  { direction = "ingress", protocol = "icmp", icmp_type = 8 },
]

[[interface]]
vpc = "bench"
name = "sink"
addresses = ["198.18.0.2"]
groups = ["sink"]
"#;

/// One result; the JSON line has exactly these fields.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `blind`, `ceiling` or `rampart` (see the module docs).
    pub test: String,
    pub flows: usize,
    pub frame_bytes: usize,
    /// Frames per second delivered at the sink, in millions (median).
    pub delivered_mpps: f64,
    /// Frames per second the generator offered, in millions (median).
    pub offered_mpps: f64,
    /// Delivered / offered.
    pub delivery: f64,
    /// This result's delivered rate over the ceiling's in the same round, the
    /// median over the rounds.
    pub of_ceiling: f64,
    pub xdp_mode: String,
    pub bind_mode: String,
}

/// How to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub reps: usize,
    pub seconds: f64,
    pub flows: usize,
}

/// The two namespaces and links.
pub(crate) struct Topology {
    ns: Namespaces,
}

impl Topology {
    pub(crate) fn new() -> Result<Topology> {
        let ns = Namespaces::create(&format!("rbench{}", std::process::id() % 100_000), &["gen", "fw"])?;
        veth(ns.get("gen"), "g0", None, ns.get("fw"), "a0")?;
        veth(ns.get("gen"), "g1", None, ns.get("fw"), "b0")?;
        Ok(Topology { ns })
    }
    pub(crate) fn gen(&self) -> &str {
        self.ns.get("gen")
    }
    pub(crate) fn fw(&self) -> &str {
        self.ns.get("fw")
    }
}

/// The generator's counters.
#[derive(Default)]
struct Traffic {
    sent: AtomicU64,
    received: AtomicU64,
}

/// Sends `frames` round-robin on port 0 (g0), counts frames back on port 1 (g1).
fn generate(io: &mut Io, frames: &[Vec<u8>], traffic: &Traffic, stop: &AtomicBool) {
    let mut batch = [FrameDesc::default(); BATCH];
    let mut rx = [FrameDesc::default(); BATCH];
    let mut next = 0;
    let mut sent = 0u64;
    let mut received = 0u64;
    let mut round = 0u32;
    while !stop.load(Ordering::Relaxed) {
        io.reap();
        let mut n = 0;
        while n < BATCH {
            let Some(desc) = io.alloc(&frames[next]) else {
                break;
            };
            batch[n] = desc;
            n += 1;
            next = (next + 1) % frames.len();
        }
        sent += io.transmit(0, &batch[..n]) as u64;
        io.refill(1, BATCH);
        let got = io.receive(1, &mut rx);
        received += got as u64;
        io.release(&rx[..got]);
        if got == 0 {
            io.poke_rx(1);
        }
        round = round.wrapping_add(1);
        if round.is_multiple_of(64) {
            traffic.sent.store(sent, Ordering::Relaxed);
            traffic.received.store(received, Ordering::Relaxed);
        }
    }
}

/// The frames of `flows` UDP flows 198.18.0.1:port -> 198.18.0.2:9, 60 bytes
/// on the wire before the FCS (64 with it).
fn frames(flows: usize) -> Vec<Vec<u8>> {
    let src = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    let dst = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    (0..flows)
        .map(|i| {
            let mut f = Spec::udp(src, 1024 + (i % 60_000) as u16, dst, 9).build();
            f.resize(60, 0);
            f
        })
        .collect()
}

pub(crate) fn stage_for(test: &str, policy: &Config) -> Box<dyn Stage + Send> {
    match test {
        "blind" => return Box::new(Blind::default()),
        "ceiling" => return Box::new(ReadHeader::default()),
        _ => {}
    }
    let (snap, _) = Compiler::new().compile(&policy.model, &policy.settings);
    Box::new(Pipeline {
        worker: Worker::new(WorkerConfig {
            max_frame: 1522,
            ..WorkerConfig::for_capacity(262_144)
        }),
        snapshots: Arc::new(ArcSwap::from_pointee(snap)),
    })
}

/// Runs the measurement: `plan.reps` rounds of (blind, ceiling, rampart).
pub fn run(plan: Plan) -> Result<Vec<Report>> {
    if plan.flows == 0 || plan.flows > 60_000 {
        bail!("--flows must be 1-60000, not {}", plan.flows);
    }
    let policy = Config::parse(POLICY, "the benchmark policy").context("benchmark policy")?;
    let topo = Topology::new()?;
    let cores = core_affinity::get_core_ids().map_or(1, |c| c.len());
    let (gen_core, fw_core) = if cores > 1 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let opts = PortOptions::default();

    let traffic = Arc::new(Traffic::default());
    let gen_stop = Arc::new(AtomicBool::new(false));
    let generator = {
        let (traffic, stop, frames) = (Arc::clone(&traffic), Arc::clone(&gen_stop), frames(plan.flows));
        spawn_in(topo.gen(), gen_core, move || {
            let mut io = Io::open(&["g0", "g1"], 0, 8192, &opts)?;
            generate(&mut io, &frames, &traffic, &stop);
            Ok(())
        })
    };

    let mut rates: [(Vec<f64>, Vec<f64>); 3] = Default::default();
    let mut modes = (String::new(), String::new());
    let tests = ["blind", "ceiling", "rampart"];
    for _ in 0..plan.reps {
        for (t, test) in tests.iter().enumerate() {
            let stop = Arc::new(AtomicBool::new(false));
            let stage = stage_for(test, &policy);
            let forwarder = {
                let stop = Arc::clone(&stop);
                spawn_in(topo.fw(), fw_core, move || {
                    let mut io = Io::open(&["a0", "b0"], 0, 8192, &opts)?;
                    let info = io.ports()[0].info().clone();
                    let mut stage = stage;
                    let report = poll_loop(&mut io, &mut stage, Idle::Busy, &stop, Links::default());
                    Ok((info, report))
                })
            };
            thread::sleep(Duration::from_millis(500));
            let (s0, r0, t0) = (
                traffic.sent.load(Ordering::Relaxed),
                traffic.received.load(Ordering::Relaxed),
                Instant::now(),
            );
            thread::sleep(Duration::from_secs_f64(plan.seconds));
            let (s1, r1, dt) = (
                traffic.sent.load(Ordering::Relaxed),
                traffic.received.load(Ordering::Relaxed),
                t0.elapsed().as_secs_f64(),
            );
            stop.store(true, Ordering::Relaxed);
            let (info, report) = forwarder
                .join()
                .map_err(|_| anyhow::anyhow!("forwarder panicked"))??;
            if !report.whole() {
                bail!("{test}: frame pool not whole: {report:?}");
            }
            modes = (info.xdp.to_owned(), info.bind.to_owned());
            rates[t].0.push((r1 - r0) as f64 / dt / 1e6);
            if std::env::var_os("RAMPART_BENCH_ROUNDS").is_some() {
                eprintln!(
                    "{test}: {:.3} Mpps delivered, {:.3} offered; kernel dropped {}, tx ring full {}",
                    (r1 - r0) as f64 / dt / 1e6,
                    (s1 - s0) as f64 / dt / 1e6,
                    report.kernel_dropped,
                    report.tx_ring_full
                );
            }
            rates[t].1.push((s1 - s0) as f64 / dt / 1e6);
        }
    }
    gen_stop.store(true, Ordering::Relaxed);
    generator
        .join()
        .map_err(|_| anyhow::anyhow!("generator panicked"))??;
    drop(topo);

    // Each round's rate over the same round's ceiling, then the median: the
    // machine's drift between rounds cancels out.
    let ceilings = rates[1].0.clone();
    Ok(tests
        .iter()
        .zip(rates)
        .map(|(test, (delivered, offered))| {
            let ratios: Vec<f64> = delivered
                .iter()
                .zip(&ceilings)
                .map(|(d, c)| if *c > 0.0 { d / c } else { 0.0 })
                .collect();
            let delivered = median(delivered);
            let offered = median(offered);
            Report {
                test: (*test).to_owned(),
                flows: plan.flows,
                frame_bytes: 64,
                delivered_mpps: delivered,
                offered_mpps: offered,
                delivery: if offered > 0.0 { delivered / offered } else { 0.0 },
                of_ceiling: median(ratios),
                xdp_mode: modes.0.clone(),
                bind_mode: modes.1.clone(),
            }
        })
        .collect())
}

/// The table.
pub fn render(reports: &[Report]) -> String {
    let mut s =
        String::from("AF_XDP on veth, 64-byte UDP frames, one forwarder core; delivered at the sink\n");
    s.push_str(&format!(
        "{:<10} {:>7} {:>14} {:>12} {:>9} {:>11}  {}\n",
        "test", "flows", "delivered Mpps", "offered Mpps", "delivery", "of ceiling", "mode"
    ));
    for r in reports {
        s.push_str(&format!(
            "{:<10} {:>7} {:>14.3} {:>12.3} {:>8.1}% {:>10.1}%  xdp {}, {}\n",
            r.test,
            r.flows,
            r.delivered_mpps,
            r.offered_mpps,
            r.delivery * 100.0,
            r.of_ceiling * 100.0,
            r.xdp_mode,
            r.bind_mode
        ));
    }
    s
}
