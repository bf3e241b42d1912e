//! Tests of spec sections 1, 2, 3 and 6, one or more per rule of the spec, named
//! after the section they prove (`s1_...`, `s2_...`). Models are written as
//! configuration text where that reads best, so each test shows its setup.

use proptest::prelude::*;

use super::eval::{evaluate, Decision, Verdict};
use super::*;
use crate::config::Config;
use crate::explain::parse_packet;
use crate::settings::Unprotected;

fn load(text: &str) -> Model {
    match Config::parse(text, "test") {
        Ok(c) => {
            c.model.check_invariants();
            c.model
        }
        Err(e) => panic!("fixture does not load: {e}"),
    }
}

fn load_err(text: &str) -> String {
    match Config::parse(text, "test") {
        Ok(_) => panic!("expected the configuration to be rejected"),
        Err(e) => e.to_string(),
    }
}

fn decide_in(model: &Model, vlan: Option<u16>, packet: &str) -> Verdict {
    let words: Vec<String> = packet.split(' ').map(str::to_owned).collect();
    let pkt = parse_packet(&words, vlan).unwrap();
    evaluate(model, Unprotected::Forward, &pkt)
}

fn decide(model: &Model, packet: &str) -> Verdict {
    decide_in(model, None, packet)
}

fn allowed(model: &Model, packet: &str) -> bool {
    decide(model, packet).allowed
}

/// The decision of the check in `direction`.
fn decision(v: &Verdict, direction: Direction) -> Decision {
    v.checks
        .iter()
        .find(|c| c.direction == direction)
        .expect("check evaluated")
        .decision
}

fn rule(direction: &str, protocol: &str) -> RuleSpec {
    RuleSpec {
        direction: direction.to_owned(),
        protocol: Scalar::from(protocol),
        ..RuleSpec::default()
    }
}

fn vpc(model: &mut Model, name: &str, vlan: Option<i64>) -> VpcId {
    model
        .create_vpc(&VpcSpec {
            name: name.to_owned(),
            vlan,
            description: None,
        })
        .unwrap()
}

fn iface(
    model: &mut Model,
    vpc: &str,
    name: &str,
    addrs: &[&str],
    groups: &[&str],
) -> Result<InterfaceId, Errors> {
    model.create_interface(&InterfaceSpec {
        vpc: vpc.to_owned(),
        name: name.to_owned(),
        addresses: addrs.iter().map(|s| (*s).to_owned()).collect(),
        // No groups: the key is left out, as an operator would.
        groups: (!groups.is_empty()).then(|| groups.iter().map(|s| (*s).to_owned()).collect()),
        ..InterfaceSpec::default()
    })
}

fn group(
    model: &mut Model,
    vpc: &str,
    name: &str,
    kind: &str,
    rules: Vec<RuleSpec>,
) -> Result<GroupId, Errors> {
    model.create_group(&GroupSpec {
        vpc: vpc.to_owned(),
        name: name.to_owned(),
        kind: Some(kind.to_owned()),
        rules,
        ..GroupSpec::default()
    })
}

/// Replaces the CIDRs of prefix list `name` of vpc prod.
fn set_cidrs(model: &mut Model, name: &str, cidrs: &[&str]) -> Result<(), Errors> {
    let spec = PrefixListSpec {
        vpc: "prod".into(),
        name: name.into(),
        description: None,
        cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
    };
    model.update_prefix_list("prod", name, &spec)
}

fn texts(model: &Model, g: GroupId) -> Vec<String> {
    model
        .group(g)
        .unwrap()
        .rules
        .iter()
        .map(|r| model.rule_text(r))
        .collect()
}

/// Runs a rejected operation and checks that it named `needle` and changed nothing.
fn rejected<T: std::fmt::Debug>(
    model: &mut Model,
    op: impl FnOnce(&mut Model) -> Result<T, Errors>,
    needle: &str,
) -> Errors {
    let before = model.clone();
    let err = op(model).expect_err("operation should be rejected");
    assert!(err.to_string().contains(needle), "error {err:?} lacks {needle:?}");
    assert_eq!(*model, before, "a rejected change must change nothing");
    assert_eq!(
        model.changes().version(),
        before.changes().version(),
        "a rejected change records no change"
    );
    err
}

#[test]
fn every_operation_records_the_objects_it_changed() {
    let mut m = load(
        r#"
[[vpc]]
name = "prod"

[[security_group]]
vpc = "prod"
name = "web"

[[prefix_list]]
vpc = "prod"
name = "office"
cidrs = ["198.18.9.0/24"]
"#,
    );
    let vpc = m.vpc_by_name("prod").unwrap().id;
    let web = m.group_by_name(vpc, "web").unwrap().id;
    let office = m.prefix_list_by_name(vpc, "office").unwrap().id;
    let since = |m: &mut Model, op: &dyn Fn(&mut Model)| -> Vec<Changed> {
        let v = m.changes().version();
        op(m);
        let mut c: Vec<Changed> = m.changes().since(v).unwrap().collect();
        c.dedup();
        c
    };
    let add = |m: &mut Model| {
        m.add_rules("prod", "web", &[rule("ingress", "tcp")]).unwrap();
    };
    assert_eq!(since(&mut m, &add), [Changed::Group(web)]);
    let create = |m: &mut Model| {
        m.create_interface(&InterfaceSpec {
            vpc: "prod".into(),
            name: "web-1".into(),
            addresses: vec!["198.18.1.10".into()],
            groups: Some(vec!["web".into()]),
            ..InterfaceSpec::default()
        })
        .unwrap();
    };
    let c = since(&mut m, &create);
    let iface = m.interface_by_name(vpc, "web-1").unwrap().id;
    assert_eq!(c, [Changed::Interface(iface)]);
    let list = |m: &mut Model| {
        let spec = PrefixListSpec {
            vpc: "prod".into(),
            name: "office".into(),
            cidrs: vec!["198.18.8.0/24".into()],
            description: None,
        };
        m.update_prefix_list("prod", "office", &spec).unwrap();
    };
    assert_eq!(since(&mut m, &list), [Changed::PrefixList(office)]);
}

// ------------------------------------------------------------------ section 1

#[test]
fn s1_every_vpc_gets_a_default_group_with_the_spec_rules() {
    let mut m = Model::default();
    let v = vpc(&mut m, "prod", None);
    let d = m.vpc(v).unwrap().default_group;
    let g = m.group(d).unwrap();
    assert_eq!(
        (g.name.as_str(), g.kind, g.intra_group, g.stateful),
        ("default", Kind::Basic, IntraGroup::Accept, true)
    );
    assert_eq!(
        texts(&m, d),
        [
            "ingress all ipv4 from group:default allow priority 100",
            "ingress all ipv6 from group:default allow priority 100",
            "egress all ipv4 to 0.0.0.0/0 allow priority 100",
            "egress all ipv6 to ::/0 allow priority 100",
        ]
    );
    m.check_invariants();
}

#[test]
fn s1_default_group_can_never_be_deleted_or_renamed() {
    let mut m = Model::default();
    vpc(&mut m, "prod", None);
    let e = rejected(&mut m, |m| m.delete_group("prod", "default"), "cannot be deleted");
    assert_eq!(e.0[0].code, ErrorCode::Forbidden);
    let rename = GroupUpdate {
        name: Some("other".into()),
        ..GroupUpdate::default()
    };
    rejected(
        &mut m,
        |m| m.update_group("prod", "default", &rename),
        "cannot be renamed",
    );
    rejected(
        &mut m,
        |m| group(m, "prod", "default", "basic", vec![]),
        "default group already",
    );
}

#[test]
fn s1_default_rules_are_ordinary_rules_that_can_be_deleted() {
    let mut m = Model::default();
    let v = vpc(&mut m, "prod", None);
    let d = m.vpc(v).unwrap().default_group;
    let first = m.group(d).unwrap().rules[0].id;
    m.delete_rule("prod", "default", &first.to_string()).unwrap();
    assert_eq!(m.group(d).unwrap().rules.len(), 3);
    m.replace_rules("prod", "default", &[]).unwrap();
    assert!(m.group(d).unwrap().rules.is_empty());
}

#[test]
fn s1_new_basic_group_has_egress_open_and_no_ingress() {
    let mut m = Model::default();
    vpc(&mut m, "prod", None);
    let g = group(&mut m, "prod", "web", "basic", vec![]).unwrap();
    assert_eq!(
        texts(&m, g),
        [
            "egress all ipv4 to 0.0.0.0/0 allow priority 100",
            "egress all ipv6 to ::/0 allow priority 100"
        ]
    );
    assert_eq!(m.group(g).unwrap().intra_group, IntraGroup::Accept);
}

#[test]
fn s1_new_advanced_group_has_no_rules_and_intra_group_drop() {
    let mut m = Model::default();
    vpc(&mut m, "prod", None);
    let g = group(&mut m, "prod", "locked", "advanced", vec![]).unwrap();
    assert!(m.group(g).unwrap().rules.is_empty());
    assert_eq!(m.group(g).unwrap().intra_group, IntraGroup::Drop);
}

#[test]
fn s1_file_groups_get_their_kinds_default_rules_unless_they_opt_out() {
    let m = load(
        r#"
        [[vpc]]
        name = "prod"
        [[security_group]]
        vpc = "prod"
        name = "web"
        rules = [{ direction = "ingress", protocol = "tcp", ports = "443" }]
        [[security_group]]
        vpc = "prod"
        name = "bare"
        default_rules = false
        rules = [{ direction = "ingress", protocol = "tcp", ports = 22 }]
        [[security_group]]
        vpc = "prod"
        name = "default"
        default_rules = false
        "#,
    );
    let v = m.vpc_by_name("prod").unwrap().id;
    let web = m.group_by_name(v, "web").unwrap().id;
    assert_eq!(
        texts(&m, web),
        [
            "ingress tcp port 443 from any allow priority 100",
            "egress all ipv4 to 0.0.0.0/0 allow priority 100",
            "egress all ipv6 to ::/0 allow priority 100",
        ]
    );
    assert_eq!(
        texts(&m, m.group_by_name(v, "bare").unwrap().id),
        ["ingress tcp port 22 from any allow priority 100"]
    );
    assert!(m.group_by_name(v, "default").unwrap().rules.is_empty());
}

#[test]
fn s1_group_names_are_unique_per_vpc_and_may_repeat_across_vpcs() {
    let mut m = Model::default();
    vpc(&mut m, "prod", None);
    vpc(&mut m, "dev", Some(20));
    group(&mut m, "prod", "web", "basic", vec![]).unwrap();
    group(&mut m, "dev", "web", "basic", vec![]).unwrap();
    let e = rejected(&mut m, |m| group(m, "prod", "web", "basic", vec![]), "exists");
    assert_eq!(e.0[0].code, ErrorCode::AlreadyExists);
}

#[test]
fn s1_at_most_one_untagged_vpc_and_vlans_are_unique() {
    let mut m = Model::default();
    vpc(&mut m, "prod", None);
    vpc(&mut m, "dev", Some(20));
    rejected(
        &mut m,
        |m| {
            m.create_vpc(&VpcSpec {
                name: "b".into(),
                ..VpcSpec::default()
            })
        },
        "already the untagged one",
    );
    rejected(
        &mut m,
        |m| {
            m.create_vpc(&VpcSpec {
                name: "c".into(),
                vlan: Some(20),
                description: None,
            })
        },
        "vlan 20 is already vpc \"dev\"'s",
    );
    rejected(
        &mut m,
        |m| {
            m.create_vpc(&VpcSpec {
                name: "d".into(),
                vlan: Some(4095),
                description: None,
            })
        },
        "out of range 1-4094",
    );
}

#[test]
fn s1_interface_without_groups_is_bound_to_default() {
    let mut m = Model::default();
    let v = vpc(&mut m, "prod", None);
    let i = iface(&mut m, "prod", "vm-1", &["198.18.1.10"], &[]).unwrap();
    assert_eq!(m.interface(i).unwrap().groups, [m.vpc(v).unwrap().default_group]);
}

#[test]
fn s1_only_bare_metal_interfaces_may_have_no_group_and_they_are_not_filtered() {
    let mut m = Model::default();
    vpc(&mut m, "prod", None);
    let i = m
        .create_interface(&InterfaceSpec {
            vpc: "prod".into(),
            name: "metal-1".into(),
            addresses: vec!["198.18.1.20".into()],
            groups: Some(vec![]),
            bare_metal: Some(true),
            ..InterfaceSpec::default()
        })
        .unwrap();
    assert!(m.interface(i).unwrap().groups.is_empty());
    let v = decide(&m, "tcp 198.51.100.7:40000 -> 198.18.1.20:22");
    assert!(v.allowed);
    assert_eq!(decision(&v, Direction::Ingress), Decision::NotFiltered);
    // A regular interface cannot drop its last group.
    iface(&mut m, "prod", "vm-1", &["198.18.1.10"], &[]).unwrap();
    rejected(
        &mut m,
        |m| m.unbind_group("prod", "vm-1", "default"),
        "needs at least one",
    );
}

#[test]
fn s1_a_bare_metal_interface_that_omits_its_groups_is_still_filtered() {
    // Unfiltered only when said explicitly (`groups = []`): a forgotten key must
    // not open an interface.
    let m = load(
        "[[vpc]]\nname = \"prod\"\n[[interface]]\nvpc = \"prod\"\nname = \"m\"\naddresses = [\"198.18.1.30\"]\nbare_metal = true\n",
    );
    let v = decide(&m, "tcp 198.51.100.7:40000 -> 198.18.1.30:22");
    assert!(!v.allowed);
    assert_eq!(decision(&v, Direction::Ingress), Decision::ImplicitDeny);
}

#[test]
fn s1_interface_addresses_are_unique_per_vpc_and_may_overlap_across_vpcs() {
    let mut m = Model::default();
    vpc(&mut m, "prod", None);
    vpc(&mut m, "dev", Some(20));
    iface(&mut m, "prod", "a", &["198.18.1.10", "2001:db8:1::10"], &[]).unwrap();
    iface(&mut m, "dev", "a", &["198.18.1.10"], &[]).unwrap();
    rejected(
        &mut m,
        |m| iface(m, "prod", "b", &["2001:db8:1::10"], &[]),
        "already belongs to interface \"a\"",
    );
    rejected(
        &mut m,
        |m| iface(m, "prod", "c", &["198.18.1.11", "198.18.1.11"], &[]),
        "listed twice",
    );
    rejected(
        &mut m,
        |m| iface(m, "prod", "d", &[], &[]),
        "at least one address",
    );
    rejected(
        &mut m,
        |m| iface(m, "prod", "e", &["198.18.1.0/24"], &[]),
        "not an IP address",
    );
    m.check_invariants();
}

#[test]
fn s1_interfaces_bind_only_groups_of_their_vpc_in_order() {
    let mut m = Model::default();
    vpc(&mut m, "prod", None);
    vpc(&mut m, "dev", Some(20));
    let a = group(&mut m, "prod", "a", "basic", vec![]).unwrap();
    let b = group(&mut m, "prod", "b", "basic", vec![]).unwrap();
    let devg = group(&mut m, "dev", "x", "basic", vec![]).unwrap();
    let i = iface(&mut m, "prod", "vm", &["198.18.1.10"], &["b", &a.to_string()]).unwrap();
    assert_eq!(m.interface(i).unwrap().groups, [b, a]);
    rejected(
        &mut m,
        |m| iface(m, "prod", "vm2", &["198.18.1.11"], &["x"]),
        "vpc \"dev\" has one",
    );
    rejected(
        &mut m,
        |m| iface(m, "prod", "vm3", &["198.18.1.12"], &[&devg.to_string()]),
        "belongs to vpc \"dev\"",
    );
    rejected(
        &mut m,
        |m| iface(m, "prod", "vm4", &["198.18.1.13"], &["a", "a"]),
        "listed twice",
    );
}

// ------------------------------------------------------------------ section 2

const TWO_VPCS: &str = r#"
    [[vpc]]
    name = "prod"
    [[vpc]]
    name = "dev"
    vlan = 20
    [[prefix_list]]
    vpc = "dev"
    name = "dev-office"
    cidrs = ["198.51.100.0/24"]
    [[security_group]]
    vpc = "dev"
    name = "devonly"
    [[security_group]]
    vpc = "prod"
    name = "web"
"#;

/// Adds `rule` to group web of [`TWO_VPCS`] and returns the error text.
fn rule_error(rule: RuleSpec) -> Errors {
    let mut m = load(TWO_VPCS);
    rejected(&mut m, |m| m.add_rules("prod", "web", &[rule]), "")
}

#[test]
fn s2_rejects_rules_that_mix_address_families() {
    let cases = [
        (
            RuleSpec {
                remote: Some("198.18.0.0/15".into()),
                ethertype: Some("ipv6".into()),
                ..rule("ingress", "tcp")
            },
            "remote",
        ),
        (
            RuleSpec {
                remote: Some("2001:db8::/32".into()),
                local: Some("198.18.1.0/24".into()),
                ..rule("ingress", "tcp")
            },
            "local",
        ),
        (
            RuleSpec {
                remote: Some("198.18.0.0/15".into()),
                ..rule("ingress", "icmpv6")
            },
            "remote",
        ),
        (
            RuleSpec {
                ethertype: Some("ipv6".into()),
                ..rule("ingress", "icmp")
            },
            "protocol",
        ),
    ];
    for (r, field) in cases {
        let e = rule_error(r);
        assert_eq!(e.0[0].field, Some(field), "{e}");
        assert!(e.to_string().contains("a rule covers one address family"), "{e}");
    }
}

#[test]
fn s2_rejects_ports_on_a_protocol_without_ports() {
    for proto in ["icmp", "all", "47"] {
        let e = rule_error(RuleSpec {
            ports: Some("80".into()),
            ..rule("ingress", proto)
        });
        assert_eq!(e.0[0].field, Some("ports"));
        assert!(
            e.to_string().contains("ports apply only to tcp, udp and sctp"),
            "{e}"
        );
        let e = rule_error(RuleSpec {
            source_ports: Some(Scalar::Int(80)),
            ..rule("ingress", proto)
        });
        assert_eq!(e.0[0].field, Some("source_ports"));
    }
    let e = rule_error(RuleSpec {
        icmp_type: Some(8),
        ..rule("ingress", "tcp")
    });
    assert_eq!(e.0[0].field, Some("icmp_type"));
    let e = rule_error(RuleSpec {
        icmp_code: Some(0),
        ..rule("ingress", "udp")
    });
    assert_eq!(e.0[0].field, Some("icmp_code"));
}

#[test]
fn s2_icmp_type_and_code_are_each_optional() {
    // Absent means any: a code alone matches that code under every type.
    let mut m = load(TIERS);
    let only_code = RuleSpec {
        icmp_code: Some(0),
        ..rule("ingress", "icmp")
    };
    m.add_rules("prod", "db", &[only_code]).unwrap();
    assert!(allowed(&m, "icmp 198.51.100.7 -> 198.18.2.10 type 8 code 0"));
    assert!(allowed(&m, "icmp 198.51.100.7 -> 198.18.2.10 type 13 code 0"));
    assert!(!allowed(&m, "icmp 198.51.100.7 -> 198.18.2.10 type 3 code 1"));
}

#[test]
fn s2_only_the_spelled_values_are_accepted() {
    for (r, field) in [
        (
            RuleSpec {
                action: Some("accept".into()),
                ..rule("ingress", "tcp")
            },
            "action",
        ),
        (
            RuleSpec {
                action: Some("drop".into()),
                ..rule("ingress", "tcp")
            },
            "action",
        ),
        (rule("ingress", "any"), "protocol"),
    ] {
        assert_eq!(rule_error(r).0[0].field, Some(field));
    }
}

#[test]
fn s2_rejects_empty_inverted_and_out_of_range_port_ranges() {
    for (ports, why) in [
        ("443-80", "inverted"),
        ("", "empty"),
        ("0", "out of range"),
        ("1-70000", "out of range"),
        ("x", "not a port"),
    ] {
        let e = rule_error(RuleSpec {
            ports: Some(ports.into()),
            ..rule("ingress", "tcp")
        });
        assert!(e.to_string().contains(why), "{ports}: {e}");
        assert_eq!(e.0[0].field, Some("ports"));
    }
}

#[test]
fn s2_rejects_references_to_missing_or_foreign_groups_and_prefix_lists() {
    for (remote, why) in [
        ("group:nosuch", "no group \"nosuch\" in vpc \"prod\""),
        ("group:devonly", "vpc \"dev\" has one"),
        ("group:sg-2", "belongs to vpc \"dev\""),
        ("prefix-list:nosuch", "no prefix list \"nosuch\""),
        ("prefix-list:pl-1", "belongs to vpc \"dev\""),
        ("prefix-list:dev-office", "no prefix list"),
        ("group:", "needs a group name"),
    ] {
        let e = rule_error(RuleSpec {
            remote: Some(remote.into()),
            ..rule("ingress", "tcp")
        });
        assert!(e.to_string().contains(why), "{remote}: {e}");
        assert_eq!(e.0[0].field, Some("remote"));
    }
}

#[test]
fn s2_rejects_unknown_fields_in_rules_groups_and_the_file() {
    let base = "[[vpc]]\nname = \"prod\"\n[[security_group]]\nvpc = \"prod\"\nname = \"web\"\n";
    let e = load_err(&format!(
        "{base}rules = [{{ direction = \"ingress\", protocol = \"tcp\", port = \"80\" }}]"
    ));
    assert!(e.contains("unknown field `port`"), "{e}");
    let e = load_err(&format!("{base}colour = \"red\""));
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = load_err("[setings]\n");
    assert!(e.contains("unknown field `setings`"), "{e}");
}

#[test]
fn s2_rejects_bad_values_of_every_other_field() {
    for (r, field, why) in [
        (rule("inbound", "tcp"), "direction", "not a direction"),
        (rule("ingress", "tpc"), "protocol", "not a protocol"),
        (
            RuleSpec {
                protocol: Scalar::Int(256),
                ..rule("ingress", "")
            },
            "protocol",
            "out of range 0-255",
        ),
        (
            RuleSpec {
                icmp_type: Some(256),
                ..rule("ingress", "icmp")
            },
            "icmp_type",
            "out of range",
        ),
        (
            RuleSpec {
                icmp_type: Some(3),
                icmp_code: Some(-1),
                ..rule("ingress", "icmp")
            },
            "icmp_code",
            "out of range",
        ),
        (
            RuleSpec {
                remote: Some("198.18.1.10/24".into()),
                ..rule("ingress", "tcp")
            },
            "remote",
            "did you mean 198.18.1.0/24",
        ),
        (
            RuleSpec {
                remote: Some("anywhere".into()),
                ..rule("ingress", "tcp")
            },
            "remote",
            "not a CIDR",
        ),
        (
            RuleSpec {
                local: Some("2001:db8::/129".into()),
                ..rule("ingress", "tcp")
            },
            "local",
            "not a CIDR",
        ),
        (
            RuleSpec {
                ethertype: Some("ipx".into()),
                ..rule("ingress", "tcp")
            },
            "ethertype",
            "not an ethertype",
        ),
        (
            RuleSpec {
                action: Some("permit".into()),
                ..rule("ingress", "tcp")
            },
            "action",
            "not an action",
        ),
        (
            RuleSpec {
                priority: Some(0),
                ..rule("ingress", "tcp")
            },
            "priority",
            "out of range 1-65535",
        ),
        (
            RuleSpec {
                priority: Some(65536),
                ..rule("ingress", "tcp")
            },
            "priority",
            "out of range 1-65535",
        ),
        (
            RuleSpec {
                description: Some("x".repeat(256)),
                ..rule("ingress", "tcp")
            },
            "description",
            "limit is 255",
        ),
    ] {
        let e = rule_error(r);
        assert_eq!(e.0[0].field, Some(field), "{e}");
        assert!(e.to_string().contains(why), "{field}: {e}");
    }
}

#[test]
fn s2_errors_name_the_group_the_rule_and_the_field() {
    let e = rule_error(RuleSpec {
        ports: Some("443-80".into()),
        ..rule("ingress", "tcp")
    });
    // web has its two default egress rules, so the new rule is its third.
    assert_eq!(
        e.to_string(),
        "rule 3 of group \"web\" in vpc \"prod\": field `ports`: range 443-80 is inverted (its first port is above its last)"
    );
}

#[test]
fn s2_every_error_of_a_change_is_reported_and_nothing_is_applied() {
    let mut m = load(TWO_VPCS);
    let good = RuleSpec {
        ports: Some("443".into()),
        ..rule("ingress", "tcp")
    };
    let bad1 = RuleSpec {
        ports: Some("80-79".into()),
        ..rule("ingress", "tcp")
    };
    let bad2 = RuleSpec {
        priority: Some(0),
        action: Some("maybe".into()),
        ..rule("egress", "udp")
    };
    let e = rejected(
        &mut m,
        |m| m.add_rules("prod", "web", &[good.clone(), bad1, bad2]),
        "rule 4",
    );
    assert_eq!(e.len(), 3, "{e}");
    assert!(e.to_string().contains("rule 5"), "{e}");
    // The same errors from a file, all reported in one go.
    let text = format!(
        "{TWO_VPCS}rules = [{{ direction = \"ingress\", protocol = \"tcp\", ports = \"80-79\" }}, \
         {{ direction = \"x\", protocol = \"icmp\", ports = 1 }}]\n\
         [[interface]]\nvpc = \"prod\"\nname = \"i\"\naddresses = [\"nope\"]\n"
    );
    let e = load_err(&text);
    assert!(e.contains("4 errors found"), "{e}");
    for needle in [
        "rule 1 of group \"web\"",
        "rule 2 of group \"web\"",
        "field `direction`",
        "interface \"i\"",
    ] {
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn s2_protocol_numbers_and_names_are_the_same_protocol() {
    let mut m = load(TWO_VPCS);
    let ids = m
        .add_rules(
            "prod",
            "web",
            &[
                RuleSpec {
                    protocol: Scalar::Int(6),
                    ..rule("ingress", "")
                },
                rule("ingress", "TCP"),
            ],
        )
        .unwrap();
    let g = m.resolve_group(m.vpc_by_name("prod").unwrap().id, "web").unwrap();
    let found: Vec<_> = g
        .rules
        .iter()
        .filter(|r| ids.contains(&r.id))
        .map(|r| r.protocol)
        .collect();
    assert_eq!(found, [Protocol::Ip(proto::TCP), Protocol::Ip(proto::TCP)]);
}

#[test]
fn s2_rule_family_is_the_ethertype_or_what_cidrs_and_protocol_imply() {
    let mut m = load(TWO_VPCS);
    let specs = [
        RuleSpec {
            remote: Some("2001:db8::/32".into()),
            ..rule("ingress", "tcp")
        },
        rule("ingress", "icmp"),
        rule("ingress", "tcp"),
        RuleSpec {
            ethertype: Some("ipv6".into()),
            remote: Some("group:web".into()),
            ..rule("ingress", "all")
        },
    ];
    let ids = m.add_rules("prod", "web", &specs).unwrap();
    let g = m.resolve_group(m.vpc_by_name("prod").unwrap().id, "web").unwrap();
    let fams: Vec<_> = ids
        .iter()
        .map(|id| g.rules.iter().find(|r| r.id == *id).unwrap().family)
        .collect();
    assert_eq!(fams, [Some(Family::V6), Some(Family::V4), None, Some(Family::V6)]);
}

// ------------------------------------------------------------------ section 3

/// web (basic) and db (advanced) in prod, plus an outside client.
const TIERS: &str = r#"
    [[vpc]]
    name = "prod"
    [[prefix_list]]
    vpc = "prod"
    name = "office"
    cidrs = ["203.0.113.0/24", "2001:db8:ff::/48"]
    [[security_group]]
    vpc = "prod"
    name = "web"
    rules = [
      { direction = "ingress", protocol = "tcp", ports = "80", remote = "0.0.0.0/0" },
      { direction = "ingress", protocol = "tcp", ports = "443" },
      { direction = "ingress", protocol = "tcp", ports = "22", remote = "prefix-list:office" },
    ]
    [[security_group]]
    vpc = "prod"
    name = "db"
    kind = "advanced"
    rules = [
      { direction = "ingress", protocol = "tcp", ports = "3306", remote = "group:web" },
    ]
    [[interface]]
    vpc = "prod"
    name = "web-1"
    addresses = ["198.18.1.10", "2001:db8:1::10"]
    groups = ["web"]
    [[interface]]
    vpc = "prod"
    name = "web-2"
    addresses = ["198.18.1.11", "2001:db8:1::11"]
    groups = ["web"]
    [[interface]]
    vpc = "prod"
    name = "db-1"
    addresses = ["198.18.2.10", "2001:db8:2::10"]
    groups = ["db"]
"#;

#[test]
fn s3_ingress_rules_decide_traffic_from_unprotected_sources() {
    let m = load(TIERS);
    let v = decide(&m, "tcp 198.51.100.7:40000 -> 198.18.1.10:443");
    assert!(v.allowed);
    assert_eq!(
        v.checks.len(),
        1,
        "the source is not protected, only ingress is evaluated"
    );
    assert!(matches!(
        decision(&v, Direction::Ingress),
        Decision::Rule {
            index: 2,
            action: Action::Allow,
            ..
        }
    ));
    assert!(!allowed(&m, "tcp 198.51.100.7:40000 -> 198.18.1.10:8080"));
}

#[test]
fn s3_implicit_deny_when_no_rule_matches() {
    let m = load(TIERS);
    let v = decide(&m, "tcp 198.51.100.7:40000 -> 198.18.2.10:3306");
    assert!(!v.allowed);
    assert_eq!(decision(&v, Direction::Ingress), Decision::ImplicitDeny);
}

#[test]
fn s3_group_references_resolve_to_member_addresses_v4_and_v6() {
    let m = load(TIERS);
    assert!(allowed(&m, "tcp 198.18.1.10:40000 -> 198.18.2.10:3306"));
    assert!(allowed(&m, "tcp [2001:db8:1::11]:40000 -> [2001:db8:2::10]:3306"));
    // Not a member of web, even though it is in the same VPC.
    assert!(!allowed(&m, "tcp 198.51.100.7:40000 -> 198.18.2.10:3306"));
}

#[test]
fn s3_every_evaluated_policy_must_allow_ingress_and_egress() {
    let m = load(TIERS);
    // db is advanced: its egress is closed, so db-1 cannot reach web-1 even on 443,
    // which web-1's ingress allows.
    let v = decide(&m, "tcp 198.18.2.10:40000 -> 198.18.1.10:443");
    assert!(!v.allowed);
    assert!(decision(&v, Direction::Ingress).allows());
    assert_eq!(decision(&v, Direction::Egress), Decision::ImplicitDeny);
}

#[test]
fn s3_advanced_group_denies_egress_until_allowed() {
    let mut m = load(TIERS);
    assert!(!allowed(&m, "udp 198.18.2.10:40000 -> 198.51.100.53:53"));
    m.add_rules(
        "prod",
        "db",
        &[RuleSpec {
            ports: Some("53".into()),
            remote: Some("198.51.100.53".into()),
            ..rule("egress", "udp")
        }],
    )
    .unwrap();
    assert!(allowed(&m, "udp 198.18.2.10:40000 -> 198.51.100.53:53"));
    assert!(!allowed(&m, "udp 198.18.2.10:40000 -> 198.51.100.54:53"));
}

#[test]
fn s3_whitelist_is_the_union_of_all_bound_groups() {
    let m = load(
        r#"
        [[vpc]]
        name = "prod"
        [[security_group]]
        vpc = "prod"
        name = "http"
        kind = "advanced"
        rules = [{ direction = "ingress", protocol = "tcp", ports = "80" }]
        [[security_group]]
        vpc = "prod"
        name = "ssh"
        kind = "advanced"
        rules = [{ direction = "ingress", protocol = "tcp", ports = "22", remote = "198.51.100.0/24" }]
        [[security_group]]
        vpc = "prod"
        name = "dns"
        kind = "advanced"
        rules = [{ direction = "ingress", protocol = "udp", ports = "53" }]
        [[interface]]
        vpc = "prod"
        name = "vm"
        addresses = ["198.18.1.10"]
        groups = ["http", "ssh", "dns"]
        "#,
    );
    assert!(allowed(&m, "tcp 203.0.113.1:1000 -> 198.18.1.10:80"));
    assert!(allowed(&m, "tcp 198.51.100.9:1000 -> 198.18.1.10:22"));
    assert!(allowed(&m, "udp 203.0.113.1:1000 -> 198.18.1.10:53"));
    assert!(!allowed(&m, "tcp 203.0.113.1:1000 -> 198.18.1.10:22"));
    assert!(!allowed(&m, "udp 203.0.113.1:1000 -> 198.18.1.10:80"));
}

const PRIORITIES: &str = r#"
    [[vpc]]
    name = "prod"
    [[security_group]]
    vpc = "prod"
    name = "allow-first"
    kind = "advanced"
    rules = [
      { direction = "ingress", protocol = "tcp", ports = "80", action = "allow", priority = 1 },
      { direction = "ingress", protocol = "tcp", ports = "80", action = "deny", priority = 2 },
    ]
    [[security_group]]
    vpc = "prod"
    name = "tie"
    kind = "advanced"
    rules = [{ direction = "ingress", protocol = "tcp", ports = "443", action = "allow", priority = 1 }]
    [[security_group]]
    vpc = "prod"
    name = "tie-deny"
    kind = "advanced"
    rules = [{ direction = "ingress", protocol = "tcp", ports = "443", remote = "198.51.100.0/24", action = "deny", priority = 1 }]
    [[interface]]
    vpc = "prod"
    name = "vm"
    addresses = ["198.18.1.10"]
    groups = ["allow-first", "tie", "tie-deny"]
"#;

#[test]
fn s3_allow_at_priority_1_beats_deny_at_priority_2() {
    let m = load(PRIORITIES);
    let v = decide(&m, "tcp 203.0.113.1:1000 -> 198.18.1.10:80");
    assert!(v.allowed);
    assert!(matches!(
        decision(&v, Direction::Ingress),
        Decision::Rule {
            priority: 1,
            action: Action::Allow,
            ..
        }
    ));
}

#[test]
fn s3_deny_beats_allow_at_equal_priority_whatever_the_group_order() {
    let m = load(PRIORITIES);
    let v = decide(&m, "tcp 198.51.100.7:1000 -> 198.18.1.10:443");
    assert!(!v.allowed);
    assert!(matches!(
        decision(&v, Direction::Ingress),
        Decision::Rule {
            priority: 1,
            action: Action::Deny,
            ..
        }
    ));
    // Outside the deny's remote the allow at the same priority decides.
    assert!(allowed(&m, "tcp 203.0.113.1:1000 -> 198.18.1.10:443"));
    // Reversing the group order changes nothing.
    let mut m2 = m.clone();
    m2.set_interface_groups(
        "prod",
        "vm",
        &["tie-deny".into(), "tie".into(), "allow-first".into()],
    )
    .unwrap();
    assert!(!allowed(&m2, "tcp 198.51.100.7:1000 -> 198.18.1.10:443"));
}

const INTRA: &str = r#"
    [[vpc]]
    name = "prod"
    [[security_group]]
    vpc = "prod"
    name = "app"
    intra_group = "accept"
    rules = [{ direction = "ingress", protocol = "all", remote = "0.0.0.0/0", action = "deny", priority = 1 }]
    [[security_group]]
    vpc = "prod"
    name = "cluster"
    kind = "advanced"
    rules = [{ direction = "ingress", protocol = "tcp", ports = "7000", remote = "group:cluster" },
             { direction = "egress", protocol = "tcp", ports = "7000", remote = "group:cluster" }]
    [[interface]]
    vpc = "prod"
    name = "app-1"
    addresses = ["198.18.1.10"]
    groups = ["app"]
    [[interface]]
    vpc = "prod"
    name = "app-2"
    addresses = ["198.18.1.11"]
    groups = ["app"]
    [[interface]]
    vpc = "prod"
    name = "node-1"
    addresses = ["198.18.3.10"]
    groups = ["cluster"]
    [[interface]]
    vpc = "prod"
    name = "node-2"
    addresses = ["198.18.3.11"]
    groups = ["cluster"]
"#;

#[test]
fn s3_intra_group_accept_overrides_every_explicit_rule() {
    let m = load(INTRA);
    let v = decide(&m, "udp 198.18.1.11:5000 -> 198.18.1.10:9999");
    assert!(v.allowed);
    let app = m
        .group_by_name(m.vpc_by_name("prod").unwrap().id, "app")
        .unwrap()
        .id;
    assert_eq!(
        decision(&v, Direction::Ingress),
        Decision::IntraGroup { group: app }
    );
    assert_eq!(
        decision(&v, Direction::Egress),
        Decision::IntraGroup { group: app }
    );
    // Non-members meet the deny rule.
    assert!(!allowed(&m, "udp 198.18.3.10:5000 -> 198.18.1.10:9999"));
}

#[test]
fn s3_intra_group_drop_leaves_members_to_the_rules() {
    let mut m = load(INTRA);
    assert!(
        allowed(&m, "tcp 198.18.3.10:40000 -> 198.18.3.11:7000"),
        "self-referencing rules allow 7000"
    );
    let v = decide(&m, "tcp 198.18.3.10:40000 -> 198.18.3.11:7001");
    assert!(!v.allowed);
    assert_eq!(decision(&v, Direction::Ingress), Decision::ImplicitDeny);
    // Switching the group to accept lets members reach each other on any port.
    let update = GroupUpdate {
        intra_group: Some("accept".into()),
        ..GroupUpdate::default()
    };
    m.update_group("prod", "cluster", &update).unwrap();
    assert!(allowed(&m, "tcp 198.18.3.10:40000 -> 198.18.3.11:7001"));
}

#[test]
fn s3_prefix_list_remotes_match_any_of_their_cidrs() {
    let mut m = load(TIERS);
    assert!(allowed(&m, "tcp 203.0.113.5:40000 -> 198.18.1.10:22"));
    assert!(allowed(&m, "tcp [2001:db8:ff:1::5]:40000 -> [2001:db8:1::10]:22"));
    assert!(!allowed(&m, "tcp 198.51.100.7:40000 -> 198.18.1.10:22"));
    set_cidrs(&mut m, "office", &["198.51.100.0/24"]).unwrap();
    assert!(allowed(&m, "tcp 198.51.100.7:40000 -> 198.18.1.10:22"));
    assert!(!allowed(&m, "tcp 203.0.113.5:40000 -> 198.18.1.10:22"));
}

#[test]
fn s3_rules_match_ports_source_ports_icmp_and_local_addresses() {
    let m = load(
        r#"
        [[vpc]]
        name = "prod"
        [[security_group]]
        vpc = "prod"
        name = "g"
        kind = "advanced"
        rules = [
          { direction = "ingress", protocol = "udp", ports = "5000-5010", source_ports = "53" },
          { direction = "ingress", protocol = "icmp", icmp_type = 8, icmp_code = 0 },
          { direction = "ingress", protocol = "icmpv6", icmp_type = 128 },
          { direction = "ingress", protocol = "tcp", ports = "443", local = "198.18.1.11/32" },
          { direction = "ingress", protocol = "sctp", ports = "2905" },
          { direction = "ingress", protocol = 47 },
        ]
        [[interface]]
        vpc = "prod"
        name = "vm"
        addresses = ["198.18.1.10", "198.18.1.11", "2001:db8:1::10"]
        groups = ["g"]
        "#,
    );
    assert!(allowed(&m, "udp 198.51.100.7:53 -> 198.18.1.10:5005"));
    assert!(!allowed(&m, "udp 198.51.100.7:54 -> 198.18.1.10:5005"));
    assert!(!allowed(&m, "udp 198.51.100.7:53 -> 198.18.1.10:5011"));
    assert!(allowed(&m, "icmp 198.51.100.7 -> 198.18.1.10 type 8 code 0"));
    assert!(!allowed(&m, "icmp 198.51.100.7 -> 198.18.1.10 type 8 code 1"));
    assert!(!allowed(&m, "icmp 198.51.100.7 -> 198.18.1.10 type 13"));
    assert!(allowed(
        &m,
        "icmpv6 2001:db8::7 -> 2001:db8:1::10 type 128 code 5"
    ));
    assert!(allowed(&m, "tcp 198.51.100.7:1000 -> 198.18.1.11:443"));
    assert!(
        !allowed(&m, "tcp 198.51.100.7:1000 -> 198.18.1.10:443"),
        "local restricts to .11"
    );
    assert!(allowed(&m, "sctp 198.51.100.7:1000 -> 198.18.1.10:2905"));
    assert!(allowed(&m, "47 198.51.100.7 -> 198.18.1.10"));
    assert!(!allowed(&m, "50 198.51.100.7 -> 198.18.1.10"));
}

#[test]
fn s3_rules_match_only_their_family_and_familyless_rules_match_both() {
    let m = load(
        r#"
        [[vpc]]
        name = "prod"
        [[security_group]]
        vpc = "prod"
        name = "g"
        kind = "advanced"
        rules = [
          { direction = "ingress", protocol = "tcp", ports = "80", ethertype = "ipv4" },
          { direction = "ingress", protocol = "tcp", ports = "443" },
        ]
        [[interface]]
        vpc = "prod"
        name = "vm"
        addresses = ["198.18.1.10", "2001:db8:1::10"]
        groups = ["g"]
        "#,
    );
    assert!(allowed(&m, "tcp 198.51.100.7:1000 -> 198.18.1.10:80"));
    assert!(!allowed(&m, "tcp [2001:db8::7]:1000 -> [2001:db8:1::10]:80"));
    assert!(allowed(&m, "tcp 198.51.100.7:1000 -> 198.18.1.10:443"));
    assert!(allowed(&m, "tcp [2001:db8::7]:1000 -> [2001:db8:1::10]:443"));
}

#[test]
fn s3_traffic_without_protected_endpoint_follows_the_unprotected_setting() {
    let m = load(TIERS);
    let pkt = parse_packet(&["tcp 198.51.100.7:1 -> 198.51.100.8:2".to_owned()], None).unwrap();
    let fwd = evaluate(&m, Unprotected::Forward, &pkt);
    assert!(fwd.allowed && fwd.checks.is_empty());
    assert!(!evaluate(&m, Unprotected::Drop, &pkt).allowed);
}

#[test]
fn s3_the_vlan_selects_the_vpc_and_an_unknown_vlan_is_unprotected() {
    let mut m = Model::default();
    vpc(&mut m, "prod", None);
    vpc(&mut m, "dev", Some(20));
    iface(&mut m, "dev", "dev-vm", &["198.18.1.10"], &[]).unwrap();
    // Untagged frames are prod's, where 198.18.1.10 is no interface.
    assert!(decide_in(&m, None, "tcp 198.51.100.7:1 -> 198.18.1.10:22")
        .checks
        .is_empty());
    // VLAN 20 is dev's, whose default group refuses outside ingress.
    assert!(!decide_in(&m, Some(20), "tcp 198.51.100.7:1 -> 198.18.1.10:22").allowed);
    let v = decide_in(&m, Some(30), "tcp 198.51.100.7:1 -> 198.18.1.10:22");
    assert!(v.allowed && v.vpc.is_none());
}

#[test]
fn s3_a_priority_tagged_frame_belongs_to_the_untagged_vpc() {
    // VLAN ID 0 carries only a priority; 802.1Q treats the frame as untagged. It
    // must meet the untagged VPC's rules, not slip through as unprotected.
    let m = load(TIERS);
    let v = decide_in(&m, Some(0), "tcp 198.51.100.7:40000 -> 198.18.2.10:3306");
    assert!(v.vpc.is_some());
    assert!(!v.allowed);
}

#[test]
fn s3_default_group_members_reach_each_other_and_outsiders_do_not_get_in() {
    let mut m = Model::default();
    vpc(&mut m, "prod", None);
    iface(&mut m, "prod", "a", &["198.18.1.10"], &[]).unwrap();
    iface(&mut m, "prod", "b", &["198.18.1.11"], &[]).unwrap();
    assert!(allowed(&m, "tcp 198.18.1.10:1000 -> 198.18.1.11:5432"));
    assert!(!allowed(&m, "tcp 198.51.100.7:1000 -> 198.18.1.11:5432"));
    assert!(
        allowed(&m, "tcp 198.18.1.10:1000 -> 198.51.100.7:443"),
        "default egress is open"
    );
}

#[test]
fn s4_connections_are_tracked_only_when_every_evaluated_group_is_stateful() {
    let mut m = load(TIERS);
    assert!(decide(&m, "tcp 198.18.1.10:40000 -> 198.18.2.10:3306").stateful);
    let update = GroupUpdate {
        stateful: Some(false),
        ..GroupUpdate::default()
    };
    m.update_group("prod", "db", &update).unwrap();
    assert!(!decide(&m, "tcp 198.18.1.10:40000 -> 198.18.2.10:3306").stateful);
    assert!(decide(&m, "tcp 198.51.100.7:40000 -> 198.18.1.10:443").stateful);
}

// ------------------------------------------------------------------ section 6

#[test]
fn s6_copy_makes_a_group_whose_self_references_point_at_the_copy() {
    let mut m = load(INTRA);
    let v = m.vpc_by_name("prod").unwrap().id;
    let orig = m.group_by_name(v, "cluster").unwrap().clone();
    let copy = m.copy_group("prod", "cluster", "cluster-b").unwrap();
    let c = m.group(copy).unwrap();
    assert_eq!(
        (c.kind, c.intra_group, c.stateful),
        (orig.kind, orig.intra_group, orig.stateful)
    );
    assert_eq!(c.rules.len(), orig.rules.len());
    for (r, o) in c.rules.iter().zip(&orig.rules) {
        assert_eq!(r.remote, Some(Remote::Group(copy)));
        assert_ne!(r.id, o.id, "copies get new rule ids");
        assert_eq!(
            (r.protocol, r.ports, r.direction),
            (o.protocol, o.ports, o.direction)
        );
    }
    // The original is untouched and references to other groups are kept as they are.
    assert_eq!(m.group(orig.id).unwrap(), &orig);
    let web_copy = m.copy_group("prod", "default", "default-copy").unwrap();
    assert!(texts(&m, web_copy)[0].contains("from group:default-copy"));
    rejected(&mut m, |m| m.copy_group("prod", "app", "cluster-b"), "exists");
    m.check_invariants();
}

#[test]
fn s6_copy_keeps_references_to_other_groups() {
    let mut m = load(TIERS);
    let c = m.copy_group("prod", "db", "db-b").unwrap();
    assert_eq!(
        texts(&m, c),
        ["ingress tcp port 3306 from group:web allow priority 100"]
    );
}

#[test]
fn s6_deleting_a_bound_or_referenced_group_is_refused_naming_the_dependents() {
    let mut m = load(TIERS);
    let e = rejected(
        &mut m,
        |m| m.delete_group("prod", "web"),
        "interface \"web-1\", interface \"web-2\", rule 1",
    );
    assert_eq!(e.0[0].code, ErrorCode::InUse);
    assert!(e.to_string().contains("of group \"db\""), "{e}");
    // Once nothing depends on it, it goes.
    m.set_interface_groups("prod", "web-1", &[]).unwrap();
    m.set_interface_groups("prod", "web-2", &[]).unwrap();
    rejected(&mut m, |m| m.delete_group("prod", "web"), "of group \"db\"");
    m.replace_rules("prod", "db", &[]).unwrap();
    m.delete_group("prod", "web").unwrap();
    m.check_invariants();
    // A group referencing only itself can be deleted.
    m.delete_group("prod", "db").unwrap_err(); // still bound to db-1
    m.delete_interface("prod", "db-1").unwrap();
    let mut m2 = load(INTRA);
    m2.delete_interface("prod", "node-1").unwrap();
    m2.delete_interface("prod", "node-2").unwrap();
    m2.delete_group("prod", "cluster").unwrap();
    m2.check_invariants();
}

#[test]
fn s6_prefix_lists_in_use_cannot_be_deleted() {
    let mut m = load(TIERS);
    rejected(&mut m, |m| m.delete_prefix_list("prod", "office"), "rule 3 (");
    m.replace_rules("prod", "web", &[]).unwrap();
    m.delete_prefix_list("prod", "office").unwrap();
    m.check_invariants();
}

#[test]
fn s6_a_vpc_is_deleted_only_when_empty() {
    let mut m = load(TIERS);
    rejected(&mut m, |m| m.delete_vpc("prod"), "group \"web\"");
    let mut m = Model::default();
    vpc(&mut m, "tmp", None);
    m.delete_vpc("tmp").unwrap();
    assert_eq!(m.groups().count(), 0);
    vpc(&mut m, "tmp", None);
    m.check_invariants();
}

#[test]
fn s6_quotas_are_enforced_with_clear_errors() {
    let quotas = Quotas {
        groups_per_vpc: 3,
        rules_per_group: 4,
        groups_per_interface: 2,
        interfaces: 2,
    };
    let mut m = Model::new(quotas);
    vpc(&mut m, "prod", None);
    group(&mut m, "prod", "a", "advanced", vec![]).unwrap();
    group(&mut m, "prod", "b", "basic", vec![]).unwrap();
    let e = rejected(
        &mut m,
        |m| group(m, "prod", "c", "basic", vec![]),
        "quota is 3 groups per vpc",
    );
    assert_eq!(e.0[0].code, ErrorCode::QuotaExceeded);
    rejected(
        &mut m,
        |m| m.copy_group("prod", "a", "c"),
        "quota is 3 groups per vpc",
    );

    m.add_rules("prod", "b", &[rule("ingress", "tcp"), rule("ingress", "udp")])
        .unwrap();
    rejected(
        &mut m,
        |m| m.add_rules("prod", "b", &[rule("ingress", "icmp")]),
        "would have 5 rules; the quota is 4",
    );
    rejected(
        &mut m,
        |m| m.replace_rules("prod", "a", &vec![rule("ingress", "tcp"); 5]),
        "quota is 4 rules per group",
    );

    rejected(
        &mut m,
        |m| iface(m, "prod", "x", &["198.18.1.1"], &["a", "b", "default"]),
        "quota is 2 groups per interface",
    );
    iface(&mut m, "prod", "x", &["198.18.1.1"], &["a", "b"]).unwrap();
    rejected(
        &mut m,
        |m| m.bind_group("prod", "x", "default"),
        "quota is 2 groups per interface",
    );
    iface(&mut m, "prod", "y", &["198.18.1.2"], &[]).unwrap();
    rejected(
        &mut m,
        |m| iface(m, "prod", "z", &["198.18.1.3"], &[]),
        "quota is 2 interfaces",
    );
    m.check_invariants();
}

#[test]
fn s6_quotas_come_from_the_file() {
    let e = load_err("[quotas]\nrules_per_group = 1\n[[vpc]]\nname = \"prod\"\n");
    assert!(e.contains("would have 4 rules; the quota is 1"), "{e}");
    let e = load_err("[quotas]\ninterfaces = 0\n");
    assert!(e.contains("quotas: field `interfaces`: 0 is out of range"), "{e}");
}

#[test]
fn s6_groups_bind_unbind_update_and_rules_delete_by_id() {
    let mut m = load(TIERS);
    m.bind_group("prod", "web-1", "db").unwrap();
    rejected(&mut m, |m| m.bind_group("prod", "web-1", "db"), "already bound");
    m.unbind_group("prod", "web-1", "db").unwrap();
    rejected(&mut m, |m| m.unbind_group("prod", "web-1", "db"), "is not bound");
    let update = GroupUpdate {
        name: Some("frontend".into()),
        description: Some("public".into()),
        ..GroupUpdate::default()
    };
    m.update_group("prod", "web", &update).unwrap();
    let v = m.vpc_by_name("prod").unwrap().id;
    let db = m.group_by_name(v, "db").unwrap();
    assert_eq!(
        m.rule_text(&db.rules[0]),
        "ingress tcp port 3306 from group:frontend allow priority 100",
        "references follow renames"
    );
    let first = db.rules[0].id.to_string();
    rejected(
        &mut m,
        |m| m.delete_rule("prod", "frontend", &first),
        "has no rule",
    );
    rejected(&mut m, |m| m.delete_rule("prod", "db", "3"), "not a rule id");
    m.delete_rule("prod", "db", &first).unwrap();
    assert!(m.group_by_name(v, "db").unwrap().rules.is_empty());
    rejected(
        &mut m,
        |m| {
            m.update_group(
                "prod",
                "db",
                &GroupUpdate {
                    name: Some("sg-9".into()),
                    ..GroupUpdate::default()
                },
            )
        },
        "spelled like an id",
    );
    rejected(
        &mut m,
        |m| {
            m.update_group(
                "prod",
                "db",
                &GroupUpdate {
                    intra_group: Some("maybe".into()),
                    ..GroupUpdate::default()
                },
            )
        },
        "intra_group",
    );
    m.check_invariants();
}

#[test]
fn s6_object_names_are_checked() {
    let mut m = Model::default();
    vpc(&mut m, "prod", None);
    for (name, why) in [
        ("", "is empty"),
        ("web/1", "contains '/'"),
        (" web", "space"),
        ("sg-1", "spelled like an id"),
    ] {
        rejected(&mut m, |m| group(m, "prod", name, "basic", vec![]), why);
    }
    rejected(
        &mut m,
        |m| group(m, "prod", &"x".repeat(65), "basic", vec![]),
        "longer than 64",
    );
    rejected(
        &mut m,
        |m| group(m, "nosuch", "web", "basic", vec![]),
        "group \"web\" in vpc \"nosuch\": field `vpc`: no vpc \"nosuch\"",
    );
    rejected(
        &mut m,
        |m| group(m, "prod", "web", "fancy", vec![]),
        "not a group kind",
    );
}

#[test]
fn s6_vpcs_are_updated_in_place_and_keep_their_objects() {
    let mut m = Model::default();
    vpc(&mut m, "prod", None);
    vpc(&mut m, "dev", Some(20));
    iface(&mut m, "dev", "vm", &["198.18.1.10"], &[]).unwrap();
    let spec = |name: &str, vlan| VpcSpec {
        name: name.into(),
        vlan,
        description: Some("renamed".into()),
    };
    m.update_vpc("dev", &spec("staging", Some(30))).unwrap();
    assert!(m.vpc_by_name("dev").is_none());
    // The interface moved with its VPC to VLAN 30; VLAN 20 now selects no VPC.
    assert_eq!(
        decide_in(&m, Some(30), "tcp 198.51.100.7:1 -> 198.18.1.10:22")
            .checks
            .len(),
        1
    );
    assert!(decide_in(&m, Some(20), "tcp 198.51.100.7:1 -> 198.18.1.10:22")
        .vpc
        .is_none());
    rejected(
        &mut m,
        |m| m.update_vpc("staging", &spec("staging", None)),
        "already the untagged one",
    );
    rejected(
        &mut m,
        |m| m.update_vpc("staging", &spec("prod", Some(30))),
        "a vpc of that name exists",
    );
    rejected(
        &mut m,
        |m| m.update_vpc("staging", &spec("staging", Some(0))),
        "out of range",
    );
    // Restating its own VLAN is no conflict.
    m.update_vpc("staging", &spec("staging", Some(30))).unwrap();
    m.check_invariants();
}

#[test]
fn s6_interfaces_are_updated_in_place() {
    let mut m = load(TIERS);
    let v = m.vpc_by_name("prod").unwrap().id;
    let spec = |name: &str, addrs: &[&str], groups: &[&str]| InterfaceSpec {
        vpc: "prod".into(),
        name: name.into(),
        addresses: addrs.iter().map(|a| (*a).to_owned()).collect(),
        groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
        mac: Some("02:00:5e:10:00:02".into()),
        ..InterfaceSpec::default()
    };
    m.update_interface("prod", "web-2", &spec("db-2", &["198.18.2.11"], &["db"]))
        .unwrap();
    assert!(m
        .interface_by_address(v, "198.18.1.11".parse().unwrap())
        .is_none());
    assert!(m.interface_by_name(v, "web-2").is_none());
    assert!(
        allowed(&m, "tcp 198.18.1.10:40000 -> 198.18.2.11:3306"),
        "db-2 is a db member now"
    );
    assert!(!allowed(&m, "tcp 198.51.100.7:40000 -> 198.18.2.11:443"));
    rejected(
        &mut m,
        |m| m.update_interface("prod", "db-2", &spec("db-2", &["198.18.1.10"], &["db"])),
        "already belongs to interface \"web-1\"",
    );
    rejected(
        &mut m,
        |m| m.update_interface("prod", "db-2", &spec("web-1", &["198.18.2.11"], &["db"])),
        "an interface of that name exists",
    );
    // Keeping its own addresses and name is fine.
    m.update_interface(
        "prod",
        "web-1",
        &spec("web-1", &["198.18.1.10", "2001:db8:1::10"], &["web"]),
    )
    .unwrap();
    vpc(&mut m, "dev", Some(20));
    let moved = InterfaceSpec {
        vpc: "dev".into(),
        ..spec("web-1", &["198.18.1.10"], &[])
    };
    rejected(
        &mut m,
        |m| m.update_interface("prod", "web-1", &moved),
        "cannot move to another vpc",
    );
    m.check_invariants();
}

#[test]
fn s6_one_rule_is_updated_in_place_keeping_its_id() {
    let mut m = load(TIERS);
    let v = m.vpc_by_name("prod").unwrap().id;
    let id = m.group_by_name(v, "web").unwrap().rules[1].id;
    let spec = RuleSpec {
        ports: Some("8443".into()),
        ..rule("ingress", "tcp")
    };
    m.update_rule("prod", "web", &id.to_string(), &spec).unwrap();
    let web = m.group_by_name(v, "web").unwrap();
    assert_eq!(web.rules[1].id, id);
    assert_eq!(
        m.rule_text(&web.rules[1]),
        "ingress tcp port 8443 from any allow priority 100"
    );
    assert!(!allowed(&m, "tcp 198.51.100.7:40000 -> 198.18.1.10:443"));
    assert!(allowed(&m, "tcp 198.51.100.7:40000 -> 198.18.1.10:8443"));
    let bad = RuleSpec {
        ports: Some("0".into()),
        ..rule("ingress", "tcp")
    };
    rejected(
        &mut m,
        |m| m.update_rule("prod", "web", &id.to_string(), &bad),
        "rule 2 of group \"web\"",
    );
    rejected(
        &mut m,
        |m| m.update_rule("prod", "db", &id.to_string(), &spec),
        "has no rule",
    );
}

#[test]
fn s6_prefix_lists_are_updated_and_rules_follow_a_rename() {
    let mut m = load(TIERS);
    let spec = |name: &str, vpc: &str| PrefixListSpec {
        vpc: vpc.into(),
        name: name.into(),
        description: Some("ops".into()),
        cidrs: vec!["198.51.100.0/24".into()],
    };
    m.update_prefix_list("prod", "office", &spec("ops", "prod"))
        .unwrap();
    let v = m.vpc_by_name("prod").unwrap().id;
    let web = m.group_by_name(v, "web").unwrap();
    assert_eq!(
        m.rule_text(&web.rules[2]),
        "ingress tcp port 22 from prefix-list:ops allow priority 100"
    );
    assert!(allowed(&m, "tcp 198.51.100.7:40000 -> 198.18.1.10:22"));
    m.create_prefix_list(&spec("other", "prod")).unwrap();
    rejected(
        &mut m,
        |m| m.update_prefix_list("prod", "ops", &spec("other", "prod")),
        "a prefix list of that name exists",
    );
    vpc(&mut m, "dev", Some(20));
    rejected(
        &mut m,
        |m| m.update_prefix_list("prod", "ops", &spec("ops", "dev")),
        "cannot move to another vpc",
    );
    rejected(
        &mut m,
        |m| m.update_prefix_list("prod", "nosuch", &spec("x", "prod")),
        "no such prefix list",
    );
    m.check_invariants();
}

#[test]
fn s6_a_file_reports_errors_behind_a_failed_object_without_cascades() {
    // A bad kind does not hide the group's bad rule.
    let e = load_err(
        "[[vpc]]\nname = \"prod\"\n[[security_group]]\nvpc = \"prod\"\nname = \"web\"\nkind = \"fancy\"\n\
         rules = [{ direction = \"ingress\", protocol = \"tcp\", ports = \"443-80\" }]\n",
    );
    assert!(
        e.contains("2 errors found") && e.contains("field `kind`") && e.contains("443-80"),
        "{e}"
    );
    // A VPC with a bad VLAN is one error, not one more per object inside it.
    let e = load_err(
        "[[vpc]]\nname = \"prod\"\nvlan = 5000\n[[security_group]]\nvpc = \"prod\"\nname = \"web\"\n\
         [[interface]]\nvpc = \"prod\"\nname = \"web-1\"\naddresses = [\"198.18.1.10\"]\ngroups = [\"web\"]\n",
    );
    assert!(e.contains("1 error found") && e.contains("vlan"), "{e}");
    // An unknown VPC is named as the object's `vpc` field.
    let e = load_err("[[security_group]]\nvpc = \"prod\"\nname = \"web\"\n");
    assert!(
        e.contains("group \"web\" in vpc \"prod\": field `vpc`: no vpc \"prod\""),
        "{e}"
    );
}

// ------------------------------------------------------------------ evaluator properties

/// A random rule over a small space where collisions (ties, overlaps) are common.
fn random_rule() -> impl Strategy<Value = RuleSpec> {
    (
        any::<bool>(),
        0..3usize,
        proptest::option::of((1..8i64, 0..4i64)),
        0..5usize,
        any::<bool>(),
        1..4i64,
    )
        .prop_map(|(ingress, proto, ports, remote, deny, priority)| {
            let protocol = ["tcp", "udp", "all"][proto];
            RuleSpec {
                direction: if ingress { "ingress" } else { "egress" }.to_owned(),
                protocol: Scalar::from(protocol),
                ports: ports
                    .filter(|_| protocol != "all")
                    .map(|(lo, len)| Scalar::Text(format!("{lo}-{}", lo + len))),
                remote: [
                    None,
                    Some("198.18.0.0/30"),
                    Some("198.18.1.0/24"),
                    Some("group:g1"),
                    Some("group:g2"),
                ][remote]
                    .map(str::to_owned),
                action: Some(if deny { "deny" } else { "allow" }.to_owned()),
                priority: Some(priority),
                ..RuleSpec::default()
            }
        })
}

#[derive(Clone, Debug)]
struct RandomModel {
    /// Rules and intra_group accept for g1..g3.
    groups: Vec<(Vec<RuleSpec>, bool)>,
    /// Group indexes (0-based into `groups`) of interfaces 198.18.0.1-4.
    bindings: Vec<Vec<usize>>,
}

fn random_model() -> impl Strategy<Value = RandomModel> {
    let group = (proptest::collection::vec(random_rule(), 0..7), any::<bool>());
    let binding = proptest::sample::subsequence(vec![0usize, 1, 2], 1..=3);
    (
        proptest::collection::vec(group, 3),
        proptest::collection::vec(binding, 4),
    )
        .prop_map(|(groups, bindings)| RandomModel { groups, bindings })
}

impl RandomModel {
    fn build(&self, reverse: bool) -> Model {
        let mut m = Model::default();
        vpc(&mut m, "prod", None);
        for (i, (_, accept)) in self.groups.iter().enumerate() {
            let spec = GroupSpec {
                vpc: "prod".into(),
                name: format!("g{}", i + 1),
                kind: Some("advanced".into()),
                intra_group: Some(if *accept { "accept" } else { "drop" }.into()),
                ..GroupSpec::default()
            };
            m.create_group(&spec).unwrap();
        }
        for (i, (rules, _)) in self.groups.iter().enumerate() {
            let mut rules = rules.clone();
            if reverse {
                rules.reverse();
            }
            m.replace_rules("prod", &format!("g{}", i + 1), &rules).unwrap();
        }
        for (i, bound) in self.bindings.iter().enumerate() {
            let mut names: Vec<String> = bound.iter().map(|g| format!("g{}", g + 1)).collect();
            if reverse {
                names.reverse();
            }
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            iface(
                &mut m,
                "prod",
                &format!("i{i}"),
                &[&format!("198.18.0.{}", i + 1)],
                &names,
            )
            .unwrap();
        }
        m
    }
}

fn random_packet() -> impl Strategy<Value = String> {
    (0..2usize, 1..6u8, 1..6u8, 1..12u16).prop_map(|(proto, src, dst, port)| {
        // Host 5 is in no interface (unprotected); 1-4 are the interfaces.
        format!(
            "{} 198.18.0.{src}:40000 -> 198.18.0.{dst}:{port}",
            ["tcp", "udp"][proto]
        )
    })
}

/// What a decision says, without which of several equal rules it named.
fn outcome(d: Decision) -> (u8, u16, bool) {
    match d {
        Decision::IntraGroup { .. } => (0, 0, true),
        Decision::Rule { priority, action, .. } => (1, priority, action == Action::Allow),
        Decision::ImplicitDeny => (2, 0, false),
        Decision::NotFiltered => (3, 0, true),
    }
}

fn outcomes(v: &Verdict) -> Vec<(Direction, (u8, u16, bool))> {
    v.checks
        .iter()
        .map(|c| (c.direction, outcome(c.decision)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Spec section 3: neither the order of rules in a group nor the order of an
    /// interface's groups ever changes a verdict.
    #[test]
    fn s3_order_of_rules_and_groups_never_decides(model in random_model(), packets in proptest::collection::vec(random_packet(), 1..20)) {
        let (a, b) = (model.build(false), model.build(true));
        for p in &packets {
            let (va, vb) = (decide(&a, p), decide(&b, p));
            prop_assert_eq!(va.allowed, vb.allowed, "{}", p);
            prop_assert_eq!(outcomes(&va), outcomes(&vb), "{}", p);
        }
    }

    /// A deny of everything at priority 1 wins over every rule (deny beats allow
    /// at equal priority, and nothing is smaller), but not over intra-group accept.
    #[test]
    fn s3_deny_all_at_priority_1_leaves_only_intra_group_accept(model in random_model(), packets in proptest::collection::vec(random_packet(), 1..20)) {
        let mut m = model.build(false);
        let deny_all = |dir: &str| RuleSpec { action: Some("deny".into()), priority: Some(1), ..rule(dir, "all") };
        for g in ["g1", "g2", "g3"] {
            m.add_rules("prod", g, &[deny_all("ingress"), deny_all("egress")]).unwrap();
        }
        for p in &packets {
            let v = decide(&m, p);
            for c in &v.checks {
                match c.decision {
                    Decision::IntraGroup { .. } => {}
                    Decision::Rule { priority: 1, action: Action::Deny, .. } => {}
                    other => prop_assert!(false, "{}: {:?} survived a deny-all at priority 1", p, other),
                }
            }
            if !v.checks.is_empty() {
                prop_assert_eq!(v.allowed, v.checks.iter().all(|c| matches!(c.decision, Decision::IntraGroup { .. })));
            }
        }
    }

    /// An allow-all at a worse priority than any existing rule only turns
    /// implicit denies into allows; every other decision stays as it was.
    #[test]
    fn s3_a_lower_priority_allow_only_fills_implicit_denies(model in random_model(), packets in proptest::collection::vec(random_packet(), 1..20)) {
        let before = model.build(false);
        let mut after = before.clone();
        let allow_all = |dir: &str| RuleSpec { priority: Some(65535), ..rule(dir, "all") };
        for g in ["g1", "g2", "g3"] {
            after.add_rules("prod", g, &[allow_all("ingress"), allow_all("egress")]).unwrap();
        }
        for p in &packets {
            let (vb, va) = (decide(&before, p), decide(&after, p));
            for (cb, ca) in vb.checks.iter().zip(&va.checks) {
                match cb.decision {
                    Decision::ImplicitDeny => prop_assert_eq!(outcome(ca.decision), (1, 65535, true), "{}", p),
                    d => prop_assert_eq!(outcome(ca.decision), outcome(d), "{}", p),
                }
            }
        }
    }
}

// ------------------------------------------------------------------ all or nothing, under random changes

/// A random change, valid or not.
#[derive(Clone, Debug)]
enum Op {
    CreateGroup(u8, bool),
    AddRule(u8, u8, u8, u8),
    DeleteGroup(u8),
    Copy(u8, u8),
    CreateInterface(u8, u8, Vec<u8>),
    DeleteInterface(u8),
    Bind(u8, u8),
    Unbind(u8, u8),
    SetPrefixList(u8),
    UpdateInterface(u8, u8, Vec<u8>),
    UpdateVpc(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6u8, any::<bool>()).prop_map(|(g, adv)| Op::CreateGroup(g, adv)),
        (0..6u8, 0..8u8, 0..8u8, 0..4u8).prop_map(|(g, p, r, x)| Op::AddRule(g, p, r, x)),
        (0..6u8).prop_map(Op::DeleteGroup),
        (0..6u8, 0..6u8).prop_map(|(a, b)| Op::Copy(a, b)),
        (0..5u8, 0..6u8, proptest::collection::vec(0..6u8, 0..3))
            .prop_map(|(i, a, g)| Op::CreateInterface(i, a, g)),
        (0..5u8).prop_map(Op::DeleteInterface),
        (0..5u8, 0..6u8).prop_map(|(i, g)| Op::Bind(i, g)),
        (0..5u8, 0..6u8).prop_map(|(i, g)| Op::Unbind(i, g)),
        (0..4u8).prop_map(Op::SetPrefixList),
        (0..5u8, 0..6u8, proptest::collection::vec(0..6u8, 0..3))
            .prop_map(|(i, a, g)| Op::UpdateInterface(i, a, g)),
        (0..4u8).prop_map(Op::UpdateVpc),
    ]
}

fn group_name(g: u8) -> String {
    if g == 0 {
        "default".to_owned()
    } else {
        format!("g{g}")
    }
}

fn apply(m: &mut Model, op: &Op) -> Result<(), Errors> {
    match op {
        Op::CreateGroup(g, adv) => group(
            m,
            "prod",
            &group_name(*g),
            if *adv { "advanced" } else { "basic" },
            vec![],
        )
        .map(drop),
        Op::AddRule(g, p, r, x) => {
            let protocol = ["tcp", "udp", "icmp", "icmpv6", "all", "47", "sctp", "bogus"][*p as usize];
            let remote = [
                "0.0.0.0/0",
                "::/0",
                "group:g1",
                "group:g2",
                "prefix-list:pl",
                "198.18.0.0/15",
                "group:nosuch",
                "2001:db8::/32",
            ][*r as usize];
            let ports = [None, Some("80"), Some("90-80"), Some("1-65535")][*x as usize];
            let spec = RuleSpec {
                ports: ports.map(Scalar::from),
                remote: Some(remote.to_owned()),
                priority: Some(i64::from(*x) * 50),
                ..rule(if x % 2 == 0 { "ingress" } else { "egress" }, protocol)
            };
            m.add_rules("prod", &group_name(*g), &[spec]).map(drop)
        }
        Op::DeleteGroup(g) => m.delete_group("prod", &group_name(*g)),
        Op::Copy(a, b) => m.copy_group("prod", &group_name(*a), &group_name(*b)).map(drop),
        Op::CreateInterface(i, a, groups) => {
            let names: Vec<String> = groups.iter().map(|g| group_name(*g)).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            iface(
                m,
                "prod",
                &format!("i{i}"),
                &[&format!("198.18.0.{a}"), &format!("2001:db8::{a}")],
                &names,
            )
            .map(drop)
        }
        Op::DeleteInterface(i) => m.delete_interface("prod", &format!("i{i}")),
        Op::Bind(i, g) => m.bind_group("prod", &format!("i{i}"), &group_name(*g)),
        Op::Unbind(i, g) => m.unbind_group("prod", &format!("i{i}"), &group_name(*g)),
        Op::SetPrefixList(n) => {
            let cidrs = ["198.51.100.0/24", "2001:db8:ff::/48", "bad", "198.51.100.0/24"];
            set_cidrs(m, "pl", &cidrs[..*n as usize])
        }
        Op::UpdateInterface(i, a, groups) => {
            let spec = InterfaceSpec {
                vpc: "prod".into(),
                name: format!("i{}", (i + a) % 5),
                addresses: vec![format!("198.18.0.{a}")],
                groups: Some(groups.iter().map(|g| group_name(*g)).collect()),
                ..InterfaceSpec::default()
            };
            m.update_interface("prod", &format!("i{i}"), &spec)
        }
        Op::UpdateVpc(v) => {
            // 0: restate itself; 1: move to a VLAN; 2: untag; 3: an invalid VLAN.
            let vlan = [None, Some(10), None, Some(5000)][*v as usize];
            m.update_vpc(
                "prod",
                &VpcSpec {
                    name: "prod".into(),
                    vlan,
                    description: None,
                },
            )
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of changes, valid or not, keeps every invariant, and a rejected
    /// change leaves the model exactly as it was (spec section 6: all or nothing).
    #[test]
    fn s6_random_changes_keep_invariants_and_rejected_ones_change_nothing(ops in proptest::collection::vec(op(), 1..40)) {
        let mut m = Model::new(Quotas { groups_per_vpc: 5, rules_per_group: 6, groups_per_interface: 3, interfaces: 4 });
        vpc(&mut m, "prod", None);
        m.create_prefix_list(&PrefixListSpec { vpc: "prod".into(), name: "pl".into(), description: None, cidrs: vec![] }).unwrap();
        for op in &ops {
            let before = m.clone();
            if let Err(e) = apply(&mut m, op) {
                prop_assert_eq!(&m, &before, "rejected {:?} ({}) changed the model", op, e);
                prop_assert!(!e.is_empty());
            }
            m.check_invariants();
        }
    }
}

#[test]
fn the_state_form_restores_the_model_exactly_and_refuses_a_broken_one() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/full.toml");
    let mut m = Config::load(&path).expect("full.toml").model;
    // Gaps in the ids, so a restore that renumbered would show.
    let (vpc, g) = {
        let g = m
            .groups()
            .find(|g| g.rules.len() > 1)
            .expect("a group with rules");
        (m.vpc(g.vpc).unwrap().name.clone(), g.name.clone())
    };
    let first = m
        .group_by_name(m.vpc_by_name(&vpc).unwrap().id, &g)
        .unwrap()
        .rules[0]
        .id;
    m.delete_rule(&vpc, &g, &first.to_string())
        .expect("delete a rule");
    let text = m.to_state();
    let back = Model::from_state(&text).expect("restores");
    assert_eq!(back, m);
    back.check_invariants();
    // The next rule gets the same id in both.
    let mut a = m.clone();
    let mut b = back;
    let spec = rule("ingress", "tcp");
    assert_eq!(
        a.add_rules(&vpc, &g, std::slice::from_ref(&spec)),
        b.add_rules(&vpc, &g, &[spec])
    );

    let iface = m.interfaces().next().expect("an interface").id;
    let broken = text.replacen(
        &format!("\"groups\":[{}", m.interface(iface).unwrap().groups[0].0),
        "\"groups\":[999999",
        1,
    );
    assert_ne!(broken, text);
    assert!(Model::from_state(&broken).unwrap_err().contains("missing group"));
    assert!(Model::from_state(&text[..text.len() / 2]).is_err());
}

#[test]
fn a_delta_made_on_another_copy_applies_checked_and_a_bad_one_changes_nothing() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/full.toml");
    let here = Config::load(&path).expect("full.toml").model;
    let vpc = here.vpcs().next().unwrap().name.clone();
    let group = here
        .groups()
        .find(|g| g.name != DEFAULT_GROUP)
        .unwrap()
        .name
        .clone();
    let mut there = here.clone();
    let v = there.changes().version();
    // Another node: a rule, an interface that takes an address another
    // interface gives up, and a removal.
    there.add_rules(&vpc, &group, &[rule("ingress", "tcp")]).unwrap();
    let vpc_id = there.vpc_by_name(&vpc).unwrap().id;
    let (moved, from) = {
        let i = there
            .interfaces()
            .find(|i| i.vpc == vpc_id && !i.addresses.is_empty())
            .unwrap();
        (i.addresses[0], i.name.clone())
    };
    there.delete_interface(&vpc, &from).unwrap();
    there
        .create_interface(&InterfaceSpec {
            vpc: vpc.clone(),
            name: "moved".into(),
            addresses: vec![moved.to_string()],
            ..InterfaceSpec::default()
        })
        .unwrap();
    let delta = there.delta_since(v).unwrap();
    let mut applied = here.clone();
    applied.apply_checked(delta.clone()).expect("applies");
    assert_eq!(applied, there);
    applied.check_invariants();
    assert_eq!(
        applied
            .interface_by_address(vpc_id, moved)
            .map(|i| i.name.as_str()),
        Some("moved"),
        "the indexes follow"
    );

    // A delta whose interface is bound to a group that does not exist, or
    // that removes a group still referred to, is refused whole.
    let mut bad = delta.clone();
    if let Some(i) = bad.interfaces.first_mut() {
        i.groups = vec![GroupId(999_999)];
    }
    let mut m = here.clone();
    let err = m.apply_checked(bad).unwrap_err();
    assert!(err.contains("missing group"), "{err}");
    assert_eq!(m, here, "nothing changed");
    let used = here.interfaces().flat_map(|i| i.groups.clone()).next().unwrap();
    let mut removal = Delta::empty(here.quotas(), here.next_ids());
    removal.removed.push(Changed::Group(used));
    let err = m.apply_checked(removal).unwrap_err();
    assert!(err.contains("missing group"), "{err}");
    assert_eq!(m, here);
}
