//! A tuple-space classifier in the style of TupleMerge (Daly and Torng, 2017).
//!
//! Rules are grouped into hash tables by a *tuple*: their source and destination
//! prefix lengths rounded down to a coarse grid (multiples of [`grid_step`]).
//! A table hashes the key's addresses masked to its tuple's lengths; a bucket
//! holds every rule of the table with those masked addresses, sorted by rank.
//! Rounding down merges tuples, so a rule set with dozens of distinct length
//! pairs needs only a few tables, at the price of verifying each candidate's
//! full prefixes.
//!
//! A lookup probes the tables in order of the best rank they hold and stops as
//! soon as no remaining table can beat the best match found: for rule sets whose
//! high-priority rules are specific, most lookups end after a few probes.
//!
//! Its strengths: build time is one sort and one hash insert per rule, and
//! memory is linear in the rules (no replication); a rule-set change rebuilds
//! in milliseconds. Its weakness is sets with many distinct prefix-length
//! pairs, where a lookup probes many tables; [`super::Engine::build`] picks
//! it when its rules fall in few tables, or when the other engines do not
//! build within their budgets.
//!
//! Layout: one flat array of entries, bucket by bucket; per table an
//! open-addressing slot array (address pair, start, length). A lookup touches
//! one slot and one run of entries per probed table. Nothing is allocated or
//! locked during a lookup.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Addr, AddrSet, Classifier, Key, Match, Rule, RuleAction, SetTable};

/// No address set on this side of an entry.
const NO_SET: u32 = u32::MAX;

/// Prefix lengths are rounded down to multiples of this many bits: 4 for IPv4,
/// 16 for IPv6 (so at most 9x9 tables for IPv4 and 9x9 for IPv6).
fn grid_step<A: Addr>() -> u8 {
    A::BITS / 8
}

/// One rule as the engine stores it: everything needed to verify a candidate,
/// in one place.
#[derive(Clone, Copy, Debug)]
struct Entry<A> {
    src: A,
    src_mask: A,
    dst: A,
    dst_mask: A,
    rank: u64,
    src_ports: (u16, u16),
    dst_ports: (u16, u16),
    /// 0 with `proto_any`, else the protocol.
    proto: u8,
    proto_any: bool,
    src_set: u32,
    dst_set: u32,
    id: u32,
    priority: u32,
    action: RuleAction,
}

/// A bucket's place in a table.
#[derive(Clone, Copy, Debug, Default)]
struct Slot<A> {
    src: A,
    dst: A,
    start: u32,
    /// 0 = empty slot.
    len: u32,
}

#[derive(Debug)]
struct Table<A> {
    src_mask: A,
    dst_mask: A,
    /// The best (smallest) rank in this table.
    best: u64,
    /// Power-of-two length, at most half full.
    slots: Vec<Slot<A>>,
    /// `64 - log2(slots.len())`: a slot index is the hash's top bits.
    shift: u32,
}

/// One table while it is being built: its buckets by masked address pair, and
/// the pairs in first-seen order (so the layout does not depend on hashing).
struct TupleBuild<A> {
    tuple: (u8, u8),
    keys: Vec<(A, A)>,
    buckets: HashMap<(A, A), Vec<Entry<A>>>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct TupleSpace<A> {
    /// In ascending order of `best`.
    tables: Vec<Table<A>>,
    entries: Vec<Entry<A>>,
    sets: Vec<Arc<AddrSet<A>>>,
}

/// Fibonacci hashing: multiply by 2^64 / phi and keep the top bits, which
/// depend on every input bit. (The low bits of the product depend only on the
/// low input bits, which prefix masks zero.)
fn hash<A: Addr>(src: A, dst: A) -> u64 {
    (src.fold() ^ dst.fold().rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The slot of `hash` in a table of `64 - shift` index bits.
#[inline(always)]
fn slot_index(hash: u64, shift: u32) -> usize {
    // Tables have 2 to 2^32 slots, so 32 <= shift <= 63 and the index fits.
    (hash >> shift) as usize
}

impl<A: Addr> TupleSpace<A> {
    pub fn build(rules: &[Rule<A>]) -> Self {
        let step = grid_step::<A>();
        let mut order: Vec<&Rule<A>> = rules.iter().collect();
        order.sort_by_key(|r| r.rank());

        let mut sets = SetTable::new();

        let mut tuples: Vec<TupleBuild<A>> = Vec::new();
        for r in order {
            let (sp, dp) = (r.src.index_prefix(), r.dst.index_prefix());
            let tuple = (sp.len - sp.len % step, dp.len - dp.len % step);
            let (sm, dm) = (A::prefix_mask(tuple.0), A::prefix_mask(tuple.1));
            let entry = Entry {
                src: sp.addr,
                src_mask: A::prefix_mask(sp.len),
                dst: dp.addr,
                dst_mask: A::prefix_mask(dp.len),
                rank: r.rank(),
                src_ports: r.src_ports,
                dst_ports: r.dst_ports,
                proto: r.proto.unwrap_or(0),
                proto_any: r.proto.is_none(),
                src_set: sets.index(&r.src).unwrap_or(NO_SET),
                dst_set: sets.index(&r.dst).unwrap_or(NO_SET),
                id: r.id,
                priority: r.priority,
                action: r.action,
            };
            let t = match tuples.iter().position(|t| t.tuple == tuple) {
                Some(i) => i,
                None => {
                    tuples.push(TupleBuild {
                        tuple,
                        keys: Vec::new(),
                        buckets: HashMap::new(),
                    });
                    tuples.len() - 1
                }
            };
            let TupleBuild { keys, buckets, .. } = &mut tuples[t];
            let key = (sp.addr.and(sm), dp.addr.and(dm));
            buckets
                .entry(key)
                .or_insert_with(|| {
                    keys.push(key);
                    Vec::new()
                })
                .push(entry);
        }

        let mut entries = Vec::with_capacity(rules.len());
        let mut tables = Vec::with_capacity(tuples.len());
        for TupleBuild {
            tuple: (s, d),
            keys,
            mut buckets,
        } in tuples
        {
            let capacity = (keys.len() * 2).next_power_of_two().max(2);
            let shift = 64 - capacity.trailing_zeros();
            let mut slots = vec![Slot::default(); capacity];
            let mut best = u64::MAX;
            for key in keys {
                let bucket = buckets.remove(&key).expect("every key has a bucket");
                best = best.min(bucket[0].rank);
                let start = u32::try_from(entries.len()).expect("fewer than 2^32 rules");
                let len = u32::try_from(bucket.len()).expect("fewer than 2^32 rules");
                entries.extend(bucket);
                let mut i = slot_index(hash(key.0, key.1), shift);
                while slots[i].len != 0 {
                    i = (i + 1) & (capacity - 1);
                }
                slots[i] = Slot {
                    src: key.0,
                    dst: key.1,
                    start,
                    len,
                };
            }
            tables.push(Table {
                src_mask: A::prefix_mask(s),
                dst_mask: A::prefix_mask(d),
                best,
                slots,
                shift,
            });
        }
        tables.sort_by_key(|t| t.best);
        TupleSpace {
            tables,
            entries,
            sets: sets.into_sets(),
        }
    }

    /// Number of hash tables (distinct rounded tuples).
    pub fn tables(&self) -> usize {
        self.tables.len()
    }

    /// Length of the longest bucket: the worst run of candidates one probe scans.
    pub fn longest_bucket(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|t| t.slots.iter().map(|s| s.len as usize))
            .max()
            .unwrap_or(0)
    }

    #[inline(always)]
    fn verify(&self, e: &Entry<A>, key: &Key<A>) -> bool {
        (e.proto_any || e.proto == key.proto)
            && key.dst_port >= e.dst_ports.0
            && key.dst_port <= e.dst_ports.1
            && key.src_port >= e.src_ports.0
            && key.src_port <= e.src_ports.1
            && key.src.and(e.src_mask) == e.src
            && key.dst.and(e.dst_mask) == e.dst
            && (e.src_set == NO_SET || self.sets[e.src_set as usize].contains(key.src))
            && (e.dst_set == NO_SET || self.sets[e.dst_set as usize].contains(key.dst))
    }
}

/// Counts what a lookup does; the no-op implementation compiles away.
trait Counter {
    fn probe(&mut self);
    fn candidate(&mut self);
}

impl Counter for () {
    #[inline(always)]
    fn probe(&mut self) {}
    #[inline(always)]
    fn candidate(&mut self) {}
}

/// What lookups cost, summed over many: for the benchmark's diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub lookups: u64,
    /// Hash tables probed.
    pub probes: u64,
    /// Rules verified field by field.
    pub candidates: u64,
}

impl Counter for Profile {
    fn probe(&mut self) {
        self.probes += 1;
    }
    fn candidate(&mut self) {
        self.candidates += 1;
    }
}

impl<A: Addr> TupleSpace<A> {
    /// [`Classifier::lookup`], adding its cost to `profile`.
    pub fn lookup_profiled(&self, key: &Key<A>, profile: &mut Profile) -> Option<Match> {
        profile.lookups += 1;
        self.find(key, profile)
    }

    #[inline(always)]
    fn find<C: Counter>(&self, key: &Key<A>, counter: &mut C) -> Option<Match> {
        let mut best: Option<&Entry<A>> = None;
        let mut best_rank = u64::MAX;
        for t in &self.tables {
            if t.best >= best_rank {
                break;
            }
            counter.probe();
            let (s, d) = (key.src.and(t.src_mask), key.dst.and(t.dst_mask));
            let mask = t.slots.len() - 1;
            let mut i = slot_index(hash(s, d), t.shift);
            loop {
                let slot = &t.slots[i];
                if slot.len == 0 {
                    break;
                }
                if slot.src == s && slot.dst == d {
                    let run = &self.entries[slot.start as usize..(slot.start + slot.len) as usize];
                    for e in run {
                        if e.rank >= best_rank {
                            break;
                        }
                        counter.candidate();
                        if self.verify(e, key) {
                            best_rank = e.rank;
                            best = Some(e);
                            break;
                        }
                    }
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        best.map(|e| Match {
            id: e.id,
            priority: e.priority,
            action: e.action,
        })
    }
}

impl<A: Addr> Classifier<A> for TupleSpace<A> {
    fn lookup(&self, key: &Key<A>) -> Option<Match> {
        self.find(key, &mut ())
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self.entries.capacity() * size_of::<Entry<A>>()
            + self
                .tables
                .iter()
                .map(|t| size_of::<Table<A>>() + t.slots.capacity() * size_of::<Slot<A>>())
                .sum::<usize>()
            + self.sets.iter().map(|s| s.memory_bytes()).sum::<usize>()
    }
}
