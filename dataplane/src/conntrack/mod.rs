//! Per-worker connection tracking (spec section 4).
//!
//! Each worker owns one [`FlowTable`]: `hashbrown` tables allocated once for
//! its configured capacity and never grown or rehashed (see
//! [`table`](self::table)), so the hot path never allocates. An entry
//! ([`Flow`]) is 56 bytes of fields, key included, aligned to 64 so that it
//! fills exactly one cache line (checked at compile time against the 64-byte
//! budget). Keys are normalised ([`FlowKey::new`]): the (address, port) pair
//! that sorts first is `lo`, so both directions of a connection find the same
//! entry, and the entry remembers which side opened it.
//!
//! Time is a number of nanoseconds handed in by the caller (the worker reads its
//! clock once per batch; tests drive a fake one). Each entry holds its deadline;
//! a lookup treats a passed deadline as absent, and [`FlowTable::sweep`]
//! reclaims expired entries a bounded number of buckets at a time, so expiry
//! never stops the world.
//!
//! When the table is full, an insert evicts the oldest connection still in
//! its TCP handshake, whichever partition holds it: the table counts its
//! half-open entries exactly and keeps the hashes of the connections opened
//! in a handshake in a ring, oldest first, so a new connection is refused
//! exactly when no half-open entry is left (whatever the hash seed), and
//! finding the victim costs O(1) amortised. (Rejected: scanning from the new
//! connection's own bucket, which found a lone half-open entry in some runs
//! and not in others; and a full scan per insert, which a SYN flood into a
//! table of established connections would make quadratic.) When no
//! half-open entry is left, an expired one within [`EVICT_SCAN`] buckets of
//! the new connection's home is reclaimed; others wait for the sweep, which
//! visits every bucket within `buckets / SWEEP_PER_BATCH` batches.
//! Established connections are never evicted for new ones.
//!
//! [`FragTable`] remembers first-fragment verdicts for later fragments.

mod table;
#[cfg(test)]
mod tests;

use std::hash::BuildHasher;

use allocator_api2::alloc::Global;

pub use self::table::Slot;
use self::table::Table;
use crate::hugepage::HugePages;
use crate::snapshot::Timeouts;
use crate::wire::headers::{
    PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};
use crate::wire::Tuple;

/// Nanoseconds per second: deadlines are kept in nanoseconds.
pub const NANOS: u64 = 1_000_000_000;
/// Buckets an insert into a full table scans for an entry it may evict.
pub const EVICT_SCAN: usize = 256;

/// A connection's identity, normalised: the same for both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    /// Addresses as two 64-bit halves (IPv4 in the low half), so the key needs
    /// 8-byte alignment only and stays at 40 bytes.
    lo: [u64; 2],
    hi: [u64; 2],
    lo_port: u16,
    hi_port: u16,
    /// The outer VLAN ID (0 untagged): it selects the VPC.
    vlan: u16,
    proto: u8,
    v6: bool,
}

fn halves(a: u128) -> [u64; 2] {
    [(a >> 64) as u64, a as u64]
}

fn join(h: [u64; 2]) -> u128 {
    (u128::from(h[0]) << 64) | u128::from(h[1])
}

impl FlowKey {
    /// The key of `t` seen on `vlan`, and whether `t`'s source is the `lo` side.
    pub fn new(vlan: u16, v6: bool, t: &Tuple) -> (FlowKey, bool) {
        let from_lo = (t.src, t.src_port) <= (t.dst, t.dst_port);
        let (lo, lo_port, hi, hi_port) = if from_lo {
            (t.src, t.src_port, t.dst, t.dst_port)
        } else {
            (t.dst, t.dst_port, t.src, t.src_port)
        };
        let key = FlowKey {
            lo: halves(lo),
            hi: halves(hi),
            lo_port,
            hi_port,
            vlan,
            proto: t.proto,
            v6,
        };
        (key, from_lo)
    }

    /// The flow as sent by the `lo` side (`from_lo`) or the `hi` side.
    pub fn tuple(&self, from_lo: bool) -> Tuple {
        let (lo, hi) = (join(self.lo), join(self.hi));
        if from_lo {
            Tuple {
                src: lo,
                dst: hi,
                proto: self.proto,
                src_port: self.lo_port,
                dst_port: self.hi_port,
            }
        } else {
            Tuple {
                src: hi,
                dst: lo,
                proto: self.proto,
                src_port: self.hi_port,
                dst_port: self.lo_port,
            }
        }
    }

    pub fn vlan(&self) -> u16 {
        self.vlan
    }
    pub fn is_v6(&self) -> bool {
        self.v6
    }
    pub fn proto(&self) -> u8 {
        self.proto
    }
}

/// Where a connection stands; each state has its idle timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    SynSent,
    SynReceived,
    Established,
    /// One side has sent FIN.
    FinWait,
    /// Both sides have sent FIN; waiting for the last ACK.
    LastAck,
    TimeWait,
    /// Ended by RST.
    Reset,
    UdpUnreplied,
    UdpReplied,
    IcmpEcho,
    /// Any other protocol.
    Other,
}

impl State {
    /// The idle timeout of this state, in seconds.
    pub fn timeout(self, t: &Timeouts) -> u32 {
        match self {
            State::SynSent => t.tcp_syn_sent,
            State::SynReceived => t.tcp_syn_received,
            State::Established => t.tcp_established,
            State::FinWait | State::LastAck => t.tcp_closing,
            State::TimeWait => t.tcp_time_wait,
            State::Reset => t.tcp_reset,
            State::UdpUnreplied => t.udp_unreplied,
            State::UdpReplied => t.udp_replied,
            State::IcmpEcho => t.icmp_echo,
            State::Other => t.other,
        }
    }

    /// Still in the TCP handshake: may be evicted from a full table.
    pub fn in_handshake(self) -> bool {
        matches!(self, State::SynSent | State::SynReceived)
    }

    /// A TCP connection that has ended; a new SYN may reopen its key.
    pub fn closed(self) -> bool {
        matches!(self, State::TimeWait | State::Reset)
    }
}

const INITIATOR_LO: u8 = 1;
const FIN_LO: u8 = 2;
const FIN_HI: u8 = 4;
/// The side whose FIN came second (valid in `LastAck`): `lo` if set.
const SECOND_FIN_LO: u8 = 8;

/// One tracked connection: 56 bytes of fields, aligned to 64 so that a lookup
/// reads one cache line of entry, not two (six of the eight offsets a 56-byte
/// entry can have straddle a line). With 1M flows the pipeline ran at 9.0-10.5
/// Mpps with 56-byte entries and 10.3-11.5 with these, same runs
/// (`rampart-bench pipeline`), for 14 % more table memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(align(64))]
pub struct Flow {
    pub key: FlowKey,
    /// When the connection expires unless a packet arrives (nanoseconds).
    pub deadline: u64,
    /// The low 32 bits of the snapshot generation it was last checked against.
    pub generation: u32,
    pub state: State,
    flags: u8,
}

const _: () = assert!(
    size_of::<Flow>() <= 64,
    "a flow entry must fit the 64-byte budget"
);

impl Flow {
    /// A new connection opened by `t`'s sender, in the state its first packet
    /// puts it in (`tcp_flags` for TCP; a non-SYN first packet is a pickup).
    pub fn new(key: FlowKey, from_lo: bool, tcp_flags: u8, generation: u32) -> Flow {
        let state = match key.proto {
            PROTO_TCP if tcp_flags & TCP_SYN != 0 && tcp_flags & TCP_ACK == 0 => State::SynSent,
            PROTO_TCP if tcp_flags & TCP_FIN != 0 => State::FinWait,
            PROTO_TCP => State::Established,
            PROTO_UDP => State::UdpUnreplied,
            PROTO_ICMP | PROTO_ICMPV6 => State::IcmpEcho,
            _ => State::Other,
        };
        let mut flags = if from_lo { INITIATOR_LO } else { 0 };
        if state == State::FinWait {
            flags |= if from_lo { FIN_LO } else { FIN_HI };
        }
        Flow {
            key,
            deadline: 0,
            generation,
            state,
            flags,
        }
    }

    /// Whether the `lo` side opened the connection.
    pub fn initiator_lo(&self) -> bool {
        self.flags & INITIATOR_LO != 0
    }

    /// The connection's flow as its opener sent it.
    pub fn opening_tuple(&self) -> Tuple {
        self.key.tuple(self.initiator_lo())
    }

    /// Sets the deadline for the current state.
    pub fn touch(&mut self, now: u64, timeouts: &Timeouts) {
        self.deadline = now.saturating_add(u64::from(self.state.timeout(timeouts)) * NANOS);
    }

    /// Advances the state for a packet of this connection sent by the `lo` side
    /// (`from_lo`) or the other, with `tcp_flags` for TCP.
    pub fn advance(&mut self, from_lo: bool, tcp_flags: u8) {
        let from_initiator = from_lo == self.initiator_lo();
        self.state = match self.state {
            State::UdpUnreplied if !from_initiator => State::UdpReplied,
            s @ (State::UdpUnreplied | State::UdpReplied | State::IcmpEcho | State::Other) => s,
            _ if tcp_flags & TCP_RST != 0 => State::Reset,
            State::SynSent if !from_initiator && tcp_flags & TCP_SYN != 0 => State::SynReceived,
            State::SynReceived if from_initiator && tcp_flags & (TCP_ACK | TCP_SYN) == TCP_ACK => {
                State::Established
            }
            State::SynSent | State::SynReceived | State::Established | State::FinWait
                if tcp_flags & TCP_FIN != 0 =>
            {
                self.flags |= if from_lo { FIN_LO } else { FIN_HI };
                if self.flags & (FIN_LO | FIN_HI) == FIN_LO | FIN_HI {
                    if from_lo {
                        self.flags |= SECOND_FIN_LO;
                    } else {
                        self.flags &= !SECOND_FIN_LO;
                    }
                    State::LastAck
                } else {
                    // The first FIN (or its retransmission).
                    State::FinWait
                }
            }
            // The ACK of the second FIN comes from the side that sent the first.
            State::LastAck if tcp_flags & TCP_ACK != 0 && from_lo != (self.flags & SECOND_FIN_LO != 0) => {
                State::TimeWait
            }
            s => s,
        };
    }
}

/// Seeds for the flow hash, so that a remote sender cannot aim collisions.
#[derive(Clone, Copy, Debug)]
pub struct Seed([u64; 6]);

impl Seed {
    /// Random seeds (from the standard library's per-process random state).
    pub fn random() -> Seed {
        let state = std::collections::hash_map::RandomState::new();
        Seed(std::array::from_fn(|i| state.hash_one(i) | 1))
    }
    pub fn fixed(n: u64) -> Seed {
        Seed(std::array::from_fn(|i| {
            (n ^ (i as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
        }))
    }

    /// The hash of a flow key: folded 64x64->128 multiplies of the key's words
    /// with the seeds.
    #[inline]
    pub fn hash(&self, k: &FlowKey) -> u64 {
        let s = &self.0;
        let tail = u64::from(k.lo_port)
            | (u64::from(k.hi_port) << 16)
            | (u64::from(k.vlan) << 32)
            | (u64::from(k.proto) << 48)
            | (u64::from(k.v6) << 56);
        let h = fold(k.lo[0] ^ s[0], k.lo[1] ^ s[1]) ^ fold(k.hi[0] ^ s[2], k.hi[1] ^ s[3]);
        fold(h ^ s[4], tail ^ s[5])
    }

    /// The hash of a fragmented datagram's key.
    #[inline]
    pub fn hash_fragment(&self, k: &FragKey) -> u64 {
        let s = &self.0;
        let a = fold((k.src >> 64) as u64 ^ s[0], k.src as u64 ^ s[1]);
        let b = fold((k.dst >> 64) as u64 ^ s[2], k.dst as u64 ^ s[3]);
        let tail = u64::from(k.id)
            | (u64::from(k.vlan) << 32)
            | (u64::from(k.proto) << 48)
            | (u64::from(k.v6) << 56);
        fold(a ^ b ^ s[4], tail ^ s[5])
    }
}

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Why an insert failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// What [`FlowTable::insert`] made room with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    pub expired: u32,
    pub evicted: u32,
}

/// A worker's connection table. See the module docs.
#[derive(Debug)]
pub struct FlowTable {
    table: Table<Flow, HugePages>,
    capacity: usize,
    seed: Seed,
    /// Entries in their TCP handshake (live or expired, not yet removed).
    half_open: usize,
    /// Hashes of the connections inserted in their handshake, oldest at
    /// `ring_head`: every half-open entry has its hash here, unless the ring
    /// overflowed since it was rebuilt (then [`FlowTable::evict_half_open`]
    /// rebuilds it from the table). Entries that left the handshake leave
    /// stale hashes, dropped when met.
    ring: Box<[u64]>,
    ring_head: usize,
    ring_len: usize,
}

impl FlowTable {
    /// A table for `capacity` connections, all its memory allocated now (see
    /// [`table`](self::table) for why it is several hashbrown tables).
    pub fn new(capacity: usize, seed: Seed) -> FlowTable {
        let capacity = capacity.max(1);
        FlowTable {
            table: Table::new(capacity, HugePages),
            capacity,
            seed,
            half_open: 0,
            ring: vec![0; capacity].into_boxed_slice(),
            ring_head: 0,
            ring_len: 0,
        }
    }

    /// Bytes a table for `capacity` connections allocates, without
    /// allocating it.
    pub fn memory_for(capacity: usize) -> usize {
        Table::<Flow, HugePages>::bytes_for(capacity) + capacity.max(1) * size_of::<u64>()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Bytes the table allocated (entries and control bytes, and the ring of
    /// half-open connections).
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes() + self.ring.len() * size_of::<u64>()
    }
    /// Connections in their TCP handshake.
    pub fn half_open(&self) -> usize {
        self.half_open
    }
    /// Partition moves completed, and inserts refused for lack of room.
    pub fn moves(&self) -> (u64, u64) {
        self.table.moves()
    }

    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.seed.hash(key)
    }

    /// Starts loading what a lookup of `hash` will read (see
    /// [`Table::prefetch`]).
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.table.prefetch(hash);
    }

    /// The slot holding `key`, live or expired: the memory-bound half of a
    /// lookup, which a batch issues for all its frames before using any result,
    /// so that the cache misses overlap.
    #[inline]
    pub fn locate(&self, key: &FlowKey, hash: u64) -> Option<Slot> {
        self.table.find(hash, |f| f.key == *key)
    }

    /// The slot of the live connection with `key`. An expired one is removed
    /// (counted in the return's second field) and reported absent.
    #[inline]
    pub fn find(&mut self, key: &FlowKey, hash: u64, now: u64) -> (Option<Slot>, bool) {
        match self.locate(key, hash) {
            Some(slot) => self.live(slot, key, now),
            None => (None, false),
        }
    }

    /// `slot` (as located earlier in a batch) if it still holds `key` and the
    /// connection is live. An expired one is removed (counted in the return's
    /// second field) and reported absent.
    #[inline]
    pub fn live(&mut self, slot: Slot, key: &FlowKey, now: u64) -> (Option<Slot>, bool) {
        match self.table.get(slot) {
            Some(f) if f.key == *key && f.deadline > now => (Some(slot), false),
            Some(f) if f.key == *key => {
                self.remove(slot);
                (None, true)
            }
            _ => (None, false),
        }
    }

    /// The connection in `slot` if it still holds `key` (slots can be reused
    /// between a lookup and its use within one batch).
    #[inline]
    pub fn get_mut(&mut self, slot: Slot, key: &FlowKey) -> Option<&mut Flow> {
        self.table.get_mut(slot).filter(|f| f.key == *key)
    }

    pub fn remove(&mut self, slot: Slot) -> Option<Flow> {
        let gone = self.table.remove(slot)?;
        self.forget(&gone);
        Some(gone)
    }

    /// Accounts for a removed entry.
    fn forget(&mut self, gone: &Flow) {
        if gone.state.in_handshake() {
            debug_assert!(self.half_open > 0, "a half-open entry went uncounted");
            self.half_open = self.half_open.saturating_sub(1);
        }
    }

    /// Records that a connection of the table left its handshake (a packet
    /// moved it on from SYN sent or SYN received). The table's owner changes
    /// states through [`FlowTable::get_mut`] and must say so; the count is
    /// checked against the table in debug builds at every ring rebuild and
    /// by [`FlowTable::half_open_counted`].
    #[inline]
    pub fn left_handshake(&mut self) {
        debug_assert!(self.half_open > 0, "left a handshake nobody counted");
        self.half_open = self.half_open.saturating_sub(1);
    }

    /// The half-open entries counted from the table itself (O(buckets), for
    /// tests), to compare with [`FlowTable::half_open`].
    pub fn half_open_counted(&self) -> usize {
        self.table.iter().filter(|f| f.state.in_handshake()).count()
    }

    /// Inserts a new connection (its key must not be in the table). When the
    /// table is full, first evicts the oldest connection in its handshake
    /// (see the module docs), else reclaims an expired entry within
    /// [`EVICT_SCAN`] buckets; when only the connection's partition is full
    /// (a hash skew of more than four standard deviations past its share, see
    /// [`table`](self::table)), the victim must come from that partition and
    /// is looked for in that scan.
    pub fn insert(&mut self, flow: Flow, hash: u64, now: u64) -> Result<(Slot, Reclaimed), TableFull> {
        let mut reclaimed = Reclaimed::default();
        let partition_full = !self.table.has_room(hash);
        if partition_full || self.table.len() >= self.capacity {
            let gone = if partition_full {
                self.table
                    .evict(hash, EVICT_SCAN, |f| f.deadline <= now || f.state.in_handshake())
            } else {
                self.evict_half_open()
                    .or_else(|| self.table.evict(hash, EVICT_SCAN, |f| f.deadline <= now))
            }
            .ok_or(TableFull)?;
            self.forget(&gone);
            let expired = gone.deadline <= now;
            reclaimed = Reclaimed {
                expired: u32::from(expired),
                evicted: u32::from(!expired),
            };
        }
        let seed = self.seed;
        let slot = self
            .table
            .insert(hash, flow, |f| seed.hash(&f.key))
            .ok_or(TableFull)?;
        if flow.state.in_handshake() {
            self.half_open += 1;
            self.ring_push(hash);
        }
        Ok((slot, reclaimed))
    }

    fn ring_push(&mut self, hash: u64) {
        let size = self.ring.len();
        if self.ring_len == size {
            // Full: the oldest hash goes (the entry, if still half-open, is
            // found again by a rebuild).
            self.ring_head = (self.ring_head + 1) % size;
            self.ring_len -= 1;
        }
        self.ring[(self.ring_head + self.ring_len) % size] = hash;
        self.ring_len += 1;
    }

    fn ring_pop(&mut self) -> Option<u64> {
        if self.ring_len == 0 {
            return None;
        }
        let hash = self.ring[self.ring_head];
        self.ring_head = (self.ring_head + 1) % self.ring.len();
        self.ring_len -= 1;
        Some(hash)
    }

    /// Removes and returns the oldest connection in its handshake, if any.
    /// If the ring runs dry while half-open entries remain (its oldest hashes
    /// were overwritten), it is rebuilt from a scan of the table. A rebuild
    /// needs the ring to have overflowed, which takes as many inserts as the
    /// table holds since the last rebuild, so its O(buckets) cost is O(1) per
    /// insert amortised.
    fn evict_half_open(&mut self) -> Option<Flow> {
        if self.half_open == 0 {
            return None;
        }
        if let Some(oldest) = self.pop_half_open() {
            return Some(oldest);
        }
        self.rebuild_ring();
        self.pop_half_open()
    }

    /// Removes the connection of the oldest hash in the ring that is still
    /// in its handshake, dropping the stale hashes before it.
    fn pop_half_open(&mut self) -> Option<Flow> {
        let seed = self.seed;
        while let Some(hash) = self.ring_pop() {
            let slot = self
                .table
                .find(hash, |f| f.state.in_handshake() && seed.hash(&f.key) == hash);
            if let Some(slot) = slot {
                return self.table.remove(slot);
            }
        }
        None
    }

    /// Refills the ring with every half-open entry, in table order, and
    /// recounts them.
    fn rebuild_ring(&mut self) {
        let seed = self.seed;
        let mut n = 0;
        // The table holds at most `capacity` entries, the ring's size.
        for f in self.table.iter().filter(|f| f.state.in_handshake()) {
            self.ring[n] = seed.hash(&f.key);
            n += 1;
        }
        debug_assert_eq!(n, self.half_open, "the half-open count drifted");
        (self.ring_head, self.ring_len, self.half_open) = (0, n, n);
    }

    /// Removes expired connections among the next `budget` buckets; returns how
    /// many. Called once per batch (and when idle), it visits every bucket once
    /// per `buckets / budget` calls, and moves a partition along (see
    /// [`table`](self::table)).
    pub fn sweep(&mut self, now: u64, budget: usize) -> u32 {
        let seed = self.seed;
        let half_open = std::cell::Cell::new(0);
        let dead = |f: &Flow| {
            let dead = f.deadline <= now;
            if dead && f.state.in_handshake() {
                half_open.set(half_open.get() + 1);
            }
            dead
        };
        let removed = self.table.sweep(budget, dead, |f| seed.hash(&f.key));
        self.half_open = self.half_open.saturating_sub(half_open.get());
        removed
    }

    /// Every live connection (for inspection and tests; not the hot path).
    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.table.iter()
    }
}

/// The identity of a fragmented datagram (`proto` is 0 for IPv6, whose
/// fragments are identified by addresses and identification alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub vlan: u16,
    pub v6: bool,
    pub proto: u8,
    pub id: u32,
    pub src: u128,
    pub dst: u128,
}

#[derive(Clone, Copy, Debug)]
struct FragEntry {
    key: FragKey,
    allowed: bool,
    deadline: u64,
}

/// First-fragment verdicts, for the later fragments of the same datagram.
#[derive(Debug)]
pub struct FragTable {
    table: Table<FragEntry, Global>,
    capacity: usize,
    seed: Seed,
}

impl FragTable {
    /// Bytes a table for `capacity` datagrams allocates.
    pub fn memory_for(capacity: usize) -> usize {
        Table::<FragEntry, Global>::bytes_for(capacity)
    }

    pub fn new(capacity: usize, seed: Seed) -> FragTable {
        let capacity = capacity.max(1);
        FragTable {
            table: Table::new(capacity, Global),
            capacity,
            seed,
        }
    }

    /// Records the verdict of a first fragment, valid until `deadline`.
    /// `Err` when the table is full of live entries.
    pub fn record(&mut self, key: FragKey, allowed: bool, deadline: u64, now: u64) -> Result<(), TableFull> {
        let seed = self.seed;
        let hash = seed.hash_fragment(&key);
        if let Some(slot) = self.table.find(hash, |e| e.key == key) {
            if let Some(e) = self.table.get_mut(slot) {
                (e.allowed, e.deadline) = (allowed, deadline);
            }
            return Ok(());
        }
        if self.table.len() >= self.capacity || !self.table.has_room(hash) {
            self.sweep(now, EVICT_SCAN);
        }
        if self.table.len() >= self.capacity {
            return Err(TableFull);
        }
        let entry = FragEntry {
            key,
            allowed,
            deadline,
        };
        self.table
            .insert(hash, entry, |e| seed.hash_fragment(&e.key))
            .map(|_| ())
            .ok_or(TableFull)
    }

    /// The first fragment's verdict for a later fragment, if still known.
    pub fn verdict(&self, key: &FragKey, now: u64) -> Option<bool> {
        let hash = self.seed.hash_fragment(key);
        self.table
            .find(hash, |e| e.key == *key)
            .and_then(|slot| self.table.get(slot))
            .filter(|e| e.deadline > now)
            .map(|e| e.allowed)
    }

    /// Removes expired entries among the next `budget` buckets.
    pub fn sweep(&mut self, now: u64, budget: usize) -> u32 {
        let seed = self.seed;
        self.table
            .sweep(budget, |e| e.deadline <= now, |e| seed.hash_fragment(&e.key))
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }
}
