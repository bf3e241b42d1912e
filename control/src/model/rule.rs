//! Validated rules and the validation that turns a [`RuleSpec`] into one.
//!
//! Validation checks every field of spec section 2 and reports every problem of a
//! rule, each naming the rule and the field: unknown values, out-of-range numbers,
//! empty or inverted port ranges, ports or ICMP fields on a protocol that has none,
//! rules that mix address families, and references to groups or prefix lists that
//! do not exist or belong to another VPC. A rule's address family is its
//! `ethertype`, or else what its CIDRs or ICMP protocol imply, or none (both).

use ipnet::IpNet;

use super::error::{Collector, ErrorCode, Errors, ModelError};
use super::spec::{RuleSpec, Scalar};
use super::types::{
    parse_cidr, Action, Direction, Family, GroupId, PortRange, PrefixListId, Protocol, Remote, RuleId,
};
use super::Model;

/// Priority given to a rule that does not say.
pub const DEFAULT_PRIORITY: u16 = 100;
/// Longest rule or group description, in characters.
pub const MAX_DESCRIPTION: usize = 255;

/// A validated rule. Every combination of fields here is meaningful: ports only on
/// tcp/udp/sctp, ICMP fields only on icmp/icmpv6, one family at most.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    pub id: RuleId,
    pub direction: Direction,
    pub protocol: Protocol,
    pub ports: Option<PortRange>,
    pub source_ports: Option<PortRange>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub remote: Option<Remote>,
    pub local: Option<IpNet>,
    /// The rule's address family: its `ethertype`, or what its CIDRs or protocol
    /// imply. `None` covers both IPv4 and IPv6.
    pub family: Option<Family>,
    pub action: Action,
    pub priority: u16,
    pub description: String,
}

/// The group a rule is validated for. It may not be in the model yet (a group
/// being created), so a self-reference is resolved against it directly.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owner<'a> {
    pub vpc: super::VpcId,
    pub group: GroupId,
    pub group_name: &'a str,
}

/// Validates one rule spec for `owner`; `subject` names the rule in errors.
pub(crate) fn validate(
    model: &Model,
    owner: Owner<'_>,
    id: RuleId,
    subject: &str,
    spec: &RuleSpec,
) -> Result<Rule, Errors> {
    let mut errs = Collector::default();
    let field = |name: &'static str, msg: String| ModelError::field(subject, name, msg);

    let direction = errs.take(Direction::parse(&spec.direction).map_err(|m| field("direction", m)));
    let protocol = errs.take(
        match &spec.protocol {
            Scalar::Int(n) => Protocol::from_number(*n),
            Scalar::Text(s) => Protocol::parse_name(s),
        }
        .map_err(|m| field("protocol", m)),
    );
    let explicit_family = match &spec.ethertype {
        None => None,
        Some(s) => errs.take(Family::parse(s).map_err(|m| field("ethertype", m))),
    };
    let remote = match &spec.remote {
        None => None,
        Some(s) => errs.take(parse_remote(model, owner, subject, s)),
    };
    let local = match &spec.local {
        None => None,
        Some(s) => errs.take(parse_cidr(s).map_err(|m| field("local", m))),
    };

    // One family per rule: every field that implies one must agree with the first.
    let mut family: Option<(Family, String)> =
        explicit_family.map(|f| (f, "the rule's ethertype".to_owned()));
    let mut implied = Vec::new();
    if let Some(p) = protocol {
        if let Some(f) = p.implied_family() {
            implied.push(("protocol", f, format!("protocol {p}")));
        }
    }
    if let Some(Remote::Cidr(net)) = remote {
        implied.push(("remote", Family::of_net(net), format!("remote {net}")));
    }
    if let Some(net) = local {
        implied.push(("local", Family::of_net(net), format!("local {net}")));
    }
    for (name, f, what) in implied {
        match &family {
            None => family = Some((f, what)),
            Some((g, by)) if *g != f => errs.push(field(
                name,
                format!("{what} is {f}, but {by} is {g}; a rule covers one address family"),
            )),
            Some(_) => {}
        }
    }

    let mut port_field = |name: &'static str, value: &Option<Scalar>| -> Option<PortRange> {
        let value = value.as_ref()?;
        if let Some(p) = protocol {
            if !p.has_ports() {
                errs.push(field(
                    name,
                    format!("ports apply only to tcp, udp and sctp, and this rule's protocol is {p}"),
                ));
                return None;
            }
        }
        let parsed = match value {
            Scalar::Int(n) => PortRange::new(*n, *n),
            Scalar::Text(s) => PortRange::parse(s),
        };
        errs.take(parsed.map_err(|m| field(name, m)))
    };
    let ports = port_field("ports", &spec.ports);
    let source_ports = port_field("source_ports", &spec.source_ports);

    let mut icmp_field = |name: &'static str, value: Option<i64>| -> Option<u8> {
        let value = value?;
        if let Some(p) = protocol {
            if !p.is_icmp() {
                errs.push(field(
                    name,
                    format!("{name} applies only to icmp and icmpv6, and this rule's protocol is {p}"),
                ));
                return None;
            }
        }
        errs.take(u8::try_from(value).map_err(|_| field(name, format!("{value} is out of range 0-255"))))
    };
    let icmp_type = icmp_field("icmp_type", spec.icmp_type);
    let icmp_code = icmp_field("icmp_code", spec.icmp_code);

    let action = match &spec.action {
        None => Some(Action::Allow),
        Some(s) => errs.take(Action::parse(s).map_err(|m| field("action", m))),
    };
    let priority = match spec.priority {
        None => Some(DEFAULT_PRIORITY),
        Some(p) => errs.take(
            u16::try_from(p)
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| field("priority", format!("{p} is out of range 1-65535"))),
        ),
    };
    let description = spec.description.clone().unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION {
        errs.push(field(
            "description",
            format!(
                "is {} characters long; the limit is {MAX_DESCRIPTION}",
                description.chars().count()
            ),
        ));
    }

    errs.finish()?;
    // Every `None` below stands for a field whose error was collected above, and
    // `finish` returned early in that case.
    let (Some(direction), Some(protocol), Some(action), Some(priority)) =
        (direction, protocol, action, priority)
    else {
        unreachable!("a required field failed without an error being recorded")
    };
    Ok(Rule {
        id,
        direction,
        protocol,
        ports,
        source_ports,
        icmp_type,
        icmp_code,
        remote,
        local,
        family: family.map(|(f, _)| f),
        action,
        priority,
        description,
    })
}

/// Parses `group:<name or id>`, `prefix-list:<name or id>` or a CIDR.
fn parse_remote(model: &Model, owner: Owner<'_>, subject: &str, s: &str) -> Result<Remote, ModelError> {
    let field = |msg: String| ModelError::field(subject, "remote", msg);
    let vpc_name = model.vpc_name(owner.vpc);
    if let Some(target) = s.strip_prefix("group:") {
        let target = target.trim();
        if target.is_empty() {
            return Err(field("group: needs a group name or id".to_owned()));
        }
        if target == owner.group_name || GroupId::parse(target) == Some(owner.group) {
            return Ok(Remote::Group(owner.group));
        }
        return model
            .resolve_group(owner.vpc, target)
            .map(|g| Remote::Group(g.id))
            .map_err(|e| field(e.message).with_code(ErrorCode::NotFound));
    }
    if let Some(target) = s.strip_prefix("prefix-list:") {
        let target = target.trim();
        if target.is_empty() {
            return Err(field("prefix-list: needs a prefix list name or id".to_owned()));
        }
        let found = match PrefixListId::parse(target) {
            Some(id) => model.prefix_list(id).map(|pl| (pl.id, pl.vpc)),
            None => model
                .prefix_list_by_name(owner.vpc, target)
                .map(|pl| (pl.id, pl.vpc)),
        };
        return match found {
            Some((id, vpc)) if vpc == owner.vpc => Ok(Remote::PrefixList(id)),
            Some((_, vpc)) => Err(field(format!(
                "prefix list {target} belongs to vpc {:?}, not {vpc_name:?}",
                model.vpc_name(vpc)
            ))
            .with_code(ErrorCode::NotFound)),
            None => Err(field(format!("no prefix list {target:?} in vpc {vpc_name:?}"))
                .with_code(ErrorCode::NotFound)),
        };
    }
    parse_cidr(s).map(Remote::Cidr).map_err(|m| {
        field(format!(
            "{m}; a remote may also be group:<name> or prefix-list:<name>"
        ))
    })
}
