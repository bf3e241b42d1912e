//! How fast a rule change is live: one rule added to, replaced in or deleted
//! from a group of a model of `groups` x `rules_per_group` rules (the three in
//! turn), then the model recompiled into the next snapshot, which is what the
//! control thread publishes. A full compilation from nothing is measured in
//! the same run as the baseline.
//!
//! The model: one VPC; rules are TCP ingress rules on distinct ports, every
//! tenth referencing another group (so membership sets are in play); each
//! interface is bound to up to three groups. With [`SetMix::Random`] every
//! interface picks its own three, so nearly every interface has a set of its
//! own; with [`SetMix::Shared`] the interfaces share [`SHARED_SETS`] sets, as
//! in a cloud where most instances of a tier carry the same groups.

use std::time::Instant;

use rampart_control::compile::Compiler;
use rampart_control::model::{GroupSpec, InterfaceSpec, Model, Quotas, RuleSpec, Scalar, VpcSpec};
use rampart_control::settings::Settings;
use serde::Serialize;

use crate::classify::percentile;

/// How the interfaces' group sets are distributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SetMix {
    /// Every interface its own mix of groups.
    Random,
    /// The interfaces share [`SHARED_SETS`] mixes.
    Shared,
}

/// How many group sets the interfaces share with [`SetMix::Shared`].
pub const SHARED_SETS: usize = 300;

/// The size of the model and of the measurement.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub groups: usize,
    pub rules_per_group: usize,
    pub interfaces: usize,
    pub changes: usize,
    pub set_mix: SetMix,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub groups: usize,
    pub rules: usize,
    pub interfaces: usize,
    pub set_mix: SetMix,
    pub group_sets: usize,
    pub full_compile_ms: f64,
    pub update_median_ms: f64,
    pub update_p99_ms: f64,
    pub update_max_ms: f64,
    pub rebuilt_per_update: usize,
    /// The process's resident memory with the model and its compiled
    /// snapshot, MB.
    pub rss_mb: f64,
}

fn rule(g: usize, r: usize, groups: usize) -> RuleSpec {
    let remote = if r.is_multiple_of(10) {
        format!("group:g{}", (g + r / 10 + 1) % groups)
    } else {
        format!("198.18.{}.0/24", r % 250)
    };
    RuleSpec {
        direction: "ingress".into(),
        protocol: Scalar::from("tcp"),
        ports: Some(Scalar::Int(i64::try_from(1000 + r).unwrap_or(1))),
        remote: Some(remote),
        priority: Some(i64::try_from(1 + r % 50).unwrap_or(1)),
        ..RuleSpec::default()
    }
}

/// Builds the model; panics on a model error, which would be a benchmark bug.
pub fn model(plan: Plan) -> Model {
    let quotas = Quotas {
        rules_per_group: plan.rules_per_group + plan.changes + 8,
        groups_per_vpc: plan.groups + 1,
        ..Quotas::default()
    };
    let mut m = Model::new(quotas);
    m.create_vpc(&VpcSpec {
        name: "prod".into(),
        vlan: None,
        description: None,
    })
    .expect("vpc");
    for g in 0..plan.groups {
        let spec = GroupSpec {
            vpc: "prod".into(),
            name: format!("g{g}"),
            default_rules: Some(false),
            ..GroupSpec::default()
        };
        m.create_group(&spec).expect("group");
    }
    for g in 0..plan.groups {
        let rules: Vec<RuleSpec> = (0..plan.rules_per_group)
            .map(|r| rule(g, r, plan.groups))
            .collect();
        m.replace_rules("prod", &format!("g{g}"), &rules).expect("rules");
    }
    for i in 0..plan.interfaces {
        m.create_interface(&interface(i, plan)).expect("interface");
    }
    m
}

/// Interface `i`: one address, bound to up to three groups (its own mix,
/// or one of the shared ones).
fn interface(i: usize, plan: Plan) -> InterfaceSpec {
    let k = match plan.set_mix {
        SetMix::Random => i,
        SetMix::Shared => i % SHARED_SETS,
    };
    let picks = [
        k % plan.groups,
        (k / plan.groups * 7 + k * 3 + 1) % plan.groups,
        (k * 11 + 5) % plan.groups,
    ];
    let mut groups: Vec<String> = picks.iter().map(|g| format!("g{g}")).collect();
    groups.sort();
    groups.dedup();
    InterfaceSpec {
        vpc: "prod".into(),
        name: format!("i{i}"),
        addresses: vec![format!("198.{}.{}.{}", 18 + i / 65536, (i / 256) % 256, i % 256)],
        groups: Some(groups),
        ..InterfaceSpec::default()
    }
}

/// The same model as the configuration document the API's `PUT /v1/model`
/// takes (the config file's tables as JSON).
pub fn document(plan: Plan) -> serde_json::Value {
    let groups: Vec<GroupSpec> = (0..plan.groups)
        .map(|g| GroupSpec {
            vpc: "prod".into(),
            name: format!("g{g}"),
            default_rules: Some(false),
            rules: (0..plan.rules_per_group)
                .map(|r| rule(g, r, plan.groups))
                .collect(),
            ..GroupSpec::default()
        })
        .collect();
    let interfaces: Vec<InterfaceSpec> = (0..plan.interfaces).map(|i| interface(i, plan)).collect();
    serde_json::json!({
        "quotas": {
            "rules_per_group": plan.rules_per_group + plan.changes + 8,
            "groups_per_vpc": plan.groups + 1,
            "groups_per_interface": 16,
            "interfaces": plan.interfaces.max(100_000),
        },
        "vpc": [{ "name": "prod" }],
        "security_group": groups,
        "interface": interfaces,
    })
}

/// The process's resident memory, MB (0 where /proc does not say).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Change `c`: add a rule to a group (c % 3 == 0), replace the rule added
/// last (1), delete it (2).
fn change(m: &mut Model, c: usize, plan: Plan, added: &mut Option<(String, String)>) {
    let rule = |port: usize| RuleSpec {
        direction: "ingress".into(),
        protocol: Scalar::from("udp"),
        ports: Some(Scalar::Int(i64::try_from(20000 + port).unwrap_or(1))),
        ..RuleSpec::default()
    };
    match (c % 3, added.take()) {
        (1, Some((group, id))) => {
            m.update_rule("prod", &group, &id, &rule(c)).expect("replace");
            *added = Some((group, id));
        }
        (2, Some((group, id))) => m.delete_rule("prod", &group, &id).expect("delete"),
        _ => {
            let group = format!("g{}", (c * 37) % plan.groups);
            let ids = m.add_rules("prod", &group, &[rule(c)]).expect("add");
            *added = Some((group, ids[0].to_string()));
        }
    }
}

pub fn run(plan: Plan) -> Report {
    let mut m = model(plan);
    let settings = Settings::default();
    let start = Instant::now();
    let (_, full) = Compiler::new().compile(&m, &settings);
    let full_compile_ms = start.elapsed().as_secs_f64() * 1e3;

    let mut compiler = Compiler::new();
    let first = compiler.compile(&m, &settings);
    let rss_mb = rss_mb();
    drop(first);
    let mut times = Vec::new();
    let mut rebuilt = 0;
    let mut added = None;
    for c in 0..plan.changes.max(1) {
        let start = Instant::now();
        change(&mut m, c, plan, &mut added);
        let (snapshot, stats) = compiler.compile(&m, &settings);
        times.push(start.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(snapshot);
        rebuilt = rebuilt.max(stats.rebuilt);
    }
    times.sort_by(f64::total_cmp);
    Report {
        groups: plan.groups,
        rules: m.rule_count(),
        interfaces: plan.interfaces,
        set_mix: plan.set_mix,
        group_sets: full.group_sets,
        full_compile_ms,
        update_median_ms: percentile(&times, 0.5),
        update_p99_ms: percentile(&times, 0.99),
        update_max_ms: times[times.len() - 1],
        rebuilt_per_update: rebuilt,
        rss_mb,
    }
}
