//! The in-memory pipeline benchmark: `Worker::process_batch` on one core with
//! 64-byte frames (60 bytes in memory, the FCS is the NIC's), no I/O.
//!
//! - **established**: N connections are opened (SYN, SYN-ACK, ACK, untimed),
//!   then their data segments (client to server, connection after connection)
//!   are processed in batches of 64 for the timed part.
//! - **new flows**: SYNs of distinct connections through a policy of 1001 rules
//!   (1000 TCP rules with /24 remotes on distinct ports at priorities 1-50, then
//!   the rule the SYNs match), each opening a connection in an empty table big
//!   enough for all of them. The policy is one group, then the same rules
//!   dealt round-robin over 3 and over 16 groups that every server is bound
//!   to ([`GROUPS`]), which measures what combining per-group classifiers
//!   costs a first packet.
//! - **parse only**, the ceiling: `wire::parse` alone over the same frames.
//!
//! Rates are medians over `reps` repetitions of at least `seconds` each (a
//! new-flow repetition is one pass over its SYNs). Every result is folded into a
//! checksum so nothing can be optimised away.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use rampart_control::compile::Compiler;
use rampart_control::model::{GroupSpec, InterfaceSpec, Model, Quotas, RuleSpec, Scalar, VpcSpec};
use rampart_control::settings::Settings;
use rampart_dataplane::conntrack::{Flow, NANOS};
use rampart_dataplane::snapshot::Snapshot;
use rampart_dataplane::wire::headers::{TCP_ACK, TCP_SYN};
use rampart_dataplane::wire::parse;
use rampart_dataplane::worker::{Config, Fate, Side, Worker, BATCH};
use rampart_testkit::frames::Spec;
use serde::Serialize;

use crate::classify::median;

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub reps: usize,
    pub seconds: f64,
}

/// One result; the JSON line has exactly these fields.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `established`, `new_flows` or `parse_only`.
    pub test: String,
    /// Live connections (established), connections opened (new flows), or
    /// frames cycled through (parse only).
    pub flows: usize,
    pub policy_rules: usize,
    /// Groups the policy is dealt over (0 for parse only).
    pub groups: usize,
    /// Packets (or, for new flows, connections) per second, in millions.
    pub mpps: f64,
    pub ns_per_packet: f64,
    /// The same run's parse-only rate over the same frames.
    pub ceiling_mpps: f64,
    /// `size_of` one connection entry, key included.
    pub bytes_per_entry: usize,
    /// The table's whole allocation divided by the connections it holds.
    pub table_bytes_per_flow: f64,
}

/// An RX ring of 60-byte frames (64-byte stride) that a batch is written into
/// before the worker sees it, as a NIC writes received frames into a ring of
/// buffers that stays in cache (DDIO). The frames of flow `i` are made from a
/// template by writing its addresses and client port: 10 bytes per frame,
/// counted in the measured time.
struct Frames {
    ring: Vec<u8>,
    reply: bool,
    count: usize,
}

const STRIDE: usize = 64;
const RING: usize = 4096;

impl Frames {
    fn new(count: usize, flags: u8, reply: bool) -> Frames {
        let template = segment(0, flags, reply);
        assert!(template.len() == 60, "a minimum-size frame");
        let mut ring = vec![0u8; RING * STRIDE];
        for slot in ring.chunks_mut(STRIDE) {
            slot[..60].copy_from_slice(&template);
        }
        Frames { ring, reply, count }
    }

    /// Writes the frames of flows `start..start + n` into the ring and returns
    /// them.
    #[inline]
    fn batch(&mut self, start: usize) -> ([&[u8]; BATCH], usize) {
        let n = BATCH.min(self.count - start);
        let base = (start % RING).min(RING - BATCH);
        for k in 0..n {
            let (c, port) = client(start + k);
            let (IpAddr::V4(c), IpAddr::V4(s)) = (c, server(start + k)) else {
                unreachable!()
            };
            let f = &mut self.ring[(base + k) * STRIDE..(base + k) * STRIDE + 60];
            let (src, dst, sport) = if self.reply { (s, c, 34 + 2) } else { (c, s, 34) };
            f[26..30].copy_from_slice(&src.octets());
            f[30..34].copy_from_slice(&dst.octets());
            f[sport..sport + 2].copy_from_slice(&port.to_be_bytes());
        }
        let ring = &self.ring;
        let refs = std::array::from_fn(|k| {
            let i = (base + k.min(n - 1)) * STRIDE;
            &ring[i..i + 60]
        });
        (refs, n)
    }
}

const SERVERS: u32 = 64;
const POLICY_RULES: usize = 1001;
/// The numbers of groups the new-flow policy is dealt over.
pub const GROUPS: [usize; 3] = [1, 3, 16];

fn client(i: usize) -> (IpAddr, u16) {
    let host = 0xc612_0000u32 + (i % 65_536) as u32; // 198.18.0.0/16
    (IpAddr::V4(Ipv4Addr::from(host)), 1024 + (i / 65_536) as u16)
}

fn server(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xc613_0001u32 + (i as u32 % SERVERS))) // 198.19.0.1..
}

/// One VPC; 64 servers in 198.19.0.0/24 bound to `groups` groups holding the
/// 1001-rule ingress policy between them (rule `r` in group `r % groups`);
/// clients in 198.18.0.0/16 are unprotected.
pub fn model(groups: usize) -> Model {
    let groups = groups.max(1);
    let mut m = Model::new(Quotas {
        rules_per_group: POLICY_RULES,
        ..Quotas::default()
    });
    m.create_vpc(&VpcSpec {
        name: "bench".into(),
        vlan: None,
        description: None,
    })
    .expect("vpc");
    let names: Vec<String> = (0..groups).map(|g| format!("servers{g}")).collect();
    let mut rules: Vec<RuleSpec> = (0..POLICY_RULES - 1)
        .map(|r| RuleSpec {
            direction: "ingress".into(),
            protocol: Scalar::from("tcp"),
            ports: Some(Scalar::Int(1000 + r as i64)),
            remote: Some(format!("198.18.{}.0/24", r % 250)),
            priority: Some(1 + (r % 50) as i64),
            ..RuleSpec::default()
        })
        .collect();
    rules.push(RuleSpec {
        direction: "ingress".into(),
        protocol: Scalar::from("tcp"),
        ports: Some(Scalar::Int(80)),
        remote: Some("198.18.0.0/16".into()),
        priority: Some(100),
        ..RuleSpec::default()
    });
    for (g, name) in names.iter().enumerate() {
        m.create_group(&GroupSpec {
            vpc: "bench".into(),
            name: name.clone(),
            default_rules: Some(false),
            ..GroupSpec::default()
        })
        .expect("group");
        let mine: Vec<RuleSpec> = rules.iter().skip(g).step_by(groups).cloned().collect();
        m.replace_rules("bench", name, &mine).expect("rules");
    }
    for s in 0..SERVERS as usize {
        m.create_interface(&InterfaceSpec {
            vpc: "bench".into(),
            name: format!("s{s}"),
            addresses: vec![server(s).to_string()],
            groups: Some(names.clone()),
            ..InterfaceSpec::default()
        })
        .expect("interface");
    }
    m
}

fn segment(i: usize, flags: u8, reply: bool) -> Vec<u8> {
    let (c, port) = client(i);
    if reply {
        Spec::tcp(server(i), 80, c, port, flags).build()
    } else {
        Spec::tcp(c, port, server(i), 80, flags).build()
    }
}

/// Runs all frames through the worker once; returns a checksum.
fn pass(worker: &mut Worker, snap: &Snapshot, now: u64, side: Side, frames: &mut Frames) -> u64 {
    let mut out = [Fate::Drop(rampart_dataplane::reason::DropReason::Denied); BATCH];
    let mut sum = 0u64;
    let mut start = 0;
    while start < frames.count {
        let (refs, n) = frames.batch(start);
        worker.process_batch(snap, now, side, &refs[..n], &mut out[..n]);
        sum += out[..n].iter().filter(|a| matches!(a, Fate::Forward(_))).count() as u64;
        start += n;
    }
    sum
}

/// Packets per second of `step` (which processes `per_step` packets), looping
/// for at least `seconds`; the median of `reps`.
fn rate(plan: Plan, per_step: usize, mut step: impl FnMut() -> u64) -> f64 {
    let mut rates = Vec::new();
    let mut sink = 0u64;
    for _ in 0..plan.reps.max(1) {
        let start = Instant::now();
        let mut done = 0usize;
        while start.elapsed().as_secs_f64() < plan.seconds {
            sink = sink.wrapping_add(step());
            done += per_step;
        }
        rates.push(done as f64 / start.elapsed().as_secs_f64());
    }
    black_box(sink);
    median(rates)
}

fn parse_rate(plan: Plan, frames: &mut Frames) -> f64 {
    rate(plan, frames.count, || {
        let mut sum = 0u64;
        let mut start = 0;
        while start < frames.count {
            let (refs, n) = frames.batch(start);
            for f in &refs[..n] {
                if let Ok(p) = parse(f) {
                    sum = sum.wrapping_add(u64::from(p.dst_port));
                }
            }
            start += n;
        }
        sum
    })
}

fn worker(capacity: usize) -> Worker {
    Worker::new(Config::for_capacity(capacity))
}

/// Established-flow rate with `flows` live connections.
pub fn established(plan: Plan, snap: &Snapshot, flows: usize) -> Report {
    let mut w = worker(flows + flows / 8 + 64);
    let now = NANOS;
    for (flags, reply) in [(TCP_SYN, false), (TCP_SYN | TCP_ACK, true), (TCP_ACK, false)] {
        let mut frames = Frames::new(flows, flags, reply);
        let side = if reply { Side::B } else { Side::A };
        let passed = pass(&mut w, snap, now, side, &mut frames);
        assert_eq!(passed as usize, flows, "every handshake packet passes");
    }
    assert_eq!(w.flows().len(), flows);
    let mut data = Frames::new(flows, TCP_ACK, false);
    let mpps = rate(plan, flows, || pass(&mut w, snap, now, Side::A, &mut data)) / 1e6;
    assert_eq!(w.flows().len(), flows, "no connection was lost");
    let ceiling = parse_rate(plan, &mut data) / 1e6;
    Report {
        test: "established".into(),
        flows,
        policy_rules: POLICY_RULES,
        groups: 1,
        mpps,
        ns_per_packet: 1e3 / mpps,
        ceiling_mpps: ceiling,
        bytes_per_entry: size_of::<Flow>(),
        table_bytes_per_flow: w.flows().memory_bytes() as f64 / w.flows().capacity() as f64,
    }
}

/// New-connection rate: `flows` SYNs, each opening a connection, through
/// `snap`, the policy dealt over `groups` groups.
pub fn new_flows(plan: Plan, snap: &Snapshot, groups: usize, flows: usize) -> Report {
    let mut syns = Frames::new(flows, TCP_SYN, false);
    let mut rates = Vec::new();
    let mut table_bytes = 0.0;
    for _ in 0..plan.reps.max(1) {
        let mut w = worker(flows + flows / 8 + 64);
        let start = Instant::now();
        let passed = pass(&mut w, snap, NANOS, Side::A, &mut syns);
        rates.push(flows as f64 / start.elapsed().as_secs_f64());
        assert_eq!(passed as usize, flows, "every SYN is allowed");
        assert_eq!(w.counters().flows_created.get() as usize, flows);
        table_bytes = w.flows().memory_bytes() as f64 / w.flows().capacity() as f64;
    }
    let mpps = median(rates) / 1e6;
    Report {
        test: "new_flows".into(),
        flows,
        policy_rules: POLICY_RULES,
        groups,
        mpps,
        ns_per_packet: 1e3 / mpps,
        ceiling_mpps: parse_rate(plan, &mut syns) / 1e6,
        bytes_per_entry: size_of::<Flow>(),
        table_bytes_per_flow: table_bytes,
    }
}

/// Every result: established with each of `established_flows`, new flows
/// with the policy in each of [`GROUPS`] groups, and the parse-only ceiling.
pub fn run(plan: Plan, established_flows: &[usize], new: usize) -> Vec<Report> {
    let compile = |groups| Compiler::new().compile(&model(groups), &Settings::default()).0;
    let snap = compile(1);
    let mut reports: Vec<Report> = established_flows
        .iter()
        .map(|&n| established(plan, &snap, n))
        .collect();
    for groups in GROUPS {
        reports.push(new_flows(plan, &compile(groups), groups, new));
    }
    let mut frames = Frames::new(1024, TCP_ACK, false);
    let ceiling = parse_rate(plan, &mut frames) / 1e6;
    reports.push(Report {
        test: "parse_only".into(),
        flows: 1024,
        policy_rules: 0,
        groups: 0,
        mpps: ceiling,
        ns_per_packet: 1e3 / ceiling,
        ceiling_mpps: ceiling,
        bytes_per_entry: 0,
        table_bytes_per_flow: 0.0,
    });
    reports
}
