//! `rampart ctl`: drives a running appliance through its REST API
//! (docs/api.md). Readable tables by default, the API's JSON with `--json`.
//!
//! Exit codes: 0 on success, 1 when the appliance refused the request (the
//! API's error is printed), 2 on bad input here or when the appliance cannot
//! be reached. `explain` exits 0 when the packet would pass, 1 when not.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::daemon::{DEFAULT_LISTEN, DEFAULT_STATE_DIR};

/// Where the appliance is, and how to answer.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The API's base URL.
    #[arg(long, global = true, default_value_t = format!("http://{DEFAULT_LISTEN}"))]
    url: String,
    /// The API token's file.
    #[arg(long, global = true, default_value_t = format!("{DEFAULT_STATE_DIR}/token"))]
    token_file: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Is the appliance up; which snapshot generation it publishes and enforces.
    Health,
    /// Counters: frames per port, drops by reason, connections, rule hits.
    Stats,
    /// List VPCs.
    Vpcs,
    /// Security groups: list, show, create, delete, copy.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Rules of a group: add, delete.
    #[command(subcommand)]
    Rule(RuleCmd),
    /// Protected interfaces: list, show, create, bind, unbind, delete.
    #[command(subcommand)]
    Interface(InterfaceCmd),
    /// Prefix lists: list, show, create, set, delete.
    #[command(subcommand)]
    PrefixList(PrefixListCmd),
    /// Replace the whole model with a configuration file's (its [[vpc]],
    /// [[security_group]], [[interface]], [[prefix_list]] and [quotas]); prints
    /// what changed.
    Apply {
        /// Configuration file (TOML, docs/config.md); [settings] and
        /// [appliance] in it are ignored (they change at a restart).
        #[arg(long, short)]
        file: PathBuf,
    },
    /// Would this packet pass the live model, and why (see `rampart explain`).
    Explain {
        /// Name the VPC (default: the untagged one).
        #[arg(long)]
        vpc: Option<String>,
        /// The packet, e.g. `tcp 198.51.100.7:40000 -> 198.18.1.10:443`.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        packet: Vec<String>,
    },
    /// Re-read the appliance's config file.
    Reload {
        /// Apply it even though it drops changes made through the API.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCmd {
    List {
        #[arg(long)]
        vpc: String,
    },
    Show {
        #[arg(long)]
        vpc: String,
        group: String,
    },
    Create {
        #[arg(long)]
        vpc: String,
        name: String,
        /// basic or advanced.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Stateless group.
        #[arg(long)]
        stateless: bool,
    },
    Delete {
        #[arg(long)]
        vpc: String,
        group: String,
    },
    Copy {
        #[arg(long)]
        vpc: String,
        group: String,
        new_name: String,
    },
}

#[derive(Debug, Subcommand)]
enum RuleCmd {
    /// Add one rule to a group.
    Add(Box<RuleAdd>),
    /// Delete a rule by id (sgr-N).
    Delete {
        #[arg(long)]
        vpc: String,
        #[arg(long)]
        group: String,
        rule: String,
    },
}

#[derive(Debug, Args)]
struct RuleAdd {
    #[arg(long)]
    vpc: String,
    #[arg(long)]
    group: String,
    /// ingress or egress.
    #[arg(long)]
    direction: String,
    /// tcp, udp, icmp, icmpv6, sctp, all, or a number.
    #[arg(long)]
    protocol: String,
    /// A port or a range, e.g. 443 or 8000-8080.
    #[arg(long)]
    ports: Option<String>,
    #[arg(long)]
    source_ports: Option<String>,
    /// A CIDR, group:NAME or prefix-list:NAME.
    #[arg(long)]
    remote: Option<String>,
    #[arg(long)]
    local: Option<String>,
    /// ipv4 or ipv6.
    #[arg(long)]
    ethertype: Option<String>,
    #[arg(long)]
    icmp_type: Option<i64>,
    #[arg(long)]
    icmp_code: Option<i64>,
    /// allow or deny.
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    priority: Option<i64>,
    #[arg(long)]
    description: Option<String>,
}

#[derive(Debug, Subcommand)]
enum InterfaceCmd {
    List {
        #[arg(long)]
        vpc: String,
    },
    /// Protect an interface: its addresses and groups (default: the VPC's
    /// default group).
    Create {
        #[arg(long)]
        vpc: String,
        name: String,
        /// An address; repeatable.
        #[arg(long = "address", required = true)]
        addresses: Vec<String>,
        /// A group to bind; repeatable, in order.
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long)]
        mac: Option<String>,
        /// Not filtered when it has no group.
        #[arg(long)]
        bare_metal: bool,
    },
    Show {
        #[arg(long)]
        vpc: String,
        name: String,
    },
    Bind {
        #[arg(long)]
        vpc: String,
        name: String,
        group: String,
    },
    Unbind {
        #[arg(long)]
        vpc: String,
        name: String,
        group: String,
    },
    Delete {
        #[arg(long)]
        vpc: String,
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum PrefixListCmd {
    List {
        #[arg(long)]
        vpc: String,
    },
    Create {
        #[arg(long)]
        vpc: String,
        name: String,
        /// A CIDR; repeatable.
        #[arg(long = "cidr")]
        cidrs: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Replace a prefix list's CIDRs.
    Set {
        #[arg(long)]
        vpc: String,
        name: String,
        #[arg(long = "cidr")]
        cidrs: Vec<String>,
    },
    Delete {
        #[arg(long)]
        vpc: String,
        name: String,
    },
    Show {
        #[arg(long)]
        vpc: String,
        name: String,
    },
}

/// Why a command failed.
enum Failure {
    /// Bad input here, or the appliance cannot be reached (exit 2).
    Local(String),
    /// The appliance answered with an error (exit 1).
    Refused(u16, Value),
}

struct Client {
    agent: ureq::Agent,
    url: String,
    token: String,
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Client {
    fn new(args: &CtlArgs) -> Result<Client, Failure> {
        let token = std::fs::read_to_string(&args.token_file)
            .map_err(|e| Failure::Local(format!("--token-file {}: {e}", args.token_file)))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(Client {
            agent,
            url: args.url.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.url);
        let auth = format!("Bearer {}", self.token);
        let body = body.map(Value::to_string).unwrap_or_default();
        let sent = match method {
            "GET" => self.agent.get(&url).header("Authorization", &auth).call(),
            "DELETE" => self.agent.delete(&url).header("Authorization", &auth).call(),
            "PUT" => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .send(body.as_str()),
            "PATCH" => self
                .agent
                .patch(&url)
                .header("Authorization", &auth)
                .send(body.as_str()),
            _ => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send(body.as_str()),
        };
        let mut resp = sent.map_err(|e| {
            Failure::Local(format!(
                "cannot reach rampart at {}: {e} (is `rampart run` running? see --url)",
                self.url
            ))
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| Failure::Local(format!("reading the answer: {e}")))?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status == 200 {
            Ok(value)
        } else {
            Err(Failure::Refused(status, value))
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A table: a header row and rows, columns padded to their widest cell.
/// One row per element of the JSON array `list`, its `fields` in order.
fn rows(list: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|x| fields.iter().map(|f| s(&x[*f])).collect())
        .collect()
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// One object as `key: value` lines (lists joined with commas).
fn fields(v: &Value, keys: &[&str]) -> String {
    let mut out = String::new();
    for k in keys {
        let value = match &v[*k] {
            Value::Array(items) => items.iter().map(s).collect::<Vec<_>>().join(", "),
            other => s(other),
        };
        let _ = writeln!(out, "{k:<12} {value}");
    }
    out
}

fn group_table(g: &Value) -> String {
    let mut out = format!(
        "{} {} (vpc {}, {}, {})\n",
        s(&g["id"]),
        s(&g["name"]),
        s(&g["vpc"]),
        s(&g["kind"]),
        if g["stateful"] == true {
            "stateful"
        } else {
            "stateless"
        }
    );
    let rows: Vec<Vec<String>> = g["rules"]
        .as_array()
        .map(|rs| rs.iter().map(|r| vec![s(&r["id"]), s(&r["text"])]).collect())
        .unwrap_or_default();
    out.push_str(&table(&["RULE", "TEXT"], &rows));
    out
}

fn run_command(args: &CtlArgs) -> Result<(Value, String, bool), Failure> {
    let c = Client::new(args)?;
    let vp = |vpc: &str| format!("/v1/vpcs/{}", seg(vpc));
    let done = |v: Value| {
        let text = format!("ok: enforced at generation {}\n", s(&v["generation"]));
        (v, text, true)
    };
    Ok(match &args.command {
        CtlCommand::Health => {
            let v = c.call("GET", "/health", None)?;
            let text = format!(
                "{}: generation {} published, {} enforced by all {} workers\n",
                s(&v["status"]),
                s(&v["generation"]),
                s(&v["enforced_generation"]),
                s(&v["workers"])
            );
            (v, text, true)
        }
        CtlCommand::Stats => {
            let v = c.call("GET", "/v1/stats", None)?;
            let ports = rows(&v["ports"], &["port", "received", "forwarded", "dropped"]);
            let mut text = table(&["PORT", "RECEIVED", "FORWARDED", "DROPPED"], &ports);
            let drops: Vec<Vec<String>> = v["drops"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, n)| vec![k.clone(), s(n)])
                .collect();
            if !drops.is_empty() {
                text.push('\n');
                text.push_str(&table(&["DROP REASON", "FRAMES"], &drops));
            }
            let f = &v["flows"];
            let _ = writeln!(
                text,
                "\nconnections: {} active of {}; {} created, {} expired, {} evicted, {} revoked; generation {}",
                s(&f["active"]),
                s(&f["capacity"]),
                s(&f["created"]),
                s(&f["expired"]),
                s(&f["evicted"]),
                s(&f["revoked"]),
                s(&v["generation"])
            );
            let rules = rows(&v["rules"], &["flows", "id", "group", "text"]);
            if !rules.is_empty() {
                text.push('\n');
                text.push_str(&table(&["FLOWS", "RULE", "GROUP", "TEXT"], &rules));
            }
            (v, text, true)
        }
        CtlCommand::Vpcs => {
            let v = c.call("GET", "/v1/vpcs", None)?;
            let vpcs = rows(&v["vpcs"], &["id", "name", "vlan", "groups", "interfaces"]);
            let text = table(&["ID", "NAME", "VLAN", "GROUPS", "INTERFACES"], &vpcs);
            (v, text, true)
        }
        CtlCommand::Group(g) => match g {
            GroupCmd::List { vpc } => {
                let v = c.call("GET", &format!("{}/security-groups", vp(vpc)), None)?;
                let rows: Vec<Vec<String>> = v["security_groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        let n = x["rules"].as_array().map_or(0, Vec::len);
                        vec![
                            s(&x["id"]),
                            s(&x["name"]),
                            s(&x["kind"]),
                            n.to_string(),
                            s(&x["description"]),
                        ]
                    })
                    .collect();
                let text = table(&["ID", "NAME", "KIND", "RULES", "DESCRIPTION"], &rows);
                (v, text, true)
            }
            GroupCmd::Show { vpc, group } => {
                let v = c.call(
                    "GET",
                    &format!("{}/security-groups/{}", vp(vpc), seg(group)),
                    None,
                )?;
                let text = group_table(&v);
                (v, text, true)
            }
            GroupCmd::Create {
                vpc,
                name,
                kind,
                description,
                stateless,
            } => {
                let mut body = json!({ "name": name });
                if let Some(k) = kind {
                    body["kind"] = json!(k);
                }
                if let Some(d) = description {
                    body["description"] = json!(d);
                }
                if *stateless {
                    body["stateful"] = json!(false);
                }
                let v = c.call("POST", &format!("{}/security-groups", vp(vpc)), Some(&body))?;
                let mut text = format!("created {}\n", s(&v["id"]));
                text.push_str(&group_table(&v["security_group"]));
                (v, text, true)
            }
            GroupCmd::Delete { vpc, group } => done(c.call(
                "DELETE",
                &format!("{}/security-groups/{}", vp(vpc), seg(group)),
                None,
            )?),
            GroupCmd::Copy { vpc, group, new_name } => {
                let path = format!("{}/security-groups/{}/copy", vp(vpc), seg(group));
                let v = c.call("POST", &path, Some(&json!({ "name": new_name })))?;
                let text = format!("created {}\n", s(&v["id"]));
                (v, text, true)
            }
        },
        CtlCommand::Rule(r) => match r {
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
                let mut body = json!({ "direction": direction, "protocol": protocol });
                for (k, v) in [
                    ("ports", ports),
                    ("source_ports", source_ports),
                    ("remote", remote),
                    ("local", local),
                    ("ethertype", ethertype),
                    ("action", action),
                    ("description", description),
                ] {
                    if let Some(v) = v {
                        body[k] = json!(v);
                    }
                }
                for (k, v) in [
                    ("icmp_type", icmp_type),
                    ("icmp_code", icmp_code),
                    ("priority", priority),
                ] {
                    if let Some(v) = v {
                        body[k] = json!(v);
                    }
                }
                let path = format!("{}/security-groups/{}/rules", vp(vpc), seg(group));
                let v = c.call("POST", &path, Some(&body))?;
                let text = format!(
                    "added {}; enforced at generation {}\n",
                    v["ids"]
                        .as_array()
                        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default(),
                    s(&v["generation"])
                );
                (v, text, true)
            }
            RuleCmd::Delete { vpc, group, rule } => {
                let path = format!("{}/security-groups/{}/rules/{}", vp(vpc), seg(group), seg(rule));
                done(c.call("DELETE", &path, None)?)
            }
        },
        CtlCommand::Interface(i) => match i {
            InterfaceCmd::List { vpc } => {
                let v = c.call("GET", &format!("{}/interfaces", vp(vpc)), None)?;
                let rows: Vec<Vec<String>> = v["interfaces"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        let join = |k: &str| {
                            x[k].as_array()
                                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
                                .unwrap_or_default()
                        };
                        vec![s(&x["id"]), s(&x["name"]), join("addresses"), join("groups")]
                    })
                    .collect();
                let text = table(&["ID", "NAME", "ADDRESSES", "GROUPS"], &rows);
                (v, text, true)
            }
            InterfaceCmd::Create {
                vpc,
                name,
                addresses,
                groups,
                mac,
                bare_metal,
            } => {
                let mut body = json!({ "name": name, "addresses": addresses });
                if !groups.is_empty() {
                    body["groups"] = json!(groups);
                }
                if let Some(m) = mac {
                    body["mac"] = json!(m);
                }
                if *bare_metal {
                    body["bare_metal"] = json!(true);
                }
                let v = c.call("POST", &format!("{}/interfaces", vp(vpc)), Some(&body))?;
                let text = format!(
                    "created {}; enforced at generation {}\n",
                    s(&v["id"]),
                    s(&v["generation"])
                );
                (v, text, true)
            }
            InterfaceCmd::Show { vpc, name } => {
                let v = c.call("GET", &format!("{}/interfaces/{}", vp(vpc), seg(name)), None)?;
                let text = fields(
                    &v,
                    &["id", "name", "vpc", "addresses", "mac", "groups", "bare_metal"],
                );
                (v, text, true)
            }
            InterfaceCmd::Bind { vpc, name, group } => {
                let path = format!("{}/interfaces/{}/groups/{}", vp(vpc), seg(name), seg(group));
                done(c.call("PUT", &path, None)?)
            }
            InterfaceCmd::Unbind { vpc, name, group } => {
                let path = format!("{}/interfaces/{}/groups/{}", vp(vpc), seg(name), seg(group));
                done(c.call("DELETE", &path, None)?)
            }
            InterfaceCmd::Delete { vpc, name } => {
                done(c.call("DELETE", &format!("{}/interfaces/{}", vp(vpc), seg(name)), None)?)
            }
        },
        CtlCommand::PrefixList(p) => match p {
            PrefixListCmd::List { vpc } => {
                let v = c.call("GET", &format!("{}/prefix-lists", vp(vpc)), None)?;
                let rows: Vec<Vec<String>> = v["prefix_lists"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        let cidrs = x["cidrs"]
                            .as_array()
                            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","));
                        vec![s(&x["id"]), s(&x["name"]), cidrs.unwrap_or_default()]
                    })
                    .collect();
                let text = table(&["ID", "NAME", "CIDRS"], &rows);
                (v, text, true)
            }
            PrefixListCmd::Create {
                vpc,
                name,
                cidrs,
                description,
            } => {
                let mut body = json!({ "name": name, "cidrs": cidrs });
                if let Some(d) = description {
                    body["description"] = json!(d);
                }
                let v = c.call("POST", &format!("{}/prefix-lists", vp(vpc)), Some(&body))?;
                let text = format!(
                    "created {}; enforced at generation {}\n",
                    s(&v["id"]),
                    s(&v["generation"])
                );
                (v, text, true)
            }
            PrefixListCmd::Set { vpc, name, cidrs } => {
                let body = json!({ "name": name, "cidrs": cidrs });
                done(c.call(
                    "PUT",
                    &format!("{}/prefix-lists/{}", vp(vpc), seg(name)),
                    Some(&body),
                )?)
            }
            PrefixListCmd::Delete { vpc, name } => {
                done(c.call("DELETE", &format!("{}/prefix-lists/{}", vp(vpc), seg(name)), None)?)
            }
            PrefixListCmd::Show { vpc, name } => {
                let v = c.call("GET", &format!("{}/prefix-lists/{}", vp(vpc), seg(name)), None)?;
                let text = fields(&v, &["id", "name", "vpc", "description", "cidrs"]);
                (v, text, true)
            }
        },
        CtlCommand::Apply { file } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Failure::Local(format!("{}: {e}", file.display())))?;
            let doc: toml::Table =
                toml::from_str(&text).map_err(|e| Failure::Local(format!("{}: {e}", file.display())))?;
            let mut body = serde_json::Map::new();
            for key in ["vpc", "prefix_list", "security_group", "interface", "quotas"] {
                if let Some(v) = doc.get(key) {
                    let v = serde_json::to_value(v).map_err(|e| Failure::Local(e.to_string()))?;
                    body.insert(key.to_owned(), v);
                }
            }
            let v = c.call("PUT", "/v1/model", Some(&Value::Object(body)))?;
            let rows: Vec<Vec<String>> = v["changed"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, n)| vec![k.clone(), s(&n["added"]), s(&n["removed"]), s(&n["changed"])])
                .collect();
            let mut text = table(&["OBJECTS", "ADDED", "REMOVED", "CHANGED"], &rows);
            let _ = writeln!(text, "enforced at generation {}", s(&v["generation"]));
            (v, text, true)
        }
        CtlCommand::Explain { vpc, packet } => {
            let mut body = json!({ "packet": packet.join(" ") });
            if let Some(v) = vpc {
                body["vpc"] = json!(v);
            }
            let v = c.call("POST", "/v1/explain", Some(&body))?;
            let text = s(&v["text"]);
            let allowed = v["allowed"] == true;
            (v, text, allowed)
        }
        CtlCommand::Reload { force } => {
            done(c.call("POST", "/v1/reload", Some(&json!({ "force": force })))?)
        }
    })
}

/// Runs `rampart ctl ...`.
pub fn run(args: &CtlArgs) -> ExitCode {
    match run_command(args) {
        Ok((value, text, ok)) => {
            if args.json {
                println!("{value}");
            } else {
                print!("{text}");
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(Failure::Local(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Refused(status, body)) => {
            if args.json {
                println!("{body}");
            }
            let mut msg = format!("error: {} ({status})", s(&body["message"]));
            if let Some(errors) = body["errors"].as_array().filter(|e| e.len() > 1) {
                for e in errors {
                    let _ = write!(msg, "\n  {}", s(&e["message"]));
                }
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
