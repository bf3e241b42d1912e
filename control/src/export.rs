//! `rampart export nftables`: the model as an nftables ruleset for a Linux
//! bridge with connection tracking, enforcing the same security-group
//! semantics (spec sections 3 and 4) in the kernel. It is the kernel
//! baseline of the end-to-end benchmark, and a feature for hosts without the
//! appliance.
//!
//! Where it runs: a host (or namespace) bridging the two networks, with
//! `br_netfilter` passing bridged IP traffic through the `inet` hooks
//! (`net.bridge.bridge-nf-call-iptables = 1` and `...-ip6tables = 1`), so
//! conntrack sees it. The ruleset has two tables:
//! - `bridge rampart_l2`: non-IP ethertypes per the `non_ip` setting (ARP
//!   always passes);
//! - `inet rampart`: the `forward` chain accepts packets of stateful
//!   connections (`ct mark 1`; ICMP errors related to one carry its mark),
//!   passes neighbour discovery,
//!   then decides a first packet in `decide`: the source
//!   interface's egress policy and the destination interface's ingress
//!   policy, each a chain per distinct set of bound groups (shared like the
//!   snapshot's policies), jumped to through address maps. A policy chain
//!   returns to allow and drops to deny: intra-group `accept` groups first,
//!   then the rules in decision order (priority, deny before allow), then
//!   the implicit deny. Group references and prefix lists are named sets.
//!   An allowed stateful first packet marks its connection (`ct mark set 1`);
//!   a flow through a stateless group is not marked, so each of its packets
//!   is decided again in its own direction.
//!
//! Differences from the appliance, stated in the ruleset's header: existing
//! connections survive rule changes (conntrack has no revalidation: as
//! `on_rule_change = keep`); the kernel's conntrack timeouts apply; only one
//! VPC, untagged, can be exported (the `inet` hooks do not see VLAN IDs).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{
    proto, Action, Direction, Family, GroupId, Interface, IntraGroup, Model, Protocol, Remote, Rule, VpcId,
};
use crate::settings::{NonIp, Settings, Unprotected};

/// Why a model cannot be exported.
#[derive(Debug, thiserror::Error)]
#[error("cannot export to nftables: {0}")]
pub struct ExportError(String);

fn family_prefix(f: Family) -> &'static str {
    match f {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

fn set_suffix(f: Family) -> &'static str {
    match f {
        Family::V4 => "4",
        Family::V6 => "6",
    }
}

fn set_type(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    }
}

fn family_of_net(n: &IpNet) -> Family {
    match n {
        IpNet::V4(_) => Family::V4,
        IpNet::V6(_) => Family::V6,
    }
}

fn family_of_addr(a: &IpAddr) -> Family {
    match a {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// A named set's body: `{ a, b }`, or nothing for an empty set.
fn elements<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = items.iter().map(ToString::to_string).collect();
        format!(" elements = {{ {} }};", list.join(", "))
    }
}

/// The nftables match of one rule for one family (`None`: the rule cannot
/// match that family).
fn rule_match(rule: &Rule, direction: Direction, family: Family) -> Option<String> {
    if rule.family.is_some_and(|f| f != family) {
        return None;
    }
    let fp = family_prefix(family);
    let (remote_field, local_field) = match direction {
        Direction::Ingress => ("saddr", "daddr"),
        Direction::Egress => ("daddr", "saddr"),
    };
    let mut m = vec![format!(
        "meta nfproto {}",
        if family == Family::V4 { "ipv4" } else { "ipv6" }
    )];
    match rule.protocol {
        Protocol::All => {}
        Protocol::Ip(p) => {
            if (p == proto::ICMP && family == Family::V6) || (p == proto::ICMPV6 && family == Family::V4) {
                return None;
            }
            m.push(format!("meta l4proto {p}"));
        }
    }
    if let Some(r) = rule.ports {
        m.push(format!("th dport {}", range(r.lo, r.hi)));
    }
    if let Some(r) = rule.source_ports {
        m.push(format!("th sport {}", range(r.lo, r.hi)));
    }
    let icmp = if family == Family::V4 { "icmp" } else { "icmpv6" };
    if let Some(t) = rule.icmp_type {
        m.push(format!("{icmp} type {t}"));
    }
    if let Some(c) = rule.icmp_code {
        m.push(format!("{icmp} code {c}"));
    }
    if let Some(net) = rule.local {
        if family_of_net(&net) != family {
            return None;
        }
        m.push(format!("{fp} {local_field} {net}"));
    }
    match rule.remote {
        None => {}
        Some(Remote::Cidr(net)) => {
            if family_of_net(&net) != family {
                return None;
            }
            m.push(format!("{fp} {remote_field} {net}"));
        }
        Some(Remote::Group(g)) => m.push(format!("{fp} {remote_field} @g{}_{}", g.0, set_suffix(family))),
        Some(Remote::PrefixList(p)) => {
            m.push(format!("{fp} {remote_field} @pl{}_{}", p.0, set_suffix(family)))
        }
    }
    Some(m.join(" "))
}

fn range(lo: u16, hi: u16) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// The ruleset for `model` under `settings`; `origin` names the source in the
/// header.
pub fn nftables(model: &Model, settings: &Settings, origin: &str) -> Result<String, ExportError> {
    let vpc = exported_vpc(model)?;
    let ifaces: Vec<&Interface> = model.interfaces().filter(|i| i.vpc == vpc).collect();
    let mut out = String::new();
    header(&mut out, model, origin);
    layer2(&mut out, settings);
    let _ = writeln!(
        out,
        "table inet rampart\ndelete table inet rampart\ntable inet rampart {{"
    );
    address_sets(&mut out, model, vpc, &ifaces);
    // One policy chain per distinct (set of groups, direction).
    let mut chains: BTreeMap<Vec<GroupId>, usize> = BTreeMap::new();
    for i in &ifaces {
        let n = chains.len();
        chains.entry(group_set(i)).or_insert(n);
    }
    for (groups, n) in &chains {
        for direction in [Direction::Ingress, Direction::Egress] {
            policy_chain(&mut out, model, groups, *n, direction);
        }
    }
    address_maps(&mut out, &ifaces, &chains);
    decide_chain(&mut out, settings);
    let _ = writeln!(
        out,
        "\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    \
         ct mark 1 accept\n    \
         icmpv6 type {{ nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect }} accept\n    \
         jump decide\n  }}\n}}"
    );
    Ok(out)
}

/// The one VPC an export can hold: untagged, and alone in the model.
fn exported_vpc(model: &Model) -> Result<VpcId, ExportError> {
    let vpcs: Vec<_> = model.vpcs().collect();
    match vpcs.as_slice() {
        [] => Err(ExportError("the model has no VPC".into())),
        [v] if v.vlan.is_none() => Ok(v.id),
        [v] => Err(ExportError(format!(
            "vpc {:?} has VLAN {}; the kernel's inet hooks do not see VLAN IDs, so only an untagged VPC can be exported",
            v.name,
            v.vlan.unwrap_or_default()
        ))),
        _ => Err(ExportError(format!(
            "the model has {} VPCs; one bridge enforces one untagged VPC, export them one at a time",
            vpcs.len()
        ))),
    }
}

/// An interface's groups, sorted: the key of its policy chains.
fn group_set(i: &Interface) -> Vec<GroupId> {
    let mut key = i.groups.clone();
    key.sort();
    key
}

/// The comment lines that say where the ruleset came from and how it differs.
fn header(out: &mut String, model: &Model, origin: &str) {
    let _ = writeln!(out, "#!/usr/sbin/nft -f");
    let _ = writeln!(
        out,
        "# Generated by `rampart export nftables` from {origin}: {}.",
        crate::config::Summary::of(model)
    );
    let _ = writeln!(
        out,
        "# Load on a bridge with net.bridge.bridge-nf-call-iptables=1 and bridge-nf-call-ip6tables=1.\n\
         # Unlike the appliance: connections outlive rule changes (on_rule_change = keep), the kernel's\n\
         # conntrack timeouts apply, and malformed packets are the kernel's to judge.\n"
    );
}

/// Layer 2: non-IP ethertypes.
fn layer2(out: &mut String, settings: &Settings) {
    let _ = writeln!(out, "table bridge rampart_l2\ndelete table bridge rampart_l2");
    let _ = writeln!(out, "table bridge rampart_l2 {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;");
    if settings.non_ip == NonIp::Drop {
        let _ = writeln!(out, "    ether type != {{ ip, ip6, arp, vlan, 8021ad }} drop");
    }
    let _ = writeln!(out, "  }}\n}}\n");
}

/// The addresses of `of` in family `f`, sorted and without repeats.
fn addresses<'a>(f: Family, of: impl Iterator<Item = &'a Interface>) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = of
        .flat_map(|i| i.addresses.iter().copied())
        .filter(|a| family_of_addr(a) == f)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Sets: protected addresses, group members, prefix lists.
fn address_sets(out: &mut String, model: &Model, vpc: VpcId, ifaces: &[&Interface]) {
    for f in [Family::V4, Family::V6] {
        let all = addresses(f, ifaces.iter().copied());
        let _ = writeln!(
            out,
            "  set protected_{} {{ type {};{} }}",
            set_suffix(f),
            set_type(f),
            elements(&all)
        );
    }
    for g in model.groups().filter(|g| g.vpc == vpc) {
        for f in [Family::V4, Family::V6] {
            let members = addresses(f, ifaces.iter().copied().filter(|i| i.groups.contains(&g.id)));
            let _ = writeln!(
                out,
                "  set g{}_{} {{ type {};{} }}  # members of {}",
                g.id.0,
                set_suffix(f),
                set_type(f),
                elements(&members),
                g.name
            );
        }
    }
    for p in model.prefix_lists().filter(|p| p.vpc == vpc) {
        for f in [Family::V4, Family::V6] {
            let cidrs: Vec<&IpNet> = p.cidrs.iter().filter(|n| family_of_net(n) == f).collect();
            let _ = writeln!(
                out,
                "  set pl{}_{} {{ type {}; flags interval; auto-merge;{} }}  # prefix list {}",
                p.id.0,
                set_suffix(f),
                set_type(f),
                elements(&cidrs),
                p.name
            );
        }
    }
}

/// Chain `p{n}_in` or `p{n}_out`: the rules of `groups` in `direction`, in
/// evaluation order, then drop.
fn policy_chain(out: &mut String, model: &Model, groups: &[GroupId], n: usize, direction: Direction) {
    let name = format!(
        "p{n}_{}",
        if direction == Direction::Ingress {
            "in"
        } else {
            "out"
        }
    );
    let bound: Vec<_> = groups.iter().filter_map(|g| model.group(*g)).collect();
    let names: Vec<&str> = bound.iter().map(|g| g.name.as_str()).collect();
    let _ = writeln!(
        out,
        "\n  chain {name} {{  # {} of [{}]",
        direction.as_str(),
        names.join(", ")
    );
    if bound.is_empty() {
        let _ = writeln!(out, "    return  # bare metal: not filtered\n  }}");
        return;
    }
    let stateless = bound.iter().any(|g| !g.stateful);
    let allow = if stateless {
        "meta mark set 2 return"
    } else {
        "return"
    };
    let remote = if direction == Direction::Ingress {
        "saddr"
    } else {
        "daddr"
    };
    for g in bound.iter().filter(|g| g.intra_group == IntraGroup::Accept) {
        for f in [Family::V4, Family::V6] {
            let _ = writeln!(
                out,
                "    {} {remote} @g{}_{} {allow}  # intra-group accept: {}",
                family_prefix(f),
                g.id.0,
                set_suffix(f),
                g.name
            );
        }
    }
    let mut rules: Vec<(&str, &Rule)> = bound
        .iter()
        .flat_map(|g| g.rules.iter().map(move |r| (g.name.as_str(), r)))
        .filter(|(_, r)| r.direction == direction)
        .collect();
    rules.sort_by_key(|(_, r)| (r.priority, r.action == Action::Allow, r.id.0));
    for (group, rule) in rules {
        let verdict = if rule.action == Action::Allow {
            allow
        } else {
            "drop"
        };
        for f in [Family::V4, Family::V6] {
            if let Some(m) = rule_match(rule, direction, f) {
                let _ = writeln!(
                    out,
                    "    {m} {verdict}  # {} {group}: {}",
                    rule.id,
                    model.rule_text(rule)
                );
            }
        }
    }
    let _ = writeln!(out, "    drop  # no rule matched\n  }}");
}

/// Maps from an interface's address to its policy chains.
fn address_maps(out: &mut String, ifaces: &[&Interface], chains: &BTreeMap<Vec<GroupId>, usize>) {
    for (dir, suffix) in [("out", "egress"), ("in", "ingress")] {
        for f in [Family::V4, Family::V6] {
            let mut entries: Vec<String> = Vec::new();
            for i in ifaces {
                let n = chains[&group_set(i)];
                for a in i.addresses.iter().filter(|a| family_of_addr(a) == f) {
                    entries.push(format!("{a} : jump p{n}_{dir}"));
                }
            }
            let _ = writeln!(
                out,
                "\n  map {suffix}_{} {{ type {} : verdict;{} }}",
                set_suffix(f),
                set_type(f),
                if entries.is_empty() {
                    String::new()
                } else {
                    format!(" elements = {{ {} }};", entries.join(", "))
                }
            );
        }
    }
}

/// The decision of a first packet.
fn decide_chain(out: &mut String, settings: &Settings) {
    let _ = writeln!(out, "\n  chain decide {{\n    meta mark set 0");
    let unprotected = if settings.unprotected == Unprotected::Forward {
        "accept"
    } else {
        "drop"
    };
    for f in [Family::V4, Family::V6] {
        let (fp, s) = (family_prefix(f), set_suffix(f));
        let _ = writeln!(
            out,
            "    {fp} saddr != @protected_{s} {fp} daddr != @protected_{s} {unprotected}  # unprotected traffic"
        );
        let _ = writeln!(out, "    {fp} saddr vmap @egress_{s}");
        let _ = writeln!(out, "    {fp} daddr vmap @ingress_{s}");
    }
    let _ = writeln!(
        out,
        "    meta mark 2 accept  # a stateless group: no connection, every packet decided"
    );
    if !settings.tcp_pickup {
        let _ = writeln!(
            out,
            "    tcp flags & (syn | ack) != syn drop  # a connection starts with a SYN"
        );
    }
    let _ = writeln!(out, "    ct mark set 1 accept\n  }}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn export(text: &str) -> Result<String, ExportError> {
        let c = Config::parse(text, "test").expect("valid");
        nftables(&c.model, &c.settings, "test")
    }

    #[test]
    fn rules_come_out_in_decision_order_with_their_sets() {
        let out = export(
            r#"
[settings]
tcp_pickup = true
[[vpc]]
name = "v"
[[prefix_list]]
vpc = "v"
name = "office"
cidrs = ["198.18.5.0/24", "2001:db8:5::/48"]
[[security_group]]
vpc = "v"
name = "web"
stateful = false
rules = [
  { direction = "ingress", protocol = "tcp", ports = "80-81", remote = "prefix-list:office", priority = 20 },
  { direction = "ingress", protocol = "tcp", ports = "22", action = "deny", priority = 10 },
  { direction = "ingress", protocol = "tcp", ports = "22", priority = 10 },
]
[[interface]]
vpc = "v"
name = "w"
addresses = ["198.18.0.20"]
groups = ["web"]
"#,
        )
        .expect("exports");
        let deny = out.find("th dport 22 drop").expect("the deny rule");
        let allow22 = out
            .find("th dport 22 meta mark set 2 return")
            .expect("the allow rule, stateless");
        let allow80 = out
            .find("th dport 80-81 ip saddr @pl1_4 meta mark set 2 return")
            .expect("prefix list v4");
        assert!(
            deny < allow22 && allow22 < allow80,
            "priority, then deny before allow:\n{out}"
        );
        assert!(out.contains("ip6 saddr @pl1_6"), "{out}");
        assert!(
            out.contains(
                "set pl1_4 { type ipv4_addr; flags interval; auto-merge; elements = { 198.18.5.0/24 }; }"
            ),
            "{out}"
        );
        assert!(out.contains("198.18.0.20 : jump p0_in"), "{out}");
        assert!(
            !out.contains("tcp flags & (syn | ack) != syn drop"),
            "tcp_pickup = true: no SYN rule"
        );
        assert!(
            out.contains("ip saddr != @protected_4 ip daddr != @protected_4 accept"),
            "{out}"
        );
    }

    #[test]
    fn several_or_tagged_vpcs_are_refused_with_the_reason() {
        let two = export("[[vpc]]\nname = \"a\"\n[[vpc]]\nname = \"b\"\nvlan = 5\n").unwrap_err();
        assert!(two.to_string().contains("2 VPCs"), "{two}");
        let tagged = export("[[vpc]]\nname = \"a\"\nvlan = 7\n").unwrap_err();
        assert!(tagged.to_string().contains("VLAN 7"), "{tagged}");
    }
}
