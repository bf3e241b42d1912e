//! The security-group model: VPCs, security groups and their rules, protected
//! interfaces and prefix lists (spec sections 1, 2 and 6).
//!
//! The control thread owns the one [`Model`]. Every mutating operation is
//! all-or-nothing: it validates its whole input against the current model first,
//! collecting every error, and only then changes anything. A rejected change leaves
//! the model exactly as it was. A whole file (or a declarative `PUT /v1/model`) is
//! applied by building a fresh model and swapping it in only if it is valid, which
//! gives the same guarantee for a change of any size.
//!
//! Invariants kept by every operation (and checked by `check_invariants` in tests):
//! - every VPC has exactly one group named `default`, which is never deleted;
//! - names are unique per VPC and kind of object; at most one VPC is untagged and
//!   VLAN IDs are unique;
//! - an interface's addresses are unique within its VPC; an interface has at least
//!   one group unless it is bare metal; its groups are in its VPC, without repeats;
//! - every group or prefix-list reference in a rule points at an existing object of
//!   the rule's VPC;
//! - quotas hold.
//!
//! Objects refer to each other by id, never by name, so renames are cheap and
//! copies can remap references. Names are resolved once, at the edge.
//!
//! Layout: this file holds the objects, the [`Model`] and its read-only queries;
//! the mutating operations live with their object (`vpcs.rs`, `groups.rs`,
//! `interfaces.rs`, `prefix_lists.rs`); rule validation in `rule.rs`; the raw
//! inputs every entry point deserializes in `spec.rs`; the reference evaluator in
//! `eval.rs`.
//!
//! Design note: validating before mutating, rather than mutating a clone and
//! validating the result, keeps a small change (one rule) proportional to its size
//! rather than to the model's, which matters at the quota limits (100 000
//! interfaces). The file path does build a whole new model, because it is one.

mod changes;
mod error;
pub mod eval;
mod groups;
mod interfaces;
mod prefix_lists;
mod rule;
mod spec;
mod types;
mod vpcs;

use std::net::IpAddr;

use changes::Tracked;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use changes::{Changed, Changes};
pub use error::{ErrorCode, Errors, ModelError};
pub use rule::{Rule, DEFAULT_PRIORITY, MAX_DESCRIPTION};
pub use spec::{GroupSpec, GroupUpdate, InterfaceSpec, PrefixListSpec, RuleSpec, Scalar, VpcSpec};
pub use types::{
    parse_address, parse_cidr, proto, Action, Direction, Family, GroupId, InterfaceId, IntraGroup, Kind,
    MacAddr, PortRange, PrefixListId, Protocol, Remote, RuleId, VpcId,
};

/// The name of the group every VPC has and nobody can delete.
pub const DEFAULT_GROUP: &str = "default";
/// Longest name of any object, in characters.
pub const MAX_NAME: usize = 64;
/// VLAN IDs usable on the wire (0 and 4095 are reserved by 802.1Q).
pub const VLAN_RANGE: std::ops::RangeInclusive<i64> = 1..=4094;

/// Limits on the model's size (spec section 6), configurable in the file's
/// `[quotas]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    pub groups_per_vpc: usize,
    pub rules_per_group: usize,
    pub groups_per_interface: usize,
    pub interfaces: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            groups_per_vpc: 1000,
            rules_per_group: 1000,
            groups_per_interface: 16,
            interfaces: 100_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub id: VpcId,
    pub name: String,
    pub description: String,
    /// 802.1Q VLAN ID selecting this VPC on the wire; `None` = untagged frames.
    pub vlan: Option<u16>,
    pub default_group: GroupId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: GroupId,
    pub vpc: VpcId,
    pub name: String,
    pub description: String,
    pub stateful: bool,
    pub kind: Kind,
    pub intra_group: IntraGroup,
    /// In the order they were added; order never decides (priority does), it is
    /// only how they are listed and numbered.
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub id: InterfaceId,
    pub vpc: VpcId,
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub mac: Option<MacAddr>,
    /// Bound groups in order; empty only for a bare-metal interface.
    pub groups: Vec<GroupId>,
    pub bare_metal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixList {
    pub id: PrefixListId,
    pub vpc: VpcId,
    pub name: String,
    pub description: String,
    pub cidrs: Vec<IpNet>,
}

/// The next id of each kind of object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextIds {
    vpc: u32,
    group: u32,
    rule: u32,
    interface: u32,
    prefix_list: u32,
}

/// The changed objects of a model since a version, with everything else a
/// model holds besides its objects (quotas, next ids): what the state
/// directory's journal records for one change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    pub quotas: Quotas,
    pub next: NextIds,
    pub vpcs: Vec<Vpc>,
    pub groups: Vec<SecurityGroup>,
    pub interfaces: Vec<Interface>,
    pub prefix_lists: Vec<PrefixList>,
    /// The objects removed.
    pub removed: Vec<Changed>,
}

impl Delta {
    /// A delta that changes nothing but the quotas and next ids.
    pub fn empty(quotas: Quotas, next: NextIds) -> Delta {
        Delta {
            quotas,
            next,
            vpcs: Vec::new(),
            groups: Vec::new(),
            interfaces: Vec::new(),
            prefix_lists: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// Objects written or removed.
    pub fn len(&self) -> usize {
        self.vpcs.len()
            + self.groups.len()
            + self.interfaces.len()
            + self.prefix_lists.len()
            + self.removed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The whole security-group model. See the module documentation.
///
/// It serializes exactly (ids and the next ids included) for the state
/// directory; the lookup indexes are rebuilt on deserializing
/// ([`Model::from_state`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    quotas: Quotas,
    vpcs: Tracked<VpcId, Vpc>,
    groups: Tracked<GroupId, SecurityGroup>,
    interfaces: Tracked<InterfaceId, Interface>,
    prefix_lists: Tracked<PrefixListId, PrefixList>,
    /// Which interface owns an address, per VPC.
    #[serde(skip)]
    addresses: imbl::HashMap<(VpcId, IpAddr), InterfaceId>,
    #[serde(skip)]
    interface_names: imbl::HashMap<(VpcId, String), InterfaceId>,
    next: NextIds,
    /// What changed, for the compiler; not part of the model's value.
    #[serde(skip)]
    changes: Changes,
}

/// `group "web" in vpc "prod"`, the way errors name a group.
fn group_subject(vpc: &str, group: &str) -> String {
    format!("group {group:?} in vpc {vpc:?}")
}

fn rule_subject(vpc: &str, group: &str, index: usize) -> String {
    format!("rule {index} of group {group:?} in vpc {vpc:?}")
}

fn interface_subject(vpc: &str, name: &str) -> String {
    format!("interface {name:?} in vpc {vpc:?}")
}

fn prefix_list_subject(vpc: &str, name: &str) -> String {
    format!("prefix list {name:?} in vpc {vpc:?}")
}

/// Checks an object name: 1-64 characters of letters, digits, `-`, `_`, `.` and
/// inner spaces, and not spelled like an id (`looks_like_id`), which would make
/// `group:<name or id>` ambiguous.
fn check_name(subject: &str, name: &str, looks_like_id: bool) -> Result<(), ModelError> {
    let bad = |msg: String| Err(ModelError::field(subject, "name", msg));
    if name.is_empty() {
        return bad("is empty".to_owned());
    }
    if name.chars().count() > MAX_NAME {
        return bad(format!("{name:?} is longer than {MAX_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ')))
    {
        return bad(format!(
            "{name:?} contains {c:?}; use letters, digits, '-', '_', '.' and spaces"
        ));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return bad(format!("{name:?} starts or ends with a space"));
    }
    if looks_like_id {
        return bad(format!(
            "{name:?} is spelled like an id; ids are assigned by rampart"
        ));
    }
    Ok(())
}

fn check_description(subject: &str, description: Option<&str>) -> Result<String, ModelError> {
    let d = description.unwrap_or_default();
    let len = d.chars().count();
    if len > MAX_DESCRIPTION {
        return Err(ModelError::field(
            subject,
            "description",
            format!("is {len} characters long; the limit is {MAX_DESCRIPTION}"),
        ));
    }
    Ok(d.to_owned())
}

/// The rules a newly created group starts with (spec section 1), as specs so they
/// go through the same validation as everything else. The `default` group's
/// ingress rules reference the group itself.
pub fn default_rule_specs(group_name: &str, kind: Kind) -> Vec<RuleSpec> {
    let rule = |direction: &str, family: Family, remote: String| RuleSpec {
        direction: direction.to_owned(),
        protocol: Scalar::from("all"),
        ethertype: Some(family.as_str().to_owned()),
        remote: Some(remote),
        ..RuleSpec::default()
    };
    let mut rules = Vec::new();
    if group_name == DEFAULT_GROUP {
        for family in [Family::V4, Family::V6] {
            rules.push(rule("ingress", family, format!("group:{DEFAULT_GROUP}")));
        }
    }
    if kind == Kind::Basic {
        for family in [Family::V4, Family::V6] {
            rules.push(rule("egress", family, family.any_net().to_string()));
        }
    }
    rules
}

impl Model {
    /// An empty model (no VPCs) with these quotas.
    pub fn new(quotas: Quotas) -> Self {
        Model {
            quotas,
            ..Model::default()
        }
    }

    // ---------------------------------------------------------------- reading

    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    pub fn next_ids(&self) -> NextIds {
        self.next
    }

    /// What changed in this model, for the compiler.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Forgets the change records up to now; the compiler calls
    /// `Changes::since` with the version it compiled, which stays answerable.
    pub fn trim_changes(&mut self) {
        self.changes.trim();
    }

    pub fn vpcs(&self) -> impl Iterator<Item = &Vpc> {
        self.vpcs.values()
    }

    pub fn vpc(&self, id: VpcId) -> Option<&Vpc> {
        self.vpcs.get(&id)
    }

    pub fn vpc_by_name(&self, name: &str) -> Option<&Vpc> {
        self.vpcs.values().find(|v| v.name == name)
    }

    /// The VPC that frames with this outer VLAN tag (or untagged, `None`) belong
    /// to. VLAN ID 0 marks a priority-tagged frame, which 802.1Q treats as
    /// untagged, so it selects the untagged VPC; otherwise a frame could dodge
    /// the rules of the untagged VPC by carrying a priority tag.
    pub fn vpc_by_vlan(&self, vlan: Option<u16>) -> Option<&Vpc> {
        let vlan = vlan.filter(|v| *v != 0);
        self.vpcs.values().find(|v| v.vlan == vlan)
    }

    fn vpc_name(&self, id: VpcId) -> &str {
        self.vpcs.get(&id).map_or("?", |v| v.name.as_str())
    }

    pub fn groups(&self) -> impl Iterator<Item = &SecurityGroup> {
        self.groups.values()
    }

    pub fn group(&self, id: GroupId) -> Option<&SecurityGroup> {
        self.groups.get(&id)
    }

    pub fn groups_in(&self, vpc: VpcId) -> impl Iterator<Item = &SecurityGroup> {
        self.groups.values().filter(move |g| g.vpc == vpc)
    }

    pub fn group_by_name(&self, vpc: VpcId, name: &str) -> Option<&SecurityGroup> {
        self.groups_in(vpc).find(|g| g.name == name)
    }

    /// Finds a group of `vpc` by name or id, with an error that says where else a
    /// group of that name or id lives when it is not in `vpc`.
    pub fn resolve_group(&self, vpc: VpcId, name_or_id: &str) -> Result<&SecurityGroup, ModelError> {
        let vpc_name = self.vpc_name(vpc);
        // Built only on failure: this runs for every group reference and binding.
        let subject = || format!("vpc {vpc_name:?}");
        let found = match GroupId::parse(name_or_id) {
            Some(id) => self.groups.get(&id),
            None => self.group_by_name(vpc, name_or_id),
        };
        match found {
            Some(g) if g.vpc == vpc => Ok(g),
            Some(g) => Err(ModelError::new(
                ErrorCode::NotFound,
                subject(),
                format!(
                    "group {name_or_id} belongs to vpc {:?}, not {vpc_name:?}",
                    self.vpc_name(g.vpc)
                ),
            )),
            None => {
                let elsewhere = self.groups.values().find(|g| g.name == name_or_id);
                let hint = match elsewhere {
                    Some(g) => format!(" (vpc {:?} has one)", self.vpc_name(g.vpc)),
                    None => String::new(),
                };
                Err(ModelError::new(
                    ErrorCode::NotFound,
                    subject(),
                    format!("no group {name_or_id:?} in vpc {vpc_name:?}{hint}"),
                ))
            }
        }
    }

    pub fn interfaces(&self) -> impl Iterator<Item = &Interface> {
        self.interfaces.values()
    }

    pub fn interface(&self, id: InterfaceId) -> Option<&Interface> {
        self.interfaces.get(&id)
    }

    pub fn interface_by_name(&self, vpc: VpcId, name: &str) -> Option<&Interface> {
        self.interface_names
            .get(&(vpc, name.to_owned()))
            .and_then(|id| self.interfaces.get(id))
    }

    /// The protected interface that owns `addr` in `vpc`, if any.
    pub fn interface_by_address(&self, vpc: VpcId, addr: IpAddr) -> Option<&Interface> {
        self.addresses
            .get(&(vpc, addr))
            .and_then(|id| self.interfaces.get(id))
    }

    /// The groups an interface is bound to (empty only for bare metal).
    pub fn interface_groups<'a>(&'a self, iface: &'a Interface) -> impl Iterator<Item = &'a SecurityGroup> {
        iface.groups.iter().filter_map(|id| self.groups.get(id))
    }

    pub fn prefix_lists(&self) -> impl Iterator<Item = &PrefixList> {
        self.prefix_lists.values()
    }

    pub fn prefix_list(&self, id: PrefixListId) -> Option<&PrefixList> {
        self.prefix_lists.get(&id)
    }

    pub fn prefix_list_by_name(&self, vpc: VpcId, name: &str) -> Option<&PrefixList> {
        self.prefix_lists
            .values()
            .find(|p| p.vpc == vpc && p.name == name)
    }

    /// Total number of rules over all groups.
    pub fn rule_count(&self) -> usize {
        self.groups.values().map(|g| g.rules.len()).sum()
    }

    /// A one-line rendering of a rule with names resolved, e.g.
    /// `ingress tcp 443 from 0.0.0.0/0 allow priority 100`.
    pub fn rule_text(&self, rule: &Rule) -> String {
        let mut s = format!("{} {}", rule.direction, rule.protocol);
        if let Some(family) = rule.family {
            s.push_str(&format!(" {family}"));
        }
        if let Some(p) = rule.ports {
            s.push_str(&format!(" port {p}"));
        }
        if let Some(p) = rule.source_ports {
            s.push_str(&format!(" source-port {p}"));
        }
        if let Some(t) = rule.icmp_type {
            s.push_str(&format!(" type {t}"));
        }
        if let Some(c) = rule.icmp_code {
            s.push_str(&format!(" code {c}"));
        }
        let preposition = match rule.direction {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        };
        let remote = match rule.remote {
            None => "any".to_owned(),
            Some(Remote::Cidr(net)) => net.to_string(),
            Some(Remote::Group(id)) => match self.groups.get(&id) {
                Some(g) => format!("group:{}", g.name),
                None => format!("group:{id}"),
            },
            Some(Remote::PrefixList(id)) => match self.prefix_lists.get(&id) {
                Some(p) => format!("prefix-list:{}", p.name),
                None => format!("prefix-list:{id}"),
            },
        };
        s.push_str(&format!(" {preposition} {remote}"));
        if let Some(local) = rule.local {
            s.push_str(&format!(" local {local}"));
        }
        s.push_str(&format!(" {} priority {}", rule.action, rule.priority));
        s
    }

    fn find_vpc(&self, name: &str) -> Result<&Vpc, ModelError> {
        self.vpc_by_name(name)
            .ok_or_else(|| ModelError::new(ErrorCode::NotFound, format!("vpc {name:?}"), "no such vpc"))
    }

    /// The VPC that a new object names in its `vpc` field.
    fn vpc_field(&self, subject: &str, name: &str) -> Result<&Vpc, ModelError> {
        self.vpc_by_name(name).ok_or_else(|| {
            ModelError::field(subject, "vpc", format!("no vpc {name:?}")).with_code(ErrorCode::NotFound)
        })
    }

    fn find_group(&self, vpc: &str, group: &str) -> Result<&SecurityGroup, ModelError> {
        let vpc = self.find_vpc(vpc)?;
        self.resolve_group(vpc.id, group)
    }

    fn find_interface(&self, vpc: &str, name: &str) -> Result<&Interface, ModelError> {
        let v = self.find_vpc(vpc)?;
        self.interface_by_name(v.id, name).ok_or_else(|| {
            ModelError::new(
                ErrorCode::NotFound,
                interface_subject(vpc, name),
                "no such interface",
            )
        })
    }

    fn find_prefix_list(&self, vpc: &str, name: &str) -> Result<&PrefixList, ModelError> {
        let v = self.find_vpc(vpc)?;
        let found = match PrefixListId::parse(name) {
            Some(id) => self.prefix_lists.get(&id).filter(|p| p.vpc == v.id),
            None => self.prefix_list_by_name(v.id, name),
        };
        found.ok_or_else(|| {
            ModelError::new(
                ErrorCode::NotFound,
                prefix_list_subject(vpc, name),
                "no such prefix list",
            )
        })
    }

    /// The model as JSON, exactly (ids and next ids included): what the state
    /// directory stores.
    pub fn to_state(&self) -> String {
        serde_json::to_string(self).expect("a model always serializes")
    }

    /// A model from [`Model::to_state`]'s output, its indexes rebuilt and its
    /// references checked; an error names what is wrong.
    pub fn from_state(text: &str) -> Result<Model, String> {
        Model::from_state_and_deltas(text, std::iter::empty())
    }

    /// A model from [`Model::to_state`]'s output with `deltas` applied in
    /// order, then its indexes rebuilt and its references checked.
    pub fn from_state_and_deltas(
        text: &str,
        deltas: impl IntoIterator<Item = Delta>,
    ) -> Result<Model, String> {
        let mut m: Model = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for d in deltas {
            m.apply_delta(d);
        }
        m.reindexed()
    }

    /// What changed since `version` as the changed objects' new values and
    /// the removed ones' keys, or `None` when `version` is not on this
    /// model's chain ([`Changes::since`]).
    pub fn delta_since(&self, version: u64) -> Option<Delta> {
        let mut d = Delta::empty(self.quotas, self.next);
        for c in self.changes.distinct_since(version)? {
            match c {
                Changed::Vpc(id) => match self.vpcs.get(&id) {
                    Some(v) => d.vpcs.push(v.clone()),
                    None => d.removed.push(c),
                },
                Changed::Group(id) => match self.groups.get(&id) {
                    Some(g) => d.groups.push(g.clone()),
                    None => d.removed.push(c),
                },
                Changed::Interface(id) => match self.interfaces.get(&id) {
                    Some(i) => d.interfaces.push(i.clone()),
                    None => d.removed.push(c),
                },
                Changed::PrefixList(id) => match self.prefix_lists.get(&id) {
                    Some(p) => d.prefix_lists.push(p.clone()),
                    None => d.removed.push(c),
                },
            }
        }
        Some(d)
    }

    /// Every object of the model as one [`Delta`] (what a model written
    /// whole is made of).
    pub fn whole(&self) -> Delta {
        Delta {
            quotas: self.quotas,
            next: self.next,
            vpcs: self.vpcs.values().cloned().collect(),
            groups: self.groups.values().cloned().collect(),
            interfaces: self.interfaces.values().cloned().collect(),
            prefix_lists: self.prefix_lists.values().cloned().collect(),
            removed: Vec::new(),
        }
    }

    /// The model made of `whole`'s objects, its indexes built and its
    /// references checked; an error names what is wrong.
    pub fn from_delta(whole: Delta) -> Result<Model, String> {
        let mut m = Model::default();
        m.apply_delta(whole);
        m.reindexed()
    }

    /// Applies a [`Delta`] made elsewhere (another node's change) in
    /// proportion to its size: the indexes are updated for the objects it
    /// touches, and the invariants the module documentation lists are
    /// checked for them (a removal also checks that nothing still refers to
    /// what it removed). All or nothing: on an error the model is unchanged.
    pub fn apply_checked(&mut self, d: Delta) -> Result<(), String> {
        let mut m = self.clone();
        m.quotas = d.quotas;
        m.next = d.next;
        // Index entries of the interfaces written or removed go first, so
        // that one delta may move an address or a name between interfaces.
        let touched: Vec<InterfaceId> = d
            .interfaces
            .iter()
            .map(|i| i.id)
            .chain(d.removed.iter().filter_map(|r| match r {
                Changed::Interface(id) => Some(*id),
                _ => None,
            }))
            .collect();
        for id in &touched {
            if let Some(old) = m.interfaces.get(id).cloned() {
                for a in &old.addresses {
                    m.addresses.remove(&(old.vpc, *a));
                }
                m.interface_names.remove(&(old.vpc, old.name.clone()));
            }
        }
        let removed_any = !d.removed.is_empty();
        for r in &d.removed {
            let gone = match *r {
                Changed::Vpc(id) => m.vpcs.remove(&mut m.changes, &id).is_some(),
                Changed::Group(id) => m.groups.remove(&mut m.changes, &id).is_some(),
                Changed::Interface(id) => m.interfaces.remove(&mut m.changes, &id).is_some(),
                Changed::PrefixList(id) => m.prefix_lists.remove(&mut m.changes, &id).is_some(),
            };
            if !gone {
                return Err(format!("removes {r:?}, which does not exist"));
            }
        }
        let vpcs: Vec<VpcId> = d.vpcs.iter().map(|v| v.id).collect();
        let groups: Vec<GroupId> = d.groups.iter().map(|g| g.id).collect();
        for v in d.vpcs {
            m.vpcs.insert(&mut m.changes, v.id, v);
        }
        for g in d.groups {
            m.groups.insert(&mut m.changes, g.id, g);
        }
        for p in d.prefix_lists {
            m.prefix_lists.insert(&mut m.changes, p.id, p);
        }
        let interfaces: Vec<InterfaceId> = d.interfaces.iter().map(|i| i.id).collect();
        for i in d.interfaces {
            m.interfaces.insert(&mut m.changes, i.id, i);
        }
        for id in &interfaces {
            let iface = m.interfaces[id].clone();
            m.check_stored_interface(&iface)?;
            for a in &iface.addresses {
                if let Some(other) = m.addresses.insert((iface.vpc, *a), iface.id) {
                    return Err(format!(
                        "address {a} belongs to interfaces {other} and {}",
                        iface.id
                    ));
                }
            }
            if let Some(other) = m
                .interface_names
                .insert((iface.vpc, iface.name.clone()), iface.id)
            {
                return Err(format!(
                    "interface name {:?} is used by {other} and {}",
                    iface.name, iface.id
                ));
            }
        }
        for id in &groups {
            m.check_stored_group(&m.groups[id])?;
        }
        for id in &vpcs {
            m.check_stored_vpc(&m.vpcs[id])?;
        }
        if removed_any {
            // What refers to a removed object may be anywhere.
            for v in m.vpcs.values() {
                m.check_stored_vpc(v)?;
            }
            for g in m.groups.values() {
                m.check_stored_group(g)?;
            }
            for i in m.interfaces.values() {
                m.check_stored_interface(i)?;
            }
        }
        *self = m;
        Ok(())
    }

    fn check_stored_vpc(&self, v: &Vpc) -> Result<(), String> {
        if self
            .groups
            .get(&v.default_group)
            .map(|g| (g.vpc, g.name.as_str()))
            != Some((v.id, DEFAULT_GROUP))
        {
            return Err(format!("vpc {} has no default group", v.id));
        }
        Ok(())
    }

    fn check_stored_group(&self, g: &SecurityGroup) -> Result<(), String> {
        if !self.vpcs.contains_key(&g.vpc) {
            return Err(format!("group {} is in a missing vpc", g.id));
        }
        for r in &g.rules {
            let ok = match r.remote {
                Some(Remote::Group(id)) => self.groups.get(&id).map(|x| x.vpc) == Some(g.vpc),
                Some(Remote::PrefixList(id)) => self.prefix_lists.get(&id).map(|x| x.vpc) == Some(g.vpc),
                _ => true,
            };
            if !ok {
                return Err(format!(
                    "rule {} of group {} refers to a missing object",
                    r.id, g.id
                ));
            }
        }
        Ok(())
    }

    fn check_stored_interface(&self, iface: &Interface) -> Result<(), String> {
        if !self.vpcs.contains_key(&iface.vpc) {
            return Err(format!("interface {} is in a missing vpc", iface.id));
        }
        for g in &iface.groups {
            if self.groups.get(g).map(|g| g.vpc) != Some(iface.vpc) {
                return Err(format!("interface {} is bound to a missing group {g}", iface.id));
            }
        }
        Ok(())
    }

    /// Writes a [`Delta`]'s objects and removals into the maps as they are;
    /// the indexes are rebuilt by [`Model::reindexed`] afterwards.
    fn apply_delta(&mut self, d: Delta) {
        self.quotas = d.quotas;
        self.next = d.next;
        for r in d.removed {
            match r {
                Changed::Vpc(id) => drop(self.vpcs.remove(&mut self.changes, &id)),
                Changed::Group(id) => drop(self.groups.remove(&mut self.changes, &id)),
                Changed::Interface(id) => drop(self.interfaces.remove(&mut self.changes, &id)),
                Changed::PrefixList(id) => drop(self.prefix_lists.remove(&mut self.changes, &id)),
            }
        }
        for v in d.vpcs {
            self.vpcs.insert(&mut self.changes, v.id, v);
        }
        for g in d.groups {
            self.groups.insert(&mut self.changes, g.id, g);
        }
        for i in d.interfaces {
            self.interfaces.insert(&mut self.changes, i.id, i);
        }
        for p in d.prefix_lists {
            self.prefix_lists.insert(&mut self.changes, p.id, p);
        }
    }

    /// The model with its indexes rebuilt from its objects and its
    /// references checked.
    fn reindexed(mut self) -> Result<Model, String> {
        let m = &mut self;
        m.addresses = imbl::HashMap::new();
        m.interface_names = imbl::HashMap::new();
        // A loaded model starts a change log of its own.
        m.changes = Changes::default();
        let interfaces: Vec<Interface> = m.interfaces.values().cloned().collect();
        for iface in &interfaces {
            m.check_stored_interface(iface)?;
            for a in &iface.addresses {
                if m.addresses.insert((iface.vpc, *a), iface.id).is_some() {
                    return Err(format!("address {a} belongs to two interfaces"));
                }
            }
            if m.interface_names
                .insert((iface.vpc, iface.name.clone()), iface.id)
                .is_some()
            {
                return Err(format!("interface name {:?} is used twice", iface.name));
            }
        }
        for v in m.vpcs.values() {
            m.check_stored_vpc(v)?;
        }
        for g in m.groups.values() {
            m.check_stored_group(g)?;
        }
        Ok(self)
    }

    // ---------------------------------------------------------------- VPCs
    /// Checks every invariant listed in the module documentation; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        use std::collections::HashSet;
        let mut vlans = HashSet::new();
        for v in self.vpcs.values() {
            assert!(vlans.insert(v.vlan), "vlan {:?} twice", v.vlan);
            let d = &self.groups[&v.default_group];
            assert_eq!((d.name.as_str(), d.vpc), (DEFAULT_GROUP, v.id));
            assert_eq!(
                self.groups_in(v.id).filter(|g| g.name == DEFAULT_GROUP).count(),
                1
            );
            assert!(self.groups_in(v.id).count() <= self.quotas.groups_per_vpc);
        }
        let mut names = HashSet::new();
        for g in self.groups.values() {
            assert!(self.vpcs.contains_key(&g.vpc));
            assert!(
                names.insert((g.vpc, g.name.clone())),
                "group name {} twice",
                g.name
            );
            assert!(g.rules.len() <= self.quotas.rules_per_group);
            for r in &g.rules {
                match r.remote {
                    Some(Remote::Group(id)) => assert_eq!(self.groups[&id].vpc, g.vpc),
                    Some(Remote::PrefixList(id)) => assert_eq!(self.prefix_lists[&id].vpc, g.vpc),
                    _ => {}
                }
            }
        }
        let mut addrs = HashSet::new();
        for i in self.interfaces.values() {
            assert!(i.bare_metal || !i.groups.is_empty(), "{} has no group", i.name);
            assert!(i.groups.len() <= self.quotas.groups_per_interface);
            for g in &i.groups {
                assert_eq!(self.groups[g].vpc, i.vpc);
            }
            for a in &i.addresses {
                assert!(addrs.insert((i.vpc, *a)));
                assert_eq!(self.addresses[&(i.vpc, *a)], i.id);
            }
            assert_eq!(self.interface_names[&(i.vpc, i.name.clone())], i.id);
        }
        assert_eq!(addrs.len(), self.addresses.len());
        assert_eq!(self.interfaces.len(), self.interface_names.len());
        assert!(self.interfaces.len() <= self.quotas.interfaces);
    }
}

#[cfg(test)]
mod tests;
