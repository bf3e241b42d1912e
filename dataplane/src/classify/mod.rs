//! The multi-field packet classifier: given a first packet's 5-tuple, find the
//! deciding rule of a rule set.
//!
//! Rules are generic 5-tuple rules (source and destination address, protocol,
//! source and destination port ranges) with a priority, an action and an id. The
//! deciding rule is the matching rule of smallest [`rank`]: smallest priority
//! number first, deny before allow at equal priority, smallest id last. The id
//! tie-break makes the answer unique, so two engines (or the engine and the
//! reference evaluator) can be compared rule for rule.
//!
//! ICMP rules use the port fields for type and code, as rte_acl and Open vSwitch
//! do: a key's `src_port` is the ICMP type and its `dst_port` the code, and a rule's
//! ranges constrain them. Only rules of protocol icmp/icmpv6 can see those keys.
//!
//! An address field is either a prefix or a shared [`AddrSet`] (the members of a
//! security group, a prefix list). Sets are held by `Arc` and referenced by every
//! rule that uses them, never copied into the rules.
//!
//! Engines:
//! - [`Linear`]: a first-match scan in rank order. The reference every other
//!   engine is tested against, and the benchmark's baseline.
//! - [`BitVector`]: per-field equivalence classes and rule bitmaps, for small
//!   rule sets; see its module.
//! - [`DecisionTree`]: multi-way cuts with one vector compare per node, for
//!   large ones whose rules it can separate without replicating them much.
//! - [`TupleSpace`]: hash tables by prefix-length tuple, for the rest.
//! - [`Engine`]: what a policy is compiled to, one of the three.
//!
//! All are generic over the address type ([`Addr`]: `u32` for IPv4, `u128` for
//! IPv6), chosen once when a policy is compiled, never per packet.
//!
//! Never here: allocation, locks or system calls during a lookup.

mod bitvec;
mod dtree;
mod linear;
mod tuple;

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

pub use bitvec::{BitVector, MAX_RULES};
pub use dtree::{DecisionTree, BINTH};
pub use linear::Linear;
pub use tuple::{Profile, TupleSpace};

/// An address type: `u32` for IPv4, `u128` for IPv6 (most significant bit first).
pub trait Addr: Copy + Eq + Ord + Hash + Debug + Default + Send + Sync + 'static + bitvec::Lane {
    /// Address width in bits.
    const BITS: u8;
    /// The mask of a `len`-bit prefix (`len` <= `BITS`).
    fn prefix_mask(len: u8) -> Self;
    fn and(self, other: Self) -> Self;
    /// `self | !mask`: the last address of a prefix.
    fn or_not(self, mask: Self) -> Self;
    /// The next address, wrapping after the last.
    fn next(self) -> Self;
    /// 64 well-mixed bits of the address, for hashing.
    fn fold(self) -> u64;
    /// Number of 32-bit chunks (`BITS / 32`).
    const CHUNKS: usize;
    /// Chunk `i` (< `CHUNKS`), most significant first.
    fn chunk(self, i: usize) -> u32;
}

impl Addr for u32 {
    fn or_not(self, mask: Self) -> Self {
        self | !mask
    }
    fn next(self) -> Self {
        self.wrapping_add(1)
    }
    const BITS: u8 = 32;
    fn prefix_mask(len: u8) -> Self {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }
    fn and(self, other: Self) -> Self {
        self & other
    }
    fn fold(self) -> u64 {
        u64::from(self)
    }
    const CHUNKS: usize = 1;
    fn chunk(self, _: usize) -> u32 {
        self
    }
}

impl Addr for u128 {
    fn or_not(self, mask: Self) -> Self {
        self | !mask
    }
    fn next(self) -> Self {
        self.wrapping_add(1)
    }
    const BITS: u8 = 128;
    fn prefix_mask(len: u8) -> Self {
        if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        }
    }
    fn and(self, other: Self) -> Self {
        self & other
    }
    fn fold(self) -> u64 {
        // Truncations intended: the two halves are mixed together.
        (self as u64) ^ ((self >> 64) as u64).rotate_left(29)
    }
    const CHUNKS: usize = 4;
    fn chunk(self, i: usize) -> u32 {
        // Truncation intended: one 32-bit chunk.
        (self >> (96 - 32 * i)) as u32
    }
}

/// An address prefix: the addresses whose first `len` bits equal `addr`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix<A> {
    /// Bits past `len` are zero.
    pub addr: A,
    pub len: u8,
}

impl<A: Addr> Prefix<A> {
    /// Every address.
    pub fn any() -> Self {
        Prefix {
            addr: A::default(),
            len: 0,
        }
    }

    /// A prefix, with the bits past `len` cleared.
    pub fn new(addr: A, len: u8) -> Self {
        let len = len.min(A::BITS);
        Prefix {
            addr: addr.and(A::prefix_mask(len)),
            len,
        }
    }

    pub fn contains(&self, addr: A) -> bool {
        addr.and(A::prefix_mask(self.len)) == self.addr
    }

    /// The last address of the prefix.
    pub fn last(&self) -> A {
        self.addr.or_not(A::prefix_mask(self.len))
    }
}

/// A set of addresses shared by many rules: host addresses (the members of a
/// group) and prefixes (a prefix list).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrSet<A> {
    /// Sorted, without repeats.
    hosts: Vec<A>,
    prefixes: Vec<Prefix<A>>,
}

impl<A: Addr> AddrSet<A> {
    pub fn new(mut hosts: Vec<A>, prefixes: Vec<Prefix<A>>) -> Self {
        hosts.sort_unstable();
        hosts.dedup();
        AddrSet { hosts, prefixes }
    }

    pub fn contains(&self, addr: A) -> bool {
        self.hosts.binary_search(&addr).is_ok() || self.prefixes.iter().any(|p| p.contains(addr))
    }

    /// Number of members (hosts and prefixes).
    pub(crate) fn len(&self) -> usize {
        self.hosts.len() + self.prefixes.len()
    }

    /// The set as ascending, disjoint, non-adjacent inclusive ranges.
    pub fn ranges(&self) -> Vec<(A, A)> {
        let mut all: Vec<(A, A)> = self.hosts.iter().map(|&h| (h, h)).collect();
        all.extend(self.prefixes.iter().map(|p| (p.addr, p.last())));
        merge(all)
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.hosts.capacity() * size_of::<A>() + self.prefixes.capacity() * size_of::<Prefix<A>>()
    }
}

/// Sorts inclusive ranges and merges those that overlap or touch.
fn merge<A: Addr>(mut ranges: Vec<(A, A)>) -> Vec<(A, A)> {
    ranges.sort_unstable();
    let mut out: Vec<(A, A)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            // `last.1.next() == lo` touches; a range ending at the last address
            // swallows everything after it (its `next` wraps to 0).
            Some(last) if lo <= last.1 || last.1.next() == lo || last.1.next() == A::default() => {
                last.1 = last.1.max(hi);
            }
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The distinct address sets a rule set names, each kept once (by identity:
/// the same `Arc`), so that an engine's rules refer to a set by its index.
pub(crate) struct SetTable<A> {
    sets: Vec<Arc<AddrSet<A>>>,
    /// Index in `sets` by the set's address.
    index: std::collections::HashMap<usize, u32>,
}

impl<A: Addr> SetTable<A> {
    pub(crate) fn new() -> Self {
        SetTable {
            sets: Vec::new(),
            index: std::collections::HashMap::new(),
        }
    }

    /// The index of `m`'s set, added if new; `None` for a prefix.
    pub(crate) fn index(&mut self, m: &AddrMatch<A>) -> Option<u32> {
        let AddrMatch::Set(s) = m else { return None };
        let sets = &mut self.sets;
        Some(*self.index.entry(Arc::as_ptr(s) as usize).or_insert_with(|| {
            sets.push(Arc::clone(s));
            u32::try_from(sets.len() - 1).expect("fewer than 2^32 sets")
        }))
    }

    pub(crate) fn into_sets(self) -> Vec<Arc<AddrSet<A>>> {
        self.sets
    }
}

/// What an address field of a rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrMatch<A> {
    Prefix(Prefix<A>),
    Set(Arc<AddrSet<A>>),
}

impl<A: Addr> AddrMatch<A> {
    pub fn any() -> Self {
        AddrMatch::Prefix(Prefix::any())
    }

    pub fn matches(&self, addr: A) -> bool {
        match self {
            AddrMatch::Prefix(p) => p.contains(addr),
            AddrMatch::Set(s) => s.contains(addr),
        }
    }

    /// The addresses matched, as ascending, disjoint, non-adjacent inclusive
    /// ranges.
    pub fn ranges(&self) -> Vec<(A, A)> {
        match self {
            AddrMatch::Prefix(p) => vec![(p.addr, p.last())],
            AddrMatch::Set(s) => s.ranges(),
        }
    }

    /// The prefix an engine may index this field by: the prefix itself, or
    /// every address for a set (checked when a candidate is verified).
    fn index_prefix(&self) -> Prefix<A> {
        match self {
            AddrMatch::Prefix(p) => *p,
            AddrMatch::Set(_) => Prefix::any(),
        }
    }
}

/// What a deciding rule does with the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Allow,
    Deny,
}

/// One classifier rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule<A> {
    pub src: AddrMatch<A>,
    pub dst: AddrMatch<A>,
    /// `None` matches every protocol.
    pub proto: Option<u8>,
    /// Inclusive ranges; for ICMP rules, the type (`src_ports`) and code
    /// (`dst_ports`).
    pub src_ports: (u16, u16),
    pub dst_ports: (u16, u16),
    /// Smaller is evaluated first.
    pub priority: u32,
    pub action: RuleAction,
    /// Returned in the [`Match`]; also the last tie-break.
    pub id: u32,
}

impl<A: Addr> Rule<A> {
    /// Whether this rule matches `key`; the definition every engine implements.
    pub fn matches(&self, key: &Key<A>) -> bool {
        self.proto.is_none_or(|p| p == key.proto)
            && (self.src_ports.0..=self.src_ports.1).contains(&key.src_port)
            && (self.dst_ports.0..=self.dst_ports.1).contains(&key.dst_port)
            && self.src.matches(key.src)
            && self.dst.matches(key.dst)
    }

    /// The rule's place in the decision order; see [`rank`].
    pub fn rank(&self) -> u64 {
        rank(self.priority, self.action, self.id)
    }
}

/// Total decision order: smaller wins. Priority first, deny before allow at equal
/// priority, then the smaller id, so that the deciding rule is unique.
pub fn rank(priority: u32, action: RuleAction, id: u32) -> u64 {
    let allow = u64::from(action == RuleAction::Allow);
    (u64::from(priority) << 33) | (allow << 32) | u64::from(id)
}

/// The fields of a packet a rule looks at. For ICMP, `src_port` is the type and
/// `dst_port` the code; for protocols without ports both are 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Key<A> {
    pub src: A,
    pub dst: A,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

/// The deciding rule of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    pub id: u32,
    pub priority: u32,
    pub action: RuleAction,
}

impl Match {
    /// The order of deciding rules: lower decides ([`rank`]).
    pub fn rank(&self) -> u64 {
        rank(self.priority, self.action, self.id)
    }
}

impl<A> From<&Rule<A>> for Match {
    fn from(r: &Rule<A>) -> Self {
        Match {
            id: r.id,
            priority: r.priority,
            action: r.action,
        }
    }
}

/// Tuple-space tables up to which [`Engine::build`] keeps the tuple space.
pub const FEW_TABLES: usize = 4;

/// The engine a policy is compiled to, each where it measured fastest:
/// [`TupleSpace`] when its rules fall in few tuples; else [`DecisionTree`]
/// when it builds within its node budget (for small sets, up to
/// [`MAX_RULES`], a tight one), else [`BitVector`] for small sets, else the
/// tuple space.
#[derive(Debug)]
pub enum Engine<A> {
    /// Boxed: it is several times the size of the tuple space's handle.
    BitVector(Box<BitVector<A>>),
    TupleSpace(TupleSpace<A>),
    DecisionTree(DecisionTree<A>),
}

impl<A: Addr> Engine<A> {
    /// The tuple space when it has at most [`FEW_TABLES`] tables (few probes
    /// per lookup, and it builds several times faster, which keeps rule
    /// changes quick); else, for small sets, the decision tree within
    /// [`dtree::SMALL_NODES_PER_RULE`] nodes per rule or the bit vector; else
    /// the decision tree or the tuple space.
    pub fn build(rules: &[Rule<A>]) -> Self {
        let tuple = TupleSpace::build(rules);
        if tuple.tables() <= FEW_TABLES {
            return Engine::TupleSpace(tuple);
        }
        if rules.len() <= MAX_RULES {
            // The tree where it stays compact (acl1_1k: 3.8 nodes per rule,
            // 0.12 MiB, faster than the bit vector), a cheap try where it
            // does not (fw1_1k: its wildcards replicate; the build stops
            // at the budget).
            let budget = dtree::SMALL_NODES_PER_RULE * rules.len();
            if let Some(t) = DecisionTree::build_with(rules, BINTH, budget) {
                return Engine::DecisionTree(t);
            }
            if let Some(b) = BitVector::build(rules) {
                return Engine::BitVector(Box::new(b));
            }
        }
        DecisionTree::build(rules).map_or(Engine::TupleSpace(tuple), Engine::DecisionTree)
    }

    /// The engine's name, as the benchmark prints it.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::BitVector(_) => "bitvec",
            Engine::TupleSpace(_) => "tuple",
            Engine::DecisionTree(_) => "dtree",
        }
    }
}

impl<A: Addr> Classifier<A> for Engine<A> {
    #[inline]
    fn lookup(&self, key: &Key<A>) -> Option<Match> {
        match self {
            Engine::BitVector(e) => e.lookup(key),
            Engine::TupleSpace(e) => e.lookup(key),
            Engine::DecisionTree(e) => e.lookup(key),
        }
    }

    fn lookup_batch(&self, keys: &[Key<A>], out: &mut [Option<Match>]) {
        match self {
            Engine::BitVector(e) => e.lookup_batch(keys, out),
            Engine::TupleSpace(e) => e.lookup_batch(keys, out),
            Engine::DecisionTree(e) => e.lookup_batch(keys, out),
        }
    }

    fn memory_bytes(&self) -> usize {
        match self {
            Engine::BitVector(e) => e.memory_bytes(),
            Engine::TupleSpace(e) => e.memory_bytes(),
            Engine::DecisionTree(e) => e.memory_bytes(),
        }
    }
}

/// [`Classifier::lookup`] as a burst of one, for engines whose lookup is
/// their batch code.
fn lookup_one<A: Addr>(engine: &impl Classifier<A>, key: &Key<A>) -> Option<Match> {
    let mut out = [None];
    engine.lookup_batch(std::slice::from_ref(key), &mut out);
    out[0]
}

/// The interface every engine offers.
pub trait Classifier<A: Addr>: Send + Sync {
    /// The deciding rule for `key`, if any rule matches.
    fn lookup(&self, key: &Key<A>) -> Option<Match>;

    /// Classifies a burst: `out[i]` is the decision for `keys[i]` (as far as
    /// the shorter of the two goes). The default loops; engines override it
    /// to overlap the lookups.
    fn lookup_batch(&self, keys: &[Key<A>], out: &mut [Option<Match>]) {
        for (key, slot) in keys.iter().zip(out.iter_mut()) {
            *slot = self.lookup(key);
        }
    }

    /// Bytes of memory held by the built structure (rules included).
    fn memory_bytes(&self) -> usize;
}
