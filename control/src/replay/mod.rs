//! `rampart replay`: a capture through the full pipeline, offline.
//!
//! The configuration is compiled into a snapshot exactly as the daemon does it,
//! and the capture's frames go through one worker's `process_batch` in batches,
//! with the capture's timestamps as the clock (so timeouts behave as they did
//! on the wire), and the `[appliance]` table's `mtu` (its default without the
//! table) as the longest frame. A bridge has two ports: a frame is from side A
//! when its source MAC or source IP matches one of the `--side-a` items, else
//! from side B; with no items every frame is from A. A batch is a run of
//! frames of one side, as the daemon's bursts are per port; since the worker
//! decides a batch as it would the same frames one by one, how the frames are
//! cut into batches changes no verdict. Allowed and dropped frames can be
//! written to captures of their own.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

use self::pcap::{PcapPort, Reader, Writer};
use self::port::{forward, Batch, Port};
use ipnet::IpNet;
use rampart_dataplane::conntrack::Seed;
use rampart_dataplane::reason::DropReason;
use rampart_dataplane::stats::{Counters, PortTotals, Totals};
use rampart_dataplane::wire::{self, Network};
use rampart_dataplane::worker::{Config as WorkerConfig, Side, Worker, BATCH};

pub mod pcap;
pub mod port;

use crate::compile::Compiler;
use crate::config::Config;

/// Which frames come from side A.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SideRule {
    macs: Vec<[u8; 6]>,
    nets: Vec<IpNet>,
}

impl SideRule {
    /// Parses `--side-a` items: MAC addresses (`02:00:00:00:00:0a`) and CIDRs or
    /// addresses (`198.18.0.0/24`, `2001:db8::1`).
    pub fn parse(items: &[String]) -> Result<SideRule, String> {
        let mut rule = SideRule::default();
        for item in items {
            if let Some(mac) = parse_mac(item) {
                rule.macs.push(mac);
            } else if let Ok(net) = item.parse::<IpNet>() {
                rule.nets.push(net);
            } else if let Ok(addr) = item.parse::<std::net::IpAddr>() {
                rule.nets.push(IpNet::from(addr));
            } else {
                return Err(format!(
                    "--side-a {item:?}: not a MAC address (02:00:00:00:00:0a), a CIDR (198.18.0.0/24) or an address"
                ));
            }
        }
        Ok(rule)
    }

    /// The side a frame came from.
    pub fn side(&self, frame: &[u8]) -> Side {
        if self.macs.is_empty() && self.nets.is_empty() {
            return Side::A;
        }
        if frame.len() >= 12 && self.macs.iter().any(|m| frame[6..12] == m[..]) {
            return Side::A;
        }
        if let Ok(p) = wire::parse(frame) {
            let ip = matches!(p.network, Network::Ipv4 | Network::Ipv6);
            if ip && self.nets.iter().any(|n| n.contains(&p.src_ip())) {
                return Side::A;
            }
        }
        Side::B
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

/// What to replay and where to write.
#[derive(Clone, Debug)]
pub struct Options {
    pub pcap: PathBuf,
    pub allowed: Option<PathBuf>,
    pub dropped: Option<PathBuf>,
    pub side_a: SideRule,
}

/// A run of a batch is cut when the side changes, or when the capture
/// clock moves on by more than this (nanoseconds), so that timeouts stay exact
/// to a millisecond.
const BATCH_SPAN: u64 = 1_000_000;

/// Replays the capture; returns the worker's counters.
pub fn replay(config: &Config, opts: &Options) -> io::Result<std::sync::Arc<Counters>> {
    let (snap, _) = Compiler::new().compile(&config.model, &config.settings);
    let capacity = usize::try_from(config.settings.flow_table_capacity).unwrap_or(usize::MAX);
    let appliance = config.appliance.clone().unwrap_or_default();
    let mut worker = Worker::new(WorkerConfig {
        seed: Seed::random(),
        max_frame: appliance.max_frame(),
        ..WorkerConfig::for_capacity(capacity)
    });
    let at = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", opts.pcap.display()));
    let file = std::fs::File::open(&opts.pcap).map_err(at)?;
    let mut input = PcapPort::<_, io::Sink> {
        reader: Some(Reader::new(io::BufReader::new(file)).map_err(at)?),
        writer: None,
    };
    let sink = |path: &Option<PathBuf>| -> io::Result<PcapPort<io::Empty, _>> {
        Ok(PcapPort {
            reader: None,
            writer: path.as_deref().map(Writer::create).transpose()?,
        })
    };
    let (mut allowed, mut dropped) = (sink(&opts.allowed)?, sink(&opts.dropped)?);
    let mut batch = Batch::new();
    let mut sides = [Side::A; BATCH];
    loop {
        input.receive(&mut batch).map_err(at)?;
        if batch.is_empty() {
            break;
        }
        for (i, side) in sides.iter_mut().enumerate().take(batch.len()) {
            *side = opts.side_a.side(batch.frame(i));
        }
        // Runs of one side within BATCH_SPAN of their first frame.
        let mut start = 0;
        for i in 1..=batch.len() {
            if i == batch.len() || sides[i] != sides[start] || batch.time(i) > batch.time(start) + BATCH_SPAN
            {
                let now = batch.time(start);
                forward(
                    &mut worker,
                    &snap,
                    now,
                    sides[start],
                    &batch,
                    start..i,
                    &mut allowed,
                    Some(&mut dropped),
                )?;
                start = i;
            }
        }
    }
    for w in [allowed.writer, dropped.writer].into_iter().flatten() {
        w.finish()?;
    }
    Ok(worker.counters())
}

/// The report `rampart replay` prints: per-side and per-verdict counts, drops
/// by reason, connections, and rule hits with each rule's group and text.
pub fn render(config: &Config, c: &Totals) -> String {
    let mut s = String::new();
    let [a, b] = &c.ports;
    let total = |f: fn(&PortTotals) -> u64| f(a) + f(b);
    let _ = writeln!(
        s,
        "frames: {} received, {} forwarded, {} dropped",
        total(|p| p.rx_packets),
        total(|p| p.forwarded_packets),
        total(|p| p.dropped_packets)
    );
    for (name, p) in [("A", a), ("B", b)] {
        let _ = writeln!(
            s,
            "  side {name}: {} received ({} bytes), {} forwarded, {} dropped",
            p.rx_packets, p.rx_bytes, p.forwarded_packets, p.dropped_packets
        );
    }
    let reasons: Vec<_> = DropReason::ALL.iter().filter(|r| c.drop_count(**r) > 0).collect();
    if !reasons.is_empty() {
        let _ = writeln!(s, "dropped by reason:");
        for r in reasons {
            let _ = writeln!(s, "  {:<32} {}", r.name(), c.drop_count(*r));
        }
    }
    let _ = writeln!(
        s,
        "connections: {} created, {} expired, {} evicted, {} revoked; {} related ICMP errors passed; {} ARP/ND frames passed",
        c.flows_created,
        c.flows_expired,
        c.flows_evicted,
        c.flows_revoked,
        c.related,
        c.unevaluated
    );
    let mut hits: Vec<(u32, u64)> = c.rules.iter().map(|(r, n)| (*r, *n)).collect();
    if !hits.is_empty() {
        hits.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        let _ = writeln!(s, "rule hits (first packets decided):");
        for (id, n) in hits {
            let text = config
                .model
                .groups()
                .flat_map(|g| g.rules.iter().map(move |r| (g, r)))
                .find(|(_, r)| r.id.0 == id)
                .map_or_else(
                    || format!("rule {id}"),
                    |(g, r)| format!("{}: {}", g.name, config.model.rule_text(r)),
                );
            let _ = writeln!(s, "  {n:>8}  {text}");
        }
        if c.rules_other > 0 {
            let _ = writeln!(s, "  {:>8}  (rules beyond the per-rule table)", c.rules_other);
        }
    }
    s
}
