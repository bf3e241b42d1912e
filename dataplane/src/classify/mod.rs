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
//! - [`TupleSpace`]: the engine the dataplane uses; see its module.
//!
//! Both are generic over the address type ([`Addr`]: `u32` for IPv4, `u128` for
//! IPv6), chosen once when a policy is compiled, never per packet.
//!
//! Never here: allocation, locks or system calls during a lookup.

pub mod classbench;
mod linear;
mod tuple;

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

pub use linear::Linear;
pub use tuple::{Profile, TupleSpace};

/// An address type: `u32` for IPv4, `u128` for IPv6 (most significant bit first).
pub trait Addr: Copy + Eq + Ord + Hash + Debug + Default + Send + Sync + 'static {
    /// Address width in bits.
    const BITS: u8;
    /// The mask of a `len`-bit prefix (`len` <= `BITS`).
    fn prefix_mask(len: u8) -> Self;
    fn and(self, other: Self) -> Self;
    /// 64 well-mixed bits of the address, for hashing.
    fn fold(self) -> u64;
}

impl Addr for u32 {
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
}

impl Addr for u128 {
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

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.hosts.capacity() * size_of::<A>() + self.prefixes.capacity() * size_of::<Prefix<A>>()
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
pub enum Action {
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
    pub action: Action,
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
pub fn rank(priority: u32, action: Action, id: u32) -> u64 {
    let allow = u64::from(action == Action::Allow);
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
    pub action: Action,
}

/// The interface every engine offers.
pub trait Classifier<A: Addr>: Send + Sync {
    /// The deciding rule for `key`, if any rule matches.
    fn lookup(&self, key: &Key<A>) -> Option<Match>;

    /// Classifies a burst: `out[i]` is the decision for `keys[i]`. The default
    /// loops; engines override it to overlap the lookups.
    fn lookup_batch(&self, keys: &[Key<A>], out: &mut [Option<Match>]) {
        for (key, slot) in keys.iter().zip(out.iter_mut()) {
            *slot = self.lookup(key);
        }
    }

    /// Bytes of memory held by the built structure (rules included).
    fn memory_bytes(&self) -> usize;
}

#[cfg(test)]
mod tests;
