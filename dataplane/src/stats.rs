//! Per-worker counters: one writer (the worker), any number of readers (the
//! metrics collector sums them at scrape time).
//!
//! Each worker owns one [`Counters`], aligned to a cache line so that no two
//! workers ever write the same line. A [`Counter`] is an `AtomicU64` updated by a
//! relaxed load and store, which on x86-64 is a plain `mov` pair: no lock
//! prefix, no fence. That is correct only with a single writer, which is why a
//! worker's counters are never shared with another worker.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::reason::DropReason;

/// A monotonically increasing count (or a gauge, through [`Counter::set`]) with
/// one writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    #[inline]
    pub fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Packets and bytes received on one port, and what became of them.
#[derive(Debug, Default)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    /// Received here and forwarded (to the other port).
    pub forwarded_packets: Counter,
    pub forwarded_bytes: Counter,
    /// Received here and dropped.
    pub dropped_packets: Counter,
    pub dropped_bytes: Counter,
}

/// Everything one worker counts.
#[derive(Debug)]
#[repr(align(64))]
pub struct Counters {
    /// Port A (index 0) and B (index 1).
    pub ports: [PortCounters; 2],
    /// Drops by [`DropReason::index`].
    pub drops: [Counter; DropReason::COUNT],
    pub flows_created: Counter,
    /// Reclaimed after their idle timeout (by the sweep, a lookup or an insert).
    pub flows_expired: Counter,
    /// Handshakes evicted from a full table to make room.
    pub flows_evicted: Counter,
    /// Connections dropped by revalidation after a rule change.
    pub flows_revoked: Counter,
    /// Gauge: connections in the table after the last batch.
    pub flows_active: Counter,
    /// Gauge: the table's capacity.
    pub flows_capacity: Counter,
    /// ICMP errors passed as related to a connection.
    pub related: Counter,
    /// ARP and neighbour discovery passed without evaluation.
    pub unevaluated: Counter,
    /// Gauge: the generation of the snapshot of the last batch.
    pub generation: Counter,
    /// Batches processed.
    pub batches: Counter,
    /// Rule evaluations by deciding rule.
    pub rules: RuleHits,
    /// First-packet decisions per protected interface and direction, keyed
    /// by [`interface_key`].
    pub interfaces: RuleHits,
}

/// The key of an interface's decision counter: its model id, the direction
/// (ingress: its own ingress policy; egress: its egress policy) and whether
/// that policy allowed the packet.
pub fn interface_key(interface: u32, egress: bool, allowed: bool) -> u32 {
    interface << 2 | u32::from(egress) << 1 | u32::from(allowed)
}

/// The parts of an [`interface_key`].
pub fn interface_of_key(key: u32) -> (u32, bool, bool) {
    (key >> 2, key & 2 != 0, key & 1 != 0)
}

impl Counters {
    pub fn new(rule_slots: usize) -> Counters {
        Counters {
            ports: Default::default(),
            drops: std::array::from_fn(|_| Counter::default()),
            flows_created: Counter::default(),
            flows_expired: Counter::default(),
            flows_evicted: Counter::default(),
            flows_revoked: Counter::default(),
            flows_active: Counter::default(),
            flows_capacity: Counter::default(),
            related: Counter::default(),
            unevaluated: Counter::default(),
            generation: Counter::default(),
            batches: Counter::default(),
            rules: RuleHits::new(rule_slots),
            interfaces: RuleHits::new(rule_slots),
        }
    }

    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].get()
    }
}

/// One port's counts summed over workers, as plain numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
}

/// Several workers' counters summed at one moment (for a summary or a
/// scrape); gauges are summed too, except the generation, which is the
/// lowest any worker runs (the one every worker has adopted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    pub ports: [PortTotals; 2],
    pub drops: [u64; DropReason::COUNT],
    pub flows_created: u64,
    pub flows_expired: u64,
    pub flows_evicted: u64,
    pub flows_revoked: u64,
    pub flows_active: u64,
    pub flows_capacity: u64,
    pub related: u64,
    pub unevaluated: u64,
    pub generation: u64,
    pub batches: u64,
    /// Hits by rule id; hits not counted per rule are under `rules_other`.
    pub rules: std::collections::BTreeMap<u32, u64>,
    pub rules_other: u64,
    /// Decisions by [`interface_key`]; beyond the table, `interfaces_other`.
    pub interfaces: std::collections::BTreeMap<u32, u64>,
    pub interfaces_other: u64,
}

impl Totals {
    pub fn sum<'a>(workers: impl IntoIterator<Item = &'a Counters>) -> Totals {
        let mut t = Totals {
            ports: [PortTotals::default(); 2],
            drops: [0; DropReason::COUNT],
            flows_created: 0,
            flows_expired: 0,
            flows_evicted: 0,
            flows_revoked: 0,
            flows_active: 0,
            flows_capacity: 0,
            related: 0,
            unevaluated: 0,
            generation: u64::MAX,
            batches: 0,
            rules: std::collections::BTreeMap::new(),
            rules_other: 0,
            interfaces: std::collections::BTreeMap::new(),
            interfaces_other: 0,
        };
        for c in workers {
            for (t, p) in t.ports.iter_mut().zip(&c.ports) {
                t.rx_packets += p.rx_packets.get();
                t.rx_bytes += p.rx_bytes.get();
                t.forwarded_packets += p.forwarded_packets.get();
                t.forwarded_bytes += p.forwarded_bytes.get();
                t.dropped_packets += p.dropped_packets.get();
                t.dropped_bytes += p.dropped_bytes.get();
            }
            for (t, d) in t.drops.iter_mut().zip(&c.drops) {
                *t += d.get();
            }
            t.flows_created += c.flows_created.get();
            t.flows_expired += c.flows_expired.get();
            t.flows_evicted += c.flows_evicted.get();
            t.flows_revoked += c.flows_revoked.get();
            t.flows_active += c.flows_active.get();
            t.flows_capacity += c.flows_capacity.get();
            t.related += c.related.get();
            t.unevaluated += c.unevaluated.get();
            t.generation = t.generation.min(c.generation.get());
            t.batches += c.batches.get();
            for (rule, hits) in c.rules.iter() {
                *t.rules.entry(rule).or_default() += hits;
            }
            t.rules_other += c.rules.other.get();
            for (key, n) in c.interfaces.iter() {
                *t.interfaces.entry(key).or_default() += n;
            }
            t.interfaces_other += c.interfaces.other.get();
        }
        if t.generation == u64::MAX {
            t.generation = 0;
        }
        t
    }

    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }
}

/// Hit counts per rule id: how many first packets (and stateless packets) each
/// rule decided. A fixed open-addressed table, allocated once: a rule takes a
/// slot at its first hit; when its probe window is full, the hit is counted in
/// `other` instead, so the table never grows and its cardinality is bounded.
#[derive(Debug)]
pub struct RuleHits {
    /// (rule id + 1, or 0 when free; hits).
    slots: Box<[(AtomicU64, AtomicU64)]>,
    shift: u32,
    pub other: Counter,
}

/// Slots a rule id may occupy, starting at its hash.
const RULE_PROBES: usize = 8;

impl RuleHits {
    /// A table of at least `slots` slots (rounded up to a power of two).
    pub fn new(slots: usize) -> RuleHits {
        let n = slots.max(RULE_PROBES).next_power_of_two();
        RuleHits {
            slots: (0..n).map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect(),
            shift: 64 - n.trailing_zeros(),
            other: Counter::default(),
        }
    }

    #[inline]
    pub fn hit(&self, rule: u32) {
        let tag = u64::from(rule) + 1;
        let start = (tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize;
        let mask = self.slots.len() - 1;
        for i in 0..RULE_PROBES {
            let (id, hits) = &self.slots[(start + i) & mask];
            let current = id.load(Relaxed);
            if current == tag || current == 0 {
                if current == 0 {
                    id.store(tag, Relaxed);
                }
                hits.store(hits.load(Relaxed) + 1, Relaxed);
                return;
            }
        }
        self.other.add(1);
    }

    /// (rule id, hits) of every rule hit so far.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.slots.iter().filter_map(|(id, hits)| {
            let id = id.load(Relaxed);
            (id != 0).then(|| ((id - 1) as u32, hits.load(Relaxed)))
        })
    }

    /// The hits of one rule.
    pub fn get(&self, rule: u32) -> u64 {
        self.iter().find(|(id, _)| *id == rule).map_or(0, |(_, h)| h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_cache_line_aligned() {
        assert_eq!(align_of::<Counters>(), 64);
    }

    #[test]
    fn rule_hits_count_per_rule_and_overflow_to_other() {
        let hits = RuleHits::new(8);
        for rule in [5, 5, 7, 0, u32::MAX] {
            hits.hit(rule);
        }
        assert_eq!(
            (hits.get(5), hits.get(7), hits.get(0), hits.get(u32::MAX)),
            (2, 1, 1, 1)
        );
        for rule in 100..200 {
            hits.hit(rule);
        }
        let tracked: u64 = hits.iter().map(|(_, h)| h).sum();
        assert_eq!(tracked + hits.other.get(), 105, "every hit is counted somewhere");
        assert_eq!(hits.iter().count(), 8, "the table never grows");
    }
}
