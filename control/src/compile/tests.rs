//! The compiled snapshot against the reference evaluator: for random models and
//! random packets, the same verdict, the same deciding rules (or intra-group
//! group), the same statefulness. And reuse: only what changed is recompiled.

use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;
use rampart_dataplane::snapshot::{self, Check};

use super::*;
use crate::model::eval::{self, Decision};
use crate::model::{GroupSpec, InterfaceSpec, PrefixListSpec, RuleSpec, Scalar, VpcSpec};

/// One random rule, as an operator could write it; invalid combinations are
/// rejected by the model and simply left out.
fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    let protocols = ["tcp", "udp", "icmp", "icmpv6", "all", "47"];
    let remotes = [
        None,
        Some("198.18.0.0/30"),
        Some("2001:db8::/126"),
        Some("0.0.0.0/0"),
        Some("group:g1"),
        Some("group:g2"),
        Some("group:default"),
        Some("prefix-list:pl"),
        Some("198.18.0.3"),
    ];
    (
        any::<bool>(),
        0..protocols.len(),
        prop::option::of(prop_oneof![Just("1-3"), Just("2"), Just("3-4")]),
        prop::option::of(Just("1-2")),
        prop::option::of(0..3i64),
        prop::option::of(0..2i64),
        0..remotes.len(),
        prop::option::of(prop_oneof![Just("198.18.0.0/31"), Just("2001:db8::2/127")]),
        prop::option::of(prop_oneof![Just("ipv4"), Just("ipv6")]),
        any::<bool>(),
        1..4i64,
    )
        .prop_map(
            move |(ingress, p, ports, sports, itype, icode, r, local, eth, deny, prio)| {
                let protocol = protocols[p];
                let has_ports = matches!(protocol, "tcp" | "udp");
                let icmp = protocol.starts_with("icmp");
                RuleSpec {
                    direction: if ingress { "ingress" } else { "egress" }.into(),
                    protocol: Scalar::from(protocol),
                    ports: ports.filter(|_| has_ports).map(Scalar::from),
                    source_ports: sports.filter(|_| has_ports).map(Scalar::from),
                    icmp_type: itype.filter(|_| icmp),
                    icmp_code: icode.filter(|_| icmp),
                    remote: remotes[r].map(str::to_owned),
                    local: local.map(str::to_owned),
                    ethertype: eth.map(str::to_owned),
                    action: Some(if deny { "deny" } else { "allow" }.into()),
                    priority: Some(prio),
                    description: None,
                }
            },
        )
}

#[derive(Clone, Debug)]
struct GroupPlan {
    advanced: bool,
    accept: bool,
    stateful: bool,
    rules: Vec<RuleSpec>,
}

#[derive(Clone, Debug)]
struct VpcPlan {
    cidrs: Vec<&'static str>,
    /// g1 and g2.
    groups: Vec<GroupPlan>,
    /// Extra rules for the VPC's default group.
    default_rules: Vec<RuleSpec>,
    /// Per interface (hosts 1-4): group names, or `None` for bare metal with
    /// `groups = []`.
    bindings: Vec<Option<Vec<&'static str>>>,
}

fn vpc_plan() -> impl Strategy<Value = VpcPlan> {
    let group = (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(rule_spec(), 0..6),
    )
        .prop_map(|(advanced, accept, stateful, rules)| GroupPlan {
            advanced,
            accept,
            stateful,
            rules,
        });
    let binding = prop_oneof![
        6 => proptest::sample::subsequence(vec!["default", "g1", "g2"], 0..=3).prop_map(Some),
        1 => Just(None),
    ];
    (
        proptest::sample::subsequence(vec!["198.18.0.0/31", "2001:db8::/127", "198.51.100.0/24"], 0..=3),
        proptest::collection::vec(group, 2),
        proptest::collection::vec(rule_spec(), 0..3),
        proptest::collection::vec(binding, 4),
    )
        .prop_map(|(cidrs, groups, default_rules, bindings)| VpcPlan {
            cidrs,
            groups,
            default_rules,
            bindings,
        })
}

/// Builds a model of two VPCs (untagged "a", VLAN 10 "b") from the plans.
fn build(plans: &[VpcPlan]) -> Model {
    let mut m = Model::default();
    for (v, plan) in ["a", "b"].iter().zip(plans) {
        let vlan = (*v == "b").then_some(10);
        m.create_vpc(&VpcSpec {
            name: (*v).into(),
            vlan,
            description: None,
        })
        .unwrap();
        let cidrs = plan.cidrs.iter().map(|c| (*c).to_owned()).collect();
        m.create_prefix_list(&PrefixListSpec {
            vpc: (*v).into(),
            name: "pl".into(),
            description: None,
            cidrs,
        })
        .unwrap();
        for (i, g) in plan.groups.iter().enumerate() {
            let spec = GroupSpec {
                vpc: (*v).into(),
                name: format!("g{}", i + 1),
                kind: Some(if g.advanced { "advanced" } else { "basic" }.into()),
                intra_group: Some(if g.accept { "accept" } else { "drop" }.into()),
                stateful: Some(g.stateful),
                ..GroupSpec::default()
            };
            m.create_group(&spec).unwrap();
        }
        let mut add = |group: &str, rules: &[RuleSpec]| {
            for r in rules {
                let _ = m.add_rules(v, group, std::slice::from_ref(r));
            }
        };
        add("default", &plan.default_rules);
        for (i, g) in plan.groups.iter().enumerate() {
            add(&format!("g{}", i + 1), &g.rules);
        }
        for (i, binding) in plan.bindings.iter().enumerate() {
            let host = i + 1;
            let spec = InterfaceSpec {
                vpc: (*v).into(),
                name: format!("i{host}"),
                addresses: vec![format!("198.18.0.{host}"), format!("2001:db8::{host}")],
                groups: Some(
                    binding
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                ),
                bare_metal: Some(binding.is_none()),
                ..InterfaceSpec::default()
            };
            m.create_interface(&spec).unwrap();
        }
    }
    m
}

/// A random first packet between hosts 1-6 (5 and 6 are no interface).
fn packet() -> impl Strategy<Value = eval::Packet> {
    (
        prop_oneof![Just(None), Just(Some(10)), Just(Some(0)), Just(Some(99))],
        any::<bool>(),
        1..7u8,
        1..7u8,
        0..4usize,
        0..5u16,
        0..5u16,
    )
        .prop_map(|(vlan, v6, s, d, p, sp, dp)| {
            let addr = |h: u8| -> IpAddr {
                if v6 {
                    format!("2001:db8::{h}").parse().unwrap()
                } else {
                    format!("198.18.0.{h}").parse().unwrap()
                }
            };
            let protocol = match p {
                0 => 6,
                1 => 17,
                2 if v6 => 58,
                2 => 1,
                _ => 47,
            };
            let icmp = matches!(protocol, 1 | 58);
            let ports = matches!(protocol, 6 | 17);
            eval::Packet {
                vlan,
                src: addr(s),
                dst: addr(d),
                protocol,
                src_port: if ports { sp } else { 0 },
                dst_port: if ports { dp } else { 0 },
                icmp_type: if icmp { u8::try_from(sp).unwrap() } else { 0 },
                icmp_code: if icmp { u8::try_from(dp).unwrap() } else { 0 },
            }
        })
}

fn dataplane_packet(p: &eval::Packet) -> snapshot::Packet {
    let icmp = matches!(p.protocol, 1 | 58);
    snapshot::Packet {
        vlan: p.vlan,
        src: p.src,
        dst: p.dst,
        proto: p.protocol,
        src_port: if icmp { u16::from(p.icmp_type) } else { p.src_port },
        dst_port: if icmp { u16::from(p.icmp_code) } else { p.dst_port },
    }
}

/// The evaluator's decision in the snapshot's terms.
fn expected(d: Decision) -> Check {
    match d {
        Decision::IntraGroup { group } => Check::IntraGroup(group.0),
        Decision::Rule {
            rule,
            priority,
            action,
            ..
        } => Check::Rule(classify::Match {
            id: rule.0,
            priority: u32::from(priority),
            action: match action {
                crate::model::Action::Allow => classify::RuleAction::Allow,
                crate::model::Action::Deny => classify::RuleAction::Deny,
            },
        }),
        Decision::ImplicitDeny => Check::ImplicitDeny,
        Decision::NotFiltered => Check::NotFiltered,
    }
}

fn agree(model: &Model, snap: &Snapshot, p: &eval::Packet) -> Result<(), TestCaseError> {
    let want = eval::evaluate(model, Unprotected::Forward, p);
    let got = snap.decide(&dataplane_packet(p));
    prop_assert_eq!(got.allowed, want.allowed, "{:?}", p);
    prop_assert_eq!(got.vpc.is_some(), want.vpc.is_some(), "{:?}", p);
    prop_assert_eq!(got.stateful, want.stateful, "{:?}", p);
    for (direction, have) in [(Direction::Ingress, got.ingress), (Direction::Egress, got.egress)] {
        let check = want.checks.iter().find(|c| c.direction == direction);
        let want_check = check.map(|c| (c.interface.0, expected(c.decision)));
        prop_assert_eq!(have, want_check, "{:?} {:?}", direction, p);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The compiled snapshot decides every packet exactly as the reference
    /// evaluator does, deciding rule for deciding rule.
    #[test]
    fn snapshot_equals_reference_evaluator(plans in proptest::collection::vec(vpc_plan(), 2), packets in proptest::collection::vec(packet(), 1..40)) {
        let model = build(&plans);
        let (snap, _) = Compiler::new().compile(&model, &Settings::default());
        for p in &packets {
            agree(&model, &snap, p)?;
        }
    }

    /// After a change, the recompiled snapshot (reusing what did not change)
    /// still equals the evaluator on the changed model.
    #[test]
    fn recompiled_snapshot_equals_reference_evaluator(
        plans in proptest::collection::vec(vpc_plan(), 2),
        extra in rule_spec(),
        stateful in any::<bool>(),
        accept in any::<bool>(),
        packets in proptest::collection::vec(packet(), 1..30),
    ) {
        let mut model = build(&plans);
        let mut compiler = Compiler::new();
        compiler.compile(&model, &Settings::default());
        let _ = model.add_rules("a", "g1", &[extra]);
        let _ = model.set_interface_groups("b", "i2", &["g2".into()]);
        let (snap, _) = compiler.compile(&model, &Settings::default());
        for p in &packets {
            agree(&model, &snap, p)?;
        }
        // Flags of a group shared with other sets, then one of its rules gone.
        let update = crate::model::GroupUpdate {
            stateful: Some(stateful),
            intra_group: Some(if accept { "accept" } else { "drop" }.into()),
            ..crate::model::GroupUpdate::default()
        };
        let _ = model.update_group("a", "g2", &update);
        let first = model.vpc_by_name("a").and_then(|v| model.group_by_name(v.id, "g1")).and_then(|g| g.rules.first()).map(|r| r.id.to_string());
        if let Some(id) = first {
            let _ = model.delete_rule("a", "g1", &id);
        }
        let (snap, _) = compiler.compile(&model, &Settings::default());
        for p in &packets {
            agree(&model, &snap, p)?;
        }
    }
}

/// One change an operator can make; rejected ones (a group still bound, an
/// address taken) are simply left out.
#[derive(Clone, Debug)]
enum Op {
    AddRule(&'static str, &'static str, Box<RuleSpec>),
    DeleteFirstRule(&'static str, &'static str),
    Flags(&'static str, &'static str, bool, bool),
    /// Interface of host 1-6 (5 and 6 exist only once created), its groups.
    SetGroups(&'static str, u8, Vec<&'static str>),
    Create(&'static str, u8, Vec<&'static str>),
    Delete(&'static str, u8),
    /// Interface `.0` takes the addresses of host `.1`.
    Readdress(&'static str, u8, u8),
    CreateGroup(&'static str, &'static str),
    DeleteGroup(&'static str, &'static str),
    PrefixList(&'static str, Vec<&'static str>),
}

fn op() -> impl Strategy<Value = Op> {
    let vpc = prop_oneof![Just("a"), Just("b")];
    let group = prop_oneof![Just("default"), Just("g1"), Just("g2"), Just("g3")];
    let groups = proptest::sample::subsequence(vec!["default", "g1", "g2", "g3"], 0..=3);
    prop_oneof![
        3 => (vpc.clone(), group.clone(), rule_spec()).prop_map(|(v, g, r)| Op::AddRule(v, g, Box::new(r))),
        2 => (vpc.clone(), group.clone()).prop_map(|(v, g)| Op::DeleteFirstRule(v, g)),
        1 => (vpc.clone(), group.clone(), any::<bool>(), any::<bool>()).prop_map(|(v, g, s, a)| Op::Flags(v, g, s, a)),
        3 => (vpc.clone(), 1..7u8, groups.clone()).prop_map(|(v, h, g)| Op::SetGroups(v, h, g)),
        2 => (vpc.clone(), 5..7u8, groups).prop_map(|(v, h, g)| Op::Create(v, h, g)),
        1 => (vpc.clone(), 1..7u8).prop_map(|(v, h)| Op::Delete(v, h)),
        2 => (vpc.clone(), 1..7u8, 1..7u8).prop_map(|(v, h, to)| Op::Readdress(v, h, to)),
        1 => vpc.clone().prop_map(|v| Op::CreateGroup(v, "g3")),
        1 => (vpc.clone(), prop_oneof![Just("g1"), Just("g3")]).prop_map(|(v, g)| Op::DeleteGroup(v, g)),
        1 => (vpc, proptest::sample::subsequence(vec!["198.18.0.1/32", "198.18.0.4/31", "2001:db8::5/128"], 0..=3))
            .prop_map(|(v, c)| Op::PrefixList(v, c)),
    ]
}

fn interface_spec(vpc: &str, host: u8, addr_host: u8, groups: &[&str]) -> InterfaceSpec {
    InterfaceSpec {
        vpc: vpc.into(),
        name: format!("i{host}"),
        addresses: vec![format!("198.18.0.{addr_host}"), format!("2001:db8::{addr_host}")],
        groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
        ..InterfaceSpec::default()
    }
}

fn apply_op(m: &mut Model, op: &Op) {
    let first_rule = |m: &Model, v: &str, g: &str| {
        m.vpc_by_name(v)
            .and_then(|v| m.group_by_name(v.id, g))
            .and_then(|g| g.rules.first())
            .map(|r| r.id.to_string())
    };
    let _ = match op {
        Op::AddRule(v, g, r) => m.add_rules(v, g, std::slice::from_ref(&**r)).map(drop),
        Op::DeleteFirstRule(v, g) => match first_rule(m, v, g) {
            Some(id) => m.delete_rule(v, g, &id),
            None => Ok(()),
        },
        Op::Flags(v, g, stateful, accept) => m.update_group(
            v,
            g,
            &crate::model::GroupUpdate {
                stateful: Some(*stateful),
                intra_group: Some(if *accept { "accept" } else { "drop" }.into()),
                ..crate::model::GroupUpdate::default()
            },
        ),
        Op::SetGroups(v, h, g) => {
            let groups: Vec<String> = g.iter().map(|g| (*g).to_owned()).collect();
            m.set_interface_groups(v, &format!("i{h}"), &groups)
        }
        Op::Create(v, h, g) => m.create_interface(&interface_spec(v, *h, *h, g)).map(drop),
        Op::Delete(v, h) => m.delete_interface(v, &format!("i{h}")),
        Op::Readdress(v, h, to) => {
            let name = format!("i{h}");
            let groups: Option<Vec<String>> = m
                .vpc_by_name(v)
                .and_then(|vpc| m.interface_by_name(vpc.id, &name))
                .filter(|i| !i.bare_metal)
                .map(|i| m.interface_groups(i).map(|g| g.name.clone()).collect());
            match groups {
                Some(groups) => {
                    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
                    m.update_interface(v, &name, &interface_spec(v, *h, *to, &groups))
                }
                None => Ok(()),
            }
        }
        Op::CreateGroup(v, g) => m
            .create_group(&GroupSpec {
                vpc: (*v).into(),
                name: (*g).into(),
                ..GroupSpec::default()
            })
            .map(drop),
        Op::DeleteGroup(v, g) => m.delete_group(v, g),
        Op::PrefixList(v, cidrs) => m.update_prefix_list(
            v,
            "pl",
            &PrefixListSpec {
                vpc: (*v).into(),
                name: "pl".into(),
                description: None,
                cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
            },
        ),
    };
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A snapshot compiled from the changes alone, step after step, equals
    /// the evaluator on the model after every step, and so does the full
    /// compilation of the same model.
    #[test]
    fn snapshots_compiled_from_changes_equal_the_evaluator_at_every_step(
        plans in proptest::collection::vec(vpc_plan(), 2),
        steps in proptest::collection::vec(proptest::collection::vec(op(), 1..4), 1..8),
        packets in proptest::collection::vec(packet(), 1..30),
    ) {
        let mut model = build(&plans);
        // One compiler as shipped, one that merges every set of two or more
        // groups, so that merged classifiers are built, rebuilt and dropped.
        let everything = Merging { min_interfaces: 1, min_first_packets_per_sec: 1.0, max_sets: 1000, max_rules: 1000 };
        let mut compilers = [Compiler::new(), Compiler::with_merging(everything)];
        for compiler in &mut compilers {
            let (_, stats) = compiler.compile(&model, &Settings::default());
            prop_assert!(stats.full);
        }
        for (n, ops) in steps.iter().enumerate() {
            for op in ops {
                apply_op(&mut model, op);
            }
            for compiler in &mut compilers {
                let (snap, stats) = compiler.compile(&model, &Settings::default());
                prop_assert!(!stats.full, "a change compiles from the change");
                for p in &packets {
                    agree(&model, &snap, p)?;
                }
            }
            // Traffic heats every interface up, or (every other step) none:
            // the shipped compiler merges the sets for it, or drops them.
            let rate = if n % 2 == 0 { 1e6 } else { 0.0 };
            let rates = model.interfaces().map(|i| (i.id.0, rate)).collect();
            if let Some((snap, _)) = compilers[0].rechoose(&model, &rates) {
                for p in &packets {
                    agree(&model, &snap, p)?;
                }
            }
        }
        let (full, _) = Compiler::new().compile(&model, &Settings::default());
        for p in &packets {
            agree(&model, &full, p)?;
        }
    }
}

#[test]
fn a_set_many_interfaces_share_gets_a_merged_classifier_that_follows_its_groups() {
    let mut model = tiers();
    // web-1 and web-2 carry {web, bastion}: with two interfaces enough, that
    // set is merged; {db} and {bastion} alone are single groups.
    for web in ["web-1", "web-2"] {
        model.bind_group("prod", web, "bastion").unwrap();
    }
    let merging = Merging {
        min_interfaces: 2,
        ..Merging::default()
    };
    let mut compiler = Compiler::with_merging(merging);
    let (snap, stats) = compiler.compile(&model, &Settings::default());
    assert_eq!((stats.group_sets, stats.merged), (3, 1));
    let vpc = snap.vpc(None).unwrap();
    let web = snap.endpoint(vpc, "198.18.1.10".parse().unwrap()).unwrap();
    assert!(snap.merged(web.groups.as_ref().unwrap().slot).is_some());
    let ssh_from_operators = tcp("198.19.100.7", "198.18.1.10", 22);
    assert!(
        snap.decide(&ssh_from_operators).allowed,
        "bastion's rule, through the merged set"
    );

    // A rule denying it in web, at a better priority: the merged classifier
    // is rebuilt with it.
    let deny = RuleSpec {
        direction: "ingress".into(),
        protocol: Scalar::from("tcp"),
        ports: Some(Scalar::from("22")),
        action: Some("deny".into()),
        priority: Some(1),
        ..RuleSpec::default()
    };
    model.add_rules("prod", "web", &[deny]).unwrap();
    let (snap, stats) = compiler.compile(&model, &Settings::default());
    assert_eq!((stats.rebuilt, stats.merged), (1, 1));
    assert!(!snap.decide(&ssh_from_operators).allowed);

    // One of the two unbound: below half the share, the set loses it.
    model.unbind_group("prod", "web-2", "bastion").unwrap();
    model.unbind_group("prod", "web-1", "bastion").unwrap();
    let (snap, stats) = compiler.compile(&model, &Settings::default());
    assert_eq!(stats.merged, 0);
    assert!(
        !snap.decide(&ssh_from_operators).allowed,
        "web alone has no ssh from there"
    );
}

#[test]
fn a_set_with_heavy_traffic_is_merged_and_loses_it_when_it_cools_down() {
    let mut model = tiers();
    model.bind_group("prod", "web-1", "bastion").unwrap();
    let web1 = model
        .interface_by_name(model.vpc_by_name("prod").unwrap().id, "web-1")
        .unwrap()
        .id
        .0;
    let mut compiler = Compiler::new();
    let (snap, stats) = compiler.compile(&model, &Settings::default());
    assert_eq!(stats.merged, 0, "one interface is not many");
    let vpc = snap.vpc(None).unwrap();
    let set = |s: &Snapshot| {
        s.endpoint(vpc, "198.18.1.10".parse().unwrap())
            .unwrap()
            .groups
            .clone()
            .unwrap()
    };
    assert!(snap.merged(set(&snap).slot).is_none());
    let ssh_from_operators = tcp("198.19.100.7", "198.18.1.10", 22);

    // Below the threshold nothing changes; above it, web-1's set is merged.
    let rates = |r: f64| std::iter::once((web1, r)).collect();
    assert!(compiler.rechoose(&model, &rates(999.0)).is_none());
    let (hot, stats) = compiler.rechoose(&model, &rates(5000.0)).expect("a new snapshot");
    assert_eq!(stats.merged, 1);
    assert_eq!(hot.generation, snap.generation + 1);
    assert!(hot.merged(set(&hot).slot).is_some());
    assert!(
        hot.decide(&ssh_from_operators).allowed,
        "bastion's rule, through the merged set"
    );
    assert!(
        compiler.rechoose(&model, &rates(5000.0)).is_none(),
        "no change, no snapshot"
    );
    // Still hot above half the threshold; cooled below it.
    assert!(compiler.rechoose(&model, &rates(600.0)).is_none());
    let (cool, stats) = compiler.rechoose(&model, &rates(0.0)).expect("a new snapshot");
    assert_eq!(stats.merged, 0);
    assert!(cool.merged(set(&cool).slot).is_none());
    assert!(cool.decide(&ssh_from_operators).allowed);
    // A model changed since its last compilation is compiled first.
    compiler.rechoose(&model, &rates(5000.0)).expect("hot again");
    model.unbind_group("prod", "web-1", "bastion").unwrap();
    assert!(compiler.rechoose(&model, &rates(5000.0)).is_none());
    let (after, _) = compiler.compile(&model, &Settings::default());
    assert!(
        !after.decide(&ssh_from_operators).allowed,
        "web alone has no ssh from there"
    );
}

#[test]
fn a_model_that_does_not_descend_from_the_last_compiled_is_compiled_in_full() {
    let mut model = tiers();
    let mut compiler = Compiler::new();
    compiler.compile(&model, &Settings::default());
    let rule = RuleSpec {
        direction: "ingress".into(),
        protocol: Scalar::from("tcp"),
        ports: Some(Scalar::from("2222")),
        ..RuleSpec::default()
    };
    // A copy changed and compiled, as a change through the API is.
    let mut copy = model.clone();
    copy.add_rules("prod", "bastion", std::slice::from_ref(&rule))
        .unwrap();
    let (_, stats) = compiler.compile(&copy, &Settings::default());
    assert_eq!((stats.full, stats.rebuilt), (false, 1));
    // The original, changed apart, is not the copy plus a change.
    model.add_rules("prod", "web", &[rule]).unwrap();
    let (snap, stats) = compiler.compile(&model, &Settings::default());
    assert_eq!((stats.full, stats.rebuilt), (true, 4));
    let p = tcp("198.51.100.7", "198.18.3.10", 2222);
    assert!(
        !snap.decide(&p).allowed,
        "bastion's rule is the copy's, not this model's"
    );
    // A new VPC is compiled in full too.
    model
        .create_vpc(&VpcSpec {
            name: "dev".into(),
            vlan: Some(20),
            description: None,
        })
        .unwrap();
    assert!(compiler.compile(&model, &Settings::default()).1.full);
    assert!(!compiler.compile(&model, &Settings::default()).1.full);
}

/// An untagged TCP first packet from port 40000 of `src` to `dst:port`.
fn tcp(src: &str, dst: &str, port: u16) -> snapshot::Packet {
    snapshot::Packet {
        vlan: None,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: 6,
        src_port: 40000,
        dst_port: port,
    }
}

fn tiers() -> Model {
    crate::config::Config::parse(
        include_str!("../../../docs/examples/web-db-bastion.toml"),
        "example",
    )
    .unwrap()
    .model
}

#[test]
fn interfaces_with_the_same_set_of_groups_share_one_compiled_set() {
    let model = tiers();
    let (snap, stats) = Compiler::new().compile(&model, &Settings::default());
    // web-1 and web-2 share {web}; db-1 has {db}; bastion-1 has {bastion}.
    assert_eq!(stats.group_sets, 3);
    let vpc = snap.vpc(None).unwrap();
    let web1 = snap.endpoint(vpc, "198.18.1.10".parse().unwrap()).unwrap();
    let web2 = snap.endpoint(vpc, "2001:db8:1::11".parse().unwrap()).unwrap();
    assert!(Arc::ptr_eq(
        web1.groups.as_ref().unwrap(),
        web2.groups.as_ref().unwrap()
    ));
}

#[test]
fn an_unchanged_model_recompiles_nothing_and_a_change_only_the_groups_it_touches() {
    let mut model = tiers();
    let mut compiler = Compiler::new();
    let (first, stats) = compiler.compile(&model, &Settings::default());
    // default, web, db and bastion; three distinct sets.
    assert_eq!((stats.group_sets, stats.rebuilt), (3, 4));
    let (second, stats) = compiler.compile(&model, &Settings::default());
    assert_eq!(stats.rebuilt, 0);
    assert_eq!(second.generation, first.generation + 1);

    // A rule added to bastion rebuilds only bastion's classifiers.
    let rule = RuleSpec {
        direction: "ingress".into(),
        protocol: Scalar::from("tcp"),
        ports: Some(Scalar::from("2222")),
        ..RuleSpec::default()
    };
    model.add_rules("prod", "bastion", &[rule]).unwrap();
    let (third, stats) = compiler.compile(&model, &Settings::default());
    assert_eq!(stats.rebuilt, 1);
    let vpc = third.vpc(None).unwrap();
    let web = |s: &Snapshot| {
        Arc::clone(
            s.endpoint(vpc, "198.18.1.10".parse().unwrap())
                .unwrap()
                .groups
                .as_ref()
                .unwrap(),
        )
    };
    assert!(
        Arc::ptr_eq(&web(&second), &web(&third)),
        "web's compiled set is reused"
    );

    // A new member of web changes the group:web address set, which only db's
    // rules reference: db's classifiers are rebuilt, nothing else.
    model
        .create_interface(&InterfaceSpec {
            vpc: "prod".into(),
            name: "web-3".into(),
            addresses: vec!["198.18.1.12".into()],
            groups: Some(vec!["web".into()]),
            ..InterfaceSpec::default()
        })
        .unwrap();
    let (fourth, stats) = compiler.compile(&model, &Settings::default());
    assert_eq!(stats.rebuilt, 1, "only db references group:web");
    let p = tcp("198.18.1.12", "198.18.2.10", 3306);
    assert!(
        fourth.decide(&p).allowed,
        "the new web member reaches the database"
    );
    assert!(!third.decide(&p).allowed, "the old snapshot did not know it");
}

#[test]
fn a_change_to_a_group_in_many_sets_rebuilds_that_group_only() {
    let mut model = tiers();
    // web-1 alone also carries bastion: {web} and {bastion, web} share web.
    model.bind_group("prod", "web-1", "bastion").unwrap();
    let mut compiler = Compiler::new();
    let (before, stats) = compiler.compile(&model, &Settings::default());
    assert_eq!(stats.group_sets, 4);
    let rule = RuleSpec {
        direction: "ingress".into(),
        protocol: Scalar::from("tcp"),
        ports: Some(Scalar::from("8443")),
        ..RuleSpec::default()
    };
    model.add_rules("prod", "web", &[rule]).unwrap();
    let (after, stats) = compiler.compile(&model, &Settings::default());
    assert_eq!(
        stats.rebuilt, 1,
        "web's classifiers, not one per set containing it"
    );
    let vpc = after.vpc(None).unwrap();
    let set = |s: &Snapshot, a: &str| {
        Arc::clone(
            s.endpoint(vpc, a.parse().unwrap())
                .unwrap()
                .groups
                .as_ref()
                .unwrap(),
        )
    };
    let db = "198.18.2.10";
    assert!(
        Arc::ptr_eq(&set(&before, db), &set(&after, db)),
        "db's set is taken over"
    );
    for web in ["198.18.1.10", "198.18.1.11"] {
        let p = snapshot::Packet {
            vlan: None,
            src: "198.51.100.7".parse().unwrap(),
            dst: web.parse().unwrap(),
            proto: 6,
            src_port: 40000,
            dst_port: 8443,
        };
        assert!(after.decide(&p).allowed, "{web} sees the new rule");
        assert!(!before.decide(&p).allowed, "{web} did not before");
    }
}

#[test]
fn settings_reach_the_dataplane() {
    let mut settings = Settings {
        unprotected: Unprotected::Drop,
        ..Settings::default()
    };
    settings.timeouts.udp_replied = 77;
    let (snap, _) = Compiler::new().compile(&tiers(), &settings);
    assert!(!snap.settings.forward_unprotected);
    assert_eq!(snap.settings.timeouts.udp_replied, 77);
    assert_eq!(snap.settings.flow_table_capacity, 262_144);
    let p = snapshot::Packet {
        vlan: None,
        src: "198.51.100.1".parse().unwrap(),
        dst: "198.51.100.2".parse().unwrap(),
        proto: 17,
        src_port: 1,
        dst_port: 2,
    };
    assert!(!snap.decide(&p).allowed);
}
