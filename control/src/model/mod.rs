//! The security-group model: VPCs, security groups and their rules, protected
//! interfaces and prefix lists (spec sections 1, 2 and 6).
//!
//! The control thread owns the one [`Model`]. Every mutating operation is
//! all-or-nothing: it validates its whole input against the current model first,
//! collecting every error, and only then changes anything. A rejected change leaves
//! the model exactly as it was. A whole file (or, later, a declarative `PUT`) is
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
//! Design note: validating before mutating, rather than mutating a clone and
//! validating the result, keeps a small change (one rule) proportional to its size
//! rather than to the model's, which matters at the quota limits (100 000
//! interfaces). The file path does build a whole new model, because it is one.

mod error;
pub mod eval;
mod rule;
mod spec;
mod types;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

pub use error::{ErrorCode, Errors, ModelError};
pub use rule::{Rule, DEFAULT_PRIORITY, MAX_DESCRIPTION};
pub use spec::{GroupSpec, GroupUpdate, InterfaceSpec, PrefixListSpec, RuleSpec, Scalar, VpcSpec};
pub use types::{
    parse_address, parse_cidr, proto, Action, Direction, Family, GroupId, InterfaceId, IntraGroup, Kind,
    MacAddr, PortRange, PrefixListId, Protocol, Remote, RuleId, VpcId,
};

use error::Collector;

/// The name of the group every VPC has and nobody can delete.
pub const DEFAULT_GROUP: &str = "default";
/// Longest name of any object, in characters.
pub const MAX_NAME: usize = 64;
/// VLAN IDs usable on the wire (0 and 4095 are reserved by 802.1Q).
pub const VLAN_RANGE: std::ops::RangeInclusive<i64> = 1..=4094;

/// Limits on the model's size (spec section 6), configurable in the file's
/// `[quotas]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vpc {
    pub id: VpcId,
    pub name: String,
    pub description: String,
    /// 802.1Q VLAN ID selecting this VPC on the wire; `None` = untagged frames.
    pub vlan: Option<u16>,
    pub default_group: GroupId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
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

#[derive(Clone, Debug, PartialEq, Eq)]
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixList {
    pub id: PrefixListId,
    pub vpc: VpcId,
    pub name: String,
    pub description: String,
    pub cidrs: Vec<IpNet>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct NextIds {
    vpc: u32,
    group: u32,
    rule: u32,
    interface: u32,
    prefix_list: u32,
}

/// The whole security-group model. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    quotas: Quotas,
    vpcs: BTreeMap<VpcId, Vpc>,
    groups: BTreeMap<GroupId, SecurityGroup>,
    interfaces: BTreeMap<InterfaceId, Interface>,
    prefix_lists: BTreeMap<PrefixListId, PrefixList>,
    /// Which interface owns an address, per VPC.
    addresses: HashMap<(VpcId, IpAddr), InterfaceId>,
    interface_names: HashMap<(VpcId, String), InterfaceId>,
    next: NextIds,
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

    pub fn vpcs(&self) -> impl Iterator<Item = &Vpc> {
        self.vpcs.values()
    }

    pub fn vpc(&self, id: VpcId) -> Option<&Vpc> {
        self.vpcs.get(&id)
    }

    pub fn vpc_by_name(&self, name: &str) -> Option<&Vpc> {
        self.vpcs.values().find(|v| v.name == name)
    }

    /// The VPC that frames with this outer VLAN tag (or untagged, `None`) belong to.
    pub fn vpc_by_vlan(&self, vlan: Option<u16>) -> Option<&Vpc> {
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
        let subject = format!("vpc {vpc_name:?}");
        let found = match GroupId::parse(name_or_id) {
            Some(id) => self.groups.get(&id),
            None => self.group_by_name(vpc, name_or_id),
        };
        match found {
            Some(g) if g.vpc == vpc => Ok(g),
            Some(g) => Err(ModelError::new(
                ErrorCode::NotFound,
                subject,
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
                    subject,
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

    /// Converts a rule back to the spec it can be written as (for copies, files
    /// and the API), with references by name.
    pub fn rule_spec(&self, rule: &Rule) -> RuleSpec {
        let remote = rule.remote.map(|r| match r {
            Remote::Cidr(net) => net.to_string(),
            Remote::Group(id) => format!(
                "group:{}",
                self.groups.get(&id).map_or(id.to_string(), |g| g.name.clone())
            ),
            Remote::PrefixList(id) => format!(
                "prefix-list:{}",
                self.prefix_lists
                    .get(&id)
                    .map_or(id.to_string(), |p| p.name.clone())
            ),
        });
        RuleSpec {
            direction: rule.direction.as_str().to_owned(),
            protocol: Scalar::Text(rule.protocol.to_string()),
            ports: rule.ports.map(|p| Scalar::Text(p.to_string())),
            source_ports: rule.source_ports.map(|p| Scalar::Text(p.to_string())),
            icmp_type: rule.icmp_type.map(i64::from),
            icmp_code: rule.icmp_code.map(i64::from),
            remote,
            local: rule.local.map(|n| n.to_string()),
            ethertype: rule.family.map(|f| f.as_str().to_owned()),
            action: Some(rule.action.as_str().to_owned()),
            priority: Some(i64::from(rule.priority)),
            description: (!rule.description.is_empty()).then(|| rule.description.clone()),
        }
    }

    fn find_vpc(&self, name: &str) -> Result<&Vpc, ModelError> {
        self.vpc_by_name(name)
            .ok_or_else(|| ModelError::new(ErrorCode::NotFound, format!("vpc {name:?}"), "no such vpc"))
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

    // ---------------------------------------------------------------- VPCs

    /// Creates a VPC and its `default` group with the default group's rules.
    pub fn create_vpc(&mut self, spec: &VpcSpec) -> Result<VpcId, Errors> {
        let subject = format!("vpc {:?}", spec.name);
        let mut errs = Collector::default();
        errs.take(check_name(
            &subject,
            &spec.name,
            VpcId::parse(&spec.name).is_some(),
        ));
        if self.vpc_by_name(&spec.name).is_some() {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "a vpc of that name exists",
            ));
        }
        let description = errs.take(check_description(&subject, spec.description.as_deref()));
        let vlan = match spec.vlan {
            None => None,
            Some(v) if VLAN_RANGE.contains(&v) => Some(v as u16),
            Some(v) => {
                errs.push(ModelError::field(
                    &subject,
                    "vlan",
                    format!("{v} is out of range 1-4094"),
                ));
                None
            }
        };
        if spec.vlan.is_none() || vlan.is_some() {
            if let Some(other) = self.vpc_by_vlan(vlan) {
                let msg = match vlan {
                    Some(v) => format!("vlan {v} is already vpc {:?}'s", other.name),
                    None => format!(
                        "vpc {:?} is already the untagged one; give this vpc a vlan",
                        other.name
                    ),
                };
                errs.push(ModelError::field(&subject, "vlan", msg).with_code(ErrorCode::AlreadyExists));
            }
        }
        let default_rules = default_rule_specs(DEFAULT_GROUP, Kind::Basic);
        if default_rules.len() > self.quotas.rules_per_group {
            errs.push(ModelError::new(
                ErrorCode::QuotaExceeded,
                group_subject(&spec.name, DEFAULT_GROUP),
                format!(
                    "would have {} rules; the quota is {} rules per group",
                    default_rules.len(),
                    self.quotas.rules_per_group
                ),
            ));
        }
        errs.finish()?;

        self.next.vpc += 1;
        let id = VpcId(self.next.vpc);
        self.next.group += 1;
        let default_group = GroupId(self.next.group);
        self.vpcs.insert(
            id,
            Vpc {
                id,
                name: spec.name.clone(),
                description: description.unwrap_or_default(),
                vlan,
                default_group,
            },
        );
        let group = SecurityGroup {
            id: default_group,
            vpc: id,
            name: DEFAULT_GROUP.to_owned(),
            description: format!("default group of vpc {}", spec.name),
            stateful: true,
            kind: Kind::Basic,
            intra_group: IntraGroup::Accept,
            rules: Vec::new(),
        };
        // Fixed rules that reference only the group itself, and the quota was
        // checked above: they cannot fail.
        let rules = self
            .build_rules(&group, &default_rules, 1)
            .expect("the default group's rules are valid");
        self.commit_rules(rules.len());
        self.groups
            .insert(default_group, SecurityGroup { rules, ..group });
        Ok(id)
    }

    /// Deletes an empty VPC (only its `default` group left) and that group.
    pub fn delete_vpc(&mut self, name: &str) -> Result<(), Errors> {
        let vpc = self.find_vpc(name)?;
        let (id, default_group) = (vpc.id, vpc.default_group);
        let mut dependents = Vec::new();
        dependents.extend(
            self.groups_in(id)
                .filter(|g| g.id != default_group)
                .map(|g| format!("group {:?}", g.name)),
        );
        dependents.extend(
            self.interfaces
                .values()
                .filter(|i| i.vpc == id)
                .map(|i| format!("interface {:?}", i.name)),
        );
        dependents.extend(
            self.prefix_lists
                .values()
                .filter(|p| p.vpc == id)
                .map(|p| format!("prefix list {:?}", p.name)),
        );
        if !dependents.is_empty() {
            return Err(ModelError::new(
                ErrorCode::InUse,
                format!("vpc {name:?}"),
                format!("still holds {}; delete those first", dependents.join(", ")),
            )
            .into());
        }
        self.groups.remove(&default_group);
        self.vpcs.remove(&id);
        Ok(())
    }

    // ---------------------------------------------------------------- groups

    /// Validates `specs` as rules of `group`, numbering them from `first_index` in
    /// errors, and assigns them the next free rule ids (committed by the caller
    /// with [`Model::commit_rules`] once the whole change is known to be valid).
    fn build_rules(
        &self,
        group: &SecurityGroup,
        specs: &[RuleSpec],
        first_index: usize,
    ) -> Result<Vec<Rule>, Errors> {
        let vpc_name = self.vpc_name(group.vpc);
        let owner = rule::Owner {
            vpc: group.vpc,
            group: group.id,
            group_name: &group.name,
        };
        let mut errs = Collector::default();
        let mut rules = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let index = first_index + i;
            let id = RuleId(self.next.rule + 1 + i as u32);
            match rule::validate(self, owner, id, &rule_subject(vpc_name, &group.name, index), spec) {
                Ok(r) => rules.push(r),
                Err(e) => errs.extend(e),
            }
        }
        let total = group.rules.len() + specs.len();
        if total > self.quotas.rules_per_group {
            errs.push(ModelError::new(
                ErrorCode::QuotaExceeded,
                group_subject(vpc_name, &group.name),
                format!(
                    "would have {total} rules; the quota is {} rules per group",
                    self.quotas.rules_per_group
                ),
            ));
        }
        errs.finish()?;
        Ok(rules)
    }

    fn commit_rules(&mut self, n: usize) {
        self.next.rule += n as u32;
    }

    /// Creates a group with its kind's default rules (unless `default_rules =
    /// false`) and the rules listed, listed ones first so that the spec's rule N is
    /// the group's rule N.
    pub fn create_group(&mut self, spec: &GroupSpec) -> Result<GroupId, Errors> {
        let subject = group_subject(&spec.vpc, &spec.name);
        let vpc = self.find_vpc(&spec.vpc)?;
        let vpc_id = vpc.id;
        let mut errs = Collector::default();
        errs.take(check_name(
            &subject,
            &spec.name,
            GroupId::parse(&spec.name).is_some(),
        ));
        if spec.name == DEFAULT_GROUP {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "every vpc has its default group already; change its rules instead",
            ));
        } else if self.group_by_name(vpc_id, &spec.name).is_some() {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "a group of that name exists",
            ));
        }
        let count = self.groups_in(vpc_id).count();
        if count >= self.quotas.groups_per_vpc {
            errs.push(ModelError::new(
                ErrorCode::QuotaExceeded,
                &subject,
                format!(
                    "vpc {:?} has {count} groups; the quota is {} groups per vpc",
                    spec.vpc, self.quotas.groups_per_vpc
                ),
            ));
        }
        let description = errs.take(check_description(&subject, spec.description.as_deref()));
        let kind = match &spec.kind {
            None => Some(Kind::Basic),
            Some(k) => errs.take(Kind::parse(k).map_err(|m| ModelError::field(&subject, "kind", m))),
        };
        let intra_group = match (&spec.intra_group, kind) {
            (Some(s), _) => {
                errs.take(IntraGroup::parse(s).map_err(|m| ModelError::field(&subject, "intra_group", m)))
            }
            (None, Some(k)) => Some(k.default_intra_group()),
            (None, None) => None,
        };
        let (Some(kind), Some(intra_group)) = (kind, intra_group) else {
            return Err(errs.finish().expect_err("kind or intra_group failed"));
        };
        let group = SecurityGroup {
            id: GroupId(self.next.group + 1),
            vpc: vpc_id,
            name: spec.name.clone(),
            description: description.unwrap_or_default(),
            stateful: spec.stateful.unwrap_or(true),
            kind,
            intra_group,
            rules: Vec::new(),
        };
        let mut specs = spec.rules.clone();
        if spec.default_rules.unwrap_or(true) {
            specs.extend(default_rule_specs(&spec.name, kind));
        }
        match self.build_rules(&group, &specs, 1) {
            Ok(rules) if errs.is_empty() => {
                self.next.group += 1;
                self.commit_rules(rules.len());
                let id = group.id;
                self.groups.insert(id, SecurityGroup { rules, ..group });
                Ok(id)
            }
            Ok(_) => Err(errs.finish().expect_err("errors were recorded")),
            Err(e) => {
                errs.extend(e);
                Err(errs.finish().expect_err("errors were recorded"))
            }
        }
    }

    /// Changes a group's name, description, statefulness or intra-group policy.
    /// The `default` group keeps its name; no group changes its kind.
    pub fn update_group(&mut self, vpc: &str, group: &str, update: &GroupUpdate) -> Result<(), Errors> {
        let g = self.find_group(vpc, group)?;
        let subject = group_subject(vpc, &g.name);
        let mut errs = Collector::default();
        if let Some(name) = &update.name {
            if *name != g.name {
                if g.name == DEFAULT_GROUP {
                    errs.push(
                        ModelError::field(&subject, "name", "the default group cannot be renamed")
                            .with_code(ErrorCode::Forbidden),
                    );
                } else if self.group_by_name(g.vpc, name).is_some() {
                    errs.push(
                        ModelError::field(&subject, "name", format!("a group named {name:?} exists"))
                            .with_code(ErrorCode::AlreadyExists),
                    );
                }
                errs.take(check_name(&subject, name, GroupId::parse(name).is_some()));
            }
        }
        if update.description.is_some() {
            errs.take(check_description(&subject, update.description.as_deref()));
        }
        let intra_group = match &update.intra_group {
            None => None,
            Some(s) => {
                errs.take(IntraGroup::parse(s).map_err(|m| ModelError::field(&subject, "intra_group", m)))
            }
        };
        errs.finish()?;
        let id = g.id;
        let g = self.groups.get_mut(&id).expect("found above");
        if let Some(name) = &update.name {
            g.name.clone_from(name);
        }
        if let Some(d) = &update.description {
            g.description.clone_from(d);
        }
        if let Some(s) = update.stateful {
            g.stateful = s;
        }
        if let Some(ig) = intra_group {
            g.intra_group = ig;
        }
        Ok(())
    }

    /// Deletes a group that no interface is bound to and no other group's rule
    /// references. The `default` group is never deleted.
    pub fn delete_group(&mut self, vpc: &str, group: &str) -> Result<(), Errors> {
        let g = self.find_group(vpc, group)?;
        let subject = group_subject(vpc, &g.name);
        if g.name == DEFAULT_GROUP {
            return Err(ModelError::new(
                ErrorCode::Forbidden,
                subject,
                "the default group cannot be deleted",
            )
            .into());
        }
        let id = g.id;
        let mut dependents: Vec<String> = self
            .interfaces
            .values()
            .filter(|i| i.groups.contains(&id))
            .map(|i| format!("interface {:?}", i.name))
            .collect();
        for other in self.groups.values().filter(|o| o.id != id) {
            for (i, r) in other.rules.iter().enumerate() {
                if r.remote == Some(Remote::Group(id)) {
                    dependents.push(format!("rule {} ({}) of group {:?}", i + 1, r.id, other.name));
                }
            }
        }
        if !dependents.is_empty() {
            return Err(ModelError::new(
                ErrorCode::InUse,
                subject,
                format!(
                    "is still used by {}; unbind it and remove those rules first",
                    dependents.join(", ")
                ),
            )
            .into());
        }
        self.groups.remove(&id);
        Ok(())
    }

    /// Copies a group under a new name: same attributes and rules (with new ids);
    /// rules of the original that reference the original now reference the copy.
    pub fn copy_group(&mut self, vpc: &str, group: &str, new_name: &str) -> Result<GroupId, Errors> {
        let g = self.find_group(vpc, group)?;
        let subject = group_subject(vpc, new_name);
        let mut errs = Collector::default();
        errs.take(check_name(&subject, new_name, GroupId::parse(new_name).is_some()));
        if self.group_by_name(g.vpc, new_name).is_some() {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "a group of that name exists",
            ));
        }
        let count = self.groups_in(g.vpc).count();
        if count >= self.quotas.groups_per_vpc {
            errs.push(ModelError::new(
                ErrorCode::QuotaExceeded,
                &subject,
                format!("the quota is {} groups per vpc", self.quotas.groups_per_vpc),
            ));
        }
        errs.finish()?;
        let (orig, copy_id) = (g.id, GroupId(self.next.group + 1));
        let mut copy = g.clone();
        copy.id = copy_id;
        copy.name = new_name.to_owned();
        for (i, r) in copy.rules.iter_mut().enumerate() {
            r.id = RuleId(self.next.rule + 1 + i as u32);
            if r.remote == Some(Remote::Group(orig)) {
                r.remote = Some(Remote::Group(copy_id));
            }
        }
        self.next.group += 1;
        self.commit_rules(copy.rules.len());
        self.groups.insert(copy_id, copy);
        Ok(copy_id)
    }

    /// Appends rules to a group; returns their ids.
    pub fn add_rules(&mut self, vpc: &str, group: &str, specs: &[RuleSpec]) -> Result<Vec<RuleId>, Errors> {
        let g = self.find_group(vpc, group)?;
        let rules = self.build_rules(g, specs, g.rules.len() + 1)?;
        let ids = rules.iter().map(|r| r.id).collect();
        let id = g.id;
        self.commit_rules(rules.len());
        self.groups.get_mut(&id).expect("found above").rules.extend(rules);
        Ok(ids)
    }

    /// Replaces all rules of a group at once.
    pub fn replace_rules(
        &mut self,
        vpc: &str,
        group: &str,
        specs: &[RuleSpec],
    ) -> Result<Vec<RuleId>, Errors> {
        let g = self.find_group(vpc, group)?;
        let empty = SecurityGroup {
            rules: Vec::new(),
            ..g.clone()
        };
        let rules = self.build_rules(&empty, specs, 1)?;
        let ids = rules.iter().map(|r| r.id).collect();
        self.commit_rules(rules.len());
        self.groups.get_mut(&empty.id).expect("found above").rules = rules;
        Ok(ids)
    }

    /// Deletes one rule of a group, by id (`sgr-N`).
    pub fn delete_rule(&mut self, vpc: &str, group: &str, rule: &str) -> Result<(), Errors> {
        let g = self.find_group(vpc, group)?;
        let subject = group_subject(vpc, &g.name);
        let Some(rule_id) = RuleId::parse(rule) else {
            return Err(ModelError::new(
                ErrorCode::Invalid,
                subject,
                format!("{rule:?} is not a rule id; rule ids look like sgr-12"),
            )
            .into());
        };
        let Some(pos) = g.rules.iter().position(|r| r.id == rule_id) else {
            return Err(
                ModelError::new(ErrorCode::NotFound, subject, format!("has no rule {rule_id}")).into(),
            );
        };
        let id = g.id;
        self.groups.get_mut(&id).expect("found above").rules.remove(pos);
        Ok(())
    }

    // ---------------------------------------------------------------- interfaces

    /// Resolves a list of group names or ids for an interface of `vpc`.
    fn resolve_bound_groups(
        &self,
        subject: &str,
        vpc: VpcId,
        names: &[String],
        bare_metal: bool,
        errs: &mut Collector,
    ) -> Vec<GroupId> {
        let mut ids: Vec<GroupId> = Vec::new();
        for name in names {
            match self.resolve_group(vpc, name) {
                Ok(g) if ids.contains(&g.id) => errs.push(ModelError::field(
                    subject,
                    "groups",
                    format!("group {:?} is listed twice", g.name),
                )),
                Ok(g) => ids.push(g.id),
                Err(e) => {
                    errs.push(ModelError::field(subject, "groups", e.message).with_code(ErrorCode::NotFound))
                }
            }
        }
        if names.len() > self.quotas.groups_per_interface {
            errs.push(
                ModelError::field(
                    subject,
                    "groups",
                    format!(
                        "lists {} groups; the quota is {} groups per interface",
                        names.len(),
                        self.quotas.groups_per_interface
                    ),
                )
                .with_code(ErrorCode::QuotaExceeded),
            );
        }
        if names.is_empty() && !bare_metal {
            if let Some(v) = self.vpcs.get(&vpc) {
                ids.push(v.default_group);
            }
        }
        ids
    }

    /// Creates a protected interface. Without groups it is bound to its VPC's
    /// `default` group, unless it is bare metal, which may stay unfiltered.
    pub fn create_interface(&mut self, spec: &InterfaceSpec) -> Result<InterfaceId, Errors> {
        let subject = interface_subject(&spec.vpc, &spec.name);
        let vpc = self.find_vpc(&spec.vpc)?.id;
        let mut errs = Collector::default();
        errs.take(check_name(
            &subject,
            &spec.name,
            InterfaceId::parse(&spec.name).is_some(),
        ));
        if self.interface_by_name(vpc, &spec.name).is_some() {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "an interface of that name exists",
            ));
        }
        if self.interfaces.len() >= self.quotas.interfaces {
            errs.push(ModelError::new(
                ErrorCode::QuotaExceeded,
                &subject,
                format!("the quota is {} interfaces in all", self.quotas.interfaces),
            ));
        }
        let addresses = self.check_addresses(&subject, vpc, None, &spec.addresses, &mut errs);
        let mac = match &spec.mac {
            None => None,
            Some(m) => errs.take(MacAddr::parse(m).map_err(|msg| ModelError::field(&subject, "mac", msg))),
        };
        let bare_metal = spec.bare_metal.unwrap_or(false);
        let groups = self.resolve_bound_groups(&subject, vpc, &spec.groups, bare_metal, &mut errs);
        errs.finish()?;

        self.next.interface += 1;
        let id = InterfaceId(self.next.interface);
        for addr in &addresses {
            self.addresses.insert((vpc, *addr), id);
        }
        self.interface_names.insert((vpc, spec.name.clone()), id);
        self.interfaces.insert(
            id,
            Interface {
                id,
                vpc,
                name: spec.name.clone(),
                addresses,
                mac,
                groups,
                bare_metal,
            },
        );
        Ok(id)
    }

    /// Parses and checks an interface's addresses: at least one, no repeats, none
    /// owned by another interface of the VPC (`this` may already own them).
    fn check_addresses(
        &self,
        subject: &str,
        vpc: VpcId,
        this: Option<InterfaceId>,
        raw: &[String],
        errs: &mut Collector,
    ) -> Vec<IpAddr> {
        if raw.is_empty() {
            errs.push(ModelError::field(
                subject,
                "addresses",
                "an interface needs at least one address",
            ));
        }
        let mut addresses = Vec::new();
        for a in raw {
            let Some(addr) =
                errs.take(parse_address(a).map_err(|m| ModelError::field(subject, "addresses", m)))
            else {
                continue;
            };
            if addresses.contains(&addr) {
                errs.push(ModelError::field(
                    subject,
                    "addresses",
                    format!("{addr} is listed twice"),
                ));
                continue;
            }
            if let Some(owner) = self
                .interface_by_address(vpc, addr)
                .filter(|i| Some(i.id) != this)
            {
                errs.push(
                    ModelError::field(
                        subject,
                        "addresses",
                        format!("{addr} already belongs to interface {:?}", owner.name),
                    )
                    .with_code(ErrorCode::AlreadyExists),
                );
                continue;
            }
            addresses.push(addr);
        }
        addresses
    }

    pub fn delete_interface(&mut self, vpc: &str, name: &str) -> Result<(), Errors> {
        let iface = self.find_interface(vpc, name)?;
        let (id, vpc_id) = (iface.id, iface.vpc);
        for addr in &iface.addresses.clone() {
            self.addresses.remove(&(vpc_id, *addr));
        }
        self.interface_names.remove(&(vpc_id, name.to_owned()));
        self.interfaces.remove(&id);
        Ok(())
    }

    /// Replaces an interface's group list. An empty list binds a non-bare-metal
    /// interface to `default`, as at creation.
    pub fn set_interface_groups(&mut self, vpc: &str, name: &str, groups: &[String]) -> Result<(), Errors> {
        let iface = self.find_interface(vpc, name)?;
        let subject = interface_subject(vpc, name);
        let mut errs = Collector::default();
        let ids = self.resolve_bound_groups(&subject, iface.vpc, groups, iface.bare_metal, &mut errs);
        errs.finish()?;
        let id = iface.id;
        self.interfaces.get_mut(&id).expect("found above").groups = ids;
        Ok(())
    }

    /// Binds one more group to an interface, after its current ones.
    pub fn bind_group(&mut self, vpc: &str, name: &str, group: &str) -> Result<(), Errors> {
        let iface = self.find_interface(vpc, name)?;
        let g = self.resolve_group(iface.vpc, group)?;
        if iface.groups.contains(&g.id) {
            return Err(ModelError::new(
                ErrorCode::AlreadyExists,
                interface_subject(vpc, name),
                format!("is already bound to group {:?}", g.name),
            )
            .into());
        }
        let mut names: Vec<String> = iface.groups.iter().map(|id| id.to_string()).collect();
        names.push(g.id.to_string());
        self.set_interface_groups(vpc, name, &names)
    }

    /// Unbinds a group from an interface. The last group of a non-bare-metal
    /// interface cannot be unbound: bind another one first.
    pub fn unbind_group(&mut self, vpc: &str, name: &str, group: &str) -> Result<(), Errors> {
        let iface = self.find_interface(vpc, name)?;
        let subject = interface_subject(vpc, name);
        let g = self.resolve_group(iface.vpc, group)?;
        if !iface.groups.contains(&g.id) {
            return Err(ModelError::new(
                ErrorCode::NotFound,
                subject,
                format!("is not bound to group {:?}", g.name),
            )
            .into());
        }
        if iface.groups.len() == 1 && !iface.bare_metal {
            return Err(ModelError::field(
                subject,
                "groups",
                format!(
                    "{:?} is its only group and an interface needs at least one; bind another group first",
                    g.name
                ),
            )
            .into());
        }
        let gid = g.id;
        let id = iface.id;
        self.interfaces
            .get_mut(&id)
            .expect("found above")
            .groups
            .retain(|x| *x != gid);
        Ok(())
    }

    // ---------------------------------------------------------------- prefix lists

    fn check_cidrs(subject: &str, raw: &[String], errs: &mut Collector) -> Vec<IpNet> {
        let mut cidrs = Vec::new();
        for c in raw {
            if let Some(net) = errs.take(parse_cidr(c).map_err(|m| ModelError::field(subject, "cidrs", m))) {
                if cidrs.contains(&net) {
                    errs.push(ModelError::field(
                        subject,
                        "cidrs",
                        format!("{net} is listed twice"),
                    ));
                } else {
                    cidrs.push(net);
                }
            }
        }
        cidrs
    }

    pub fn create_prefix_list(&mut self, spec: &PrefixListSpec) -> Result<PrefixListId, Errors> {
        let subject = prefix_list_subject(&spec.vpc, &spec.name);
        let vpc = self.find_vpc(&spec.vpc)?.id;
        let mut errs = Collector::default();
        errs.take(check_name(
            &subject,
            &spec.name,
            PrefixListId::parse(&spec.name).is_some(),
        ));
        if self.prefix_list_by_name(vpc, &spec.name).is_some() {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "a prefix list of that name exists",
            ));
        }
        let description = errs.take(check_description(&subject, spec.description.as_deref()));
        let cidrs = Self::check_cidrs(&subject, &spec.cidrs, &mut errs);
        errs.finish()?;
        self.next.prefix_list += 1;
        let id = PrefixListId(self.next.prefix_list);
        self.prefix_lists.insert(
            id,
            PrefixList {
                id,
                vpc,
                name: spec.name.clone(),
                description: description.unwrap_or_default(),
                cidrs,
            },
        );
        Ok(id)
    }

    /// Replaces the CIDRs of a prefix list; every rule using it follows.
    pub fn set_prefix_list_cidrs(&mut self, vpc: &str, name: &str, cidrs: &[String]) -> Result<(), Errors> {
        let pl = self.find_prefix_list(vpc, name)?;
        let mut errs = Collector::default();
        let parsed = Self::check_cidrs(&prefix_list_subject(vpc, &pl.name), cidrs, &mut errs);
        errs.finish()?;
        let id = pl.id;
        self.prefix_lists.get_mut(&id).expect("found above").cidrs = parsed;
        Ok(())
    }

    /// Deletes a prefix list that no rule uses.
    pub fn delete_prefix_list(&mut self, vpc: &str, name: &str) -> Result<(), Errors> {
        let pl = self.find_prefix_list(vpc, name)?;
        let id = pl.id;
        let users: Vec<String> = self
            .groups
            .values()
            .flat_map(|g| {
                g.rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.remote == Some(Remote::PrefixList(id)))
                    .map(move |(i, r)| format!("rule {} ({}) of group {:?}", i + 1, r.id, g.name))
            })
            .collect();
        if !users.is_empty() {
            return Err(ModelError::new(
                ErrorCode::InUse,
                prefix_list_subject(vpc, name),
                format!("is still used by {}; remove those rules first", users.join(", ")),
            )
            .into());
        }
        self.prefix_lists.remove(&id);
        Ok(())
    }

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
