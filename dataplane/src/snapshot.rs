//! The immutable snapshot workers decide first packets with.
//!
//! The control side compiles the whole security-group model into one
//! [`Snapshot`] and publishes it; workers load it lock-free (through `arc-swap`,
//! once per batch) and never see the model. It holds:
//! - the VPC table (outer VLAN ID to VPC);
//! - the endpoint table: protected address (per VPC, v4 and v6) to [`Endpoint`];
//! - one [`GroupPolicy`] per security group (an ingress and an egress
//!   [`Policy`], each a classifier per address family), and one [`GroupSet`]
//!   per distinct set of bound groups, shared by every interface with that set
//!   through `Arc`, which refers to its groups' policies;
//! - the settings the dataplane needs, and a generation number.
//!
//! [`Snapshot::decide`] is spec section 3 over these tables: the destination's
//! ingress policy with the source as remote, the source's egress policy with the
//! destination as remote, intra-group acceptance first, the deciding rule
//! otherwise, unprotected traffic by the setting. The deciding rule of a set is
//! the best (priority, deny before allow, rule id) of its groups' deciding
//! rules, which is exactly what one classifier over the union of their rules
//! would answer; so a change to one group rebuilds that group's classifiers
//! only, however many sets contain it.
//!
//! A snapshot is never changed after it is built: a new model gives a new
//! snapshot, which reuses the unchanged policies of the old one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::classify::{Addr, Classifier, Engine, Key, Match, RuleAction};

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
/// set.
#[derive(Debug)]
pub struct GroupSet {
    /// Group ids, ascending.
    pub groups: Vec<u32>,
    /// The policies of `groups`, in the same order.
    pub policies: Box<[Arc<GroupPolicy>]>,
    /// The groups of the set with `intra_group = accept`, ascending.
    pub accepting: Vec<u32>,
    /// Every group of the set is stateful.
    pub stateful: bool,
}

impl GroupSet {
    /// The set of `policies` (ascending by id, no repeats).
    pub fn new(policies: Vec<Arc<GroupPolicy>>) -> Self {
        debug_assert!(policies.windows(2).all(|w| w[0].id < w[1].id));
        GroupSet {
            groups: policies.iter().map(|p| p.id).collect(),
            accepting: policies.iter().filter(|p| p.accepting).map(|p| p.id).collect(),
            stateful: policies.iter().all(|p| p.stateful),
            policies: policies.into_boxed_slice(),
        }
    }

    /// The deciding rule over the set's groups for `key` in `direction`.
    fn lookup<A: Addr>(
        &self,
        direction: Direction,
        key: &Key<A>,
        pick: impl Fn(&Policy) -> &Engine<A>,
    ) -> Option<Match> {
        let mut best: Option<Match> = None;
        for group in self.policies.iter() {
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
        best
    }
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
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub settings: Settings,
    /// VPC of each VLAN ID 1-4094 (index 0 = untagged and priority-tagged).
    vlans: Box<[Option<VpcIndex>; 4096]>,
    endpoints: Vec<Endpoint>,
    v4: HashMap<(VpcIndex, u32), u32>,
    v6: HashMap<(VpcIndex, u128), u32>,
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

/// Builds a [`Snapshot`]; the control side's compiler drives it.
#[derive(Debug)]
pub struct Builder {
    snapshot: Snapshot,
}

impl Builder {
    pub fn new(generation: u64, settings: Settings) -> Self {
        Builder {
            snapshot: Snapshot {
                generation,
                settings,
                vlans: Box::new([None; 4096]),
                endpoints: Vec::new(),
                v4: HashMap::new(),
                v6: HashMap::new(),
            },
        }
    }

    /// Maps a VLAN (`None` = untagged) to a VPC index.
    pub fn vpc(&mut self, vlan: Option<u16>, vpc: VpcIndex) {
        self.snapshot.vlans[usize::from(vlan.unwrap_or(0) & 0x0fff)] = Some(vpc);
    }

    /// Adds an endpoint owning `addresses` in `vpc`.
    pub fn endpoint(&mut self, vpc: VpcIndex, addresses: &[IpAddr], endpoint: Endpoint) {
        let index = u32::try_from(self.snapshot.endpoints.len()).expect("fewer than 2^32 endpoints");
        self.snapshot.endpoints.push(endpoint);
        for addr in addresses {
            match addr {
                IpAddr::V4(a) => self.snapshot.v4.insert((vpc, u32::from(*a)), index),
                IpAddr::V6(a) => self.snapshot.v6.insert((vpc, u128::from(*a)), index),
            };
        }
    }

    pub fn finish(self) -> Snapshot {
        self.snapshot
    }
}

impl Snapshot {
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
        let i = match addr {
            IpAddr::V4(a) => self.v4.get(&(vpc, u32::from(a))),
            IpAddr::V6(a) => self.v6.get(&(vpc, u128::from(a))),
        }?;
        self.endpoints.get(*i as usize)
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
        let ingress = dst.map(|ep| (ep.interface, check(ep, src, Direction::Ingress, pkt)));
        let egress = src.map(|ep| (ep.interface, check(ep, dst, Direction::Egress, pkt)));
        let allowed = ingress.is_none_or(|(_, c)| c.allows()) && egress.is_none_or(|(_, c)| c.allows());
        let sets = [dst, src].map(|e| e.and_then(|e| e.groups.as_deref()));
        let stateful = sets.iter().any(Option::is_some) && sets.iter().flatten().all(|s| s.stateful);
        Verdict {
            allowed,
            vpc: Some(vpc),
            ingress,
            egress,
            stateful,
        }
    }
}

/// One interface's policy in one direction; `peer` is the other endpoint, if
/// protected.
fn check(ep: &Endpoint, peer: Option<&Endpoint>, direction: Direction, pkt: &Packet) -> Check {
    let Some(set) = ep.groups.as_deref() else {
        return Check::NotFiltered;
    };
    if let Some(peer_set) = peer.and_then(|p| p.groups.as_deref()) {
        if let Some(g) = first_common(&set.accepting, &peer_set.groups) {
            return Check::IntraGroup(g);
        }
    }
    let found = match (pkt.src, pkt.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => set.lookup(
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
        (IpAddr::V6(s), IpAddr::V6(d)) => set.lookup(
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
        _ => None,
    };
    found.map_or(Check::ImplicitDeny, Check::Rule)
}

/// The smallest element common to two ascending lists.
fn first_common(a: &[u32], b: &[u32]) -> Option<u32> {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return Some(a[i]),
        }
    }
    None
}
