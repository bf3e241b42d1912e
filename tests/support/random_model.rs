//! Random security-group models as configuration files, for the tests that
//! hold the pipeline against the reference evaluator and explain.
//!
//! Two VPCs (untagged, and VLAN 30) with the same addresses, three groups
//! each (basic or advanced, some stateless) with up to six rules drawn from
//! every rule kind of spec section 2 (protocols, ports, source ports, ICMP
//! type and code, CIDR, group and prefix-list remotes, local, deny and
//! priorities), and three interfaces each with an IPv4 and an IPv6 address
//! bound to one or two groups (one of them sometimes bare metal without
//! groups). Ports, ICMP types and addresses come from small sets, so that
//! rules and packets meet often.

use std::fmt::Write as _;
use std::net::IpAddr;

use proptest::prelude::RngExt as _;
use proptest::test_runner::TestRng;

/// The VPCs: name and VLAN.
pub const VPCS: [(&str, Option<u16>); 2] = [("blue", None), ("red", Some(30))];
/// The interfaces' addresses (the same in both VPCs), by family.
pub const V4: [&str; 3] = ["198.18.1.1", "198.18.1.2", "198.18.2.1"];
pub const V6: [&str; 3] = ["2001:db8:1::1", "2001:db8:1::2", "2001:db8:2::1"];
/// Addresses of no interface.
pub const OUTSIDE_V4: [&str; 2] = ["198.19.0.1", "198.18.9.9"];
pub const OUTSIDE_V6: [&str; 2] = ["2001:db8:ff::1", "2001:db8:9::9"];
/// The ports rules and packets use.
pub const PORTS: [u16; 5] = [22, 53, 80, 443, 8080];
/// ICMP types rules use (v4 and v6 ones; a rule uses those of its family).
pub const ICMP_TYPES: [u8; 4] = [0, 3, 8, 11];
pub const ICMPV6_TYPES: [u8; 4] = [1, 3, 128, 129];
/// A VLAN of no VPC.
pub const UNKNOWN_VLAN: u16 = 99;

/// Every address a packet may carry, in the family of `v6`.
pub fn addresses(v6: bool) -> Vec<IpAddr> {
    let (inside, outside): (&[&str], &[&str]) = if v6 {
        (&V6, &OUTSIDE_V6)
    } else {
        (&V4, &OUTSIDE_V4)
    };
    inside
        .iter()
        .chain(outside)
        .map(|a| a.parse().expect("an address"))
        .collect()
}

fn pick<'a, T>(rng: &mut TestRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn range(rng: &mut TestRng) -> String {
    let a = *pick(rng, &PORTS);
    if rng.random_bool(0.3) {
        let b = *pick(rng, &PORTS);
        format!("{}-{}", a.min(b), a.max(b))
    } else {
        a.to_string()
    }
}

/// A rule of group `g` (of `groups` in its VPC) as an inline TOML table.
fn rule(rng: &mut TestRng, groups: &[String]) -> String {
    let mut fields = vec![format!(
        "direction = \"{}\"",
        if rng.random_bool(0.6) { "ingress" } else { "egress" }
    )];
    let protocol = *pick(rng, &["tcp", "udp", "sctp", "icmp", "icmpv6", "all", "47"]);
    fields.push(format!("protocol = \"{protocol}\""));
    // The rule's family: a CIDR remote or local, or ICMP, fixes it.
    let family = match protocol {
        "icmp" => Some(false),
        "icmpv6" => Some(true),
        _ if rng.random_bool(0.5) => Some(rng.random_bool(0.5)),
        _ => None,
    };
    if matches!(protocol, "tcp" | "udp" | "sctp") {
        if rng.random_bool(0.8) {
            fields.push(format!("ports = \"{}\"", range(rng)));
        }
        if rng.random_bool(0.15) {
            fields.push(format!("source_ports = \"{}\"", range(rng)));
        }
    }
    if matches!(protocol, "icmp" | "icmpv6") && rng.random_bool(0.7) {
        let types = if protocol == "icmp" {
            ICMP_TYPES
        } else {
            ICMPV6_TYPES
        };
        fields.push(format!("icmp_type = {}", pick(rng, &types)));
        if rng.random_bool(0.3) {
            fields.push(format!("icmp_code = {}", rng.random_range(0..2)));
        }
    }
    let cidr = |rng: &mut TestRng, v6: bool| {
        let (inside, outside): (&[&str], &[&str]) = if v6 {
            (&V6, &OUTSIDE_V6)
        } else {
            (&V4, &OUTSIDE_V4)
        };
        let all = [inside, outside].concat();
        let host = *pick(rng, &all);
        match (v6, rng.random_range(0..3)) {
            (false, 0) => format!("{host}/32"),
            (false, 1) => "198.18.0.0/16".to_owned(),
            (false, _) => "0.0.0.0/0".to_owned(),
            (true, 0) => format!("{host}/128"),
            (true, 1) => "2001:db8::/32".to_owned(),
            (true, _) => "::/0".to_owned(),
        }
    };
    match rng.random_range(0..10) {
        0..=3 => {
            if let Some(v6) = family {
                fields.push(format!("remote = \"{}\"", cidr(rng, v6)));
            }
        }
        4..=5 => fields.push(format!("remote = \"group:{}\"", pick(rng, groups))),
        6 => fields.push("remote = \"prefix-list:near\"".to_owned()),
        _ => {}
    }
    if let Some(v6) = family {
        if rng.random_bool(0.1) {
            fields.push(format!("local = \"{}\"", cidr(rng, v6)));
        }
        let has_cidr = fields
            .iter()
            .any(|f| f.starts_with("remote = \"") && f.contains('/'))
            || fields.iter().any(|f| f.starts_with("local"));
        if !has_cidr && !matches!(protocol, "icmp" | "icmpv6") {
            fields.push(format!("ethertype = \"{}\"", if v6 { "ipv6" } else { "ipv4" }));
        }
    }
    if rng.random_bool(0.25) {
        fields.push("action = \"deny\"".to_owned());
    }
    fields.push(format!("priority = {}", rng.random_range(1..4)));
    format!("{{ {} }}", fields.join(", "))
}

/// A random model (and settings) as a configuration file.
pub fn random_model(rng: &mut TestRng) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "[settings]\nunprotected = \"{}\"\n",
        if rng.random_bool(0.5) { "forward" } else { "drop" }
    );
    for (vpc, vlan) in VPCS {
        let _ = writeln!(s, "[[vpc]]\nname = \"{vpc}\"");
        if let Some(v) = vlan {
            let _ = writeln!(s, "vlan = {v}");
        }
        let _ = writeln!(
            s,
            "\n[[prefix_list]]\nvpc = \"{vpc}\"\nname = \"near\"\ncidrs = [\"198.18.1.0/24\", \"2001:db8:1::/48\", \"{}\"]\n",
            pick(rng, &OUTSIDE_V4)
        );
        let groups: Vec<String> = (0..3).map(|g| format!("g{g}")).collect();
        for g in &groups {
            let advanced = rng.random_bool(0.4);
            let _ = writeln!(
                s,
                "[[security_group]]\nvpc = \"{vpc}\"\nname = \"{g}\"\nkind = \"{}\"\nstateful = {}",
                if advanced { "advanced" } else { "basic" },
                rng.random_bool(0.85)
            );
            if rng.random_bool(0.3) {
                let _ = writeln!(
                    s,
                    "intra_group = \"{}\"",
                    if rng.random_bool(0.5) { "accept" } else { "drop" }
                );
            }
            if rng.random_bool(0.2) {
                let _ = writeln!(s, "default_rules = false");
            }
            let rules: Vec<String> = (0..rng.random_range(0..7)).map(|_| rule(rng, &groups)).collect();
            let _ = writeln!(s, "rules = [\n  {}\n]\n", rules.join(",\n  "));
        }
        for (i, (v4, v6)) in V4.iter().zip(V6).enumerate() {
            let _ = writeln!(
                s,
                "[[interface]]\nvpc = \"{vpc}\"\nname = \"{vpc}-{i}\"\naddresses = [\"{v4}\", \"{v6}\"]"
            );
            if i == 2 && rng.random_bool(0.2) {
                let _ = writeln!(s, "bare_metal = true\ngroups = []\n");
                continue;
            }
            let mut bound = vec![pick(rng, &groups).clone()];
            if rng.random_bool(0.4) {
                let other = pick(rng, &groups).clone();
                if !bound.contains(&other) {
                    bound.push(other);
                }
            }
            let quoted: Vec<String> = bound.iter().map(|g| format!("\"{g}\"")).collect();
            let _ = writeln!(s, "groups = [{}]\n", quoted.join(", "));
        }
    }
    s
}
