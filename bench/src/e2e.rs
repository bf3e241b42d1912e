//! The end-to-end benchmark: one topology, the same traffic from
//! `rampart-gen`, three devices under test in turn:
//! 1. `ceiling`: a minimal AF_XDP forwarder that reads each frame's Ethernet
//!    header and sends it on (no policy), pinned like rampart's worker;
//! 2. `rampart`: `rampart run` (the binary beside this one, one busy worker)
//!    with a realistic model: `groups` groups of `rules` rules each bound in
//!    threes to `interfaces` interfaces, plus a group admitting the benchmark
//!    traffic bound to every interface;
//! 3. `kernel`: a Linux bridge with br_netfilter, conntrack and the ruleset
//!    `rampart export nftables` writes for the same model.
//!
//! ```text
//!   <p>-gen                     <p>-fw                       <p>-gen
//!   g0 (rampart-gen) ==== a0  [device under test]  b0 ==== g1 (rampart-gen)
//! ```
//! Per device: 64-byte UDP from 100 unprotected sources to the interfaces'
//! addresses over `flows` flows, flat out (delivered pps, loss); the same at a
//! fixed moderate rate (one-way latency percentiles); TCP SYNs to new ports
//! flat out (new connections per second: every SYN that crosses has opened a
//! connection in the device's table); and complete TCP sessions flat out
//! (handshake, FIN both ways, last ACK, with rampart-gen answering as the
//! servers: sessions per second). Needs root.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rampart_control::config::Config;
use rampart_dataplane::engine::{poll_loop, Idle, Links};
use rampart_dataplane::xdp::{Io, PortOptions};
use rampart_testkit::stages::ReadHeader;
use serde::Serialize;
use serde_json::Value;

use crate::gen::{self, Profile, RunSpec, StreamSpec};
use crate::netns::{ip, spawn_in, veth, Namespaces};
use crate::update;

/// How to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub groups: usize,
    pub rules_per_group: usize,
    pub interfaces: usize,
    pub flows: usize,
    pub seconds: f64,
    /// The rate of the latency run, frames per second.
    pub latency_pps: f64,
    /// Rounds of (ceiling, rampart, kernel); medians are reported.
    pub reps: usize,
}

/// One device's results; the JSON line has exactly these fields.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub dut: String,
    pub delivered_mpps: f64,
    pub offered_mpps: f64,
    pub loss: f64,
    pub latency_pps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// New TCP connections per second (SYNs delivered through the device).
    pub new_connections_per_s: f64,
    /// Complete TCP sessions per second (six frames each, all through the device).
    pub sessions_per_s: f64,
    /// Delivered Mpps over the ceiling's and the kernel's: the median of the
    /// rounds' ratios.
    pub of_ceiling: f64,
    pub of_kernel: f64,
    /// Sessions and SYNs per second over the kernel's (median of rounds).
    pub sessions_of_kernel: f64,
    pub conns_of_kernel: f64,
}

/// The benchmark's model as a configuration file (TOML), with an
/// `[appliance]` table for `rampart run`.
pub fn config(plan: Plan) -> Result<String> {
    let mut doc = update::document(update::Plan {
        groups: plan.groups,
        rules_per_group: plan.rules_per_group,
        interfaces: plan.interfaces,
        changes: 0,
        set_mix: update::SetMix::Random,
    });
    doc["quotas"]["groups_per_vpc"] = serde_json::json!(plan.groups + 2);
    let groups = doc["security_group"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("groups"))?;
    groups.push(serde_json::json!({
        "vpc": "prod", "name": "bench", "default_rules": false,
        "rules": [
            { "direction": "ingress", "protocol": "udp", "ports": 9, "remote": "198.19.0.0/16" },
            { "direction": "ingress", "protocol": "tcp", "ports": 80, "remote": "198.19.0.0/16" },
        ],
    }));
    for iface in doc["interface"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("interfaces"))?
    {
        if let Some(g) = iface["groups"].as_array_mut() {
            g.push(Value::String("bench".into()));
        }
    }
    let model = toml::to_string(&doc).context("the model as TOML")?;
    Ok(format!(
        "[appliance]\nport_a = \"a0\"\nport_b = \"b0\"\nidle = \"busy\"\ncores = [1]\n\n{model}"
    ))
}

/// The last interface address (`update`'s numbering: 198.18.x.y).
fn last_address(interfaces: usize) -> String {
    let i = interfaces - 1;
    format!("198.{}.{}.{}", 18 + i / 65536, (i / 256) % 256, i % 256)
}

fn stream(name: &str, protocol: &str, plan: Plan, dst_ports: &str, flows: usize) -> StreamSpec {
    StreamSpec {
        name: name.into(),
        protocol: protocol.into(),
        src: "198.19.0.1-198.19.0.100".into(),
        dst: format!("198.18.0.0-{}", last_address(plan.interfaces)),
        src_ports: "1024-65535".into(),
        dst_ports: dst_ports.into(),
        flows,
        size: "64".into(),
        from: "a".into(),
        weight: 1.0,
        expect: None,
        window: 256,
    }
}

/// Runs one generator profile in the generator namespace (pinned to core 0).
fn generate(ns: &str, profile: Profile) -> Result<gen::Report> {
    let core = (core_affinity::get_core_ids().map_or(1, |c| c.len()) > 1).then_some(0);
    spawn_in(ns, core, move || {
        gen::run(&profile, "g0", "g1", &mut |_, _, _| {})
    })
    .join()
    .map_err(|_| anyhow!("the generator panicked"))?
}

/// What the runs on one device measured.
#[derive(Clone, Copy, Debug, Default)]
struct Measured {
    delivered: f64,
    offered: f64,
    loss: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    conn: f64,
    sessions: f64,
}

fn measure(gen_ns: &str, plan: Plan) -> Result<Measured> {
    let run = |pps: f64| RunSpec {
        seconds: plan.seconds,
        pps,
        bps: 0.0,
        queues: 1,
        loss_tolerance: 1.0,
    };
    let flat = generate(
        gen_ns,
        Profile {
            run: run(0.0),
            streams: vec![stream("udp", "udp", plan, "9", plan.flows)],
        },
    )?;
    let slow = generate(
        gen_ns,
        Profile {
            run: run(plan.latency_pps),
            streams: vec![stream("udp", "udp", plan, "9", plan.flows)],
        },
    )?;
    // SYNs from 100 sources to every interface, the source port moving on
    // after each pass: each one a new connection.
    let syn = generate(
        gen_ns,
        Profile {
            run: run(0.0),
            streams: vec![stream("syn", "tcp-syn", plan, "80", plan.flows)],
        },
    )?;
    // Whole TCP sessions (handshake, FIN both ways, last ACK), rampart-gen
    // answering as the servers.
    let sessions = generate(
        gen_ns,
        Profile {
            run: run(0.0),
            streams: vec![stream("sessions", "tcp-session", plan, "80", plan.flows)],
        },
    )?;
    let (f, s, c) = (&flat.streams[0], &slow.streams[0], &syn.streams[0]);
    Ok(Measured {
        delivered: f.rx_pps / 1e6,
        offered: f.sent as f64 / flat.seconds / 1e6,
        loss: f.loss,
        p50: s.p50_us,
        p99: s.p99_us,
        p999: s.p999_us,
        conn: c.rx_pps,
        sessions: sessions.streams[0].sessions_per_s,
    })
}

/// Runs the benchmark.
pub fn run(plan: Plan) -> Result<Vec<Report>> {
    if plan.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if plan.interfaces == 0 || plan.interfaces > 60_000 || plan.groups < 2 || plan.flows == 0 {
        bail!("--interfaces must be 1-60000, --groups at least 2, --flows at least 1");
    }
    if plan.seconds.is_nan() || plan.seconds <= 0.0 || plan.latency_pps.is_nan() || plan.latency_pps <= 0.0 {
        bail!("--seconds and --latency-pps must be above 0");
    }
    let bin = crate::api::rampart_binary()?;
    let dir = std::env::temp_dir().join(format!("rampart-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let cfg_path = dir.join("model.toml");
    std::fs::write(&cfg_path, config(plan)?)?;
    let cfg = Config::load(&cfg_path).map_err(|e| anyhow!("the benchmark model: {e}"))?;
    let nft = rampart_control::export::nftables(&cfg.model, &cfg.settings, "the benchmark model")?;
    let nft_path = dir.join("model.nft");
    std::fs::write(&nft_path, nft)?;

    let ns = Namespaces::create(&format!("rbe2e{}", std::process::id() % 100_000), &["gen", "fw"])?;
    veth(ns.get("gen"), "g0", None, ns.get("fw"), "a0")?;
    veth(ns.get("gen"), "g1", None, ns.get("fw"), "b0")?;
    let (gen_ns, fw_ns) = (ns.get("gen").to_owned(), ns.get("fw").to_owned());
    let fw_core = (core_affinity::get_core_ids().map_or(1, |c| c.len()) > 1).then_some(1);

    let sh = |args: &[&str]| -> Result<()> {
        let out = Command::new("ip")
            .args(["netns", "exec", &fw_ns])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    sh(&[
        "sysctl",
        "-q",
        "-w",
        "net.bridge.bridge-nf-call-iptables=1",
        "net.bridge.bridge-nf-call-ip6tables=1",
    ])?;
    // Rounds of (ceiling, rampart, kernel), so that the machine's drift
    // between rounds cancels out in the medians.
    let mut rounds: [Vec<Measured>; 3] = Default::default();
    for _ in 0..plan.reps {
        // 1. The ceiling.
        let stop = Arc::new(AtomicBool::new(false));
        let forwarder = {
            let stop = Arc::clone(&stop);
            spawn_in(&fw_ns, fw_core, move || {
                let mut io = Io::open(&["a0", "b0"], 0, 8192, &PortOptions::default())?;
                let mut stage = ReadHeader::default();
                Ok(poll_loop(
                    &mut io,
                    &mut stage,
                    Idle::Busy,
                    &stop,
                    Links::default(),
                ))
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let ceiling = measure(&gen_ns, plan);
        stop.store(true, Ordering::Relaxed);
        forwarder
            .join()
            .map_err(|_| anyhow!("the forwarder panicked"))??;
        rounds[0].push(ceiling?);

        // 2. rampart.
        {
            let _d = crate::api::start_daemon(&bin, &fw_ns, &dir, &cfg_path, false)?;
            std::thread::sleep(Duration::from_millis(300));
            rounds[1].push(measure(&gen_ns, plan)?);
        }

        // 3. The kernel: a bridge, br_netfilter, conntrack, the exported ruleset.
        ip(&["-n", &fw_ns, "link", "add", "br0", "type", "bridge"])?;
        for port in ["a0", "b0"] {
            ip(&["-n", &fw_ns, "link", "set", port, "master", "br0"])?;
        }
        ip(&["-n", &fw_ns, "link", "set", "br0", "up"])?;
        sh(&["nft", "-f", nft_path.to_str().ok_or_else(|| anyhow!("path"))?])?;
        std::thread::sleep(Duration::from_millis(300));
        let kernel = measure(&gen_ns, plan);
        sh(&["nft", "flush", "ruleset"])?;
        ip(&["-n", &fw_ns, "link", "del", "br0"])?;
        rounds[2].push(kernel?);
    }
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);

    let med = |xs: Vec<f64>| crate::classify::median(xs);
    let per_round = |a: usize, b: usize, f: fn(&Measured) -> f64| -> f64 {
        med(rounds[a]
            .iter()
            .zip(&rounds[b])
            .map(|(x, y)| if f(y) > 0.0 { f(x) / f(y) } else { 0.0 })
            .collect())
    };
    let pick = |d: usize, f: fn(&Measured) -> f64| med(rounds[d].iter().map(f).collect());
    let names = ["ceiling", "rampart", "kernel"];
    Ok((0..3)
        .map(|d| Report {
            dut: names[d].into(),
            delivered_mpps: pick(d, |m| m.delivered),
            offered_mpps: pick(d, |m| m.offered),
            loss: pick(d, |m| m.loss),
            latency_pps: plan.latency_pps,
            p50_us: pick(d, |m| m.p50),
            p99_us: pick(d, |m| m.p99),
            p999_us: pick(d, |m| m.p999),
            new_connections_per_s: pick(d, |m| m.conn),
            sessions_per_s: pick(d, |m| m.sessions),
            of_ceiling: per_round(d, 0, |m| m.delivered),
            of_kernel: per_round(d, 2, |m| m.delivered),
            sessions_of_kernel: per_round(d, 2, |m| m.sessions),
            conns_of_kernel: per_round(d, 2, |m| m.conn),
        })
        .collect())
}

/// The table.
pub fn render(plan: Plan, reports: &[Report]) -> String {
    let mut s = format!(
        "same topology and traffic (rampart-gen, AF_XDP on veth): 64-byte UDP over {} flows to {} interfaces, \
         model of {} groups x {} rules\n",
        plan.flows,
        plan.interfaces,
        plan.groups + 1,
        plan.rules_per_group
    );
    s.push_str(&format!(
        "{:<8} {:>14} {:>12} {:>7} {:>16} {:>8} {:>8} {:>8} {:>12} {:>11} {:>10} {:>9}\n",
        "device",
        "delivered Mpps",
        "offered Mpps",
        "loss",
        "latency at pps",
        "p50 us",
        "p99 us",
        "p999 us",
        "SYNs/s",
        "sessions/s",
        "of ceiling",
        "of kernel"
    ));
    for r in reports {
        s.push_str(&format!(
            "{:<8} {:>14.3} {:>12.3} {:>6.1}% {:>16.0} {:>8.1} {:>8.1} {:>8.1} {:>12.0} {:>11.0} {:>9.1}% {:>8.1}%\n",
            r.dut,
            r.delivered_mpps,
            r.offered_mpps,
            r.loss * 100.0,
            r.latency_pps,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.new_connections_per_s,
            r.sessions_per_s,
            r.of_ceiling * 100.0,
            r.of_kernel * 100.0
        ));
    }
    if let (Some(r), Some(k)) = (
        reports.iter().find(|r| r.dut == "rampart"),
        reports.iter().find(|r| r.dut == "kernel"),
    ) {
        let _ = k;
        s.push_str(&format!(
            "rampart / ceiling {:.1} %; rampart / kernel: {:.2}x packets, {:.2}x new connections (SYNs), {:.2}x sessions \
             (medians of the rounds' ratios)\n",
            r.of_ceiling * 100.0,
            r.of_kernel,
            r.conns_of_kernel,
            r.sessions_of_kernel
        ));
    }
    s
}
