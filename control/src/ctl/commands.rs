//! One function per noun of `rampart ctl`: each makes its calls and says
//! what to print.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::client::{vpc_path, Answer, Client, Failure, Method};
use super::show::{fields, join, or_dash, table};
use super::{GroupCmd, InterfaceCmd, Output, PrefixListCmd, RuleAdd, RuleCmd};
use crate::api::types::{
    CopyRequest, Created, Enforced, ExplainRequest, Explained, FleetView, GroupCreated, GroupList, GroupView,
    Health, InterfaceList, InterfaceView, ModelDocument, Nothing, PrefixListList, PrefixListView,
    ReloadRequest, Replaced, RuleIds, Stats, VpcList,
};
use crate::model::{GroupSpec, InterfaceSpec, PrefixListSpec, RuleSpec, Scalar};

/// A change's answer: `ok: enforced at generation N` (and the store's
/// revision on a node of a fleet).
fn done(a: Answer<Enforced>) -> Output {
    let text = match a.body.revision {
        Some(r) => format!(
            "ok: enforced at generation {}, store revision {r}\n",
            a.body.generation
        ),
        None => format!("ok: enforced at generation {}\n", a.body.generation),
    };
    Output::ok(a.json, text)
}

/// A spec as the body of a request under `/v1/vpcs/{vpc}`: the path names
/// the VPC, so the spec's own `vpc` is left out.
fn in_vpc(spec: &impl Serialize) -> Result<Value, Failure> {
    let mut body = serde_json::to_value(spec).map_err(|e| Failure::Local(format!("the request: {e}")))?;
    if let Value::Object(map) = &mut body {
        map.remove("vpc");
    }
    Ok(body)
}

pub fn health(c: &Client) -> Result<Output, Failure> {
    let a = c.get::<Health>("/health")?;
    let h = &a.body;
    let text = format!(
        "{}: generation {} published, {} enforced by all {} workers\n",
        h.status, h.generation, h.enforced_generation, h.workers
    );
    Ok(Output::ok(a.json, text))
}

pub fn stats(c: &Client) -> Result<Output, Failure> {
    let a = c.get::<Stats>("/v1/stats")?;
    let v = &a.body;
    let ports: Vec<Vec<String>> = v
        .ports
        .iter()
        .map(|p| {
            vec![
                p.port.clone(),
                p.received.to_string(),
                p.forwarded.to_string(),
                p.dropped.to_string(),
            ]
        })
        .collect();
    let mut text = table(&["PORT", "RECEIVED", "FORWARDED", "DROPPED"], &ports);
    let drops: Vec<Vec<String>> = v
        .drops
        .iter()
        .map(|(k, n)| vec![k.clone(), n.to_string()])
        .collect();
    if !drops.is_empty() {
        text.push('\n');
        text.push_str(&table(&["DROP REASON", "FRAMES"], &drops));
    }
    let f = &v.flows;
    let _ = writeln!(
        text,
        "\nconnections: {} active of {}; {} created, {} expired, {} evicted, {} revoked; generation {}",
        f.active, f.capacity, f.created, f.expired, f.evicted, f.revoked, v.generation
    );
    let rules: Vec<Vec<String>> = v
        .rules
        .iter()
        .map(|r| {
            vec![
                r.flows.to_string(),
                r.id.clone(),
                or_dash(r.group.as_ref()),
                or_dash(r.text.as_ref()),
            ]
        })
        .collect();
    if !rules.is_empty() {
        text.push('\n');
        text.push_str(&table(&["FLOWS", "RULE", "GROUP", "TEXT"], &rules));
    }
    Ok(Output::ok(a.json, text))
}

pub fn vpcs(c: &Client) -> Result<Output, Failure> {
    let a = c.get::<VpcList>("/v1/vpcs")?;
    let rows: Vec<Vec<String>> = a
        .body
        .vpcs
        .iter()
        .map(|v| {
            vec![
                v.id.clone(),
                v.name.clone(),
                or_dash(v.vlan),
                v.groups.to_string(),
                v.interfaces.to_string(),
            ]
        })
        .collect();
    let text = table(&["ID", "NAME", "VLAN", "GROUPS", "INTERFACES"], &rows);
    Ok(Output::ok(a.json, text))
}

/// A group and its rules.
fn group_text(g: &GroupView) -> String {
    let mut out = format!(
        "{} {} (vpc {}, {}, {})\n",
        g.id,
        g.name,
        or_dash(g.vpc.as_ref()),
        g.kind,
        if g.stateful { "stateful" } else { "stateless" }
    );
    let rows: Vec<Vec<String>> = g
        .rules
        .iter()
        .map(|r| vec![r.id.clone(), r.text.clone()])
        .collect();
    out.push_str(&table(&["RULE", "TEXT"], &rows));
    out
}

pub fn group(c: &Client, cmd: &GroupCmd) -> Result<Output, Failure> {
    let groups = |vpc: &str| format!("{}/security-groups", vpc_path(vpc));
    let one = |vpc: &str, g: &str| format!("{}/{}", groups(vpc), super::client::seg(g));
    Ok(match cmd {
        GroupCmd::List { vpc } => {
            let a = c.get::<GroupList>(&groups(vpc))?;
            let rows: Vec<Vec<String>> = a
                .body
                .security_groups
                .iter()
                .map(|g| {
                    vec![
                        g.id.clone(),
                        g.name.clone(),
                        g.kind.clone(),
                        g.rules.len().to_string(),
                        g.description.clone(),
                    ]
                })
                .collect();
            let text = table(&["ID", "NAME", "KIND", "RULES", "DESCRIPTION"], &rows);
            Output::ok(a.json, text)
        }
        GroupCmd::Show { vpc, group } => {
            let a = c.get::<GroupView>(&one(vpc, group))?;
            let text = group_text(&a.body);
            Output::ok(a.json, text)
        }
        GroupCmd::Create {
            vpc,
            name,
            kind,
            description,
            stateless,
        } => {
            let spec = GroupSpec {
                name: name.clone(),
                kind: kind.clone(),
                description: description.clone(),
                stateful: stateless.then_some(false),
                ..GroupSpec::default()
            };
            let a: Answer<Enforced<GroupCreated>> =
                c.call(Method::Post, &groups(vpc), Some(&in_vpc(&spec)?))?;
            let mut text = format!("created {}\n", a.body.answer.id);
            if let Some(g) = &a.body.answer.security_group {
                text.push_str(&group_text(g));
            }
            Output::ok(a.json, text)
        }
        GroupCmd::Delete { vpc, group } => done(c.call(Method::Delete, &one(vpc, group), None::<&()>)?),
        GroupCmd::Copy { vpc, group, new_name } => {
            let req = CopyRequest {
                name: new_name.clone(),
            };
            let a: Answer<Enforced<Created>> =
                c.call(Method::Post, &format!("{}/copy", one(vpc, group)), Some(&req))?;
            let text = format!("created {}\n", a.body.answer.id);
            Output::ok(a.json, text)
        }
    })
}

pub fn rule(c: &Client, cmd: &RuleCmd) -> Result<Output, Failure> {
    let rules = |vpc: &str, group: &str| {
        format!(
            "{}/security-groups/{}/rules",
            vpc_path(vpc),
            super::client::seg(group)
        )
    };
    Ok(match cmd {
        RuleCmd::Add(add) => {
            let RuleAdd {
                vpc,
                group,
                direction,
                protocol,
                ports,
                source_ports,
                remote,
                local,
                ethertype,
                icmp_type,
                icmp_code,
                action,
                priority,
                description,
            } = &**add;
            let spec = RuleSpec {
                direction: direction.clone(),
                protocol: Scalar::Text(protocol.clone()),
                ports: ports.clone().map(Scalar::Text),
                source_ports: source_ports.clone().map(Scalar::Text),
                icmp_type: *icmp_type,
                icmp_code: *icmp_code,
                remote: remote.clone(),
                local: local.clone(),
                ethertype: ethertype.clone(),
                action: action.clone(),
                priority: *priority,
                description: description.clone(),
            };
            let a: Answer<Enforced<RuleIds>> = c.call(Method::Post, &rules(vpc, group), Some(&spec))?;
            let text = format!(
                "added {}; enforced at generation {}\n",
                join(&a.body.answer.ids, ", "),
                a.body.generation
            );
            Output::ok(a.json, text)
        }
        RuleCmd::Delete { vpc, group, rule } => {
            let path = format!("{}/{}", rules(vpc, group), super::client::seg(rule));
            done(c.call(Method::Delete, &path, None::<&()>)?)
        }
    })
}

/// `created ID; enforced at generation N`.
fn created(a: Answer<Enforced<Created>>) -> Output {
    let text = format!(
        "created {}; enforced at generation {}\n",
        a.body.answer.id, a.body.generation
    );
    Output::ok(a.json, text)
}

pub fn interface(c: &Client, cmd: &InterfaceCmd) -> Result<Output, Failure> {
    let all = |vpc: &str| format!("{}/interfaces", vpc_path(vpc));
    let one = |vpc: &str, name: &str| format!("{}/{}", all(vpc), super::client::seg(name));
    let group =
        |vpc: &str, name: &str, g: &str| format!("{}/groups/{}", one(vpc, name), super::client::seg(g));
    Ok(match cmd {
        InterfaceCmd::List { vpc } => {
            let a = c.get::<InterfaceList>(&all(vpc))?;
            let rows: Vec<Vec<String>> = a
                .body
                .interfaces
                .iter()
                .map(|i| {
                    vec![
                        i.id.clone(),
                        i.name.clone(),
                        join(&i.addresses, ","),
                        join(&i.groups, ","),
                    ]
                })
                .collect();
            let text = table(&["ID", "NAME", "ADDRESSES", "GROUPS"], &rows);
            Output::ok(a.json, text)
        }
        InterfaceCmd::Create {
            vpc,
            name,
            addresses,
            groups,
            mac,
            bare_metal,
        } => {
            let spec = InterfaceSpec {
                name: name.clone(),
                addresses: addresses.clone(),
                mac: mac.clone(),
                groups: (!groups.is_empty()).then(|| groups.clone()),
                bare_metal: bare_metal.then_some(true),
                ..InterfaceSpec::default()
            };
            created(c.call(Method::Post, &all(vpc), Some(&in_vpc(&spec)?))?)
        }
        InterfaceCmd::Show { vpc, name } => {
            let a = c.get::<InterfaceView>(&one(vpc, name))?;
            let i = &a.body;
            let text = fields(&[
                ("id", i.id.clone()),
                ("name", i.name.clone()),
                ("vpc", or_dash(i.vpc.as_ref())),
                ("addresses", join(&i.addresses, ", ")),
                ("mac", or_dash(i.mac.as_ref())),
                ("groups", join(&i.groups, ", ")),
                ("bare_metal", i.bare_metal.to_string()),
            ]);
            Output::ok(a.json, text)
        }
        InterfaceCmd::Bind { vpc, name, group: g } => {
            done(c.call(Method::Put, &group(vpc, name, g), None::<&()>)?)
        }
        InterfaceCmd::Unbind { vpc, name, group: g } => {
            done(c.call(Method::Delete, &group(vpc, name, g), None::<&()>)?)
        }
        InterfaceCmd::Delete { vpc, name } => done(c.call(Method::Delete, &one(vpc, name), None::<&()>)?),
    })
}

pub fn prefix_list(c: &Client, cmd: &PrefixListCmd) -> Result<Output, Failure> {
    let all = |vpc: &str| format!("{}/prefix-lists", vpc_path(vpc));
    let one = |vpc: &str, name: &str| format!("{}/{}", all(vpc), super::client::seg(name));
    Ok(match cmd {
        PrefixListCmd::List { vpc } => {
            let a = c.get::<PrefixListList>(&all(vpc))?;
            let rows: Vec<Vec<String>> = a
                .body
                .prefix_lists
                .iter()
                .map(|p| vec![p.id.clone(), p.name.clone(), join(&p.cidrs, ",")])
                .collect();
            let text = table(&["ID", "NAME", "CIDRS"], &rows);
            Output::ok(a.json, text)
        }
        PrefixListCmd::Create {
            vpc,
            name,
            cidrs,
            description,
        } => {
            let spec = PrefixListSpec {
                name: name.clone(),
                cidrs: cidrs.clone(),
                description: description.clone(),
                ..PrefixListSpec::default()
            };
            created(c.call(Method::Post, &all(vpc), Some(&in_vpc(&spec)?))?)
        }
        PrefixListCmd::Set { vpc, name, cidrs } => {
            let spec = PrefixListSpec {
                name: name.clone(),
                cidrs: cidrs.clone(),
                ..PrefixListSpec::default()
            };
            let a: Answer<Enforced<Nothing>> = c.call(Method::Put, &one(vpc, name), Some(&in_vpc(&spec)?))?;
            done(a)
        }
        PrefixListCmd::Delete { vpc, name } => done(c.call(Method::Delete, &one(vpc, name), None::<&()>)?),
        PrefixListCmd::Show { vpc, name } => {
            let a = c.get::<PrefixListView>(&one(vpc, name))?;
            let p = &a.body;
            let text = fields(&[
                ("id", p.id.clone()),
                ("name", p.name.clone()),
                ("vpc", or_dash(p.vpc.as_ref())),
                ("description", p.description.clone()),
                ("cidrs", join(&p.cidrs, ", ")),
            ]);
            Output::ok(a.json, text)
        }
    })
}

/// The model tables of a configuration file, as `PUT /v1/model` takes them.
fn model_document(file: &Path) -> Result<ModelDocument, Failure> {
    let local = |e: &dyn std::fmt::Display| Failure::Local(format!("{}: {e}", file.display()));
    let text = std::fs::read_to_string(file).map_err(|e| local(&e))?;
    let doc: toml::Table = toml::from_str(&text).map_err(|e| local(&e))?;
    let table = |key: &str| -> Result<Vec<Value>, Failure> {
        match doc.get(key) {
            None => Ok(Vec::new()),
            Some(v) => serde_json::from_value(serde_json::to_value(v).map_err(|e| local(&e))?)
                .map_err(|e| local(&format!("[[{key}]]: {e}"))),
        }
    };
    Ok(ModelDocument {
        quotas: doc
            .get("quotas")
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| local(&e))?,
        vpc: table("vpc")?,
        prefix_list: table("prefix_list")?,
        security_group: table("security_group")?,
        interface: table("interface")?,
    })
}

pub fn apply(c: &Client, file: &Path) -> Result<Output, Failure> {
    let doc = model_document(file)?;
    let a: Answer<Enforced<Replaced>> = c.call(Method::Put, "/v1/model", Some(&doc))?;
    let rows: Vec<Vec<String>> = a
        .body
        .answer
        .changed
        .kinds()
        .iter()
        .map(|(kind, n)| {
            vec![
                (*kind).to_owned(),
                n.added.to_string(),
                n.removed.to_string(),
                n.changed.to_string(),
            ]
        })
        .collect();
    let mut text = table(&["OBJECTS", "ADDED", "REMOVED", "CHANGED"], &rows);
    let _ = writeln!(text, "enforced at generation {}", a.body.generation);
    Ok(Output::ok(a.json, text))
}

pub fn explain(c: &Client, vpc: Option<&String>, packet: &[String]) -> Result<Output, Failure> {
    let req = ExplainRequest {
        packet: packet.join(" "),
        vlan: None,
        vpc: vpc.cloned(),
    };
    let a: Answer<Explained> = c.call(Method::Post, "/v1/explain", Some(&req))?;
    Ok(Output {
        text: a.body.text.clone(),
        ok: a.body.allowed,
        json: a.json,
    })
}

pub fn reload(c: &Client, force: bool) -> Result<Output, Failure> {
    Ok(done(c.call(
        Method::Post,
        "/v1/reload",
        Some(&ReloadRequest { force }),
    )?))
}

pub fn fleet_status(c: &Client) -> Result<Output, Failure> {
    let a = c.get::<FleetView>("/v1/fleet")?;
    let f = &a.body;
    let rows: Vec<Vec<String>> = f
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.revision.to_string(),
                (f.latest_revision - n.revision).max(0).to_string(),
                n.generation.to_string(),
                n.api.clone(),
                n.version.clone(),
            ]
        })
        .collect();
    let mut text = format!(
        "store {} prefix {}: {}\nthis node {}: enforces revision {} of {} (lag {:.1} s)\n",
        f.endpoints.join(","),
        f.prefix,
        if f.store_up {
            "up".to_owned()
        } else {
            format!("UNREACHABLE ({})", f.store_error)
        },
        f.node,
        f.revision,
        f.latest_revision,
        f.lag_seconds
    );
    text.push_str(&table(
        &["NODE", "REVISION", "BEHIND", "GENERATION", "API", "VERSION"],
        &rows,
    ));
    Ok(Output::ok(a.json, text))
}
