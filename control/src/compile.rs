//! Compiles the model into the dataplane's [`Snapshot`]. It only builds
//! snapshots; publishing one to the workers is [`crate::apply::Control`]'s.
//!
//! - Every VPC gets an index and its VLAN an entry in the VLAN table.
//! - Every interface's addresses become endpoints in the endpoint table.
//! - Every group becomes one [`GroupPolicy`] (an ingress and an egress
//!   [`Policy`]) in a slot of the group table; every distinct set of bound
//!   groups one [`GroupSet`] naming its groups' slots, shared through `Arc`
//!   by every interface bound to exactly that set (order does not matter:
//!   verdicts never depend on it).
//! - A set that many interfaces share, or that takes many first packets
//!   ([`Compiler::rechoose`]), also gets a [`MergedPolicy`] (see
//!   [`Merging`]): one classifier over its groups' rules, so that its first
//!   packets cost one lookup, not one per group.
//! - A rule referencing a group or a prefix list gets the group's members' (or
//!   the list's) addresses as one shared [`AddrSet`] per family, built once and
//!   referenced by every rule that uses it.
//!
//! Changes, not models: the [`Compiler`] keeps what it built the last
//! snapshot from (slots, sets, members, who references whom) and asks the
//! model's change log what changed since. A changed interface moves its
//! endpoints and its members; a changed group is compiled anew, and so is
//! every group whose rules reference a group whose members changed or a
//! prefix list that changed; the new snapshot shares every other table chunk
//! with the last one. The cost of a change is therefore that of the objects
//! it touches, whatever the size of the model and however many sets contain
//! a changed group. A model that does not descend from the one compiled last
//! (a reloaded file, a new VPC) is compiled in full.
//!
//! How a model rule becomes classifier rules: a rule without a family yields one
//! IPv4 and one IPv6 rule, a rule with one yields one. The classifier key is the
//! packet's own 5-tuple, so an ingress rule puts its remote on the source side and
//! its `local` on the destination side, an egress rule the reverse; `ports` always
//! constrain the destination port and `source_ports` the source port. ICMP type
//! and code go in the source and destination port fields, as the dataplane puts
//! them in the key.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use rampart_dataplane::classify::{self, AddrMatch, AddrSet, Engine, Prefix};
use rampart_dataplane::snapshot::{
    self, Endpoint, GroupPolicy, GroupSet, MergedPolicy, Policy, Snapshot, VpcIndex,
};

use crate::model::{
    Changed, Direction, Family, GroupId, InterfaceId, IntraGroup, Model, PrefixListId, Protocol, Remote,
    Rule, SecurityGroup, VpcId,
};
use crate::settings::{NonIp, OnRuleChange, Settings, Unprotected};

/// What a compilation did, for logs and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Distinct sets of bound groups.
    pub group_sets: usize,
    /// Groups whose classifiers were compiled anew; the rest were reused.
    pub rebuilt: usize,
    /// The compilation started from nothing (a first model, a model that
    /// does not descend from the last one compiled, or a VPC change).
    pub full: bool,
    /// Group sets with a merged classifier.
    pub merged: usize,
}

/// Which group sets get one classifier over the union of their groups' rules
/// besides their groups' own: a first packet of such a set costs one lookup
/// instead of one per group, and a change to one of its groups rebuilds it
/// too. Sets of two or more groups qualify once `min_interfaces` interfaces
/// share them, or once their interfaces take at least
/// `min_first_packets_per_sec` first packets a second between them
/// ([`Compiler::rechoose`], ranked by first packets times the lookups saved);
/// they lose it below half of either. At most `max_sets` of them, and only
/// while their groups hold at most `max_rules` rules between them, so a
/// change rebuilds a bounded amount.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Merging {
    pub min_interfaces: usize,
    pub min_first_packets_per_sec: f64,
    pub max_sets: usize,
    pub max_rules: usize,
}

impl Default for Merging {
    fn default() -> Self {
        Merging {
            min_interfaces: 8,
            min_first_packets_per_sec: 1000.0,
            max_sets: 64,
            max_rules: 2000,
        }
    }
}

/// Compiles models into snapshots, working from what changed since the last
/// compilation. Owned by the control thread.
#[derive(Debug, Default)]
pub struct Compiler {
    generation: u64,
    /// The model version compiled last, and a copy of the snapshot built
    /// from it (sharing its tables) to build the next one from.
    last: Option<(u64, Snapshot)>,
    state: State,
}

/// What the compiler keeps between compilations: everything the snapshot was
/// built from, indexed so that a change finds what it affects.
#[derive(Debug, Default)]
struct State {
    vpc_index: HashMap<VpcId, VpcIndex>,
    groups: HashMap<GroupId, CompiledGroup>,
    /// Group-table slots of deleted groups, for reuse.
    free_slots: Vec<u32>,
    next_slot: u32,
    /// Group -> the groups with a rule whose remote is its members.
    group_referrers: HashMap<GroupId, HashSet<GroupId>>,
    /// Prefix list -> the groups with a rule whose remote is the list.
    list_referrers: HashMap<PrefixListId, HashSet<GroupId>>,
    interfaces: HashMap<InterfaceId, CompiledInterface>,
    /// Group set (ascending ids) -> the set and how many interfaces have it.
    sets: HashMap<Box<[GroupId]>, (Arc<GroupSet>, usize)>,
    /// Merged-table slots of dropped sets, for reuse.
    free_set_slots: Vec<u32>,
    next_set_slot: u32,
    /// The sets with a merged classifier.
    merged: HashSet<Box<[GroupId]>>,
    /// Those of `merged` that have it for their traffic.
    hot: HashSet<Box<[GroupId]>>,
    /// Sets to give a merged classifier (anew) at the end of this
    /// compilation.
    to_merge: HashSet<Box<[GroupId]>>,
    merging: Merging,
    addrs: AddrSets,
}

#[derive(Debug)]
struct CompiledGroup {
    slot: u32,
    /// The groups and prefix lists its rules reference.
    refs: (Vec<GroupId>, Vec<PrefixListId>),
}

#[derive(Debug)]
struct CompiledInterface {
    vpc: VpcIndex,
    addresses: Vec<IpAddr>,
    set: Option<Box<[GroupId]>>,
}

/// The address sets of one family, built on first use and kept until what
/// they hold changes.
#[derive(Debug)]
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

/// Group members and the address sets rules reference.
#[derive(Debug, Default)]
struct AddrSets {
    /// Member addresses of each group.
    members: HashMap<GroupId, HashSet<IpAddr>>,
    v4: FamilySets<u32>,
    v6: FamilySets<u128>,
}

impl AddrSets {
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

    /// Forgets the built sets of group `g`'s members.
    fn forget_group(&mut self, g: GroupId) {
        self.v4.groups.remove(&g);
        self.v6.groups.remove(&g);
    }

    fn forget_list(&mut self, id: PrefixListId) {
        self.v4.lists.remove(&id);
        self.v6.lists.remove(&id);
    }
}

/// An address family a policy is compiled for: `u32` (IPv4) or `u128` (IPv6).
trait AddrFamily: classify::Addr {
    const FAMILY: Family;
    fn host(addr: &IpAddr) -> Option<Self>;
    fn net(net: &IpNet) -> Option<Prefix<Self>>;
    fn sets(sets: &mut AddrSets) -> &mut FamilySets<Self>;
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
    fn sets(sets: &mut AddrSets) -> &mut FamilySets<Self> {
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
    fn sets(sets: &mut AddrSets) -> &mut FamilySets<Self> {
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

    /// A compiler that merges the classifiers of group sets by `merging`.
    pub fn with_merging(merging: Merging) -> Self {
        Compiler {
            state: State {
                merging,
                ..State::default()
            },
            ..Compiler::default()
        }
    }

    /// Compiles `model` into the next generation's snapshot. When `model`
    /// descends from the model compiled last (its change log says so), only
    /// what changed is compiled and the rest of the snapshot is shared with
    /// the last one; otherwise everything is compiled anew.
    pub fn compile(&mut self, model: &Model, settings: &Settings) -> (Snapshot, Stats) {
        self.generation += 1;
        let settings = dataplane_settings(settings);
        let delta = self.last.as_ref().and_then(|(version, last)| {
            let changes = model.changes().distinct_since(*version)?;
            let vpc_changed = changes.iter().any(|c| matches!(c, Changed::Vpc(_)));
            (!vpc_changed).then(|| (last.successor(self.generation, settings), Dirty::new(changes)))
        });
        let full = delta.is_none();
        let (mut snap, dirty) = delta.unwrap_or_else(|| {
            self.state = State {
                merging: self.state.merging,
                ..State::default()
            };
            let mut snap = Snapshot::new(self.generation, settings);
            for (i, vpc) in model.vpcs().enumerate() {
                let i = VpcIndex::try_from(i).expect("at most 4095 VPCs have distinct VLANs");
                self.state.vpc_index.insert(vpc.id, i);
                snap.set_vpc(vpc.vlan, i);
            }
            (snap, Dirty::everything(model))
        });
        let rebuilt = self.state.apply(model, &dirty, &mut snap);
        let stats = Stats {
            group_sets: self.state.sets.len(),
            rebuilt,
            full,
            merged: self.state.merged.len(),
        };
        self.last = Some((
            model.changes().version(),
            snap.successor(self.generation, settings),
        ));
        (snap, stats)
    }

    /// Re-chooses the sets merged for their traffic, given first packets per
    /// second per interface (model ids) over the last period. Answers the
    /// next snapshot when the choice changed, `None` when it did not or when
    /// `model` is not the model compiled last (its next compilation comes
    /// first).
    pub fn rechoose(&mut self, model: &Model, rates: &HashMap<u32, f64>) -> Option<(Snapshot, Stats)> {
        let (version, last) = self.last.as_ref()?;
        if *version != model.changes().version() {
            return None;
        }
        let state = &mut self.state;
        let mut per_set: HashMap<Box<[GroupId]>, f64> = HashMap::new();
        for (iface, rate) in rates {
            let set = state
                .interfaces
                .get(&InterfaceId(*iface))
                .and_then(|i| i.set.as_ref());
            if let Some(key) = set.filter(|k| k.len() >= 2) {
                *per_set.entry(key.clone()).or_default() += rate;
            }
        }
        let m = state.merging;
        let mut snap = last.successor(self.generation + 1, last.settings);
        let mut changed = false;
        // Cooled down: below half the rate, and not shared widely enough.
        let cooled: Vec<Box<[GroupId]>> = state
            .hot
            .iter()
            .filter(|k| per_set.get(*k).copied().unwrap_or(0.0) < m.min_first_packets_per_sec / 2.0)
            .cloned()
            .collect();
        for key in cooled {
            state.hot.remove(&key);
            let Some((set, count)) = state.sets.get(&key) else {
                continue;
            };
            if *count < m.min_interfaces.div_ceil(2) && state.merged.remove(&key) {
                snap.set_merged(set.slot, None);
                changed = true;
            }
        }
        // Heated up: the hottest first, while there is room.
        let mut hot: Vec<(f64, Box<[GroupId]>)> = per_set
            .into_iter()
            .filter(|(_, rate)| *rate >= m.min_first_packets_per_sec)
            .map(|(key, rate)| (rate * (key.len() - 1) as f64, key))
            .collect();
        hot.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        for (_, key) in hot {
            if state.merged.contains(&key) {
                state.hot.insert(key);
                continue;
            }
            if state.merged.len() + state.to_merge.len() >= m.max_sets {
                break;
            }
            state.hot.insert(key.clone());
            state.to_merge.insert(key);
        }
        changed |= state.build_merged(model, &mut snap);
        if !changed {
            return None;
        }
        self.generation += 1;
        let stats = Stats {
            group_sets: state.sets.len(),
            rebuilt: 0,
            full: false,
            merged: state.merged.len(),
        };
        self.last = Some((*version, snap.successor(self.generation, snap.settings)));
        Some((snap, stats))
    }
}

/// The objects a compilation has to look at, without repeats.
#[derive(Default)]
struct Dirty {
    groups: Vec<GroupId>,
    interfaces: Vec<InterfaceId>,
    prefix_lists: Vec<PrefixListId>,
}

impl Dirty {
    /// From distinct changes.
    fn new(changes: Vec<Changed>) -> Self {
        let mut dirty = Dirty::default();
        for c in changes {
            match c {
                Changed::Group(g) => dirty.groups.push(g),
                Changed::Interface(i) => dirty.interfaces.push(i),
                Changed::PrefixList(p) => dirty.prefix_lists.push(p),
                Changed::Vpc(_) => {}
            }
        }
        dirty
    }

    fn everything(model: &Model) -> Self {
        Dirty {
            groups: model.groups().map(|g| g.id).collect(),
            interfaces: model.interfaces().map(|i| i.id).collect(),
            prefix_lists: model.prefix_lists().map(|p| p.id).collect(),
        }
    }
}

impl State {
    /// Brings the compiled state and `snap` from the last model to `model`,
    /// given what changed; returns how many groups were compiled.
    fn apply(&mut self, model: &Model, dirty: &Dirty, snap: &mut Snapshot) -> usize {
        // Slots for new groups first: the sets of new bindings name them.
        for &g in &dirty.groups {
            if model.group(g).is_some() && !self.groups.contains_key(&g) {
                let slot = self.free_slots.pop().unwrap_or_else(|| {
                    self.next_slot += 1;
                    self.next_slot - 1
                });
                let refs = (Vec::new(), Vec::new());
                self.groups.insert(g, CompiledGroup { slot, refs });
            }
        }

        // Interfaces: every old endpoint out before any new one goes in, as
        // an address may move from one interface to another.
        let mut members_changed = HashSet::new();
        for id in &dirty.interfaces {
            if let Some(old) = self.interfaces.remove(id) {
                for &a in &old.addresses {
                    snap.remove_endpoint(old.vpc, a);
                }
                if let Some(key) = old.set {
                    for g in key.iter() {
                        if let Some(m) = self.addrs.members.get_mut(g) {
                            for a in &old.addresses {
                                m.remove(a);
                            }
                        }
                        members_changed.insert(*g);
                    }
                    self.release_set(key, snap);
                }
            }
        }
        for id in &dirty.interfaces {
            let Some(iface) = model.interface(*id) else {
                continue;
            };
            let vpc = self.vpc_index[&iface.vpc];
            let (key, set) = if iface.groups.is_empty() {
                (None, None)
            } else {
                let mut key = iface.groups.clone();
                key.sort_unstable();
                let key = key.into_boxed_slice();
                let set = self.acquire_set(&key);
                for g in key.iter() {
                    self.addrs
                        .members
                        .entry(*g)
                        .or_default()
                        .extend(iface.addresses.iter().copied());
                    members_changed.insert(*g);
                }
                (Some(key), Some(set))
            };
            for &a in &iface.addresses {
                let endpoint = Endpoint {
                    interface: iface.id.0,
                    groups: set.clone(),
                };
                snap.insert_endpoint(vpc, a, endpoint);
            }
            self.interfaces.insert(
                *id,
                CompiledInterface {
                    vpc,
                    addresses: iface.addresses.clone(),
                    set: key,
                },
            );
        }

        // Who references whom, for the groups whose rules changed.
        for &g in &dirty.groups {
            let refs = model.group(g).map(references).unwrap_or_default();
            let Some(compiled) = self.groups.get_mut(&g) else {
                continue;
            };
            let old = std::mem::replace(&mut compiled.refs, refs);
            for r in &old.0 {
                self.group_referrers.entry(*r).or_default().remove(&g);
            }
            for r in &old.1 {
                self.list_referrers.entry(*r).or_default().remove(&g);
            }
            for r in &compiled.refs.0 {
                self.group_referrers.entry(*r).or_default().insert(g);
            }
            for r in &compiled.refs.1 {
                self.list_referrers.entry(*r).or_default().insert(g);
            }
        }

        // Compile the changed groups and those whose referenced address sets
        // changed.
        let mut rebuild: HashSet<GroupId> = dirty.groups.iter().copied().collect();
        for g in &members_changed {
            self.addrs.forget_group(*g);
            rebuild.extend(self.group_referrers.get(g).into_iter().flatten());
        }
        for p in &dirty.prefix_lists {
            self.addrs.forget_list(*p);
            rebuild.extend(self.list_referrers.get(p).into_iter().flatten());
        }
        let mut rebuilt = 0;
        for g in &rebuild {
            let (Some(group), Some(compiled)) = (model.group(*g), self.groups.get(g)) else {
                continue;
            };
            let policy = compile_group(model, group, &mut self.addrs);
            snap.set_group(compiled.slot, Some(Arc::new(policy)));
            rebuilt += 1;
        }

        // Merged classifiers: the sets that qualified, and the merged sets
        // with a group compiled anew.
        let stale: Vec<Box<[GroupId]>> = self
            .merged
            .iter()
            .filter(|key| key.iter().any(|g| rebuild.contains(g)))
            .cloned()
            .collect();
        self.to_merge.extend(stale);
        self.build_merged(model, snap);

        // Deleted groups and prefix lists. No interface names a deleted group
        // (the model unbinds or refuses first), so no set names its slot.
        for &g in &dirty.groups {
            if model.group(g).is_some() {
                continue;
            }
            if let Some(compiled) = self.groups.remove(&g) {
                snap.set_group(compiled.slot, None);
                self.free_slots.push(compiled.slot);
                for r in &compiled.refs.0 {
                    self.group_referrers.entry(*r).or_default().remove(&g);
                }
                for r in &compiled.refs.1 {
                    self.list_referrers.entry(*r).or_default().remove(&g);
                }
            }
            self.addrs.members.remove(&g);
            self.addrs.forget_group(g);
            self.group_referrers.remove(&g);
        }
        for p in &dirty.prefix_lists {
            if model.prefix_list(*p).is_none() {
                self.list_referrers.remove(p);
            }
        }
        rebuilt
    }

    /// Builds the merged classifiers of the sets queued in `to_merge` (anew
    /// for those that have one); a set over the rule limit gets none.
    /// Answers whether the merged table changed.
    fn build_merged(&mut self, model: &Model, snap: &mut Snapshot) -> bool {
        let mut changed = false;
        for key in std::mem::take(&mut self.to_merge) {
            let Some((set, _)) = self.sets.get(&key) else {
                continue;
            };
            let slot = set.slot;
            let groups: Vec<&SecurityGroup> = key.iter().filter_map(|g| model.group(*g)).collect();
            let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
            if rules > self.merging.max_rules || groups.len() != key.len() {
                snap.set_merged(slot, None);
                changed |= self.merged.remove(&key);
                self.hot.remove(&key);
                continue;
            }
            let merged = MergedPolicy {
                stateful: groups.iter().all(|g| g.stateful),
                ingress: compile_rules(
                    model,
                    groups.iter().flat_map(|g| &g.rules),
                    Direction::Ingress,
                    &mut self.addrs,
                ),
                egress: compile_rules(
                    model,
                    groups.iter().flat_map(|g| &g.rules),
                    Direction::Egress,
                    &mut self.addrs,
                ),
            };
            snap.set_merged(slot, Some(Arc::new(merged)));
            self.merged.insert(key);
            changed = true;
        }
        changed
    }

    /// The compiled set of `key` (ascending group ids), shared, counted once
    /// more; a set that many interfaces now share is queued for merging.
    fn acquire_set(&mut self, key: &[GroupId]) -> Arc<GroupSet> {
        let m = self.merging;
        if let Some((set, count)) = self.sets.get_mut(key) {
            *count += 1;
            let set = Arc::clone(set);
            if *count >= m.min_interfaces
                && key.len() >= 2
                && !self.merged.contains(key)
                && self.merged.len() + self.to_merge.len() < m.max_sets
            {
                self.to_merge.insert(key.into());
            }
            return set;
        }
        let slot = self.free_set_slots.pop().unwrap_or_else(|| {
            self.next_set_slot += 1;
            self.next_set_slot - 1
        });
        let members = key.iter().map(|g| (g.0, self.groups[g].slot)).collect();
        let set = Arc::new(GroupSet::new(members, slot));
        self.sets.insert(key.into(), (Arc::clone(&set), 1));
        if m.min_interfaces <= 1 && key.len() >= 2 && self.merged.len() + self.to_merge.len() < m.max_sets {
            self.to_merge.insert(key.into());
        }
        set
    }

    /// One interface fewer has set `key`; the last one drops it. A merged set
    /// shared by fewer than half the interfaces it needed loses its merged
    /// classifier.
    fn release_set(&mut self, key: Box<[GroupId]>, snap: &mut Snapshot) {
        let Some((set, count)) = self.sets.get_mut(&key) else {
            return;
        };
        *count -= 1;
        let (slot, count) = (set.slot, *count);
        if count < self.merging.min_interfaces.div_ceil(2)
            && !self.hot.contains(&key)
            && self.merged.remove(&key)
        {
            snap.set_merged(slot, None);
        }
        if count == 0 {
            self.sets.remove(&key);
            self.to_merge.remove(&key);
            self.merged.remove(&key);
            self.hot.remove(&key);
            snap.set_merged(slot, None);
            self.free_set_slots.push(slot);
        }
    }
}

/// The groups and prefix lists `group`'s rules reference, without repeats.
fn references(group: &SecurityGroup) -> (Vec<GroupId>, Vec<PrefixListId>) {
    let (mut groups, mut lists) = (Vec::new(), Vec::new());
    for r in &group.rules {
        match r.remote {
            Some(Remote::Group(g)) => groups.push(g),
            Some(Remote::PrefixList(p)) => lists.push(p),
            _ => {}
        }
    }
    groups.sort_unstable();
    groups.dedup();
    lists.sort_unstable();
    lists.dedup();
    (groups, lists)
}

fn compile_group(model: &Model, group: &SecurityGroup, sets: &mut AddrSets) -> GroupPolicy {
    GroupPolicy {
        id: group.id.0,
        accepting: group.intra_group == IntraGroup::Accept,
        stateful: group.stateful,
        ingress: compile_rules(model, &group.rules, Direction::Ingress, sets),
        egress: compile_rules(model, &group.rules, Direction::Egress, sets),
    }
}

/// The classifiers (one per family) of `rules` in `direction`.
fn compile_rules<'a>(
    model: &Model,
    rules: impl IntoIterator<Item = &'a Rule> + Clone,
    direction: Direction,
    sets: &mut AddrSets,
) -> Policy {
    let mine = || rules.clone().into_iter().filter(|r| r.direction == direction);
    let v4: Vec<_> = mine()
        .filter_map(|r| classifier_rule::<u32>(model, r, sets))
        .collect();
    let v6: Vec<_> = mine()
        .filter_map(|r| classifier_rule::<u128>(model, r, sets))
        .collect();
    Policy {
        v4: Engine::build(&v4),
        v6: Engine::build(&v6),
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
fn classifier_rule<A: AddrFamily>(
    model: &Model,
    rule: &Rule,
    sets: &mut AddrSets,
) -> Option<classify::Rule<A>> {
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
