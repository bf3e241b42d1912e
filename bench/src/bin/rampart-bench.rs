//! `rampart-bench`: rampart's benchmarks. See README.md, "Benchmarks".

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rampart_bench::classify::{self, Plan, Report};
use rampart_dataplane::classify::classbench;

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
    Classify {
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
        /// Timed repetitions per rate; the median is reported. Default 3.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Minimum seconds per timed repetition. Default 1.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Print one JSON object per set instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// The shipped sets, smallest first.
const SETS: [&str; 5] = ["acl1_1k", "fw1_1k", "acl1_10k", "fw1_10k", "acl1_100k"];

fn main() {
    if let Err(err) = run(Cli::parse()) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn run(cli: Cli) -> Result<()> {
    let Command::Classify {
        rules,
        trace,
        classbench_dir,
        builds,
        reps,
        seconds,
        json,
    } = cli.command;
    if seconds.is_nan() || seconds <= 0.0 {
        bail!("--seconds must be positive, not {seconds}");
    }
    let plan = Plan {
        builds,
        reps,
        seconds,
    };
    let sets: Vec<(String, PathBuf, PathBuf)> = match (rules, trace) {
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
    };
    if !json {
        println!(
            "{:<10} {:>7} {:>9} {:>10} {:>7} {:>9} {:>11} {:>11} {:>8}",
            "set", "rules", "build ms", "memory", "tables", "mismatch", "lookups/s", "linear/s", "speedup"
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
        if json {
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

fn print_row(r: &Report) {
    let mib = r.memory_bytes as f64 / (1024.0 * 1024.0);
    println!(
        "{:<10} {:>7} {:>9.2} {:>6.2} MiB {:>7} {:>9} {:>10.2}M {:>10.3}M {:>7.0}x",
        r.set,
        r.rules,
        r.build_ms,
        mib,
        r.tables,
        r.mismatches,
        r.lookups_per_sec / 1e6,
        r.linear_lookups_per_sec / 1e6,
        r.lookups_per_sec / r.linear_lookups_per_sec
    );
}
