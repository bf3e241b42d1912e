//! How fast a change is live: a change to a model of `groups` x
//! `rules_per_group` rules, then the model recompiled into the next snapshot,
//! which is what the control thread publishes. Three kinds of change, each
//! timed `changes` times:
//! - **rule**: one rule added to, replaced in or deleted from a group (the
//!   three in turn);
//! - **membership**: an interface bound to one more group, then unbound
//!   again; every group is referenced by the rules of others, so the
//!   referencing groups' classifiers are rebuilt;
//! - **prefix list**: one of the [`PREFIX_LIST_ENTRIES`] entries of the prefix
//!   list that rules of every 50th group reference replaced.
//!
//! A full compilation from nothing is measured in the same run as the
//! baseline.
//!
//! The model: one VPC; rules are TCP ingress rules on distinct ports, every
//! tenth referencing another group (so membership sets are in play), rule 5
//! of every 50th group the prefix list; each interface is bound to up to
//! three groups. With [`SetMix::Random`] every interface picks its own three,
//! so nearly every interface has a set of its own; with [`SetMix::Shared`]
//! the interfaces share [`SHARED_SETS`] sets, as in a cloud where most
//! instances of a tier carry the same groups.

use std::time::Instant;

use rampart_control::compile::Compiler;
use rampart_control::model::{
    GroupSpec, InterfaceSpec, Model, PrefixListSpec, Quotas, RuleSpec, Scalar, VpcSpec,
};
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

/// Entries of the model's prefix list.
pub const PREFIX_LIST_ENTRIES: usize = 1000;

/// What a timed change changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Rule,
    Membership,
    PrefixList,
}

impl Change {
    pub const ALL: [Change; 3] = [Change::Rule, Change::Membership, Change::PrefixList];

    pub fn name(self) -> &'static str {
        match self {
            Change::Rule => "rule",
            Change::Membership => "membership",
            Change::PrefixList => "prefix_list",
        }
    }
}

/// The size of the model and of the measurement.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub groups: usize,
    pub rules_per_group: usize,
    pub interfaces: usize,
    pub changes: usize,
    pub set_mix: SetMix,
}

/// One kind of change; the model's figures repeat on every row.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub change: Change,
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
    } else if r == 5 && g.is_multiple_of(50) {
        "prefix-list:pl".to_owned()
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
    m.create_prefix_list(&prefix_list(None)).expect("prefix list");
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

/// The prefix list: [`PREFIX_LIST_ENTRIES`] /32s, entry `k % entries`
/// replaced by another address for change `Some((k, c))`.
pub fn prefix_list(change: Option<(usize, usize)>) -> PrefixListSpec {
    let mut cidrs: Vec<String> = (0..PREFIX_LIST_ENTRIES)
        .map(|e| format!("198.19.{}.{}/32", e / 256, e % 256))
        .collect();
    if let Some((k, c)) = change {
        cidrs[k % PREFIX_LIST_ENTRIES] = format!("198.19.{}.{}/32", 200 + c / 65536 % 50, c / 256 % 256);
    }
    PrefixListSpec {
        vpc: "prod".into(),
        name: "pl".into(),
        description: None,
        cidrs,
    }
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
        "prefix_list": [prefix_list(None)],
        "security_group": groups,
        "interface": interfaces,
    })
}

/// The same model as configuration-file tables (TOML), to follow an
/// `[appliance]` table.
pub fn config_toml(plan: Plan) -> String {
    toml::to_string(&document(plan)).expect("the model's tables are TOML")
}

/// The process's resident memory, MB (0 where /proc does not say).
fn rss_mb() -> f64 {
    rss_mb_of("self")
}

/// The resident memory of process `pid` (a number or `self`), MB (0 where
/// /proc does not say).
pub fn rss_mb_of(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Rule change `c`: add a rule to a group (c % 3 == 0), replace the rule
/// added last (1), delete it (2).
fn rule_change(m: &mut Model, c: usize, plan: Plan, added: &mut Option<(String, String)>) {
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

/// Membership change `c`: bind an interface to a group it is not bound to
/// (c even), unbind it again (c odd).
fn membership_change(m: &mut Model, c: usize, plan: Plan, bound: &mut Option<(String, String)>) {
    if let Some((iface, group)) = bound.take() {
        m.unbind_group("prod", &iface, &group).expect("unbind");
        return;
    }
    let (iface, group) = membership_target(c, plan);
    m.bind_group("prod", &iface, &group).expect("bind");
    *bound = Some((iface, group));
}

/// Membership change `c`'s interface and a group it is not bound to.
pub fn membership_target(c: usize, plan: Plan) -> (String, String) {
    let i = (c * 7919) % plan.interfaces;
    let current = interface(i, plan).groups.unwrap_or_default();
    let group = (0..plan.groups)
        .map(|k| format!("g{}", (c * 13 + k) % plan.groups))
        .find(|g| !current.contains(g))
        .expect("an interface has at most three groups of at least four");
    (format!("i{i}"), group)
}

/// The change of `kind` numbered `c`; `state` carries what the last one did.
fn change(m: &mut Model, kind: Change, c: usize, plan: Plan, state: &mut Option<(String, String)>) {
    match kind {
        Change::Rule => rule_change(m, c, plan, state),
        Change::Membership => membership_change(m, c, plan, state),
        Change::PrefixList => m
            .update_prefix_list("prod", "pl", &prefix_list(Some((c * 31, c))))
            .expect("prefix list"),
    }
}

/// Every kind of change timed on one model, one report each.
pub fn run(plan: Plan) -> Vec<Report> {
    let mut m = model(plan);
    let settings = Settings::default();
    let start = Instant::now();
    let (_, full) = Compiler::new().compile(&m, &settings);
    let full_compile_ms = start.elapsed().as_secs_f64() * 1e3;

    let mut compiler = Compiler::new();
    let first = compiler.compile(&m, &settings);
    let rss_mb = rss_mb();
    drop(first);
    let mut reports = Vec::new();
    for kind in Change::ALL {
        let mut times = Vec::new();
        let mut rebuilt = 0;
        let mut state = None;
        for c in 0..plan.changes.max(1) {
            let start = Instant::now();
            change(&mut m, kind, c, plan, &mut state);
            let (snapshot, stats) = compiler.compile(&m, &settings);
            times.push(start.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(snapshot);
            rebuilt = rebuilt.max(stats.rebuilt);
        }
        times.sort_by(f64::total_cmp);
        reports.push(Report {
            change: kind,
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
        });
    }
    reports
}
