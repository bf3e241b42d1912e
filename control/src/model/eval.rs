//! The reference evaluator: spec section 3 written as plainly as possible.
//!
//! It decides the first packet of a flow straight from the [`Model`], with linear
//! scans and no precomputation, and says why: for each evaluated interface and
//! direction, the rule that decided, the intra-group acceptance, or the implicit
//! deny. It is the oracle the compiled classifier is checked against, so clarity
//! beats speed here; it must never grow caches or shortcuts.
//!
//! Steps, as in the spec:
//! 1. The frame's VLAN selects the VPC; the destination's and the source's owning
//!    interfaces are looked up in it.
//! 2. The destination interface's ingress policy is evaluated with the source as
//!    remote, the source interface's egress policy with the destination as remote.
//!    The packet passes only if every evaluated policy allows it.
//! 3. Within a policy, intra-group acceptance comes first: if the remote endpoint is
//!    a member of a group bound to this interface with `intra_group = accept`, the
//!    policy allows.
//! 4. Otherwise the matching rule with the smallest priority number decides, deny
//!    beating allow at equal priority; no match is a deny. Among equal rules the
//!    one with the smallest id is named (and for intra-group acceptance the group
//!    with the smallest id), so the answer never depends on order.
//! 5. Traffic with no protected endpoint (or on a VLAN of no VPC) follows the
//!    `unprotected` setting.

use std::net::IpAddr;

use super::{
    Action, Direction, Family, GroupId, Interface, InterfaceId, IntraGroup, Model, Remote, Rule, RuleId,
    VpcId,
};
use crate::settings::Unprotected;

/// The fields of a first packet that the rules can look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Outer 802.1Q VLAN ID, `None` for untagged frames.
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Ports for tcp, udp and sctp; 0 otherwise.
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP or ICMPv6 type and code; 0 otherwise.
    pub icmp_type: u8,
    pub icmp_code: u8,
}

/// How one policy (one interface, one direction) decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The remote endpoint is a member of this group, bound here with
    /// `intra_group = accept`.
    IntraGroup { group: GroupId },
    /// This rule matched with the smallest priority number (deny first on a tie).
    Rule {
        group: GroupId,
        /// 1-based position of the rule in its group.
        index: usize,
        rule: RuleId,
        priority: u16,
        action: Action,
    },
    /// No rule matched.
    ImplicitDeny,
    /// A bare-metal interface without groups: its traffic is not filtered.
    NotFiltered,
}

impl Decision {
    pub fn allows(self) -> bool {
        match self {
            Decision::IntraGroup { .. } | Decision::NotFiltered => true,
            Decision::Rule { action, .. } => action == Action::Allow,
            Decision::ImplicitDeny => false,
        }
    }
}

/// One evaluated policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    pub direction: Direction,
    pub interface: InterfaceId,
    pub decision: Decision,
}

/// The verdict on a first packet and everything that led to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The VPC the frame's VLAN selected; `None` if it selects none.
    pub vpc: Option<VpcId>,
    /// The evaluated policies: the destination's ingress, then the source's egress.
    /// Empty when neither endpoint is protected (the `unprotected` setting decided).
    pub checks: Vec<Check>,
    /// Whether an allowed packet creates a connection: every group bound to the
    /// evaluated interfaces is stateful (spec section 4). False when nothing was
    /// evaluated.
    pub stateful: bool,
}

/// Decides `pkt` against `model` (spec section 3).
pub fn evaluate(model: &Model, unprotected: Unprotected, pkt: &Packet) -> Verdict {
    let unprotected_verdict = |vpc| Verdict {
        allowed: unprotected == Unprotected::Forward,
        vpc,
        checks: Vec::new(),
        stateful: false,
    };
    let Some(vpc) = model.vpc_by_vlan(pkt.vlan) else {
        return unprotected_verdict(None);
    };
    let dst_if = model.interface_by_address(vpc.id, pkt.dst);
    let src_if = model.interface_by_address(vpc.id, pkt.src);
    if dst_if.is_none() && src_if.is_none() {
        return unprotected_verdict(Some(vpc.id));
    }

    let mut checks = Vec::new();
    if let Some(iface) = dst_if {
        checks.push(Check {
            direction: Direction::Ingress,
            interface: iface.id,
            decision: policy(model, iface, Direction::Ingress, pkt.src, pkt.dst, pkt),
        });
    }
    if let Some(iface) = src_if {
        checks.push(Check {
            direction: Direction::Egress,
            interface: iface.id,
            decision: policy(model, iface, Direction::Egress, pkt.dst, pkt.src, pkt),
        });
    }
    let allowed = checks.iter().all(|c| c.decision.allows());
    let evaluated: Vec<&Interface> = [dst_if, src_if].into_iter().flatten().collect();
    let stateful = evaluated
        .iter()
        .flat_map(|i| model.interface_groups(i))
        .all(|g| g.stateful)
        && evaluated.iter().any(|i| !i.groups.is_empty());
    Verdict {
        allowed,
        vpc: Some(vpc.id),
        checks,
        stateful,
    }
}

/// Evaluates one interface's policy in one direction. `remote` is the other
/// endpoint's address, `local` this interface's own address in the packet.
fn policy(
    model: &Model,
    iface: &Interface,
    direction: Direction,
    remote: IpAddr,
    local: IpAddr,
    pkt: &Packet,
) -> Decision {
    if iface.groups.is_empty() {
        return Decision::NotFiltered;
    }
    if let Some(peer) = model.interface_by_address(iface.vpc, remote) {
        // Several groups may qualify; name the one with the smallest id.
        let accepting = model
            .interface_groups(iface)
            .filter(|g| g.intra_group == IntraGroup::Accept && peer.groups.contains(&g.id))
            .map(|g| g.id)
            .min();
        if let Some(group) = accepting {
            return Decision::IntraGroup { group };
        }
    }
    let mut best: Option<Decision> = None;
    for group in model.interface_groups(iface) {
        for (i, rule) in group.rules.iter().enumerate() {
            if rule.direction != direction || !rule_matches(model, iface.vpc, rule, remote, local, pkt) {
                continue;
            }
            let better = match best {
                Some(Decision::Rule {
                    priority,
                    action,
                    rule: id,
                    ..
                }) => rank(rule.priority, rule.action, rule.id) < rank(priority, action, id),
                _ => true,
            };
            if better {
                best = Some(Decision::Rule {
                    group: group.id,
                    index: i + 1,
                    rule: rule.id,
                    priority: rule.priority,
                    action: rule.action,
                });
            }
        }
    }
    best.unwrap_or(Decision::ImplicitDeny)
}

/// The decision order of matching rules, smallest first: priority, then deny
/// before allow (spec section 3), then the smaller rule id. The last key only
/// picks which of several equal rules is named; it never changes a verdict, and
/// it makes the named rule independent of the order of groups and rules.
fn rank(priority: u16, action: Action, id: RuleId) -> (u16, bool, u32) {
    (priority, action == Action::Allow, id.0)
}

/// Whether `rule` matches the packet, seen from an interface of `vpc` whose own
/// address in the packet is `local` and whose peer is `remote`.
fn rule_matches(model: &Model, vpc: VpcId, rule: &Rule, remote: IpAddr, local: IpAddr, pkt: &Packet) -> bool {
    if rule.family.is_some_and(|f| f != Family::of(remote)) {
        return false;
    }
    if !rule.protocol.matches(pkt.protocol) {
        return false;
    }
    if rule.ports.is_some_and(|r| !r.contains(pkt.dst_port)) {
        return false;
    }
    if rule.source_ports.is_some_and(|r| !r.contains(pkt.src_port)) {
        return false;
    }
    if rule.icmp_type.is_some_and(|t| t != pkt.icmp_type)
        || rule.icmp_code.is_some_and(|c| c != pkt.icmp_code)
    {
        return false;
    }
    if rule.local.is_some_and(|net| !net.contains(&local)) {
        return false;
    }
    match rule.remote {
        None => true,
        Some(Remote::Cidr(net)) => net.contains(&remote),
        Some(Remote::Group(group)) => model
            .interface_by_address(vpc, remote)
            .is_some_and(|peer| peer.groups.contains(&group)),
        Some(Remote::PrefixList(id)) => model
            .prefix_list(id)
            .is_some_and(|pl| pl.cidrs.iter().any(|net| net.contains(&remote))),
    }
}
