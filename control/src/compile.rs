//! Compiles the model into the dataplane's [`Snapshot`]. It only builds
//! snapshots; publishing one to the workers is [`crate::apply::Control`]'s.
//!
//! - Every VPC gets an index and its VLAN an entry in the VLAN table.
//! - Every interface becomes an endpoint owning its addresses.
//! - Every group becomes one [`GroupPolicy`] (an ingress and an egress
//!   [`Policy`]); every distinct set of bound groups one [`GroupSet`] referring
//!   to its groups' policies, shared through `Arc` by every interface bound to
//!   exactly that set (order does not matter: verdicts never depend on it).
//! - A rule referencing a group or a prefix list gets the group's members' (or
//!   the list's) addresses as one shared [`AddrSet`] per family, built once per
//!   compilation and referenced by every rule that uses it.
//!
//! Reuse: the [`Compiler`] remembers every group it compiled, under a
//! fingerprint of everything its policy depends on (its rules and flags, and
//! the contents of every address set its rules reference). A new model
//! recompiles only the groups whose fingerprint changed; the others are taken
//! over as they are, and so is every group set whose groups all were. A change
//! to one group therefore rebuilds that group's classifiers (and those of the
//! groups referencing it, when its membership changed), however many sets
//! contain it.
//!
//! How a model rule becomes classifier rules: a rule without a family yields one
//! IPv4 and one IPv6 rule, a rule with one yields one. The classifier key is the
//! packet's own 5-tuple, so an ingress rule puts its remote on the source side and
//! its `local` on the destination side, an egress rule the reverse; `ports` always
//! constrain the destination port and `source_ports` the source port. ICMP type
//! and code go in the source and destination port fields, as the dataplane puts
//! them in the key.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use rampart_dataplane::classify::{self, AddrMatch, AddrSet, Engine, Prefix};
use rampart_dataplane::snapshot::{self, Builder, Endpoint, GroupPolicy, GroupSet, Policy, Snapshot};

use crate::model::{
    Direction, Family, GroupId, IntraGroup, Model, PrefixListId, Protocol, Remote, Rule, SecurityGroup,
};
use crate::settings::{NonIp, OnRuleChange, Settings, Unprotected};

/// What a compilation did, for logs and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Distinct sets of bound groups.
    pub group_sets: usize,
    /// Groups whose classifiers were compiled anew; the rest were reused.
    pub rebuilt: usize,
}

/// Compiles models into snapshots, reusing what did not change. Owned by the
/// control thread.
#[derive(Debug, Default)]
pub struct Compiler {
    generation: u64,
    /// Group -> fingerprint and compiled policy.
    groups: HashMap<GroupId, (u64, Arc<GroupPolicy>)>,
    /// Group set (ascending ids) -> the set as last compiled.
    sets: HashMap<Vec<GroupId>, Arc<GroupSet>>,
}

/// The address sets of one family, built on first use in a compilation.
struct FamilySets<A> {
    groups: HashMap<GroupId, Arc<AddrSet<A>>>,
    lists: HashMap<PrefixListId, Arc<AddrSet<A>>>,
}

impl<A> Default for FamilySets<A> {
    fn default() -> Self {
        FamilySets {
            groups: HashMap::new(),
            lists: HashMap::new(),
        }
    }
}

/// The address sets of one compilation.
#[derive(Default)]
struct Sets {
    /// Member addresses of each group, from one pass over the interfaces.
    members: HashMap<GroupId, Vec<IpAddr>>,
    v4: FamilySets<u32>,
    v6: FamilySets<u128>,
}

impl Sets {
    fn new(model: &Model) -> Self {
        let mut members: HashMap<GroupId, Vec<IpAddr>> = HashMap::new();
        for iface in model.interfaces() {
            for g in &iface.groups {
                members
                    .entry(*g)
                    .or_default()
                    .extend(iface.addresses.iter().copied());
            }
        }
        Sets {
            members,
            ..Sets::default()
        }
    }

    /// The members of group `g` of family `A`, as one shared set.
    fn group<A: AddrFamily>(&mut self, g: GroupId) -> Arc<AddrSet<A>> {
        if let Some(set) = A::sets(self).groups.get(&g) {
            return Arc::clone(set);
        }
        let hosts = self
            .members
            .get(&g)
            .into_iter()
            .flatten()
            .filter_map(A::host)
            .collect();
        let set = Arc::new(AddrSet::new(hosts, Vec::new()));
        A::sets(self).groups.insert(g, Arc::clone(&set));
        set
    }

    /// The CIDRs of prefix list `id` of family `A`, as one shared set.
    fn list<A: AddrFamily>(&mut self, model: &Model, id: PrefixListId) -> Arc<AddrSet<A>> {
        Arc::clone(A::sets(self).lists.entry(id).or_insert_with(|| {
            let nets = model
                .prefix_list(id)
                .into_iter()
                .flat_map(|p| &p.cidrs)
                .filter_map(A::net);
            Arc::new(AddrSet::new(Vec::new(), nets.collect()))
        }))
    }
}

/// An address family a policy is compiled for: `u32` (IPv4) or `u128` (IPv6).
trait AddrFamily: classify::Addr {
    const FAMILY: Family;
    fn host(addr: &IpAddr) -> Option<Self>;
    fn net(net: &IpNet) -> Option<Prefix<Self>>;
    fn sets(sets: &mut Sets) -> &mut FamilySets<Self>;
}

impl AddrFamily for u32 {
    const FAMILY: Family = Family::V4;
    fn host(addr: &IpAddr) -> Option<Self> {
        match addr {
            IpAddr::V4(a) => Some(u32::from(*a)),
            IpAddr::V6(_) => None,
        }
    }
    fn net(net: &IpNet) -> Option<Prefix<Self>> {
        match net {
            IpNet::V4(n) => Some(Prefix::new(u32::from(n.network()), n.prefix_len())),
            IpNet::V6(_) => None,
        }
    }
    fn sets(sets: &mut Sets) -> &mut FamilySets<Self> {
        &mut sets.v4
    }
}

impl AddrFamily for u128 {
    const FAMILY: Family = Family::V6;
    fn host(addr: &IpAddr) -> Option<Self> {
        match addr {
            IpAddr::V6(a) => Some(u128::from(*a)),
            IpAddr::V4(_) => None,
        }
    }
    fn net(net: &IpNet) -> Option<Prefix<Self>> {
        match net {
            IpNet::V6(n) => Some(Prefix::new(u128::from(n.network()), n.prefix_len())),
            IpNet::V4(_) => None,
        }
    }
    fn sets(sets: &mut Sets) -> &mut FamilySets<Self> {
        &mut sets.v6
    }
}

/// The dataplane's settings from the model's.
pub fn dataplane_settings(s: &Settings) -> snapshot::Settings {
    // Every value was range-checked by `Settings::validate` (at most 30 days,
    // at most 2^26 flows), so every conversion fits; saturating is only a guard.
    let secs = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let t = &s.timeouts;
    snapshot::Settings {
        forward_unprotected: s.unprotected == Unprotected::Forward,
        forward_non_ip: s.non_ip == NonIp::Forward,
        tcp_pickup: s.tcp_pickup,
        revalidate: s.on_rule_change == OnRuleChange::Revalidate,
        fragment_timeout_secs: secs(s.fragment_timeout),
        flow_table_capacity: secs(s.flow_table_capacity),
        timeouts: snapshot::Timeouts {
            tcp_syn_sent: secs(t.tcp_syn_sent),
            tcp_syn_received: secs(t.tcp_syn_received),
            tcp_established: secs(t.tcp_established),
            tcp_closing: secs(t.tcp_closing),
            tcp_time_wait: secs(t.tcp_time_wait),
            tcp_reset: secs(t.tcp_reset),
            udp_unreplied: secs(t.udp_unreplied),
            udp_replied: secs(t.udp_replied),
            icmp_echo: secs(t.icmp_echo),
            other: secs(t.other),
        },
    }
}

impl Compiler {
    pub fn new() -> Self {
        Compiler::default()
    }

    /// Compiles `model` into the next generation's snapshot.
    pub fn compile(&mut self, model: &Model, settings: &Settings) -> (Snapshot, Stats) {
        self.generation += 1;
        let mut builder = Builder::new(self.generation, dataplane_settings(settings));
        let mut vpc_index = HashMap::new();
        for (i, vpc) in model.vpcs().enumerate() {
            let i = u16::try_from(i).expect("at most 4095 VPCs have distinct VLANs");
            vpc_index.insert(vpc.id, i);
            builder.vpc(vpc.vlan, i);
        }

        let mut sets = Sets::new(model);
        let mut stats = Stats::default();
        let mut groups = HashMap::new();
        for g in model.groups() {
            let fp = group_fingerprint(model, g, &sets);
            let policy = match self.groups.get(&g.id) {
                Some((old, p)) if *old == fp => Arc::clone(p),
                _ => {
                    stats.rebuilt += 1;
                    Arc::new(compile_group(model, g, &mut sets))
                }
            };
            groups.insert(g.id, (fp, policy));
        }
        let mut by_set: HashMap<Vec<GroupId>, Arc<GroupSet>> = HashMap::new();
        for iface in model.interfaces() {
            let groups = if iface.groups.is_empty() {
                None
            } else {
                let mut key = iface.groups.clone();
                key.sort_unstable();
                let compiled = match by_set.get(&key) {
                    Some(c) => Arc::clone(c),
                    None => {
                        let policies: Vec<Arc<GroupPolicy>> =
                            key.iter().map(|g| Arc::clone(&groups[g].1)).collect();
                        let compiled = match self.sets.get(&key) {
                            Some(old)
                                if old.policies.len() == policies.len()
                                    && old.policies.iter().zip(&policies).all(|(a, b)| Arc::ptr_eq(a, b)) =>
                            {
                                Arc::clone(old)
                            }
                            _ => Arc::new(GroupSet::new(policies)),
                        };
                        by_set.insert(key, Arc::clone(&compiled));
                        compiled
                    }
                };
                Some(compiled)
            };
            builder.endpoint(
                vpc_index[&iface.vpc],
                &iface.addresses,
                Endpoint {
                    interface: iface.id.0,
                    groups,
                },
            );
        }
        stats.group_sets = by_set.len();
        self.groups = groups;
        self.sets = by_set;
        (builder.finish(), stats)
    }
}

/// A hash of everything one group's part of a policy depends on: its flags, its
/// rules, and the contents of the address sets they reference.
fn group_fingerprint(model: &Model, g: &SecurityGroup, sets: &Sets) -> u64 {
    let mut h = DefaultHasher::new();
    (g.id, g.stateful, g.intra_group == IntraGroup::Accept).hash(&mut h);
    for r in &g.rules {
        r.hash(&mut h);
        match r.remote {
            Some(Remote::Group(id)) => sets.members.get(&id).hash(&mut h),
            Some(Remote::PrefixList(id)) => model.prefix_list(id).map(|p| &p.cidrs).hash(&mut h),
            _ => {}
        }
    }
    h.finish()
}

fn compile_group(model: &Model, group: &SecurityGroup, sets: &mut Sets) -> GroupPolicy {
    let mut policy = |direction: Direction| {
        let rules = || group.rules.iter().filter(|r| r.direction == direction);
        let v4: Vec<_> = rules()
            .filter_map(|r| classifier_rule::<u32>(model, r, sets))
            .collect();
        let v6: Vec<_> = rules()
            .filter_map(|r| classifier_rule::<u128>(model, r, sets))
            .collect();
        Policy {
            v4: Engine::build(&v4),
            v6: Engine::build(&v6),
        }
    };
    GroupPolicy {
        id: group.id.0,
        accepting: group.intra_group == IntraGroup::Accept,
        stateful: group.stateful,
        ingress: policy(Direction::Ingress),
        egress: policy(Direction::Egress),
    }
}

/// The port fields of a classifier rule: (source side, destination side).
fn port_fields(rule: &Rule) -> ((u16, u16), (u16, u16)) {
    const ALL: (u16, u16) = (0, 65535);
    if rule.protocol.is_icmp() {
        let exact = |v: Option<u8>| v.map_or(ALL, |v| (u16::from(v), u16::from(v)));
        return (exact(rule.icmp_type), exact(rule.icmp_code));
    }
    let range = |r: Option<crate::model::PortRange>| r.map_or(ALL, |r| (r.lo, r.hi));
    (range(rule.source_ports), range(rule.ports))
}

fn proto(rule: &Rule) -> Option<u8> {
    match rule.protocol {
        Protocol::All => None,
        Protocol::Ip(p) => Some(p),
    }
}

fn action(rule: &Rule) -> classify::RuleAction {
    match rule.action {
        crate::model::Action::Allow => classify::RuleAction::Allow,
        crate::model::Action::Deny => classify::RuleAction::Deny,
    }
}

/// Orients (remote, local) as (source, destination) of the packet.
fn orient<T>(rule: &Rule, remote: T, local: T) -> (T, T) {
    match rule.direction {
        Direction::Ingress => (remote, local),
        Direction::Egress => (local, remote),
    }
}

/// The classifier rule of `rule` for family `A`, or `None` when the rule is of
/// the other family.
fn classifier_rule<A: AddrFamily>(model: &Model, rule: &Rule, sets: &mut Sets) -> Option<classify::Rule<A>> {
    if rule.family.is_some_and(|f| f != A::FAMILY) {
        return None;
    }
    let remote = match rule.remote {
        None => AddrMatch::any(),
        Some(Remote::Cidr(n)) => AddrMatch::Prefix(A::net(&n)?),
        Some(Remote::Group(g)) => AddrMatch::Set(sets.group::<A>(g)),
        Some(Remote::PrefixList(p)) => AddrMatch::Set(sets.list::<A>(model, p)),
    };
    let local = match &rule.local {
        None => AddrMatch::any(),
        Some(n) => AddrMatch::Prefix(A::net(n)?),
    };
    let (src, dst) = orient(rule, remote, local);
    let (src_ports, dst_ports) = port_fields(rule);
    Some(classify::Rule {
        src,
        dst,
        proto: proto(rule),
        src_ports,
        dst_ports,
        priority: u32::from(rule.priority),
        action: action(rule),
        id: rule.id.0,
    })
}

#[cfg(test)]
mod tests;
