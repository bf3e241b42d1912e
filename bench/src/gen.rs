//! `rampart-gen`, the bundled traffic generator: sends streams of frames
//! through AF_XDP on one port and receives them on the other (the device
//! under test sits between), and reports per stream what was sent and
//! received, the loss, and the one-way latency (a timestamp travels in each
//! frame; percentiles from an HDR histogram). Expectations per stream
//! ("pass", "drop") are checked, so the same run verifies a ruleset under
//! load.
//!
//! Each frame ends with a 16-byte trailer inside its IP payload: magic
//! `0x52a7`, stream index (u16), sequence (u32), send time (u64 ns on the
//! generator's monotonic clock). Checksums are patched per frame for the
//! trailer (RFC 1624), so kernels on the path see valid packets.
//!
//! Streams: `udp`, `tcp-syn` (a SYN flood: every frame a new connection
//! attempt, the source port walking its range pass after pass over the
//! flows), `tcp-session` (complete sessions: the client's SYN from the
//! sending port, the generator answering as the server from the other port
//! with SYN-ACK, then ACK, FIN, FIN-ACK and the last ACK, at most `window`
//! sessions in flight per queue; a session counts when its last ACK
//! arrives), `icmp-echo` (echo requests); IPv4 or IPv6 by their addresses;
//! `flows` flows over address and port ranges; a fixed frame size (with the
//! FCS, as on the wire) or `imix` (7:4:1 of 64, 570, 1518 bytes).
//!
//! One thread per queue (`Worker`) owns its sockets, its schedule and its
//! counts per stream; per frame it never allocates, locks or logs, and it
//! publishes its counts with relaxed stores every 64 rounds for the main
//! thread to sum.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use rampart_dataplane::wire::headers::{TCP_ACK, TCP_FIN, TCP_SYN};
use rampart_dataplane::worker::BATCH;
use rampart_dataplane::xdp::{self, FrameDesc, Io, PortOptions};
use rampart_testkit::frames::{Spec, L4};
use rampart_testkit::frames::{MAC_A, MAC_B};
use serde::{Deserialize, Serialize};

const MAGIC: u16 = 0x52a7;
const TRAILER: usize = 16;
/// Frame sizes of `imix` (with the FCS) and their weights.
const IMIX: [(usize, usize); 3] = [(64, 7), (570, 4), (1518, 1)];

/// A profile file: `[run]` and `[[stream]]`s.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub run: RunSpec,
    #[serde(rename = "stream")]
    pub streams: Vec<StreamSpec>,
}

/// How long and how fast.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSpec {
    /// Seconds of sending.
    pub seconds: f64,
    /// Frames per second over all streams; 0 = as fast as the rings take them.
    pub pps: f64,
    /// Or bits per second over all streams (frames with their FCS; the
    /// preamble and gap not counted), turned into frames per second by the
    /// mix's mean frame size. Give one of `pps` and `bps`.
    pub bps: f64,
    /// Queues (one thread and one AF_XDP socket per port each).
    pub queues: u32,
    /// Loss a `pass` stream may show (a fraction; frames a loaded device
    /// drops at its limit are loss, not a policy verdict).
    pub loss_tolerance: f64,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            seconds: 5.0,
            pps: 0.0,
            bps: 0.0,
            queues: 1,
            loss_tolerance: 0.01,
        }
    }
}

/// One stream of the profile.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    pub name: String,
    /// `udp`, `tcp-syn`, `tcp-session` or `icmp-echo`.
    pub protocol: String,
    /// An address, or a range `first-last` of them.
    pub src: String,
    pub dst: String,
    /// Ports (`N` or `N-M`); ignored for ICMP.
    #[serde(default = "default_src_ports")]
    pub src_ports: String,
    #[serde(default = "default_dst_ports")]
    pub dst_ports: String,
    /// Distinct flows, spread over the address and port ranges.
    #[serde(default = "one")]
    pub flows: usize,
    /// Frame size with the FCS (64-1518), or `imix`.
    #[serde(default = "default_size")]
    pub size: String,
    /// The port that sends: `a` (received on b) or `b`.
    #[serde(default = "default_from")]
    pub from: String,
    /// Share of the rate.
    #[serde(default = "one_f")]
    pub weight: f64,
    /// `pass`, `drop`, or absent (measure only).
    #[serde(default)]
    pub expect: Option<String>,
    /// `tcp-session`: sessions in flight per queue at most, like a client
    /// with that many connections open (a new one starts as one completes;
    /// sessions without progress for 20 ms count as lost).
    #[serde(default = "default_window")]
    pub window: u64,
}

fn default_window() -> u64 {
    256
}

fn default_src_ports() -> String {
    "1024-65535".into()
}
fn default_dst_ports() -> String {
    "9".into()
}
fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn default_size() -> String {
    "64".into()
}
fn default_from() -> String {
    "a".into()
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
    }
}

/// A range of addresses (as integers) or ports.
fn addr_range(field: &str, s: &str) -> Result<(IpAddr, u128, u128)> {
    let (a, b) = s.split_once('-').map_or((s, s), |(a, b)| (a.trim(), b.trim()));
    let first: IpAddr = a
        .parse()
        .map_err(|_| anyhow!("{field}: {a:?} is not an address"))?;
    let last: IpAddr = b
        .parse()
        .map_err(|_| anyhow!("{field}: {b:?} is not an address"))?;
    let n = |ip: IpAddr| match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    if first.is_ipv4() != last.is_ipv4() || n(first) > n(last) {
        bail!("{field}: {s:?} is not a range first-last of one IP version");
    }
    Ok((first, n(first), n(last)))
}

fn port_range(field: &str, s: &str) -> Result<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let p = |x: &str| {
        x.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| anyhow!("{field}: {x:?} is not a port 1-65535"))
    };
    let (lo, hi) = (p(a)?, p(b)?);
    if lo > hi {
        bail!("{field}: {s:?} is inverted");
    }
    Ok((lo, hi))
}

fn nth_addr(first: IpAddr, base: u128, span: u128, i: u128) -> IpAddr {
    let v = base + i % span;
    match first {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(v)),
    }
}

/// A frame ready to send, and where its checksum and trailer are.
#[derive(Clone, Debug)]
struct Template {
    bytes: Vec<u8>,
    csum_at: usize,
    udp: bool,
    /// The flow it belongs to (a session's frames carry it in the trailer).
    flow: u32,
}

/// A TCP session's frames, in order: the client's SYN, the server's SYN-ACK,
/// the client's ACK and FIN, the server's FIN-ACK, the client's last ACK.
const SESSION: [(bool, u8, u32, u32); 6] = [
    (false, TCP_SYN, ISN_C, 0),
    (true, TCP_SYN | TCP_ACK, ISN_S, ISN_C + 1),
    (false, TCP_ACK, ISN_C + 1, ISN_S + 1),
    (false, TCP_FIN | TCP_ACK, ISN_C + 1, ISN_S + 1),
    (true, TCP_FIN | TCP_ACK, ISN_S + 1, ISN_C + 2),
    (false, TCP_ACK, ISN_C + 2, ISN_S + 2),
];
const ISN_C: u32 = 1000;
const ISN_S: u32 = 5000;

/// Adds the 16-bit words of `new` replacing `old` to the checksum at
/// `csum_at` (RFC 1624, eqn. 3); both at an even distance from it.
fn patch(frame: &mut [u8], csum_at: usize, at: usize, new: &[u8], udp: bool) {
    let mut sum = u32::from(!u16::from_be_bytes([frame[csum_at], frame[csum_at + 1]]));
    for (o, n) in frame[at..at + new.len()].chunks(2).zip(new.chunks(2)) {
        sum += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        sum += u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut c = !(sum as u16);
    if c == 0 && udp {
        c = 0xffff;
    }
    frame[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    frame[at..at + new.len()].copy_from_slice(new);
}

impl Template {
    /// Writes the trailer's `tag` (sequence or session flow) and the send
    /// time into a frame allocated from this template and, if given, a TCP
    /// port at an offset, patching the checksum for both.
    fn stamp(&self, io: &mut Io, desc: &mut FrameDesc, tag: u32, port: Option<(usize, u16)>, clock: Instant) {
        let len = self.bytes.len();
        let mut fields = [0u8; 12];
        fields[..4].copy_from_slice(&tag.to_be_bytes());
        fields[4..].copy_from_slice(&(clock.elapsed().as_nanos() as u64).to_be_bytes());
        io.modify(desc, |frame| {
            patch(frame, self.csum_at, len - TRAILER + 4, &fields, self.udp);
            if let Some((at, port)) = port {
                patch(frame, self.csum_at, at, &port.to_be_bytes(), false);
            }
        });
    }
}

/// A stream ready to run.
#[derive(Debug)]
struct Stream {
    spec: StreamSpec,
    /// Port index that sends (0 = a, 1 = b).
    from: usize,
    templates: Vec<Template>,
    /// For `tcp-syn`: the source port range walked frame by frame, so that
    /// every SYN of a run is a new connection attempt.
    syn_ports: Option<(u16, u16)>,
    /// Complete TCP sessions: the generator answers as the server.
    session: bool,
}

impl Stream {
    fn build(index: usize, spec: &StreamSpec) -> Result<Stream> {
        let name = &spec.name;
        let field = |f: &str| format!("stream {name:?}: {f}");
        let (first_src, s0, s1) = addr_range(&field("src"), &spec.src)?;
        let (first_dst, d0, d1) = addr_range(&field("dst"), &spec.dst)?;
        if first_src.is_ipv4() != first_dst.is_ipv4() {
            bail!("{}: src and dst are of different IP versions", field("dst"));
        }
        let (sp0, sp1) = port_range(&field("src_ports"), &spec.src_ports)?;
        let (dp0, dp1) = port_range(&field("dst_ports"), &spec.dst_ports)?;
        if spec.flows == 0 || spec.flows > 1_000_000 {
            bail!("{}: {} is out of range 1-1000000", field("flows"), spec.flows);
        }
        let sizes: Vec<usize> = if spec.size == "imix" {
            IMIX.iter()
                .flat_map(|(s, w)| std::iter::repeat_n(*s, *w))
                .collect()
        } else {
            let s: usize = spec
                .size
                .parse()
                .map_err(|_| anyhow!("{}: {:?} is not a size or imix", field("size"), spec.size))?;
            if !(64..=1518).contains(&s) {
                bail!(
                    "{}: {s} is out of range 64-1518 (bytes with the FCS)",
                    field("size")
                );
            }
            vec![s]
        };
        let from = match spec.from.as_str() {
            "a" => 0,
            "b" => 1,
            other => bail!("{}: {other:?} is not a or b", field("from")),
        };
        if !spec.weight.is_finite() || spec.weight <= 0.0 {
            bail!("{}: must be above 0", field("weight"));
        }
        if let Some(e) = &spec.expect {
            if e != "pass" && e != "drop" {
                bail!("{}: {e:?} is not pass or drop", field("expect"));
            }
        }
        let v6 = first_src.is_ipv6();
        let session = spec.protocol == "tcp-session";
        if session && sizes.len() > 1 {
            bail!(
                "{}: a tcp-session's frames have one size, not imix",
                field("size")
            );
        }
        // Every size as often as its weight says: as many templates as flows,
        // rounded up to a whole number of size cycles (a session: six frames
        // per flow).
        let count = if session {
            spec.flows * SESSION.len()
        } else {
            spec.flows.max(sizes.len()).div_ceil(sizes.len()) * sizes.len()
        };
        let mut templates = Vec::with_capacity(count);
        for t in 0..count {
            let i = if session {
                t / SESSION.len()
            } else {
                t % spec.flows
            };
            let i128 = i as u128;
            let src = nth_addr(first_src, s0, s1 - s0 + 1, i128);
            let dst = nth_addr(first_dst, d0, d1 - d0 + 1, i128 / (s1 - s0 + 1));
            let sport = sp0 + (i % usize::from(sp1 - sp0 + 1)) as u16;
            let dport = dp0 + ((i / usize::from(sp1 - sp0 + 1)) % usize::from(dp1 - dp0 + 1)) as u16;
            let (server, flags, seq, ack) = SESSION[t % SESSION.len()];
            let l4 = match spec.protocol.as_str() {
                "tcp-session" if server => L4::Tcp {
                    src_port: dport,
                    dst_port: sport,
                    flags,
                    seq,
                    ack,
                },
                "tcp-session" => L4::Tcp {
                    src_port: sport,
                    dst_port: dport,
                    flags,
                    seq,
                    ack,
                },
                "udp" => L4::Udp {
                    src_port: sport,
                    dst_port: dport,
                },
                "tcp-syn" => L4::Tcp {
                    src_port: sport,
                    dst_port: dport,
                    flags: TCP_SYN,
                    seq: i as u32,
                    ack: 0,
                },
                "icmp-echo" => L4::Echo {
                    request: true,
                    id: (i % 65536) as u16,
                    seq: 1,
                },
                other => bail!(
                    "{}: {other:?} is not udp, tcp-syn, tcp-session or icmp-echo",
                    field("protocol")
                ),
            };
            let (l4_header, csum_in_l4) = match spec.protocol.as_str() {
                "udp" => (8, 6),
                "tcp-syn" | "tcp-session" => (20, 16),
                _ => (8, 2),
            };
            let l3 = if v6 { 40 } else { 20 };
            let headers = 14 + l3 + l4_header;
            // The frame without its FCS, even-sized, with room for the trailer.
            let mut len = (sizes[t % sizes.len()] - 4).max(headers + TRAILER);
            len += len % 2;
            let mut frame = if session && server {
                Spec::new(dst, src, l4)
            } else {
                Spec::new(src, dst, l4)
            };
            if session && server {
                (frame.src_mac, frame.dst_mac) = (MAC_B, MAC_A);
            }
            let mut bytes = frame.payload(len - headers).build();
            bytes.truncate(len);
            let csum_at = 14 + l3 + csum_in_l4;
            let udp = spec.protocol == "udp";
            let mut trailer = [0u8; TRAILER];
            trailer[..2].copy_from_slice(&MAGIC.to_be_bytes());
            trailer[2..4].copy_from_slice(&(index as u16).to_be_bytes());
            patch(&mut bytes, csum_at, len - TRAILER, &trailer, udp);
            templates.push(Template {
                bytes,
                csum_at,
                udp,
                flow: i as u32,
            });
        }
        Ok(Stream {
            spec: spec.clone(),
            from,
            templates,
            syn_ports: matches!(spec.protocol.as_str(), "tcp-syn" | "tcp-session").then_some((sp0, sp1)),
            session,
        })
    }

    /// How many frames a pass over the stream's flows starts: its flows for
    /// a session stream (each starts with a SYN), else its templates.
    fn starts(&self) -> usize {
        if self.session {
            self.spec.flows
        } else {
            self.templates.len()
        }
    }

    /// Templates from one start to the next: a session's frames, or one.
    fn step(&self) -> usize {
        if self.session {
            SESSION.len()
        } else {
            1
        }
    }
}

/// What one stream did.
#[derive(Clone, Debug, Serialize)]
pub struct StreamReport {
    pub stream: String,
    pub protocol: String,
    pub flows: usize,
    pub from: String,
    pub sent: u64,
    pub received: u64,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    /// Sent but not received, as a fraction of sent.
    pub loss: f64,
    /// Received frames per second over the run.
    pub rx_pps: f64,
    /// One-way latency percentiles, microseconds (of received frames).
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// `tcp-session`: sessions completed (the client's last ACK arrived), and
    /// per second over the run.
    pub sessions: u64,
    pub sessions_per_s: f64,
    pub expect: Option<String>,
    /// The expectation held (true when there is none).
    pub ok: bool,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub seconds: f64,
    pub streams: Vec<StreamReport>,
    pub failed: Vec<String>,
}

/// Per-stream counters of one thread (single writer).
#[derive(Default)]
struct Counts {
    sessions: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    sent_bytes: AtomicU64,
    received_bytes: AtomicU64,
}

/// What the run's threads share: the streams, each queue's counters, and the
/// flag that stops them.
struct Shared {
    streams: Vec<Stream>,
    counts: Vec<Vec<Counts>>,
    stop: AtomicBool,
}

/// A generator thread: a latency histogram per stream when it ends.
type WorkerThread = thread::JoinHandle<Vec<Histogram<u64>>>;

/// Runs `profile` between `port_a` and `port_b` (interfaces of this network
/// namespace). `progress` is called about once a second with (seconds, sent,
/// received) so far.
pub fn run(
    profile: &Profile,
    port_a: &str,
    port_b: &str,
    progress: &mut dyn FnMut(f64, u64, u64),
) -> Result<Report> {
    let r = &profile.run;
    check_run(profile)?;
    let streams: Vec<Stream> = profile
        .streams
        .iter()
        .enumerate()
        .map(|(i, s)| Stream::build(i, s))
        .collect::<Result<_>>()?;
    let queues = r.queues as usize;
    let pps = frame_rate(r, &streams)? / queues as f64;
    // Receive on every queue the ports have (a device may send a frame back
    // on any of them); send on the first `queues`.
    let rx_queues = (xdp::rx_queues(port_a).max(xdp::rx_queues(port_b)) as usize).max(queues);
    let shared = Arc::new(Shared {
        counts: (0..rx_queues)
            .map(|_| (0..streams.len()).map(|_| Counts::default()).collect())
            .collect(),
        streams,
        stop: AtomicBool::new(false),
    });
    // Every socket is open before the clock starts, then each moves to its
    // thread.
    let ios = open_queues(port_a, port_b, rx_queues)?;
    let clock = Instant::now();
    let threads = start_workers(ios, &shared, queues, pps, clock);
    let run_for = Duration::from_secs_f64(r.seconds);
    wait_out(run_for, clock, &threads, &shared.counts, progress);
    let elapsed = clock.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    let hists = join_workers(threads, shared.streams.len())?;
    Ok(report(&shared, &hists, elapsed, r.loss_tolerance))
}

/// Refuses a `[run]` with a value out of range, and too few or too many
/// streams.
fn check_run(profile: &Profile) -> Result<()> {
    let r = &profile.run;
    if !(r.seconds > 0.0 && r.seconds <= 86_400.0) {
        bail!("run.seconds: {} is out of range (0, 86400]", r.seconds);
    }
    if !r.pps.is_finite() || r.pps < 0.0 {
        bail!("run.pps: {} is not a rate of 0 or more", r.pps);
    }
    if r.queues == 0 || r.queues > 64 {
        bail!("run.queues: {} is out of range 1-64", r.queues);
    }
    if !(0.0..=1.0).contains(&r.loss_tolerance) {
        bail!("run.loss_tolerance: {} is not a fraction 0-1", r.loss_tolerance);
    }
    if profile.streams.is_empty() || profile.streams.len() > 1000 {
        bail!("stream: 1-1000 streams, not {}", profile.streams.len());
    }
    Ok(())
}

/// Frames per second over all streams: `run.pps`, or `run.bps` turned into
/// frames by the mix's mean frame size.
fn frame_rate(r: &RunSpec, streams: &[Stream]) -> Result<f64> {
    if !r.bps.is_finite() || r.bps < 0.0 {
        bail!("run.bps: {} is not a rate of 0 or more", r.bps);
    }
    if r.bps > 0.0 && r.pps > 0.0 {
        bail!("run.bps: give a rate in pps or in bps, not both");
    }
    if r.bps <= 0.0 {
        return Ok(r.pps);
    }
    // The mix's mean frame, weighted like the schedule (session streams
    // count their SYNs).
    let (mut bits, mut weight) = (0.0, 0.0);
    for s in streams {
        let sizes: Vec<f64> = s
            .templates
            .iter()
            .step_by(s.step())
            .map(|t| (t.bytes.len() + 4) as f64 * 8.0)
            .collect();
        bits += s.spec.weight * sizes.iter().sum::<f64>() / sizes.len() as f64;
        weight += s.spec.weight;
    }
    Ok(r.bps / (bits / weight))
}

/// Opens queues `0..n`, each one AF_XDP socket per port over one UMEM.
fn open_queues(port_a: &str, port_b: &str, n: usize) -> Result<Vec<Io>> {
    (0..n)
        .map(|q| {
            Ok(Io::open(
                &[port_a, port_b],
                q as u32,
                16_384,
                &PortOptions::default(),
            )?)
        })
        .collect()
}

/// Starts a thread per queue, each owning its sockets; the first `queues`
/// send `pps` frames per second each, the others only receive.
fn start_workers(
    ios: Vec<Io>,
    shared: &Arc<Shared>,
    queues: usize,
    pps: f64,
    clock: Instant,
) -> Vec<WorkerThread> {
    let mut threads = Vec::with_capacity(ios.len());
    for (q, io) in ios.into_iter().enumerate() {
        let pps = if q < queues { pps } else { -1.0 };
        let shared = Arc::clone(shared);
        threads.push(thread::spawn(move || {
            Worker::new(io, &shared, q, queues, pps, clock).run(&shared.stop)
        }));
    }
    threads
}

/// Waits until `run_for` has passed on `clock` or a thread has ended,
/// calling `progress` about once a second with the frames sent and received
/// over all queues.
fn wait_out(
    run_for: Duration,
    clock: Instant,
    threads: &[WorkerThread],
    counts: &[Vec<Counts>],
    progress: &mut dyn FnMut(f64, u64, u64),
) {
    let mut next = Duration::from_secs(1);
    while clock.elapsed() < run_for {
        thread::sleep(Duration::from_millis(20));
        if threads.iter().any(|t| t.is_finished()) {
            break;
        }
        if clock.elapsed() >= next {
            let (s, rcv) = counts.iter().flatten().fold((0, 0), |(s, r), x| {
                (
                    s + x.sent.load(Ordering::Relaxed),
                    r + x.received.load(Ordering::Relaxed),
                )
            });
            progress(clock.elapsed().as_secs_f64(), s, rcv);
            next += Duration::from_secs(1);
        }
    }
}

/// Joins the threads and merges their latency histograms, one per stream.
fn join_workers(threads: Vec<WorkerThread>, streams: usize) -> Result<Vec<Histogram<u64>>> {
    let mut hists: Vec<Histogram<u64>> = (0..streams).map(|_| new_hist()).collect();
    for t in threads {
        let h = t.join().map_err(|_| anyhow!("a generator thread panicked"))?;
        for (a, b) in hists.iter_mut().zip(h) {
            a.add(b).map_err(|e| anyhow!("merging histograms: {e}"))?;
        }
    }
    Ok(hists)
}

/// The run's report from the counters and histograms of every stream, over
/// `elapsed` seconds; a stream whose expectation failed is listed.
fn report(shared: &Shared, hists: &[Histogram<u64>], elapsed: f64, loss_tolerance: f64) -> Report {
    let mut failed = Vec::new();
    let mut streams = Vec::with_capacity(shared.streams.len());
    for (i, (s, h)) in shared.streams.iter().zip(hists).enumerate() {
        let r = stream_report(s, &shared.counts, i, h, elapsed, loss_tolerance);
        if !r.ok {
            failed.push(format!(
                "stream {:?}: expected {}, but {} of {} frames arrived",
                s.spec.name,
                s.spec.expect.as_deref().unwrap_or("-"),
                r.received,
                r.sent
            ));
        }
        streams.push(r);
    }
    Report {
        seconds: elapsed,
        streams,
        failed,
    }
}

/// What stream `i` did: its counters summed over the queues, its loss, its
/// latency percentiles from `h`, and whether its expectation held.
fn stream_report(
    s: &Stream,
    counts: &[Vec<Counts>],
    i: usize,
    h: &Histogram<u64>,
    elapsed: f64,
    loss_tolerance: f64,
) -> StreamReport {
    let sum = |f: fn(&Counts) -> &AtomicU64| {
        counts
            .iter()
            .map(|c| f(&c[i]).load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let (sent, received) = (sum(|c| &c.sent), sum(|c| &c.received));
    let loss = if sent == 0 {
        0.0
    } else {
        sent.saturating_sub(received) as f64 / sent as f64
    };
    let us = |q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1e3
        }
    };
    let ok = match s.spec.expect.as_deref() {
        Some("pass") => sent > 0 && loss <= loss_tolerance,
        Some("drop") => sent > 0 && received == 0,
        _ => true,
    };
    StreamReport {
        stream: s.spec.name.clone(),
        protocol: s.spec.protocol.clone(),
        flows: s.spec.flows,
        from: s.spec.from.clone(),
        sent,
        received,
        sent_bytes: sum(|c| &c.sent_bytes),
        received_bytes: sum(|c| &c.received_bytes),
        loss,
        rx_pps: received as f64 / elapsed,
        p50_us: us(0.5),
        p90_us: us(0.9),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: if h.is_empty() { 0.0 } else { h.max() as f64 / 1e3 },
        sessions: sum(|c| &c.sessions),
        sessions_per_s: sum(|c| &c.sessions) as f64 / elapsed,
        expect: s.spec.expect.clone(),
        ok,
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Sessions without progress for this long count as lost, nanoseconds.
const SESSION_TIMEOUT_NS: u64 = 20_000_000;

/// One queue's thread: sends its share of every stream's flows (none when
/// its pacer has no rate: a receive-only queue) and receives on both ports.
/// It owns everything the loop touches, so the loop takes no lock and does
/// not allocate.
struct Worker<'a> {
    io: Io,
    streams: &'a [Stream],
    /// Where this queue publishes its counts, one per stream.
    counts: &'a [Counts],
    clock: Instant,
    /// This queue, of the `queues` that send: its flows `f` are those with
    /// `f % queues == q`.
    q: usize,
    queues: usize,
    schedule: Schedule,
    pacer: Pacer,
    /// The sequence number of the last frame sent (of a stream other than
    /// a session stream).
    seq: u32,
    burst: Burst,
    rx: [FrameDesc; BATCH],
    /// Session frames to send in answer to those received (two per frame at
    /// most), up to its capacity of two batches.
    answers: Vec<Answer>,
    lanes: Vec<Lane>,
}

impl<'a> Worker<'a> {
    /// Queue `q`'s worker over `io`; it sends `pps` frames per second (0 = as
    /// fast as the rings take them, negative = none).
    fn new(io: Io, shared: &'a Shared, q: usize, queues: usize, pps: f64, clock: Instant) -> Self {
        let streams = &shared.streams[..];
        Worker {
            io,
            streams,
            counts: &shared.counts[q],
            clock,
            q,
            queues,
            schedule: Schedule::new(streams, q, queues),
            pacer: Pacer { pps, handed: 0 },
            seq: 0,
            burst: Burst {
                tx: [[FrameDesc::default(); BATCH]; 2],
                n: [0; 2],
            },
            rx: [FrameDesc::default(); BATCH],
            answers: Vec::with_capacity(2 * BATCH),
            lanes: streams.iter().map(|_| Lane::new()).collect(),
        }
    }

    /// Sends and receives until `stop`, then receives the last frames;
    /// returns a latency histogram per stream.
    fn run(mut self, stop: &AtomicBool) -> Vec<Histogram<u64>> {
        let mut rounds = 0u32;
        while !stop.load(Ordering::Relaxed) {
            self.io.reap();
            let now_ns = self.clock.elapsed().as_nanos() as u64;
            let budget = self.pacer.budget(now_ns);
            self.send_burst(budget, now_ns);
            self.receive_burst(true);
            self.answer_sessions();
            rounds = rounds.wrapping_add(1);
            if rounds.is_multiple_of(64) {
                self.publish();
            }
            if budget == 0 {
                std::hint::spin_loop();
            }
        }
        self.drain();
        self.publish();
        self.lanes.into_iter().map(|l| l.hist).collect()
    }

    /// Fills up to `budget` frames from the schedule (fewer when the session
    /// windows are full or no frame is free) and transmits them.
    fn send_burst(&mut self, budget: usize, now_ns: u64) {
        let streams = self.streams;
        let (mut picked, mut skipped) = (0, 0);
        while picked < budget && skipped <= self.schedule.len() {
            let (si, base) = self.schedule.next();
            let (s, lane) = (&streams[si], &mut self.lanes[si]);
            if s.session && !lane.may_start_session(s.spec.window, now_ns) {
                skipped += 1;
                continue;
            }
            picked += 1;
            let tpl = &s.templates[lane.next_template(s, base, self.q, self.queues)];
            let Some(mut desc) = self.io.alloc(&tpl.bytes) else {
                break;
            };
            self.seq = self.seq.wrapping_add(1);
            let tag = if s.session { tpl.flow } else { self.seq };
            // The TCP header starts 16 bytes before its checksum.
            let port = lane.syn_port(s, tpl).map(|p| (tpl.csum_at - 16, p));
            tpl.stamp(&mut self.io, &mut desc, tag, port, self.clock);
            self.burst.push(s.from, desc);
            lane.sent(tpl.bytes.len());
        }
        self.pacer.handed += self.burst.flush(&mut self.io, &mut self.lanes);
    }

    /// Receives a batch on each port and counts the arrivals of our frames;
    /// with `answer`, also follows the sessions they belong to and queues the
    /// frames they call for.
    fn receive_burst(&mut self, answer: bool) {
        let streams = self.streams;
        for p in 0..2 {
            self.io.refill(p, BATCH);
            let got = self.io.receive(p, &mut self.rx);
            if got == 0 {
                self.io.poke_rx(p);
                continue;
            }
            let now = self.clock.elapsed().as_nanos() as u64;
            for d in &self.rx[..got] {
                let f = self.io.data(d);
                let Some((si, flow, sent_at)) = trailer(f, streams.len()) else {
                    continue;
                };
                let (s, lane) = (&streams[si], &mut self.lanes[si]);
                lane.arrived(f.len(), now, sent_at);
                if !(answer && s.session && self.answers.len() + 2 <= self.answers.capacity()) {
                    continue;
                }
                let Some((kinds, port, done)) = session_step(f, p != s.from, s.templates[0].csum_at) else {
                    continue;
                };
                lane.sessions += u64::from(done);
                if done {
                    lane.progress = now;
                }
                for kind in kinds.into_iter().flatten() {
                    self.answers.push(Answer {
                        stream: si,
                        flow,
                        kind,
                        client_port: port,
                        on: p,
                    });
                }
            }
            self.io.release(&self.rx[..got]);
        }
    }

    /// Sends the queued answers as the other end of each session, on the
    /// port its frame came in, and transmits them.
    fn answer_sessions(&mut self) {
        let streams = self.streams;
        for a in self.answers.drain(..) {
            if self.burst.full(a.on) {
                continue;
            }
            let Some(tpl) = streams[a.stream]
                .templates
                .get(a.flow as usize * SESSION.len() + a.kind)
            else {
                continue;
            };
            let Some(mut desc) = self.io.alloc(&tpl.bytes) else {
                break;
            };
            // The client's port: the TCP source of the client's frames, the
            // destination of the server's.
            let at = tpl.csum_at - 16 + if SESSION[a.kind].0 { 2 } else { 0 };
            tpl.stamp(
                &mut self.io,
                &mut desc,
                a.flow,
                Some((at, a.client_port)),
                self.clock,
            );
            self.burst.push(a.on, desc);
            self.lanes[a.stream].sent(tpl.bytes.len());
        }
        self.burst.flush(&mut self.io, &mut self.lanes);
    }

    /// Receives for 200 ms more, so that the last frames sent arrive.
    fn drain(&mut self) {
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            self.receive_burst(false);
            self.io.reap();
        }
    }

    /// Stores this queue's counts where the main thread reads them.
    fn publish(&self) {
        for (c, l) in self.counts.iter().zip(&self.lanes) {
            c.sessions.store(l.sessions, Ordering::Relaxed);
            c.sent.store(l.sent, Ordering::Relaxed);
            c.sent_bytes.store(l.sent_bytes, Ordering::Relaxed);
            c.received.store(l.received, Ordering::Relaxed);
            c.received_bytes.store(l.received_bytes, Ordering::Relaxed);
        }
    }
}

/// The frames a queue sends, interleaved by weight: (stream, template)
/// slots in proportion to each stream's weight, taken in turn.
struct Schedule {
    slots: Vec<(usize, usize)>,
    next: usize,
}

impl Schedule {
    /// Queue `q`'s schedule: about a thousand slots, each stream's over the
    /// flows of this queue.
    fn new(streams: &[Stream], q: usize, queues: usize) -> Schedule {
        let total_weight: f64 = streams.iter().map(|s| s.spec.weight).sum();
        let mut slots = Vec::new();
        for (si, s) in streams.iter().enumerate() {
            let share = ((s.spec.weight / total_weight) * 1000.0).ceil().max(1.0) as usize;
            let mine: Vec<usize> = (0..s.starts())
                .filter(|f| f % queues == q)
                .map(|f| f * s.step())
                .collect();
            let mine = if mine.is_empty() { vec![0] } else { mine };
            for k in 0..share {
                slots.push((si, mine[k % mine.len()]));
            }
        }
        // Interleave the streams rather than sending them in blocks.
        slots.sort_by_key(|(si, t)| (*t % 997, *si));
        Schedule { slots, next: 0 }
    }

    /// The next slot: (stream, template).
    fn next(&mut self) -> (usize, usize) {
        let slot = self.slots[self.next % self.slots.len()];
        self.next += 1;
        slot
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// How many frames a queue may send now to keep to its rate.
struct Pacer {
    /// Frames per second; 0 = as fast as the rings take them, negative =
    /// none (a receive-only queue).
    pps: f64,
    /// Frames handed to the TX rings so far (also those they refused).
    handed: u64,
}

impl Pacer {
    /// The frames due at `now_ns` on the run's clock, at most a batch.
    fn budget(&self, now_ns: u64) -> usize {
        if self.pps < 0.0 {
            0
        } else if self.pps > 0.0 {
            ((now_ns as f64 / 1e9 * self.pps) as u64)
                .saturating_sub(self.handed)
                .min(BATCH as u64) as usize
        } else {
            BATCH
        }
    }
}

/// Frames filled for sending, up to a batch per port.
struct Burst {
    tx: [[FrameDesc; BATCH]; 2],
    n: [usize; 2],
}

impl Burst {
    fn push(&mut self, p: usize, desc: FrameDesc) {
        self.tx[p][self.n[p]] = desc;
        self.n[p] += 1;
    }

    fn full(&self, p: usize) -> bool {
        self.n[p] == BATCH
    }

    /// Hands the frames to their ports' TX rings and takes those the rings
    /// refused back out of their streams' sent counts; returns how many were
    /// handed over.
    fn flush(&mut self, io: &mut Io, lanes: &mut [Lane]) -> u64 {
        let mut handed = 0;
        for p in 0..2 {
            let n = self.n[p];
            if n > 0 {
                let queued = io.transmit(p, &self.tx[p][..n]);
                handed += n as u64;
                if queued < n {
                    uncount(lanes, &self.tx[p][queued..n], io);
                }
            }
        }
        self.n = [0; 2];
        handed
    }
}

/// A session frame to send in answer to one received.
struct Answer {
    stream: usize,
    /// The session's flow, as the received frame's trailer gave it.
    flow: u32,
    /// The frame's kind, an index into [`SESSION`].
    kind: usize,
    client_port: u16,
    /// The port it goes out on (the one the received frame came in on).
    on: usize,
}

/// One queue's state for one stream: what it sent and received, the
/// latencies, where it stands in the stream's flows, and its sessions.
struct Lane {
    sent: u64,
    sent_bytes: u64,
    received: u64,
    received_bytes: u64,
    hist: Histogram<u64>,
    /// The flow last started, stepping by the number of sending queues.
    cursor: usize,
    /// `tcp-syn` and `tcp-session`: SYNs built so far, which tell the passes
    /// over the flows.
    syns: u64,
    /// `tcp-session`: sessions completed, started and counted lost, and the
    /// time of the last completion or loss (ns on the run's clock).
    sessions: u64,
    started: u64,
    lost: u64,
    progress: u64,
}

impl Lane {
    fn new() -> Lane {
        Lane {
            sent: 0,
            sent_bytes: 0,
            received: 0,
            received_bytes: 0,
            hist: new_hist(),
            cursor: 0,
            syns: 0,
            sessions: 0,
            started: 0,
            lost: 0,
            progress: 0,
        }
    }

    /// `tcp-session`: whether a session may start at `now_ns`, as for a
    /// client with `window` connections (one starts as one ends), counting
    /// it started. When the window is full and nothing moved for
    /// [`SESSION_TIMEOUT_NS`], the sessions in flight count as lost (one may
    /// still complete later, hence the saturating count).
    fn may_start_session(&mut self, window: u64, now_ns: u64) -> bool {
        let in_flight = self.started.saturating_sub(self.sessions + self.lost);
        if in_flight >= window.max(1) {
            if now_ns.saturating_sub(self.progress) > SESSION_TIMEOUT_NS {
                self.lost += in_flight;
                self.progress = now_ns;
            }
            return false;
        }
        self.started += 1;
        true
    }

    /// The template of the next frame to start: each stream walks all of
    /// queue `q`'s flows (a session stream starts sessions: its SYNs).
    /// `base` is the schedule's template, used when there is one flow.
    fn next_template(&mut self, s: &Stream, base: usize, q: usize, queues: usize) -> usize {
        let starts = s.starts();
        if starts > 1 {
            self.cursor = (self.cursor + queues) % starts;
            (self.cursor / queues * queues + q).min(starts - 1) * s.step()
        } else {
            base
        }
    }

    /// `tcp-syn` and `tcp-session`: the source port of the next SYN from
    /// `tpl`, one further after each pass over the flows, so that every SYN
    /// of a run is a new connection attempt.
    fn syn_port(&mut self, s: &Stream, tpl: &Template) -> Option<u16> {
        s.syn_ports.map(|(lo, hi)| {
            let pass = self.syns / (s.templates.len() / s.step()) as u64;
            self.syns += 1;
            let span = u64::from(hi - lo) + 1;
            lo + ((u64::from(tpl_port(&tpl.bytes, tpl.csum_at) - lo) + pass) % span) as u16
        })
    }

    /// Counts a frame of `len` bytes (without the FCS) sent.
    fn sent(&mut self, len: usize) {
        self.sent += 1;
        self.sent_bytes += len as u64 + 4;
    }

    /// Takes a frame of `len` bytes back out of the sent count.
    fn unsent(&mut self, len: usize) {
        self.sent = self.sent.saturating_sub(1);
        self.sent_bytes = self.sent_bytes.saturating_sub(len as u64 + 4);
    }

    /// Counts a received frame of `len` bytes and its one-way latency.
    fn arrived(&mut self, len: usize, now: u64, sent_at: u64) {
        let _ = self.hist.record(now.saturating_sub(sent_at).max(1));
        self.received += 1;
        self.received_bytes += len as u64 + 4;
    }
}

/// What a received session frame calls for: the frames to answer with
/// (their kinds in [`SESSION`]), the client's port, and whether it completed
/// a session (the client's last ACK reached the server).
fn session_step(f: &[u8], server: bool, csum_at: usize) -> Option<([Option<usize>; 2], u16, bool)> {
    let l4 = csum_at - 16;
    let tcp = f.get(l4..l4 + 20)?;
    let (sport, dport) = (
        u16::from_be_bytes([tcp[0], tcp[1]]),
        u16::from_be_bytes([tcp[2], tcp[3]]),
    );
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let flags = tcp[13];
    Some(if server {
        match flags {
            f if f == TCP_SYN => ([Some(1), None], sport, false),
            f if f & TCP_FIN != 0 => ([Some(4), None], sport, false),
            f if f == TCP_ACK && seq == ISN_C + 2 => ([None, None], sport, true),
            _ => ([None, None], sport, false),
        }
    } else {
        match flags {
            f if f == TCP_SYN | TCP_ACK => ([Some(2), Some(3)], dport, false),
            f if f & TCP_FIN != 0 => ([Some(5), None], dport, false),
            _ => ([None, None], dport, false),
        }
    })
}

/// The TCP source port of a template (its header starts 16 bytes before the
/// checksum).
fn tpl_port(bytes: &[u8], csum_at: usize) -> u16 {
    u16::from_be_bytes([bytes[csum_at - 16], bytes[csum_at - 15]])
}

/// A frame's trailer, if it is one of ours: (stream, sequence or session
/// flow, send time).
fn trailer(f: &[u8], streams: usize) -> Option<(usize, u32, u64)> {
    let t = f.get(f.len().checked_sub(TRAILER)?..)?;
    if u16::from_be_bytes([t[0], t[1]]) != MAGIC {
        return None;
    }
    let si = usize::from(u16::from_be_bytes([t[2], t[3]]));
    let tag = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let sent_at = u64::from_be_bytes([t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15]]);
    (si < streams).then_some((si, tag, sent_at))
}

/// Takes frames the TX ring refused back out of their streams' sent counts
/// (their trailer names the stream).
fn uncount(lanes: &mut [Lane], refused: &[FrameDesc], io: &Io) {
    for d in refused {
        let f = io.data(d);
        if let Some((si, _, _)) = trailer(f, lanes.len()) {
            lanes[si].unsent(f.len());
        }
    }
}

/// The summary table.
pub fn render(report: &Report) -> String {
    let mut s = format!("{:.1} s\n", report.seconds);
    s.push_str(&format!(
        "{:<14} {:<9} {:>6} {:>4} {:>11} {:>11} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8}  {}\n",
        "stream",
        "protocol",
        "flows",
        "from",
        "sent",
        "received",
        "loss",
        "rx pps",
        "p50 us",
        "p99 us",
        "p999 us",
        "max us",
        "expect"
    ));
    for r in &report.streams {
        s.push_str(&format!(
            "{:<14} {:<11} {:>6} {:>4} {:>11} {:>11} {:>6.2}% {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>10}  {}\n",
            r.stream,
            r.protocol,
            r.flows,
            r.from,
            r.sent,
            r.received,
            r.loss * 100.0,
            r.rx_pps,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            if r.protocol == "tcp-session" { format!("{:.0}", r.sessions_per_s) } else { "-".to_owned() },
            match (&r.expect, r.ok) {
                (None, _) => "-".to_owned(),
                (Some(e), true) => format!("{e}: ok"),
                (Some(e), false) => format!("{e}: FAILED"),
            }
        ));
    }
    for f in &report.failed {
        s.push_str(&format!("FAILED: {f}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_testkit::frames::Checksum;

    /// Whether the L4 checksum of `frame` verifies (the ones' complement sum
    /// over the pseudo-header and the segment, checksum included, is 0xffff).
    fn verifies(frame: &[u8]) -> bool {
        let v6 = frame[12..14] == [0x86, 0xdd];
        let (l3, proto) = if v6 {
            (40, frame[20])
        } else {
            (usize::from(frame[14] & 0x0f) * 4, frame[23])
        };
        let seg = &frame[14 + l3..];
        let mut sum = Checksum::default();
        if v6 {
            sum.add(&frame[22..54]);
            sum.add(&(seg.len() as u32).to_be_bytes());
            sum.add(&[0, 0, 0, proto]);
        } else if proto != 1 {
            sum.add(&frame[26..34]);
            sum.add(&[0, proto]);
            sum.add(&(seg.len() as u16).to_be_bytes());
        }
        sum.add(seg);
        sum.finish() == 0
    }

    #[test]
    fn every_frame_carries_its_trailer_and_a_valid_checksum() {
        for (protocol, src, dst) in [
            ("udp", "198.18.0.1-198.18.0.3", "198.18.0.20"),
            ("udp", "2001:db8::1", "2001:db8::20"),
            ("tcp-syn", "198.18.0.1", "198.18.0.20"),
            ("tcp-syn", "2001:db8::1", "2001:db8::20"),
            ("icmp-echo", "198.18.0.1", "198.18.0.20"),
            ("icmp-echo", "2001:db8::1", "2001:db8::20"),
        ] {
            let spec = StreamSpec {
                name: "s".into(),
                protocol: protocol.into(),
                src: src.into(),
                dst: dst.into(),
                src_ports: "1000-1010".into(),
                dst_ports: "53".into(),
                flows: 7,
                size: "imix".into(),
                from: "a".into(),
                weight: 1.0,
                expect: None,
                window: 256,
            };
            let s = Stream::build(3, &spec).unwrap();
            assert_eq!(s.templates.len(), 12, "7 flows rounded up to a whole IMIX cycle");
            for (k, t) in s.templates.iter().enumerate() {
                let mut f = t.bytes.clone();
                assert!(verifies(&f), "{protocol} {src}: template {k}");
                assert_eq!(f.len() % 2, 0);
                let tr = &f[f.len() - TRAILER..];
                assert_eq!(
                    (
                        u16::from_be_bytes([tr[0], tr[1]]),
                        u16::from_be_bytes([tr[2], tr[3]])
                    ),
                    (MAGIC, 3)
                );
                // A sent frame: sequence and time patched, still valid.
                let mut fields = [0u8; 12];
                fields[..4].copy_from_slice(&(0xdead_beef_u32 ^ k as u32).to_be_bytes());
                fields[4..].copy_from_slice(&0x0123_4567_89ab_cdef_u64.to_be_bytes());
                let len = f.len();
                patch(&mut f, t.csum_at, len - TRAILER + 4, &fields, t.udp);
                assert!(verifies(&f), "{protocol} {src}: patched frame {k}");
                assert_eq!(&f[len - 12..], &fields);
            }
            let sizes: Vec<usize> = s.templates.iter().map(|t| t.bytes.len() + 4).collect();
            assert_eq!(sizes.iter().filter(|l| **l >= 1518).count(), 1, "{sizes:?}");
        }
    }

    #[test]
    fn bad_streams_are_refused_with_the_field() {
        let base = StreamSpec {
            name: "x".into(),
            protocol: "udp".into(),
            src: "198.18.0.1".into(),
            dst: "198.18.0.2".into(),
            src_ports: "1".into(),
            dst_ports: "9".into(),
            flows: 1,
            size: "64".into(),
            from: "a".into(),
            weight: 1.0,
            expect: None,
            window: 256,
        };
        for (change, want) in [
            (
                StreamSpec {
                    protocol: "gre".into(),
                    ..base.clone()
                },
                "protocol",
            ),
            (
                StreamSpec {
                    src: "198.18.0.9-198.18.0.1".into(),
                    ..base.clone()
                },
                "src",
            ),
            (
                StreamSpec {
                    dst_ports: "0".into(),
                    ..base.clone()
                },
                "dst_ports",
            ),
            (
                StreamSpec {
                    flows: 0,
                    ..base.clone()
                },
                "flows",
            ),
            (
                StreamSpec {
                    size: "40".into(),
                    ..base.clone()
                },
                "size",
            ),
            (
                StreamSpec {
                    from: "c".into(),
                    ..base.clone()
                },
                "from",
            ),
            (
                StreamSpec {
                    expect: Some("maybe".into()),
                    ..base.clone()
                },
                "expect",
            ),
        ] {
            let err = Stream::build(0, &change).unwrap_err().to_string();
            assert!(err.starts_with(&format!("stream \"x\": {want}")), "{err}");
        }
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    #[test]
    fn the_shipped_profiles_load_and_build() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/profiles");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("docs/profiles") {
            let path = entry.expect("entry").path();
            let p = Profile::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
            assert!(!p.streams.is_empty(), "{}", path.display());
            for (i, s) in p.streams.iter().enumerate() {
                Stream::build(i, s).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            }
            n += 1;
        }
        assert!(n >= 1);
    }
}
