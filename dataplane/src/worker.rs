//! The batch pipeline: a burst of frames from one port in, an [`Fate`] per
//! frame out. The same code runs under AF_XDP (the daemon) and on capture
//! files (`rampart replay`).
//!
//! [`Worker::process_batch`] works phase by phase over the batch, so each phase
//! runs a tight loop over hot data:
//! 1. parse every frame; settle what needs no state (malformed, ARP and
//!    neighbour discovery, non-IP) and compute the flow key and hash of the
//!    rest (for an ICMP error, of the flow it quotes);
//! 2. look every key up in the worker's connection table; a hit advances the
//!    connection and is forwarded (after revalidation, when the snapshot changed
//!    and `on_rule_change = revalidate`), an ICMP error quoting a live
//!    connection passes as related;
//! 3. decide all misses against the snapshot in one batch call (spec section 3);
//! 4. in frame order, settle the misses: a connection opened by an earlier
//!    miss of the batch takes the packet as a hit; otherwise the verdict
//!    stands, and an allowed stateful first packet opens a connection (spec
//!    section 4);
//! 5. in frame order, record first-fragment verdicts and give later fragments
//!    theirs; count.
//!
//! The outcome of every frame is what it would be if the frames went through
//! one at a time, in order, whatever the batch holds: replies right behind
//! their opening packet, the fragments of one datagram, errors quoting a
//! connection the batch opens. Why that holds: phase 2 creates nothing, so a
//! key that missed there stays absent for the rest of phase 2; a miss learns
//! in phase 4 what earlier misses opened (a per-batch filter of the hashes
//! inserted says when a second lookup is needed); the fragment table is only
//! written and read in phase 5, in order. The one exception is a full table:
//! an eviction in phase 4 happens after the phase 2 hits of the same batch
//! (see [`FlowTable::insert`] for the eviction order).
//!
//! Then a bounded sweep reclaims expired connections. Nothing here allocates,
//! locks, logs or makes a system call.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::classify::Match;
use crate::conntrack::{Flow, FlowKey, FlowTable, FragKey, FragTable, Seed, Slot, NANOS};
use crate::reason::DropReason;
use crate::snapshot::{Check, Packet, Snapshot, Verdict};
use crate::stats::{interface_key, Counters};
use crate::wire::headers::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::wire::{ip_addr, parse_into, Fragment, IcmpKind, Network, Parsed, Tuple};

/// Frames per batch, the most a single call handles at once (longer slices are
/// processed in chunks of this size).
pub const BATCH: usize = 64;
/// Connection-table buckets the sweep visits per batch.
pub const SWEEP_PER_BATCH: usize = 64;
/// Buckets visited per [`Worker::housekeeping`] call.
pub const SWEEP_IDLE: usize = 4096;
/// How many frames ahead of its lookup a frame's connection-table lines (its
/// control bytes and entry) are prefetched. The CPU drops software prefetches
/// once its miss buffers are full (on this AMD EPYC VM, in a C test: 16
/// prefetches of random lines in flight all arrived, of 32 most did not), so
/// prefetching for the whole batch at once, as this worker did before, lost
/// most of them. With 1M flows, `rampart-bench pipeline` ran at 8.2-8.8 Mpps
/// that way and 10.6-12.0 prefetching 8 frames ahead, same runs.
const PREFETCH_AHEAD: usize = 8;

/// One of the two ports of a bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// What happens to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Send it out of this port.
    Forward(Side),
    Drop(DropReason),
}

/// How a worker is sized.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Connections the table holds.
    pub flow_capacity: usize,
    /// Fragmented datagrams remembered at once.
    pub fragment_capacity: usize,
    /// Distinct rules counted individually.
    pub rule_slots: usize,
    /// Longest frame accepted, in bytes from the destination MAC to the end
    /// of the payload (FCS not included); longer ones are dropped as
    /// [`DropReason::Oversize`].
    pub max_frame: usize,
    pub seed: Seed,
}

impl Config {
    /// Sizes for a snapshot's settings: its flow-table capacity, a fragment table
    /// of 1/64 of it (at least 1024), and 16384 rule counters.
    pub fn for_capacity(flow_capacity: usize) -> Config {
        Config {
            flow_capacity,
            fragment_capacity: (flow_capacity / 64).max(1024),
            rule_slots: 16_384,
            max_frame: usize::MAX,
            seed: Seed::random(),
        }
    }

    /// Bytes of connection and fragment tables a worker of this configuration
    /// allocates at start.
    pub fn table_bytes(&self) -> usize {
        FlowTable::memory_for(self.flow_capacity) + FragTable::memory_for(self.fragment_capacity)
    }
}

/// What a packet of a tracked connection does.
#[derive(Clone, Copy, Debug)]
enum Hit {
    Pass,
    Drop(DropReason),
    /// The connection is gone (closed and reopened by this SYN, or no longer
    /// stateful after a rule change): decide the packet as a first packet.
    FirstPacket,
}

/// A packet of a tracked connection, as [`Worker::hit_rare`] needs it.
#[derive(Clone, Copy, Debug)]
struct Seen {
    from_lo: bool,
    tcp_flags: u8,
    now: u64,
}

/// What phase 1 left to do for a frame.
#[derive(Clone, Copy, Debug)]
enum Step {
    Done(Fate),
    /// Look the flow up in the connection table.
    Track,
    /// An ICMP error quoting a flow (its key is the frame's key): passes if
    /// the flow is a live connection, else the rules decide.
    Related,
    /// Decide by the rules without creating state.
    Evaluate,
    /// A later fragment: it gets its first fragment's verdict in phase 5.
    Later,
}

/// A filter of the flow hashes inserted during one batch: a clear bit means
/// no connection with such a hash was opened, so a lookup made before the
/// batch's inserts still holds.
#[derive(Clone, Copy, Debug, Default)]
struct Inserted([u64; 4]);

impl Inserted {
    fn bit(hash: u64) -> (usize, u64) {
        let b = (hash >> 56) as usize;
        (b >> 6, 1 << (b & 63))
    }
    fn add(&mut self, hash: u64) {
        let (w, m) = Self::bit(hash);
        self.0[w] |= m;
    }
    fn may_hold(&self, hash: u64) -> bool {
        let (w, m) = Self::bit(hash);
        self.0[w] & m != 0
    }
}

/// A worker's state: its connection and fragment tables, counters and batch
/// scratch space, all allocated once.
#[derive(Debug)]
pub struct Worker {
    flows: FlowTable,
    frags: FragTable,
    stats: Arc<Counters>,
    max_frame: usize,
    parsed: Box<[Parsed; BATCH]>,
    steps: [Step; BATCH],
    keys: Box<[(FlowKey, bool, u64); BATCH]>,
    buckets: [Option<Slot>; BATCH],
    /// Indexes of the frames to decide against the snapshot.
    misses: [u8; BATCH],
    packets: Box<[Packet; BATCH]>,
    verdicts: Box<[Verdict; BATCH]>,
    /// Connections expired during the current batch, added to the counter once
    /// at its end.
    expired: u64,
    inserted: Inserted,
}

const EMPTY_PACKET: Packet = Packet {
    vlan: None,
    src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    proto: 0,
    src_port: 0,
    dst_port: 0,
};

const EMPTY_VERDICT: Verdict = Verdict {
    allowed: false,
    vpc: None,
    ingress: None,
    egress: None,
    stateful: false,
};

impl Worker {
    pub fn new(config: Config) -> Worker {
        let flows = FlowTable::new(config.flow_capacity, config.seed);
        let stats = Counters::new(config.rule_slots);
        stats.flows_capacity.set(flows.capacity() as u64);
        let (key, _) = FlowKey::new(0, false, &Tuple::default());
        Worker {
            flows,
            frags: FragTable::new(config.fragment_capacity, config.seed),
            stats: Arc::new(stats),
            max_frame: config.max_frame,
            parsed: Box::new([Parsed::default(); BATCH]),
            steps: [Step::Evaluate; BATCH],
            keys: Box::new([(key, false, 0); BATCH]),
            buckets: [None; BATCH],
            misses: [0; BATCH],
            packets: Box::new([EMPTY_PACKET; BATCH]),
            verdicts: Box::new([EMPTY_VERDICT; BATCH]),
            expired: 0,
            inserted: Inserted::default(),
        }
    }

    /// The worker's counters, for readers in other threads.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.stats)
    }

    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// Processes frames received on `from` at time `now` (nanoseconds of the
    /// worker's monotonic clock): `out[i]` becomes the action for `frames[i]`.
    pub fn process_batch(
        &mut self,
        snap: &Snapshot,
        now: u64,
        from: Side,
        frames: &[&[u8]],
        out: &mut [Fate],
    ) {
        assert!(out.len() >= frames.len(), "one action per frame");
        for (frames, out) in frames.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            self.batch(snap, now, from, frames, out);
        }
    }

    /// Idle-time housekeeping: sweeps a larger share of the tables.
    pub fn housekeeping(&mut self, now: u64) {
        let expired = self.flows.sweep(now, SWEEP_IDLE);
        self.stats.flows_expired.add(u64::from(expired));
        self.frags.sweep(now, SWEEP_IDLE / 16);
        self.stats.flows_active.set(self.flows.len() as u64);
    }

    #[expect(
        clippy::needless_range_loop,
        reason = "each phase indexes several parallel per-frame arrays"
    )]
    fn batch(&mut self, snap: &Snapshot, now: u64, from: Side, frames: &[&[u8]], out: &mut [Fate]) {
        let n = frames.len();
        let forward = Fate::Forward(from.other());
        let settings = &snap.settings;

        // Phase 1: parse; settle what needs no connection state.
        for i in 0..n {
            if frames[i].len() > self.max_frame {
                self.steps[i] = Step::Done(Fate::Drop(DropReason::Oversize));
                self.parsed[i].fragment = Fragment::Whole;
                continue;
            }
            self.steps[i] = match parse_into(frames[i], &mut self.parsed[i]) {
                Err(reason) => {
                    // Not a fragment whose verdict later fragments could take.
                    self.parsed[i].fragment = Fragment::Whole;
                    Step::Done(Fate::Drop(reason))
                }
                Ok(()) => {
                    let p = self.parsed[i];
                    self.first_step(&p, i, forward, settings.forward_non_ip)
                }
            };
        }

        // Phase 2: look up connections (all lookups first, so their cache
        // misses overlap); hits pass. Each lookup is preceded by the prefetch
        // of the frame `PREFETCH_AHEAD` places later, so that a bounded number
        // of frames' table lines are on their way at any time.
        for j in 0..n + PREFETCH_AHEAD {
            if j < n && matches!(self.steps[j], Step::Track | Step::Related) {
                self.flows.prefetch(self.keys[j].2);
            }
            if let Some(i) = j.checked_sub(PREFETCH_AHEAD) {
                if let Step::Track | Step::Related = self.steps[i] {
                    let (key, _, hash) = &self.keys[i];
                    self.buckets[i] = self.flows.locate(key, *hash);
                }
            }
        }
        let mut misses = 0;
        for i in 0..n {
            match self.steps[i] {
                Step::Done(action) => out[i] = action,
                Step::Later => {}
                Step::Evaluate => {
                    self.misses[misses] = i as u8;
                    misses += 1;
                }
                Step::Related => {
                    let (key, _, _) = self.keys[i];
                    let (live, expired) = match self.buckets[i] {
                        Some(b) => self.flows.live(b, &key, now),
                        None => (None, false),
                    };
                    self.expired += u64::from(expired);
                    if live.is_some() {
                        self.stats.related.add(1);
                        out[i] = forward;
                    } else {
                        self.misses[misses] = i as u8;
                        misses += 1;
                    }
                }
                Step::Track => {
                    let (key, from_lo, _) = self.keys[i];
                    let flags = self.parsed[i].tcp_flags;
                    let hit = match self.buckets[i] {
                        Some(b) => self.hit(snap, b, &key, from_lo, flags, now),
                        None => Hit::FirstPacket,
                    };
                    match hit {
                        Hit::Pass => out[i] = forward,
                        Hit::Drop(reason) => out[i] = Fate::Drop(reason),
                        Hit::FirstPacket => {
                            self.misses[misses] = i as u8;
                            misses += 1;
                        }
                    }
                }
            }
        }

        // Phase 3: decide the misses in one call.
        for m in 0..misses {
            self.packets[m] = packet(&self.parsed[usize::from(self.misses[m])]);
        }
        snap.decide_batch(&self.packets[..misses], &mut self.verdicts[..misses]);

        // Phase 4: in frame order, settle the misses; create connections.
        self.inserted = Inserted::default();
        for m in 0..misses {
            let i = usize::from(self.misses[m]);
            let v = self.verdicts[m];
            out[i] = self.settle(snap, i, &v, now, forward);
        }

        // Phase 5: in frame order, first fragments record their verdict for
        // the rest of the datagram, later fragments take it.
        let frag_deadline = now.saturating_add(u64::from(settings.fragment_timeout_secs) * NANOS);
        let mut rx_bytes = 0;
        let (mut fwd, mut fwd_bytes) = (0, 0);
        for i in 0..n {
            match self.parsed[i].fragment {
                Fragment::Whole => {}
                // Every later fragment is Step::Later (a frame that failed to
                // parse was marked whole in phase 1).
                Fragment::Later(id) => {
                    out[i] = match self.frags.verdict(&frag_key(&self.parsed[i], id), now) {
                        Some(true) => forward,
                        Some(false) => Fate::Drop(DropReason::FragmentDenied),
                        None => Fate::Drop(DropReason::FragmentWithoutFirst),
                    };
                }
                Fragment::First(id) => {
                    let allowed = matches!(out[i], Fate::Forward(_));
                    let key = frag_key(&self.parsed[i], id);
                    if self.frags.record(key, allowed, frag_deadline, now).is_err() {
                        out[i] = Fate::Drop(DropReason::FragmentTableFull);
                    }
                }
            }
            let len = frames[i].len() as u64;
            rx_bytes += len;
            match out[i] {
                Fate::Forward(_) => {
                    fwd += 1;
                    fwd_bytes += len;
                }
                Fate::Drop(reason) => self.stats.drops[reason.index()].add(1),
            }
        }

        let port = &self.stats.ports[from.index()];
        port.rx_packets.add(n as u64);
        port.rx_bytes.add(rx_bytes);
        port.forwarded_packets.add(fwd);
        port.forwarded_bytes.add(fwd_bytes);
        port.dropped_packets.add(n as u64 - fwd);
        port.dropped_bytes.add(rx_bytes - fwd_bytes);
        self.expired += u64::from(self.flows.sweep(now, SWEEP_PER_BATCH));
        self.frags.sweep(now, SWEEP_PER_BATCH / 16);
        self.stats.flows_expired.add(std::mem::take(&mut self.expired));
        self.stats.flows_active.set(self.flows.len() as u64);
        self.stats.generation.set(snap.generation);
        self.stats.batches.add(1);
    }

    /// Phase 1 for a parsed frame.
    fn first_step(&mut self, p: &Parsed, i: usize, forward: Fate, forward_non_ip: bool) -> Step {
        match p.network {
            Network::Arp => {
                self.stats.unevaluated.add(1);
                return Step::Done(forward);
            }
            Network::Other(_) if forward_non_ip => return Step::Done(forward),
            Network::Other(_) => return Step::Done(Fate::Drop(DropReason::NonIp)),
            Network::Ipv4 | Network::Ipv6 => {}
        }
        if let Fragment::Later(_) = p.fragment {
            return Step::Later;
        }
        match p.icmp {
            IcmpKind::NeighbourDiscovery => {
                self.stats.unevaluated.add(1);
                Step::Done(forward)
            }
            IcmpKind::Other | IcmpKind::Error(None) => Step::Evaluate,
            // Related to a live connection, it passes in either direction.
            IcmpKind::Error(Some(quoted)) => {
                self.key(i, p, &quoted);
                Step::Related
            }
            IcmpKind::No | IcmpKind::EchoRequest(_) | IcmpKind::EchoReply(_) => {
                self.key(i, p, &p.tuple());
                Step::Track
            }
        }
    }

    /// Sets frame `i`'s key (and hash) to that of `flow`, seen in `p`.
    #[inline(always)]
    fn key(&mut self, i: usize, p: &Parsed, flow: &Tuple) {
        let (key, from_lo) = FlowKey::new(p.vlan, p.is_v6(), flow);
        self.keys[i] = (key, from_lo, self.flows.hash(&key));
    }

    /// The live connection with frame `i`'s key, if an earlier frame of the
    /// batch may have opened it (the phase 2 lookup stands otherwise).
    fn opened_in_batch(&mut self, i: usize, now: u64) -> Option<Slot> {
        let (key, _, hash) = self.keys[i];
        if !self.inserted.may_hold(hash) {
            return None;
        }
        let (bucket, expired) = self.flows.find(&key, hash, now);
        self.expired += u64::from(expired);
        bucket
    }

    /// Phase 4 for the miss in frame `i`, decided `v` by the rules (out of
    /// line, away from the hit path).
    #[inline(never)]
    fn settle(&mut self, snap: &Snapshot, i: usize, v: &Verdict, now: u64, forward: Fate) -> Fate {
        let step = self.steps[i];
        match step {
            Step::Track => {
                if let Some(bucket) = self.opened_in_batch(i, now) {
                    let (key, from_lo, _) = self.keys[i];
                    match self.hit(snap, bucket, &key, from_lo, self.parsed[i].tcp_flags, now) {
                        Hit::Pass => return forward,
                        Hit::Drop(reason) => return Fate::Drop(reason),
                        // Removed just now: this packet opens it anew.
                        Hit::FirstPacket => {}
                    }
                }
            }
            Step::Related if self.opened_in_batch(i, now).is_some() => {
                self.stats.related.add(1);
                return forward;
            }
            _ => {}
        }
        count_rules(&self.stats, v);
        count_interfaces(&self.stats, v);
        if !v.allowed {
            Fate::Drop(if v.ingress.is_none() && v.egress.is_none() {
                DropReason::Unprotected
            } else {
                DropReason::Denied
            })
        } else if v.stateful && matches!(step, Step::Track) && creates(&self.parsed[i]) {
            self.open(i, snap, now).map_or_else(Fate::Drop, |()| forward)
        } else {
            forward
        }
    }

    /// A packet of the tracked connection in `bucket` (as located; it may
    /// have expired, or been removed by an earlier packet of the batch):
    /// advances it, after revalidating it when the snapshot changed and the
    /// settings ask for it. The common case stays inline; the rest is
    /// [`Worker::hit_rare`]. Always inlined into the lookup loop: as a call
    /// it cost established flows about a fifth of their rate.
    #[inline(always)]
    fn hit(
        &mut self,
        snap: &Snapshot,
        bucket: Slot,
        key: &FlowKey,
        from_lo: bool,
        tcp_flags: u8,
        now: u64,
    ) -> Hit {
        let Some(flow) = self.flows.get_mut(bucket, key) else {
            return Hit::FirstPacket;
        };
        if flow.deadline <= now {
            self.flows.remove(bucket);
            self.expired += 1;
            return Hit::FirstPacket;
        }
        let reopened = flow.state.closed() && tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN;
        if reopened || (flow.generation != snap.generation as u32 && snap.settings.revalidate) {
            let seen = Seen {
                from_lo,
                tcp_flags,
                now,
            };
            return self.hit_rare(snap, bucket, key, reopened, seen);
        }
        let handshake = flow.state.in_handshake();
        passes(flow, snap, from_lo, tcp_flags, now);
        if handshake && !flow.state.in_handshake() {
            self.flows.left_handshake();
        }
        Hit::Pass
    }

    /// [`Worker::hit`] for a SYN reopening a closed connection (`reopened`),
    /// or else a connection to revalidate against a new snapshot.
    #[cold]
    #[inline(never)]
    fn hit_rare(&mut self, snap: &Snapshot, bucket: Slot, key: &FlowKey, reopened: bool, seen: Seen) -> Hit {
        if reopened {
            self.flows.remove(bucket);
            return Hit::FirstPacket;
        }
        let Some(flow) = self.flows.get_mut(bucket, key) else {
            return Hit::FirstPacket;
        };
        let v = snap.decide(&opening_packet(flow));
        count_rules(&self.stats, &v);
        if !v.allowed {
            self.flows.remove(bucket);
            self.stats.flows_revoked.add(1);
            return Hit::Drop(DropReason::Revoked);
        }
        if !v.stateful {
            self.flows.remove(bucket);
            return Hit::FirstPacket;
        }
        let handshake = flow.state.in_handshake();
        passes(flow, snap, seen.from_lo, seen.tcp_flags, seen.now);
        if handshake && !flow.state.in_handshake() {
            self.flows.left_handshake();
        }
        Hit::Pass
    }

    /// Creates the connection for an allowed stateful first packet (frame `i`,
    /// whose key is not in the table); `Err` with the reason to drop it
    /// instead.
    fn open(&mut self, i: usize, snap: &Snapshot, now: u64) -> Result<(), DropReason> {
        let (key, from_lo, hash) = self.keys[i];
        let flags = self.parsed[i].tcp_flags;
        if key.proto() == PROTO_TCP {
            let syn = flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN;
            if !syn && !snap.settings.tcp_pickup {
                return Err(DropReason::TcpInvalid);
            }
            if !syn && flags & TCP_RST != 0 {
                // A picked-up RST passes but opens nothing.
                return Ok(());
            }
        }
        let mut flow = Flow::new(key, from_lo, flags, snap.generation as u32);
        flow.touch(now, &snap.settings.timeouts);
        match self.flows.insert(flow, hash, now) {
            Ok((_, reclaimed)) => {
                self.inserted.add(hash);
                self.stats.flows_created.add(1);
                self.expired += u64::from(reclaimed.expired);
                self.stats.flows_evicted.add(u64::from(reclaimed.evicted));
                Ok(())
            }
            Err(_) => Err(DropReason::FlowTableFull),
        }
    }
}

/// Advances a connection by a packet that passes. A caller whose packet may
/// end the handshake must tell the table ([`FlowTable::left_handshake`]).
#[inline]
fn passes(flow: &mut Flow, snap: &Snapshot, from_lo: bool, tcp_flags: u8, now: u64) {
    flow.generation = snap.generation as u32;
    flow.advance(from_lo, tcp_flags);
    flow.touch(now, &snap.settings.timeouts);
}

/// Whether an allowed stateful first packet opens a connection: everything but
/// ICMP that is not an echo request.
fn creates(p: &Parsed) -> bool {
    match p.proto {
        PROTO_ICMP | PROTO_ICMPV6 => matches!(p.icmp, IcmpKind::EchoRequest(_)),
        _ => true,
    }
}

fn count_rules(stats: &Counters, v: &Verdict) {
    for (_, check) in [v.ingress, v.egress].into_iter().flatten() {
        if let Check::Rule(Match { id, .. }) = check {
            stats.rules.hit(id);
        }
    }
}

/// Counts a first packet's decision for each protected interface involved.
#[inline(never)]
fn count_interfaces(stats: &Counters, v: &Verdict) {
    if let Some((iface, check)) = v.ingress {
        stats.interfaces.hit(interface_key(iface, false, check.allows()));
    }
    if let Some((iface, check)) = v.egress {
        stats.interfaces.hit(interface_key(iface, true, check.allows()));
    }
}

/// The datagram a fragment belongs to: IPv4 by (source, destination,
/// protocol, identification) as RFC 791 reassembles, IPv6 by (source,
/// destination, identification) as RFC 8200 does (the protocol a first
/// fragment reports is the one after its extension headers, which a later
/// fragment does not carry).
fn frag_key(p: &Parsed, id: u32) -> FragKey {
    let v6 = p.is_v6();
    FragKey {
        vlan: p.vlan,
        v6,
        proto: if v6 { 0 } else { p.proto },
        id,
        src: p.src,
        dst: p.dst,
    }
}

/// The classifier's view of a parsed packet.
fn packet(p: &Parsed) -> Packet {
    let v6 = p.is_v6();
    Packet {
        vlan: Some(p.vlan),
        src: ip_addr(p.src, v6),
        dst: ip_addr(p.dst, v6),
        proto: p.proto,
        src_port: p.src_port,
        dst_port: p.dst_port,
    }
}

/// The packet that opened a connection, as the classifier sees it (an ICMP
/// echo connection was opened by an echo request).
fn opening_packet(flow: &Flow) -> Packet {
    let t = flow.opening_tuple();
    let v6 = flow.key.is_v6();
    let (src_port, dst_port) = match t.proto {
        PROTO_ICMP => (8, 0),
        PROTO_ICMPV6 => (128, 0),
        _ => (t.src_port, t.dst_port),
    };
    Packet {
        vlan: Some(flow.key.vlan()),
        src: ip_addr(t.src, v6),
        dst: ip_addr(t.dst, v6),
        proto: t.proto,
        src_port,
        dst_port,
    }
}
