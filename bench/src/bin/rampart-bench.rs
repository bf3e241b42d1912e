//! `rampart-bench`: rampart's benchmarks. See README.md, "Benchmarks".

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use rampart_bench::classify::{self, Choice, Plan, Report};
use rampart_bench::{api, e2e, fleet, forward, pipeline, update, wakeup};
use rampart_testkit::classbench;

#[derive(Debug, Parser)]
#[command(name = "rampart-bench", version)]
/// rampart's benchmarks.
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Classifier: build time, memory, mismatches against a linear scan, and
    /// single-core batch lookups per second next to the linear scan's.
    ///
    /// With --rules and --trace, one set; without them, every set shipped in
    /// --classbench-dir.
    Classify(ClassifyArgs),
    /// The in-memory pipeline on one core, 64-byte frames: established-flow
    /// packet rate with 1k, 100k and 1M live connections, new TCP connections per
    /// second through a 1001-rule policy, bytes per connection entry, and the
    /// parse-only rate as the same run's ceiling.
    Pipeline(PipelineArgs),
    /// End-to-end forwarding through AF_XDP on veth in namespaces (root): the
    /// rampart worker (policy and connection tracking) beside a pass-through
    /// AF_XDP forwarder, alternately, same topology, same 64-byte UDP traffic;
    /// delivered rate at the sink and the ratio rampart / ceiling.
    Forward(ForwardArgs),
    /// Wake-up latency of `idle = adaptive` (root): single 64-byte probes
    /// through the rampart worker on veth, spaced so that the worker sleeps
    /// between them, with and without the CPU wake-up latency request
    /// `rampart run` holds by default, beside the same probes through a
    /// busy-polling worker.
    Wakeup(WakeupArgs),
    /// API call to enforced (root): one-rule changes through the REST API of a
    /// running `rampart run` (built beside this binary) on a GROUPS x RULES
    /// model, with idle adaptive and busy.
    Api(ApiArgs),
    /// A fleet (root, etcd): one-rule changes through node 1's API answered
    /// when every node enforces them (?wait=fleet), beside one standalone
    /// appliance before and after.
    Fleet(FleetArgs),
    /// End to end (root): the same rampart-gen traffic through a pass-through
    /// AF_XDP forwarder (the ceiling), `rampart run` (built beside this binary)
    /// and the kernel's bridge with `rampart export nftables`; delivered pps,
    /// loss, latency and new connections per second, with the ratios.
    E2e(E2eArgs),
    /// Rule-update latency: one rule added to a group of a model of GROUPS x
    /// RULES rules, compiled into the next snapshot; beside a full compilation.
    Update(UpdateArgs),
}

/// The flags of `classify`.
#[derive(Debug, Args)]
struct ClassifyArgs {
    /// ClassBench rules file.
    #[arg(long, requires = "trace")]
    rules: Option<PathBuf>,
    /// ClassBench trace file.
    #[arg(long, requires = "rules")]
    trace: Option<PathBuf>,
    /// Directory of the shipped sets, used without --rules/--trace.
    #[arg(long, default_value = "../shared/classbench")]
    classbench_dir: PathBuf,
    /// Builds to time; the median is reported. Default 5.
    #[arg(long, default_value_t = 5)]
    builds: usize,
    /// Engine to measure: the one the dataplane picks for the set's size
    /// (auto), or either engine forced.
    #[arg(long, value_enum, default_value_t = Choice::Auto)]
    engine: Choice,
    #[command(flatten)]
    timing: Timing,
    /// Print one JSON object per set instead of the table.
    #[arg(long)]
    json: bool,
}

/// The flags of `pipeline`.
#[derive(Debug, Args)]
struct PipelineArgs {
    /// Live connections for the established-flow runs, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000")]
    flows: Vec<usize>,
    /// Connections opened in the new-flow run. Default 1000000.
    #[arg(long, default_value_t = 1_000_000)]
    new_flows: usize,
    #[command(flatten)]
    timing: Timing,
    /// Print one JSON object per result instead of the table.
    #[arg(long)]
    json: bool,
}

/// The flags of `forward`.
#[derive(Debug, Args)]
struct ForwardArgs {
    /// UDP flows in the traffic (1-60000). Default 1000.
    #[arg(long, default_value_t = 1000)]
    flows: usize,
    #[command(flatten)]
    timing: Timing,
    /// Print one JSON object per result instead of the table.
    #[arg(long)]
    json: bool,
}

/// The flags of `wakeup`.
#[derive(Debug, Args)]
struct WakeupArgs {
    /// Rounds of (busy, adaptive, adaptive-kernel-idle). Default 3.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Probes per run (after 20 warm-up probes). Default 300.
    #[arg(long, default_value_t = 300)]
    probes: usize,
    /// Microseconds between probes; must exceed the adaptive spin (200).
    /// Default 2000.
    #[arg(long, default_value_t = 2000)]
    gap_us: u64,
    /// Print one JSON object per result instead of the table.
    #[arg(long)]
    json: bool,
}

/// The flags of `api`.
#[derive(Debug, Args)]
struct ApiArgs {
    /// Groups in the model. Default 100.
    #[arg(long, default_value_t = 100)]
    groups: usize,
    /// Rules per group. Default 100.
    #[arg(long, default_value_t = 100)]
    rules: usize,
    /// Interfaces, each bound to up to three groups. Default 1000.
    #[arg(long, default_value_t = 1000)]
    interfaces: usize,
    /// Changes to time (half additions, half deletions). Default 200.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// How the interfaces' group sets are distributed: random (every
    /// interface its own mix) or shared (300 mixes shared by all).
    #[arg(long, value_enum, default_value_t = update::SetMix::Random)]
    set_mix: update::SetMix,
    /// Print one JSON object per result instead of the table.
    #[arg(long)]
    json: bool,
}

/// The flags of `fleet`.
#[derive(Debug, Args)]
struct FleetArgs {
    /// Appliances in the fleet, 1-8. Default 3.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Groups in the model. Default 100.
    #[arg(long, default_value_t = 100)]
    groups: usize,
    /// Rules per group. Default 100.
    #[arg(long, default_value_t = 100)]
    rules: usize,
    /// Interfaces, each bound to up to three groups. Default 1000.
    #[arg(long, default_value_t = 1000)]
    interfaces: usize,
    /// Changes to time per setup (half additions, half deletions). Default 200.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Print one JSON object per result instead of the table.
    #[arg(long)]
    json: bool,
}

/// The flags of `e2e`.
#[derive(Debug, Args)]
struct E2eArgs {
    /// Groups of the model (a bench group is added). Default 50.
    #[arg(long, default_value_t = 50)]
    groups: usize,
    /// Rules per group. Default 40 (2000 rules).
    #[arg(long, default_value_t = 40)]
    rules: usize,
    /// Interfaces, each bound to up to three groups and the bench group. Default 1000.
    #[arg(long, default_value_t = 1000)]
    interfaces: usize,
    /// UDP flows. Default 10000.
    #[arg(long, default_value_t = 10_000)]
    flows: usize,
    /// Seconds per run (three runs per device). Default 3.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Frames per second of the latency run. Default 50000.
    #[arg(long, default_value_t = 50_000.0)]
    latency_pps: f64,
    /// Rounds of (ceiling, rampart, kernel); medians reported. Default 3.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Print one JSON object per device instead of the table.
    #[arg(long)]
    json: bool,
}

/// The flags of `update`.
#[derive(Debug, Args)]
struct UpdateArgs {
    /// Groups in the model. Default 100.
    #[arg(long, default_value_t = 100)]
    groups: usize,
    /// Rules per group. Default 100.
    #[arg(long, default_value_t = 100)]
    rules: usize,
    /// Interfaces, each bound to up to three groups. Default 1000.
    #[arg(long, default_value_t = 1000)]
    interfaces: usize,
    /// Changes to time of each kind (rule: an addition, a replacement and a
    /// deletion in turn; membership: a binding added and removed in turn;
    /// prefix list: one of its 1000 entries replaced); the median, the 99th
    /// percentile and the maximum are reported. Default 21.
    #[arg(long, default_value_t = 21)]
    changes: usize,
    /// How the interfaces' group sets are distributed: random (every
    /// interface its own mix) or shared (300 mixes shared by all).
    #[arg(long, value_enum, default_value_t = update::SetMix::Random)]
    set_mix: update::SetMix,
    /// Print one JSON object per kind of change instead of the table.
    #[arg(long)]
    json: bool,
}

/// How long each rate is measured, shared by the rate benchmarks.
#[derive(Clone, Copy, Debug, Args)]
struct Timing {
    /// Timed repetitions per rate; the median is reported. Default 3.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Minimum seconds per timed repetition. Default 1.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

impl Timing {
    /// `(reps, seconds)`, once `--seconds` is known to be positive.
    fn checked(self) -> Result<(usize, f64)> {
        if self.seconds.is_nan() || self.seconds <= 0.0 {
            bail!("--seconds must be positive, not {}", self.seconds);
        }
        Ok((self.reps, self.seconds))
    }
}

/// The shipped sets, smallest first.
const SETS: [&str; 5] = ["acl1_1k", "fw1_1k", "acl1_10k", "fw1_10k", "acl1_100k"];

/// One JSON object per result with `--json`, else the table.
fn emit<T: serde::Serialize>(json: bool, reports: &[T], table: impl FnOnce() -> String) -> Result<()> {
    if json {
        for r in reports {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        print!("{}", table());
    }
    Ok(())
}

fn main() {
    if let Err(err) = run(Cli::parse()) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs the subcommand given.
fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Classify(args) => run_classify(args),
        Command::Pipeline(args) => run_pipeline(args),
        Command::Forward(args) => run_forward(args),
        Command::Wakeup(args) => run_wakeup(args),
        Command::Api(args) => run_api(args),
        Command::Fleet(args) => {
            let plan = update::Plan {
                groups: args.groups,
                rules_per_group: args.rules,
                interfaces: args.interfaces,
                changes: args.changes,
                set_mix: update::SetMix::Random,
            };
            let reports = fleet::run(plan, args.nodes)?;
            emit(args.json, &reports, || fleet::render(&reports))
        }
        Command::E2e(args) => run_e2e(args),
        Command::Update(args) => run_update(args),
    }
}

/// `classify`: the named set, or every shipped set, a table row or a JSON
/// object each; fails when the engine disagreed with the linear scan.
fn run_classify(args: ClassifyArgs) -> Result<()> {
    let (reps, seconds) = args.timing.checked()?;
    let plan = Plan {
        builds: args.builds,
        reps,
        seconds,
        engine: args.engine,
    };
    let sets = classify_sets(args.rules, args.trace, &args.classbench_dir);
    if !args.json {
        println!(
            "{:<10} {:>6} {:>7} {:>9} {:>10} {:>7} {:>7} {:>7} {:>7} {:>9} {:>11} {:>11} {:>8}",
            "set",
            "engine",
            "rules",
            "build ms",
            "memory",
            "tables",
            "nodes",
            "probes",
            "verify",
            "mismatch",
            "lookups/s",
            "linear/s",
            "speedup"
        );
    }
    let mut failed = false;
    for (name, rules_path, trace_path) in sets {
        let rules =
            classbench::parse_rules(&read(&rules_path)?).with_context(|| rules_path.display().to_string())?;
        let keys =
            classbench::parse_trace(&read(&trace_path)?).with_context(|| trace_path.display().to_string())?;
        let r = classify::run(&name, &rules, &keys, plan);
        failed |= r.mismatches > 0;
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            print_row(&r);
        }
    }
    if failed {
        bail!("the engine disagreed with the linear scan");
    }
    Ok(())
}

/// The sets to classify, (name, rules file, trace file): the one given, or
/// every shipped set in `classbench_dir`.
fn classify_sets(
    rules: Option<PathBuf>,
    trace: Option<PathBuf>,
    classbench_dir: &Path,
) -> Vec<(String, PathBuf, PathBuf)> {
    match (rules, trace) {
        (Some(r), Some(t)) => {
            let name = r
                .file_stem()
                .map_or("set".into(), |s| s.to_string_lossy().into_owned());
            vec![(name, r, t)]
        }
        _ => SETS
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    classbench_dir.join(format!("{s}.rules")),
                    classbench_dir.join(format!("{s}.trace")),
                )
            })
            .collect(),
    }
}

fn print_row(r: &Report) {
    let mib = r.memory_bytes as f64 / (1024.0 * 1024.0);
    let or_dash = |x: Option<String>| x.unwrap_or_else(|| "-".into());
    println!(
        "{:<10} {:>6} {:>7} {:>9.2} {:>6.2} MiB {:>7} {:>7} {:>7} {:>7} {:>9} {:>10.2}M {:>10.3}M {:>7.0}x",
        r.set,
        r.engine,
        r.rules,
        r.build_ms,
        mib,
        or_dash(r.tables.map(|t| t.to_string())),
        or_dash(r.nodes.map(|t| t.to_string())),
        or_dash(r.probes_per_lookup.map(|p| format!("{p:.1}"))),
        or_dash(r.candidates_per_lookup.map(|c| format!("{c:.1}"))),
        r.mismatches,
        r.lookups_per_sec / 1e6,
        r.linear_lookups_per_sec / 1e6,
        r.lookups_per_sec / r.linear_lookups_per_sec
    );
}

/// `pipeline`: the in-memory pipeline's rates, a table row or a JSON object
/// per result.
fn run_pipeline(args: PipelineArgs) -> Result<()> {
    let (reps, seconds) = args.timing.checked()?;
    if args.flows.contains(&0) || args.new_flows == 0 {
        bail!("--flows and --new-flows must be at least 1");
    }
    let reports = pipeline::run(pipeline::Plan { reps, seconds }, &args.flows, args.new_flows);
    if !args.json {
        println!(
            "{:<12} {:>9} {:>6} {:>6} {:>10} {:>9} {:>13} {:>11} {:>13}",
            "test", "flows", "rules", "groups", "Mpps", "ns/pkt", "ceiling Mpps", "entry B", "table B/flow"
        );
    }
    for r in reports {
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "{:<12} {:>9} {:>6} {:>6} {:>10.2} {:>9.1} {:>13.2} {:>11} {:>13.1}",
                r.test,
                r.flows,
                r.policy_rules,
                r.groups,
                r.mpps,
                r.ns_per_packet,
                r.ceiling_mpps,
                r.bytes_per_entry,
                r.table_bytes_per_flow
            );
        }
    }
    Ok(())
}

/// `forward`: rampart's worker beside the pass-through forwarder on veth.
fn run_forward(args: ForwardArgs) -> Result<()> {
    let (reps, seconds) = args.timing.checked()?;
    let reports = forward::run(forward::Plan {
        reps,
        seconds,
        flows: args.flows,
    })?;
    emit(args.json, &reports, || forward::render(&reports))
}

/// `wakeup`: single probes through a busy and a sleeping worker.
fn run_wakeup(args: WakeupArgs) -> Result<()> {
    let reports = wakeup::run(wakeup::Plan {
        reps: args.reps,
        probes: args.probes,
        gap: std::time::Duration::from_micros(args.gap_us),
    })?;
    emit(args.json, &reports, || wakeup::render(&reports))
}

/// `api`: one-rule changes through the REST API of a running daemon.
fn run_api(args: ApiArgs) -> Result<()> {
    let reports = api::run(api::Plan {
        groups: args.groups,
        rules_per_group: args.rules,
        interfaces: args.interfaces,
        changes: args.changes,
        set_mix: args.set_mix,
    })?;
    emit(args.json, &reports, || api::render(&reports))
}

/// `e2e`: the same traffic through the ceiling, rampart and the kernel.
fn run_e2e(args: E2eArgs) -> Result<()> {
    let plan = e2e::Plan {
        reps: args.reps,
        groups: args.groups,
        rules_per_group: args.rules,
        interfaces: args.interfaces,
        flows: args.flows,
        seconds: args.seconds,
        latency_pps: args.latency_pps,
    };
    let reports = e2e::run(plan)?;
    emit(args.json, &reports, || e2e::render(plan, &reports))
}

/// `update`: changes compiled into the next snapshot beside a full
/// compilation, a table row or one JSON object per kind of change.
fn run_update(args: UpdateArgs) -> Result<()> {
    let UpdateArgs {
        groups,
        rules,
        interfaces,
        changes,
        set_mix,
        json,
    } = args;
    if groups < 4 || rules == 0 || interfaces == 0 || changes == 0 {
        bail!("--groups must be at least 4, and --rules, --interfaces and --changes at least 1");
    }
    let reports = update::run(update::Plan {
        groups,
        rules_per_group: rules,
        interfaces,
        changes,
        set_mix,
    });
    emit(json, &reports, || {
        let mut t = format!(
            "{:<12} {:>7} {:>7} {:>10} {:>7} {:>10} {:>15} {:>16} {:>13} {:>13} {:>8} {:>8}\n",
            "change",
            "groups",
            "rules",
            "interfaces",
            "sets",
            "group sets",
            "full compile",
            "update median",
            "update p99",
            "update max",
            "rebuilt",
            "RSS MB"
        );
        for r in &reports {
            t += &format!(
                "{:<12} {:>7} {:>7} {:>10} {:>7} {:>10} {:>12.2} ms {:>13.3} ms {:>10.3} ms {:>10.3} ms {:>8} {:>8.0}\n",
                r.change.name(),
                r.groups,
                r.rules,
                r.interfaces,
                format!("{:?}", r.set_mix).to_lowercase(),
                r.group_sets,
                r.full_compile_ms,
                r.update_median_ms,
                r.update_p99_ms,
                r.update_max_ms,
                r.rebuilt_per_update,
                r.rss_mb
            );
        }
        t
    })
}
