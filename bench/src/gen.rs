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
    let streams: Vec<Stream> = profile
        .streams
        .iter()
        .enumerate()
        .map(|(i, s)| Stream::build(i, s))
        .collect::<Result<_>>()?;
    let streams = Arc::new(streams);
    let queues = r.queues as usize;
    let threads_n = (xdp::rx_queues(port_a).max(xdp::rx_queues(port_b)) as usize).max(queues);
    let counts: Arc<Vec<Vec<Counts>>> = Arc::new(
        (0..threads_n)
            .map(|_| (0..streams.len()).map(|_| Counts::default()).collect())
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    if !r.bps.is_finite() || r.bps < 0.0 {
        bail!("run.bps: {} is not a rate of 0 or more", r.bps);
    }
    if r.bps > 0.0 && r.pps > 0.0 {
        bail!("run.bps: give a rate in pps or in bps, not both");
    }
    let rate = if r.bps > 0.0 {
        // The mix's mean frame, weighted like the schedule (session streams
        // count their SYNs).
        let (mut bits, mut weight) = (0.0, 0.0);
        for s in streams.iter() {
            let step = if s.session { SESSION.len() } else { 1 };
            let sizes: Vec<f64> = s
                .templates
                .iter()
                .step_by(step)
                .map(|t| (t.bytes.len() + 4) as f64 * 8.0)
                .collect();
            bits += s.spec.weight * sizes.iter().sum::<f64>() / sizes.len() as f64;
            weight += s.spec.weight;
        }
        r.bps / (bits / weight)
    } else {
        r.pps
    };
    let pps = rate / queues as f64;
    let mut threads = Vec::new();
    // Receive on every queue the ports have (a device may send a frame back
    // on any of them); send on the first `queues`.
    let rx_queues = (xdp::rx_queues(port_a).max(xdp::rx_queues(port_b)) as usize).max(queues);
    // Every socket is open before the clock starts, then each moves to its
    // thread.
    let mut ios = Vec::with_capacity(rx_queues);
    for q in 0..rx_queues {
        ios.push(Io::open(
            &[port_a, port_b],
            q as u32,
            16_384,
            &PortOptions::default(),
        )?);
    }
    let clock = Instant::now();
    for (q, mut io) in ios.into_iter().enumerate() {
        let pps = if q < queues { pps } else { -1.0 };
        let (streams, counts, stop) = (Arc::clone(&streams), Arc::clone(&counts), Arc::clone(&stop));
        threads.push(thread::spawn(move || -> Result<Vec<Histogram<u64>>> {
            Ok(worker(
                &mut io, q, queues, &streams, &counts[q], pps, clock, &stop,
            ))
        }));
    }
    let total = |c: &Vec<Vec<Counts>>| -> (u64, u64) {
        c.iter().flatten().fold((0, 0), |(s, r), x| {
            (
                s + x.sent.load(Ordering::Relaxed),
                r + x.received.load(Ordering::Relaxed),
            )
        })
    };
    let run_for = Duration::from_secs_f64(r.seconds);
    let mut next = Duration::from_secs(1);
    while clock.elapsed() < run_for {
        thread::sleep(Duration::from_millis(20));
        if threads.iter().any(|t| t.is_finished()) {
            break;
        }
        if clock.elapsed() >= next {
            let (s, rcv) = total(&counts);
            progress(clock.elapsed().as_secs_f64(), s, rcv);
            next += Duration::from_secs(1);
        }
    }
    let elapsed = clock.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut hists: Vec<Histogram<u64>> = (0..streams.len()).map(|_| new_hist()).collect();
    for t in threads {
        let h = t.join().map_err(|_| anyhow!("a generator thread panicked"))??;
        for (a, b) in hists.iter_mut().zip(h) {
            a.add(b).map_err(|e| anyhow!("merging histograms: {e}"))?;
        }
    }
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for (i, s) in streams.iter().enumerate() {
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
        let h = &hists[i];
        let us = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1e3
            }
        };
        let ok = match s.spec.expect.as_deref() {
            Some("pass") => sent > 0 && loss <= r.loss_tolerance,
            Some("drop") => sent > 0 && received == 0,
            _ => true,
        };
        if !ok {
            failed.push(format!(
                "stream {:?}: expected {}, but {received} of {sent} frames arrived",
                s.spec.name,
                s.spec.expect.as_deref().unwrap_or("-")
            ));
        }
        reports.push(StreamReport {
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
        });
    }
    Ok(Report {
        seconds: elapsed,
        streams: reports,
        failed,
    })
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// One queue's thread: sends its share of every stream's flows (none when
/// `pps` is negative: a receive-only queue), receives on both ports. Returns
/// a latency histogram per stream.
#[expect(clippy::too_many_arguments, reason = "the thread's whole state")]
fn worker(
    io: &mut Io,
    q: usize,
    queues: usize,
    streams: &[Stream],
    counts: &[Counts],
    pps: f64,
    clock: Instant,
    stop: &AtomicBool,
) -> Vec<Histogram<u64>> {
    let mut hists: Vec<Histogram<u64>> = (0..streams.len()).map(|_| new_hist()).collect();
    // The frames this queue sends, interleaved by weight: a schedule of
    // (stream, template) in proportion to each stream's weight.
    let weights: Vec<f64> = streams.iter().map(|s| s.spec.weight).collect();
    let total_weight: f64 = weights.iter().sum();
    let mut schedule: Vec<(usize, usize)> = Vec::new();
    for (si, s) in streams.iter().enumerate() {
        let share = ((weights[si] / total_weight) * 1000.0).ceil().max(1.0) as usize;
        let mine: Vec<usize> = if s.session {
            (0..s.spec.flows)
                .filter(|f| f % queues == q)
                .map(|f| f * SESSION.len())
                .collect()
        } else {
            (0..s.templates.len()).filter(|t| t % queues == q).collect()
        };
        let mine = if mine.is_empty() { vec![0] } else { mine };
        for k in 0..share {
            schedule.push((si, mine[k % mine.len()]));
        }
    }
    // Interleave the streams rather than sending them in blocks.
    schedule.sort_by_key(|(si, t)| (*t % 997, *si));
    let mut cursor: Vec<usize> = streams.iter().map(|_| 0).collect();
    let mut uses: Vec<u64> = streams.iter().map(|_| 0).collect();
    let mut seq = 0u32;
    let mut sent_total = 0u64;
    let mut tx = [[FrameDesc::default(); BATCH]; 2];
    let mut rx = [FrameDesc::default(); BATCH];
    let mut next = 0usize;
    let mut local_sent = vec![(0u64, 0u64); streams.len()];
    let mut local_recv = vec![(0u64, 0u64); streams.len()];
    let mut rounds = 0u32;
    let mut answers: Vec<(usize, u32, usize, u16, usize)> = Vec::with_capacity(2 * BATCH);
    let mut sessions = vec![0u64; streams.len()];
    let mut started = vec![0u64; streams.len()];
    let mut lost = vec![0u64; streams.len()];
    let mut progress = vec![0u64; streams.len()];
    while !stop.load(Ordering::Relaxed) {
        io.reap();
        let now_ns = clock.elapsed().as_nanos() as u64;
        let budget = if pps < 0.0 {
            0 // a receive-only queue
        } else if pps > 0.0 {
            ((now_ns as f64 / 1e9 * pps) as u64)
                .saturating_sub(sent_total)
                .min(BATCH as u64) as usize
        } else {
            BATCH
        };
        let mut n = [0usize; 2];
        let (mut picked, mut skipped) = (0, 0);
        while picked < budget && skipped <= schedule.len() {
            let (si, base) = schedule[next % schedule.len()];
            next += 1;
            let s = &streams[si];
            if s.session {
                // A client with `window` connections: start one as one ends.
                // (A session counted lost may still complete later: saturate.)
                let in_flight = started[si].saturating_sub(sessions[si] + lost[si]);
                if in_flight >= s.spec.window.max(1) {
                    if now_ns.saturating_sub(progress[si]) > 20_000_000 {
                        lost[si] += in_flight;
                        progress[si] = now_ns;
                    }
                    skipped += 1;
                    continue;
                }
                started[si] += 1;
            }
            picked += 1;
            // Each stream walks all of this queue's flows (a session stream
            // starts sessions: its SYNs).
            let starts = if s.session {
                s.spec.flows
            } else {
                s.templates.len()
            };
            let step = if s.session { SESSION.len() } else { 1 };
            let t = if starts > 1 {
                let c = &mut cursor[si];
                *c = (*c + queues) % starts;
                (*c / queues * queues + q).min(starts - 1) * step
            } else {
                base
            };
            let tpl = &s.templates[t];
            let Some(mut desc) = io.alloc(&tpl.bytes) else {
                break;
            };
            let len = tpl.bytes.len();
            seq = seq.wrapping_add(1);
            let mut fields = [0u8; 12];
            let tag = if s.session { tpl.flow } else { seq };
            fields[..4].copy_from_slice(&tag.to_be_bytes());
            fields[4..].copy_from_slice(&(clock.elapsed().as_nanos() as u64).to_be_bytes());
            let syn_port = s.syn_ports.map(|(lo, hi)| {
                // After each pass over the flows, the next source port.
                let pass = uses[si] / (s.templates.len() / step) as u64;
                uses[si] += 1;
                let span = u64::from(hi - lo) + 1;
                lo + ((u64::from(tpl_port(&tpl.bytes, tpl.csum_at) - lo) + pass) % span) as u16
            });
            io.modify(&mut desc, |frame| {
                patch(frame, tpl.csum_at, len - TRAILER + 4, &fields, tpl.udp);
                if let Some(port) = syn_port {
                    // The TCP header starts 16 bytes before its checksum.
                    patch(frame, tpl.csum_at, tpl.csum_at - 16, &port.to_be_bytes(), false);
                }
            });
            tx[s.from][n[s.from]] = desc;
            n[s.from] += 1;
            local_sent[si].0 += 1;
            local_sent[si].1 += len as u64 + 4;
        }
        for p in 0..2 {
            if n[p] > 0 {
                let queued = io.transmit(p, &tx[p][..n[p]]);
                sent_total += n[p] as u64;
                // Frames the TX ring refused were not sent: take them back
                // from their streams' counts.
                if queued < n[p] {
                    uncount(&mut local_sent, &tx[p][queued..n[p]], io);
                }
            }
        }
        for p in 0..2 {
            io.refill(p, BATCH);
            let got = io.receive(p, &mut rx);
            if got == 0 {
                io.poke_rx(p);
                continue;
            }
            let now = clock.elapsed().as_nanos() as u64;
            for d in &rx[..got] {
                let f = io.data(d);
                let Some((si, flow, sent_at)) = trailer(f, streams.len()) else {
                    continue;
                };
                arrived(&mut hists[si], &mut local_recv[si], f.len(), now, sent_at);
                if streams[si].session && answers.len() + 2 <= answers.capacity() {
                    let server = p != streams[si].from;
                    if let Some((kinds, port, done)) =
                        session_step(f, server, streams[si].templates[0].csum_at)
                    {
                        sessions[si] += u64::from(done);
                        if done {
                            progress[si] = now;
                        }
                        for kind in kinds.into_iter().flatten() {
                            answers.push((si, flow, kind, port, p));
                        }
                    }
                }
            }
            io.release(&rx[..got]);
        }
        // Answer as the other end of each session, on the port its frame came in.
        let mut m = [0usize; 2];
        for (si, flow, kind, port, p) in answers.drain(..) {
            if m[p] == BATCH {
                continue;
            }
            let s = &streams[si];
            let Some(tpl) = s.templates.get(flow as usize * SESSION.len() + kind) else {
                continue;
            };
            let Some(mut desc) = io.alloc(&tpl.bytes) else {
                break;
            };
            let len = tpl.bytes.len();
            let mut fields = [0u8; 12];
            fields[..4].copy_from_slice(&flow.to_be_bytes());
            fields[4..].copy_from_slice(&(clock.elapsed().as_nanos() as u64).to_be_bytes());
            // The client's port: the TCP source of the client's frames, the
            // destination of the server's.
            let at = tpl.csum_at - 16 + if SESSION[kind].0 { 2 } else { 0 };
            io.modify(&mut desc, |frame| {
                patch(frame, tpl.csum_at, len - TRAILER + 4, &fields, false);
                patch(frame, tpl.csum_at, at, &port.to_be_bytes(), false);
            });
            tx[p][m[p]] = desc;
            m[p] += 1;
            local_sent[si].0 += 1;
            local_sent[si].1 += len as u64 + 4;
        }
        for p in 0..2 {
            if m[p] > 0 {
                let queued = io.transmit(p, &tx[p][..m[p]]);
                if queued < m[p] {
                    uncount(&mut local_sent, &tx[p][queued..m[p]], io);
                }
            }
        }
        rounds = rounds.wrapping_add(1);
        if rounds.is_multiple_of(64) {
            publish(counts, &local_sent, &local_recv, &sessions);
        }
        if budget == 0 {
            std::hint::spin_loop();
        }
    }
    // Let the last frames arrive.
    let until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < until {
        let now = clock.elapsed().as_nanos() as u64;
        for p in 0..2 {
            io.refill(p, BATCH);
            let got = io.receive(p, &mut rx);
            for d in &rx[..got] {
                let f = io.data(d);
                if let Some((si, _, sent_at)) = trailer(f, streams.len()) {
                    arrived(&mut hists[si], &mut local_recv[si], f.len(), now, sent_at);
                }
            }
            io.release(&rx[..got]);
            if got == 0 {
                io.poke_rx(p);
            }
        }
        io.reap();
    }
    publish(counts, &local_sent, &local_recv, &sessions);
    hists
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

/// Takes frames the TX ring refused back out of their streams' sent counts
/// (their trailer names the stream).
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

/// Counts a received frame of `len` bytes and its one-way latency.
fn arrived(hist: &mut Histogram<u64>, recv: &mut (u64, u64), len: usize, now: u64, sent_at: u64) {
    let _ = hist.record(now.saturating_sub(sent_at).max(1));
    recv.0 += 1;
    recv.1 += len as u64 + 4;
}

fn uncount(sent: &mut [(u64, u64)], refused: &[FrameDesc], io: &Io) {
    for d in refused {
        let f = io.data(d);
        if let Some((si, _, _)) = trailer(f, sent.len()) {
            sent[si].0 = sent[si].0.saturating_sub(1);
            sent[si].1 = sent[si].1.saturating_sub(f.len() as u64 + 4);
        }
    }
}

fn publish(counts: &[Counts], sent: &[(u64, u64)], recv: &[(u64, u64)], sessions: &[u64]) {
    for (((c, s), r), n) in counts.iter().zip(sent).zip(recv).zip(sessions) {
        c.sessions.store(*n, Ordering::Relaxed);
        c.sent.store(s.0, Ordering::Relaxed);
        c.sent_bytes.store(s.1, Ordering::Relaxed);
        c.received.store(r.0, Ordering::Relaxed);
        c.received_bytes.store(r.1, Ordering::Relaxed);
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
