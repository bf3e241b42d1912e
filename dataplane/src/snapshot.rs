//! The immutable snapshot workers decide first packets with.
//!
//! The control side compiles the whole security-group model into one
//! [`Snapshot`] and publishes it; workers load it lock-free (through `arc-swap`,
//! once per batch) and never see the model. It holds:
//! - the VPC table (outer VLAN ID to VPC);
//! - the endpoint table: protected address (per VPC, v4 and v6) to [`Endpoint`];
//! - the group table: one [`GroupPolicy`] per security group (an ingress and
//!   an egress [`Policy`], each a classifier per address family) in a slot;
//!   and one [`GroupSet`] per distinct set of bound groups, shared by every
//!   interface with that set through `Arc`, which names its groups' slots;
//! - the merged table: for the sets many interfaces share, a
//!   [`MergedPolicy`], one classifier over the union of the set's rules, in
//!   the set's slot;
//! - the settings the dataplane needs, and a generation number.
//!
//! [`Snapshot::decide`] is spec section 3 over these tables: the destination's
//! ingress policy with the source as remote, the source's egress policy with the
//! destination as remote, intra-group acceptance first, the deciding rule
//! otherwise, unprotected traffic by the setting. The deciding rule of a set is
//! the best (priority, deny before allow, rule id) of its groups' deciding
//! rules, which is exactly what one classifier over the union of their rules
//! would answer; so a change to one group rebuilds that group's classifiers
//! (and the merged ones of the few sets that have one), however many sets
//! contain it. A set with a merged policy is decided by it in one lookup.
//!
//! A snapshot is never changed after it is published. The next one starts as
//! [`Snapshot::successor`], which shares every table (copy-on-write, see
//! [`crate::cow`]); the control side writes what changed into it, which copies
//! only the chunks and shards it touches, and publishes it.

use std::net::IpAddr;
use std::sync::Arc;

use crate::classify::{Addr, Classifier, Engine, Key, Match, RuleAction};
use crate::cow::{Chunks, Shards};

/// The two directions a policy can face.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

/// The compiled rules of one group in one direction.
#[derive(Debug)]
pub struct Policy {
    pub v4: Engine<u32>,
    pub v6: Engine<u128>,
}

/// What one security group compiles to.
#[derive(Debug)]
pub struct GroupPolicy {
    pub id: u32,
    /// `intra_group = accept`.
    pub accepting: bool,
    pub stateful: bool,
    pub ingress: Policy,
    pub egress: Policy,
}

/// One set of bound groups; shared by every interface bound to exactly that
/// set. It names its groups' slots in the snapshot's group table, not their
/// policies, so a group compiled anew is seen by every set containing it
/// without touching the sets.
#[derive(Debug, PartialEq, Eq)]
pub struct GroupSet {
    /// Group ids, ascending.
    pub groups: Box<[u32]>,
    /// The group-table slots of `groups`, in the same order.
    pub slots: Box<[u32]>,
    /// This set's slot in the merged table, which may hold one classifier
    /// over the union of its groups' rules.
    pub slot: u32,
}

impl GroupSet {
    /// The set of `members`, (group id, slot) pairs with distinct ids, with
    /// merged-table slot `slot`.
    pub fn new(mut members: Vec<(u32, u32)>, slot: u32) -> Self {
        members.sort_unstable();
        debug_assert!(members.windows(2).all(|w| w[0].0 < w[1].0));
        GroupSet {
            groups: members.iter().map(|m| m.0).collect(),
            slots: members.iter().map(|m| m.1).collect(),
            slot,
        }
    }
}

/// One classifier per direction over the union of a set's groups' rules: the
/// same deciding rule as the best over its groups, in one lookup instead of
/// one per group. Built for the sets many interfaces share.
#[derive(Debug)]
pub struct MergedPolicy {
    /// Every group of the set is stateful.
    pub stateful: bool,
    pub ingress: Policy,
    pub egress: Policy,
}

/// A protected interface as the dataplane sees it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The model's interface id.
    pub interface: u32,
    /// `None`: a bare-metal interface without groups, not filtered.
    pub groups: Option<Arc<GroupSet>>,
}

/// The settings the dataplane needs, in its own terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Forward traffic with no protected endpoint (else drop).
    pub forward_unprotected: bool,
    /// Forward Ethernet frames that are neither IP nor ARP (else drop).
    pub forward_non_ip: bool,
    pub tcp_pickup: bool,
    /// Re-check existing connections against a new snapshot (else keep them).
    pub revalidate: bool,
    pub fragment_timeout_secs: u32,
    pub flow_table_capacity: u32,
    pub timeouts: Timeouts,
}

/// Idle timeouts in seconds (spec section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: u32,
    pub tcp_syn_received: u32,
    pub tcp_established: u32,
    pub tcp_closing: u32,
    pub tcp_time_wait: u32,
    pub tcp_reset: u32,
    pub udp_unreplied: u32,
    pub udp_replied: u32,
    pub icmp_echo: u32,
    pub other: u32,
}

/// A VPC's index in the snapshot.
pub type VpcIndex = u16;

/// Everything a worker needs to decide first packets. See the module docs.
///
/// Its tables are copy-on-write ([`crate::cow`]): [`Snapshot::successor`]
/// shares them with this one, and the control side's writes to the successor
/// (before it is published) copy only the chunks and shards they touch.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub settings: Settings,
    /// VPC of each VLAN ID 1-4094 (index 0 = untagged and priority-tagged).
    vlans: Arc<[Option<VpcIndex>; 4096]>,
    /// Group policies by slot.
    groups: Chunks<Option<Arc<GroupPolicy>>>,
    /// Merged policies by group-set slot, for the sets that have one.
    merged: Chunks<Option<Arc<MergedPolicy>>>,
    v4: Shards<(VpcIndex, u32), Endpoint>,
    v6: Shards<(VpcIndex, u128), Endpoint>,
}

/// The fields of a first packet that decide it. For ICMP, `src_port` is the type
/// and `dst_port` the code; for protocols without ports both are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

/// How one policy decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The remote endpoint is a member of this accepting group.
    IntraGroup(u32),
    Rule(Match),
    ImplicitDeny,
    /// Bare metal without groups.
    NotFiltered,
}

impl Check {
    pub fn allows(self) -> bool {
        match self {
            Check::IntraGroup(_) | Check::NotFiltered => true,
            Check::Rule(m) => m.action == RuleAction::Allow,
            Check::ImplicitDeny => false,
        }
    }
}

/// The decision on a first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The frame's VLAN selected a VPC.
    pub vpc: Option<VpcIndex>,
    /// The destination interface's ingress check, if it is protected.
    pub ingress: Option<(u32, Check)>,
    /// The source interface's egress check, if it is protected.
    pub egress: Option<(u32, Check)>,
    /// An allowed packet creates a connection.
    pub stateful: bool,
}

impl Snapshot {
    /// An empty snapshot: no VPC, no group, no endpoint.
    pub fn new(generation: u64, settings: Settings) -> Self {
        Snapshot {
            generation,
            settings,
            vlans: Arc::new([None; 4096]),
            groups: Chunks::default(),
            merged: Chunks::default(),
            v4: Shards::default(),
            v6: Shards::default(),
        }
    }

    /// A snapshot with this one's tables (shared until written) under a new
    /// generation and settings.
    pub fn successor(&self, generation: u64, settings: Settings) -> Self {
        Snapshot {
            generation,
            settings,
            vlans: Arc::clone(&self.vlans),
            groups: self.groups.clone(),
            merged: self.merged.clone(),
            v4: self.v4.clone(),
            v6: self.v6.clone(),
        }
    }

    /// Maps a VLAN (`None` = untagged) to a VPC index.
    pub fn set_vpc(&mut self, vlan: Option<u16>, vpc: VpcIndex) {
        Arc::make_mut(&mut self.vlans)[usize::from(vlan.unwrap_or(0) & 0x0fff)] = Some(vpc);
    }

    /// Puts a group's policy in `slot` (`None` empties it).
    pub fn set_group(&mut self, slot: u32, policy: Option<Arc<GroupPolicy>>) {
        self.groups.set(slot as usize, policy);
    }

    /// Puts a group set's merged policy in `slot` (`None` empties it).
    pub fn set_merged(&mut self, slot: u32, policy: Option<Arc<MergedPolicy>>) {
        self.merged.set(slot as usize, policy);
    }

    /// The merged policy of the set in `slot`, if it has one.
    pub fn merged(&self, slot: u32) -> Option<&MergedPolicy> {
        self.merged.get(slot as usize).and_then(Option::as_deref)
    }

    /// The policy in `slot`.
    pub fn group(&self, slot: u32) -> Option<&GroupPolicy> {
        self.groups.get(slot as usize).and_then(Option::as_deref)
    }

    /// Makes `endpoint` the owner of `addr` in `vpc`.
    pub fn insert_endpoint(&mut self, vpc: VpcIndex, addr: IpAddr, endpoint: Endpoint) {
        match addr {
            IpAddr::V4(a) => self.v4.insert((vpc, u32::from(a)), endpoint),
            IpAddr::V6(a) => self.v6.insert((vpc, u128::from(a)), endpoint),
        };
    }

    pub fn remove_endpoint(&mut self, vpc: VpcIndex, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) => self.v4.remove(&(vpc, u32::from(a))),
            IpAddr::V6(a) => self.v6.remove(&(vpc, u128::from(a))),
        };
    }

    /// The VPC of a frame with this outer VLAN; VLAN 0 (a priority tag) is
    /// untagged.
    pub fn vpc(&self, vlan: Option<u16>) -> Option<VpcIndex> {
        let id = vlan.unwrap_or(0);
        if id > 4094 {
            return None;
        }
        self.vlans[usize::from(id)]
    }

    pub fn endpoint(&self, vpc: VpcIndex, addr: IpAddr) -> Option<&Endpoint> {
        match addr {
            IpAddr::V4(a) => self.v4.get(&(vpc, u32::from(a))),
            IpAddr::V6(a) => self.v6.get(&(vpc, u128::from(a))),
        }
    }

    /// Decides a burst of first packets: `out[i]` for `pkts[i]`.
    pub fn decide_batch(&self, pkts: &[Packet], out: &mut [Verdict]) {
        for (pkt, verdict) in pkts.iter().zip(out.iter_mut()) {
            *verdict = self.decide(pkt);
        }
    }

    /// Decides a first packet (spec section 3).
    pub fn decide(&self, pkt: &Packet) -> Verdict {
        let unprotected = |vpc| Verdict {
            allowed: self.settings.forward_unprotected,
            vpc,
            ingress: None,
            egress: None,
            stateful: false,
        };
        let Some(vpc) = self.vpc(pkt.vlan) else {
            return unprotected(None);
        };
        let dst = self.endpoint(vpc, pkt.dst);
        let src = self.endpoint(vpc, pkt.src);
        if dst.is_none() && src.is_none() {
            return unprotected(Some(vpc));
        }
        // Each check also says whether all groups of its set are stateful
        // (true without a set), read while its groups are visited anyway.
        let ingress = dst.map(|ep| (ep.interface, self.check(ep, src, Direction::Ingress, pkt)));
        let egress = src.map(|ep| (ep.interface, self.check(ep, dst, Direction::Egress, pkt)));
        let allowed = ingress.is_none_or(|(_, c)| c.0.allows()) && egress.is_none_or(|(_, c)| c.0.allows());
        let filtered = [dst, src].iter().flatten().any(|e| e.groups.is_some());
        let stateful = filtered && ingress.is_none_or(|(_, c)| c.1) && egress.is_none_or(|(_, c)| c.1);
        let (ingress, egress) = (ingress.map(|(i, c)| (i, c.0)), egress.map(|(i, c)| (i, c.0)));
        Verdict {
            allowed,
            vpc: Some(vpc),
            ingress,
            egress,
            stateful,
        }
    }
}

impl Snapshot {
    /// One interface's policy in one direction (`peer` is the other endpoint,
    /// if protected), and whether every group of its set is stateful.
    fn check(
        &self,
        ep: &Endpoint,
        peer: Option<&Endpoint>,
        direction: Direction,
        pkt: &Packet,
    ) -> (Check, bool) {
        let Some(set) = ep.groups.as_deref() else {
            return (Check::NotFiltered, true);
        };
        if let Some(peer_set) = peer.and_then(|p| p.groups.as_deref()) {
            if let Some(g) = self.first_common_accepting(set, &peer_set.groups) {
                let stateful = set
                    .slots
                    .iter()
                    .all(|&s| self.group(s).is_none_or(|g| g.stateful));
                return (Check::IntraGroup(g), stateful);
            }
        }
        let (found, stateful) = match (pkt.src, pkt.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.lookup(
                set,
                direction,
                &Key {
                    src: u32::from(s),
                    dst: u32::from(d),
                    proto: pkt.proto,
                    src_port: pkt.src_port,
                    dst_port: pkt.dst_port,
                },
                |p| &p.v4,
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) => self.lookup(
                set,
                direction,
                &Key {
                    src: u128::from(s),
                    dst: u128::from(d),
                    proto: pkt.proto,
                    src_port: pkt.src_port,
                    dst_port: pkt.dst_port,
                },
                |p| &p.v6,
            ),
            // A parsed packet never mixes families.
            _ => (None, true),
        };
        (found.map_or(Check::ImplicitDeny, Check::Rule), stateful)
    }

    /// The deciding rule over `set`'s groups for `key` in `direction` (the
    /// best rank of its groups' deciding rules: one lookup in the set's
    /// merged policy if it has one), and whether all of them are stateful.
    fn lookup<A: Addr>(
        &self,
        set: &GroupSet,
        direction: Direction,
        key: &Key<A>,
        pick: impl Fn(&Policy) -> &Engine<A>,
    ) -> (Option<Match>, bool) {
        if let Some(m) = self.merged(set.slot) {
            let policy = match direction {
                Direction::Ingress => &m.ingress,
                Direction::Egress => &m.egress,
            };
            return (pick(policy).lookup(key), m.stateful);
        }
        let mut best: Option<Match> = None;
        let mut stateful = true;
        for group in set.slots.iter().filter_map(|&slot| self.group(slot)) {
            stateful &= group.stateful;
            let policy = match direction {
                Direction::Ingress => &group.ingress,
                Direction::Egress => &group.egress,
            };
            if let Some(m) = pick(policy).lookup(key) {
                if best.is_none_or(|b| m.rank() < b.rank()) {
                    best = Some(m);
                }
            }
        }
        (best, stateful)
    }

    /// The smallest group of `set` with `intra_group = accept` that is also
    /// in `peer` (ascending ids).
    fn first_common_accepting(&self, set: &GroupSet, peer: &[u32]) -> Option<u32> {
        let (mut i, mut j) = (0, 0);
        while i < set.groups.len() && j < peer.len() {
            match set.groups[i].cmp(&peer[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    if self.group(set.slots[i]).is_some_and(|g| g.accepting) {
                        return Some(set.groups[i]);
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        None
    }
}
