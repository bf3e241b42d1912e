//! `rampart ctl`: drives a running appliance through its REST API
//! (docs/api.md). Readable tables by default, the API's JSON with `--json`.
//!
//! Exit codes: 0 on success, 1 when the appliance refused the request (the
//! API's error is printed), 2 on bad input here or when the appliance cannot
//! be reached. `explain` exits 0 when the packet would pass, 1 when not.

mod client;
mod commands;
mod show;
mod store;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use self::client::{Client, Failure};
use crate::api::types::ErrorBody;
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
    /// On a node of a fleet: answer a change once every live node enforces
    /// it (the API's `?wait=fleet`), not only the node asked.
    #[arg(long, global = true)]
    wait_fleet: bool,
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
    /// The fleet: `status` (every live node and the revision it enforces).
    #[command(subcommand)]
    Fleet(FleetCmd),
    /// The fleet store itself (etcd, named by a config file's [cluster]):
    /// `push` a model into it, `pull` it into a state directory.
    #[command(subcommand)]
    Store(StoreCmd),
}

#[derive(Debug, Subcommand)]
enum FleetCmd {
    /// This node's view of the store, and every live node with its
    /// enforced revision and lag.
    Status,
}

#[derive(Debug, Subcommand)]
enum StoreCmd {
    /// Replace the fleet's model with a state directory's or a config
    /// file's (with the file's [settings]); every node follows.
    Push {
        /// A state directory (its model.json and journal) or a config file.
        source: PathBuf,
        /// The config file whose [cluster] names the store (and whose
        /// [settings] go with a state directory's model).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write the fleet's model into a state directory, from which a
    /// standalone appliance can run.
    Pull {
        /// The state directory (created if needed; not one a running
        /// appliance holds).
        dest: PathBuf,
        #[arg(long, short)]
        config: PathBuf,
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

/// What a command prints: the API's JSON (`--json`) or the text, and
/// whether it exits 0.
#[derive(Debug)]
struct Output {
    json: Value,
    text: String,
    ok: bool,
}

impl Output {
    fn ok(json: Value, text: String) -> Output {
        Output { json, text, ok: true }
    }
}

fn run_command(args: &CtlArgs) -> Result<Output, Failure> {
    if let CtlCommand::Store(cmd) = &args.command {
        return match cmd {
            StoreCmd::Push { source, config } => store::push(source, config),
            StoreCmd::Pull { dest, config } => store::pull(dest, config),
        };
    }
    let c = Client::new(args)?;
    match &args.command {
        CtlCommand::Health => commands::health(&c),
        CtlCommand::Stats => commands::stats(&c),
        CtlCommand::Vpcs => commands::vpcs(&c),
        CtlCommand::Group(cmd) => commands::group(&c, cmd),
        CtlCommand::Rule(cmd) => commands::rule(&c, cmd),
        CtlCommand::Interface(cmd) => commands::interface(&c, cmd),
        CtlCommand::PrefixList(cmd) => commands::prefix_list(&c, cmd),
        CtlCommand::Apply { file } => commands::apply(&c, file),
        CtlCommand::Explain { vpc, packet } => commands::explain(&c, vpc.as_ref(), packet),
        CtlCommand::Reload { force } => commands::reload(&c, *force),
        CtlCommand::Fleet(FleetCmd::Status) => commands::fleet_status(&c),
        CtlCommand::Store(_) => unreachable!("answered above"),
    }
}

/// An error answer as one message (and every error when there are several).
fn refusal(status: u16, body: &Value) -> String {
    match serde_json::from_value::<ErrorBody>(body.clone()) {
        Ok(e) => {
            let mut msg = format!("error: {} ({status})", e.message);
            if e.errors.len() > 1 {
                for item in &e.errors {
                    let _ = write!(msg, "\n  {}", item.message);
                }
            }
            msg
        }
        Err(_) => match body {
            Value::String(text) => format!("error: {text} ({status})"),
            other => format!("error: {other} ({status})"),
        },
    }
}

/// Runs `rampart ctl ...`.
pub fn run(args: &CtlArgs) -> ExitCode {
    match run_command(args) {
        Ok(out) => {
            if args.json {
                println!("{}", out.json);
            } else {
                print!("{}", out.text);
            }
            if out.ok {
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
            eprintln!("{}", refusal(status, &body));
            ExitCode::FAILURE
        }
    }
}
