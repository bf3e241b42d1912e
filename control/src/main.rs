//! The `rampart` command.
//!
//! Exit codes are part of the interface: `explain` exits 0 when the packet is
//! allowed, 1 when it is denied and 2 on bad input; `validate` exits 0 for a valid
//! file, 1 for an invalid one and 2 when the file cannot be read. Errors go to
//! standard error as `error: ...`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rampart_control::config::{Config, ConfigError, Summary};
use rampart_control::daemon;
use rampart_control::explain;
use rampart_control::replay::{self, SideRule};
use rampart_dataplane::stats::Totals;

/// rampart: a stateful security-group appliance.
#[derive(Debug, Parser)]
#[command(name = "rampart", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a configuration file and report every error found in it.
    ///
    /// Exits 0 when the file is valid, 1 when it is not, 2 when it cannot be read.
    Validate {
        /// Configuration file (TOML, see docs/config.md).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Decide one packet against a configuration and say why.
    ///
    /// PACKET is `<proto> <src>[:<port>] -> <dst>[:<port>] [type <t> [code <c>]]`,
    /// e.g. `tcp 198.51.100.7:40000 -> 198.18.1.10:443`,
    /// `tcp [2001:db8::7]:40000 -> [2001:db8:1::10]:443` or
    /// `icmp 198.51.100.7 -> 198.18.1.10 type 8 code 0`. Quote the arrow (or write
    /// `to`): an unquoted `>` is a shell redirection.
    ///
    /// Exits 0 when the packet is allowed, 1 when it is denied, 2 on bad input.
    Explain {
        /// Configuration file (TOML, see docs/config.md).
        #[arg(long, short)]
        config: PathBuf,
        /// Outer 802.1Q VLAN ID of the frame, which selects the VPC. Default: an
        /// untagged frame.
        #[arg(long)]
        vlan: Option<u16>,
        /// Name the VPC instead of giving its VLAN.
        #[arg(long, conflicts_with = "vlan")]
        vpc: Option<String>,
        /// The packet, as described above.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        packet: Vec<String>,
    },
    /// Run a capture through the full pipeline (parsing, connection tracking,
    /// the compiled rules) and count what would be forwarded and dropped, and why.
    ///
    /// A frame is from side A of the bridge when its source MAC or source IP
    /// matches a --side-a item, else from side B; without --side-a every frame is
    /// from side A. The capture's timestamps are the clock.
    ///
    /// Exits 0 after a replay, 2 on bad input (configuration, capture, options).
    Replay {
        /// Configuration file (TOML, see docs/config.md).
        #[arg(long, short)]
        config: PathBuf,
        /// The capture to replay (pcap, Ethernet; not pcapng).
        #[arg(long)]
        pcap: PathBuf,
        /// Write the frames that would be forwarded to this capture.
        #[arg(long)]
        allowed: Option<PathBuf>,
        /// Write the frames that would be dropped to this capture.
        #[arg(long)]
        dropped: Option<PathBuf>,
        /// MAC address, address or CIDR of side A's sources; repeatable.
        #[arg(long = "side-a", value_name = "MAC|CIDR")]
        side_a: Vec<String>,
    },
    /// Run the appliance: bridge port_a and port_b of the config's [appliance]
    /// table through AF_XDP, enforcing the model, until SIGINT or SIGTERM.
    ///
    /// SIGHUP re-reads the file; an invalid file is refused and the running
    /// model kept. Exits 0 after a clean stop, 2 when the configuration cannot
    /// run here, 1 when a worker failed.
    Run {
        /// Configuration file (TOML, see docs/config.md) with an [appliance] table.
        #[arg(long, short)]
        config: PathBuf,
        /// Log a one-line counter summary every this many seconds.
        #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
        stats_every: Option<f64>,
        /// Where the acknowledged model and the API token are kept.
        #[arg(long, value_name = "DIR", default_value = daemon::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// The REST API's address.
        #[arg(long, value_name = "ADDR:PORT", default_value = daemon::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// The API token's file (created with mode 0600 if absent).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Write the model as a ruleset for another enforcer.
    ///
    /// `nftables`: a ruleset for a Linux bridge with connection tracking
    /// (br_netfilter), enforcing the same semantics (docs/cli.md says where
    /// it differs). Exits 0, or 2 when the file is invalid or cannot be
    /// exported (several VPCs, a tagged VPC).
    Export {
        /// The target: nftables.
        #[arg(value_parser = ["nftables"])]
        format: String,
        /// Configuration file (TOML, see docs/config.md).
        #[arg(long, short)]
        config: PathBuf,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Drive a running appliance through its REST API (docs/api.md).
    Ctl(rampart_control::ctl::CtlArgs),
}

/// Exit code for bad input, shared by every subcommand (and clap's own errors).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config } => validate(&config),
        Command::Explain {
            config,
            vlan,
            vpc,
            packet,
        } => run_explain(&config, vlan, vpc.as_deref(), &packet),
        Command::Replay {
            config,
            pcap,
            allowed,
            dropped,
            side_a,
        } => run_replay(&config, pcap, allowed, dropped, &side_a),
        Command::Ctl(args) => rampart_control::ctl::run(&args),
        Command::Export {
            format: _,
            config,
            output,
        } => export(&config, output.as_deref()),
        Command::Run {
            config,
            stats_every,
            state_dir,
            listen,
            token_file,
        } => run_appliance(daemon::Options {
            config,
            stats_interval: stats_every.map(std::time::Duration::from_secs_f64),
            state_dir,
            listen,
            token_file,
        }),
    }
}

fn export(path: &std::path::Path, output: Option<&std::path::Path>) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let text =
        match rampart_control::export::nftables(&config.model, &config.settings, &path.display().to_string())
        {
            Ok(t) => t,
            Err(e) => return fail(e.to_string()),
        };
    match output {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(out) => match std::fs::write(out, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format!("{}: {e}", out.display())),
        },
    }
}

fn run_appliance(opts: daemon::Options) -> ExitCode {
    match daemon::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

fn validate(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            println!("{}: valid: {}", path.display(), Summary::of(&config.model));
            ExitCode::SUCCESS
        }
        Err(err @ ConfigError::Read { .. }) => {
            eprintln!("error: {err}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run_explain(path: &std::path::Path, vlan: Option<u16>, vpc: Option<&str>, packet: &[String]) -> ExitCode {
    let bad = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(err) => return bad(err.to_string()),
    };
    let vlan = match vpc {
        None => vlan,
        Some(name) => match config.model.vpc_by_name(name) {
            Some(v) => v.vlan,
            None => return bad(format!("no vpc {name:?} in {}", path.display())),
        },
    };
    let pkt = match explain::parse_packet(packet, vlan) {
        Ok(p) => p,
        Err(msg) => return bad(msg),
    };
    let explanation = explain::explain(&config.model, &config.settings, &pkt);
    print!("{}", explanation.text);
    if explanation.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_replay(
    path: &std::path::Path,
    pcap: PathBuf,
    allowed: Option<PathBuf>,
    dropped: Option<PathBuf>,
    side_a: &[String],
) -> ExitCode {
    let bad = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    let side_a = match SideRule::parse(side_a) {
        Ok(rule) => rule,
        Err(msg) => return bad(msg),
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(err) => return bad(err.to_string()),
    };
    let opts = replay::Options {
        pcap,
        allowed,
        dropped,
        side_a,
    };
    match replay::replay(&config, &opts) {
        Ok(counters) => {
            print!("{}", replay::render(&config, &Totals::sum([&*counters])));
            ExitCode::SUCCESS
        }
        Err(err) => bad(err.to_string()),
    }
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=86_400.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is out of range 0.1-86400")),
        Err(_) => Err(format!("{s:?} is not a number of seconds")),
    }
}
