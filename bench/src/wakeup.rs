//! Wake-up latency of the adaptive idle policy: how much later a frame that
//! arrives at an idle appliance comes out when the worker was asleep in
//! `poll(2)` (`idle = adaptive`) than when it was polling (`idle = busy`).
//!
//! Same topology as [`crate::forward`] (generator `g0`/`g1`, the rampart worker
//! between `a0` and `b0`, AF_XDP on veth, one core each). The generator sends
//! one 64-byte UDP probe at a time carrying its sequence number, busy-polls
//! `g1` for it, and records the time from send to arrival; between probes it
//! pauses `gap` (longer than the adaptive spin, so the adaptive worker is
//! asleep when the next probe comes). Three runs alternate: busy; adaptive
//! as `rampart run` has it by default, holding the default CPU wake-up
//! latency request ([`rampart_control::wake`]); and adaptive without the request
//! (`wake_latency_us = "kernel"`), where the sleeping worker's core may go
//! deep idle. The report gives each one's percentiles and the excess over
//! the busy run: the wake-up cost. Needs root.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rampart_control::appliance::{Appliance, WakeLatencySetting};
use rampart_control::config::Config;
use rampart_control::wake::WakeLatency;
use rampart_dataplane::engine::{poll_loop, Idle, Links, ADAPTIVE_SPIN};
use rampart_dataplane::worker::BATCH;
use rampart_dataplane::xdp::{FrameDesc, Io, PortOptions};
use rampart_testkit::frames::Spec;
use serde::Serialize;

use crate::classify::percentile;
use crate::forward::{stage_for, Topology, POLICY};
use crate::netns::spawn_in;

/// Where the probe's sequence number sits in the frame (UDP payload start).
const SEQ_AT: usize = 42;
/// Probes sent before measuring (the flow is opened, caches are warm).
const WARMUP: usize = 20;
/// How long a probe may take before it counts as lost.
const LOST_AFTER: Duration = Duration::from_millis(200);

/// How to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Rounds of (busy, adaptive).
    pub reps: usize,
    /// Probes per run.
    pub probes: usize,
    /// Pause between probes.
    pub gap: Duration,
}

/// One result; the JSON line has exactly these fields.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `busy`, `adaptive` (with the default wake-up latency request) or
    /// `adaptive-kernel-idle` (without).
    pub test: String,
    pub probes: usize,
    pub gap_us: f64,
    /// Send-to-arrival latency through the appliance, microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub lost: usize,
    /// This run's percentile minus the busy run's (0 for busy): the cost of
    /// waking the worker.
    pub wake_p50_us: f64,
    pub wake_p99_us: f64,
}

fn probe(seq: u64) -> Vec<u8> {
    let src = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    let dst = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    let mut f = Spec::udp(src, 7000, dst, 9).payload(16).build();
    f[SEQ_AT..SEQ_AT + 8].copy_from_slice(&seq.to_be_bytes());
    f
}

/// Sends `count` probes one at a time; the latency of each (None if lost).
fn send_probes(io: &mut Io, first: u64, count: usize, gap: Duration) -> Result<Vec<Option<Duration>>> {
    let mut rx = [FrameDesc::default(); BATCH];
    let mut out = Vec::with_capacity(count);
    for seq in first..first + count as u64 {
        io.reap();
        let Some(desc) = io.alloc(&probe(seq)) else {
            bail!("the generator ran out of free frames");
        };
        io.refill(1, BATCH);
        let sent = Instant::now();
        io.transmit(0, &[desc]);
        let mut latency = None;
        while latency.is_none() && sent.elapsed() < LOST_AFTER {
            let n = io.receive(1, &mut rx);
            if n == 0 {
                io.poke_rx(1);
                continue;
            }
            let at = sent.elapsed();
            for d in &rx[..n] {
                let f = io.data(d);
                if f.len() >= SEQ_AT + 8 && f[SEQ_AT..SEQ_AT + 8] == seq.to_be_bytes() {
                    latency = Some(at);
                }
            }
            io.release(&rx[..n]);
            io.refill(1, BATCH);
        }
        out.push(latency);
        thread::sleep(gap);
    }
    Ok(out)
}

/// Runs the measurement.
pub fn run(plan: Plan) -> Result<Vec<Report>> {
    if plan.probes < 10 || plan.reps == 0 {
        bail!("--probes must be at least 10 and --reps at least 1");
    }
    if plan.gap <= ADAPTIVE_SPIN {
        bail!(
            "--gap-us must exceed the adaptive spin ({} µs), or the worker never sleeps",
            ADAPTIVE_SPIN.as_micros()
        );
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
    let default_request = match Appliance::default().wake_latency_us {
        WakeLatencySetting::Micros(us) => Some(us),
        WakeLatencySetting::Kernel => None,
    };
    // (name, idle policy, wake-up latency request held during the run)
    let tests = [
        ("busy", Idle::Busy, None),
        ("adaptive", Idle::Adaptive, default_request),
        ("adaptive-kernel-idle", Idle::Adaptive, None),
    ];
    let mut samples: [Vec<f64>; 3] = Default::default();
    let mut lost = [0usize; 3];
    let mut next_seq = 0u64;
    for _ in 0..plan.reps {
        for (t, (_, idle, request)) in tests.iter().enumerate() {
            let held = request
                .map(WakeLatency::hold)
                .transpose()
                .context("holding the CPU wake-up latency request the daemon holds")?;
            let stop = Arc::new(AtomicBool::new(false));
            let stage = stage_for("rampart", &policy);
            let idle = *idle;
            let forwarder = {
                let stop = Arc::clone(&stop);
                spawn_in(topo.fw(), fw_core, move || {
                    let mut io = Io::open(&["a0", "b0"], 0, 8192, &opts)?;
                    let mut stage = stage;
                    Ok(poll_loop(&mut io, &mut stage, idle, &stop, Links::default()))
                })
            };
            thread::sleep(Duration::from_millis(300));
            let (first, probes, gap) = (next_seq, plan.probes, plan.gap);
            next_seq += (WARMUP + probes) as u64;
            let generator = spawn_in(topo.gen(), gen_core, move || {
                // Twice the frames the fill rings take, so some stay free to send.
                let mut io = Io::open(&["g0", "g1"], 0, 8192, &opts)?;
                send_probes(&mut io, first, WARMUP, gap)?;
                send_probes(&mut io, first + WARMUP as u64, probes, gap)
            });
            let got = generator
                .join()
                .map_err(|_| anyhow::anyhow!("generator panicked"))??;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let report = forwarder
                .join()
                .map_err(|_| anyhow::anyhow!("forwarder panicked"))??;
            drop(held);
            if !report.whole() {
                bail!("frame pool not whole: {report:?}");
            }
            for l in got {
                match l {
                    Some(d) => samples[t].push(d.as_secs_f64() * 1e6),
                    None => lost[t] += 1,
                }
            }
        }
    }
    drop(topo);
    let mut sorted = samples;
    for s in &mut sorted {
        s.sort_by(f64::total_cmp);
    }
    let busy = (percentile(&sorted[0], 0.5), percentile(&sorted[0], 0.99));
    Ok(tests
        .iter()
        .enumerate()
        .map(|(t, (name, _, _))| {
            let s = &sorted[t];
            let (p50, p99) = (percentile(s, 0.5), percentile(s, 0.99));
            Report {
                test: (*name).to_owned(),
                probes: s.len() + lost[t],
                gap_us: plan.gap.as_secs_f64() * 1e6,
                p50_us: p50,
                p99_us: p99,
                max_us: s.last().copied().unwrap_or(f64::NAN),
                lost: lost[t],
                wake_p50_us: p50 - busy.0,
                wake_p99_us: p99 - busy.1,
            }
        })
        .collect())
}

/// The table.
pub fn render(reports: &[Report]) -> String {
    let mut s = format!(
        "one 64-byte UDP probe at a time through the rampart worker on veth (AF_XDP), {:.0} µs apart;\n\
         latency from send to arrival, µs; wake = this run minus the busy run;\n\
         adaptive holds rampart run's default CPU wake-up latency request, adaptive-kernel-idle none\n",
        reports.first().map_or(0.0, |r| r.gap_us)
    );
    s.push_str(&format!(
        "{:<20} {:>7} {:>8} {:>8} {:>9} {:>6} {:>9} {:>9}\n",
        "idle", "probes", "p50", "p99", "max", "lost", "wake p50", "wake p99"
    ));
    for r in reports {
        s.push_str(&format!(
            "{:<20} {:>7} {:>8.1} {:>8.1} {:>9.1} {:>6} {:>9.1} {:>9.1}\n",
            r.test, r.probes, r.p50_us, r.p99_us, r.max_us, r.lost, r.wake_p50_us, r.wake_p99_us
        ));
    }
    s
}
