//! `rampart-gen`: rampart's traffic generator. See `rampart_bench::gen` and
//! README.md.
//!
//! Exit codes: 0 when every expectation held, 1 when one did not, 2 on bad
//! input or when the ports cannot be opened.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rampart_bench::gen::{self, Profile, RunSpec, StreamSpec};

/// Sends streams of frames on one port through the device under test and
/// receives them on the other (AF_XDP on both); reports loss and one-way
/// latency per stream, and checks each stream's expectation.
#[derive(Debug, Parser)]
#[command(name = "rampart-gen", version)]
struct Cli {
    /// The interface of side A (frames `from = "a"` leave here).
    #[arg(long)]
    port_a: String,
    /// The interface of side B.
    #[arg(long)]
    port_b: String,
    /// A profile (TOML: [run] and [[stream]]s; see README.md). Without it,
    /// the stream flags below describe one stream.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// udp, tcp-syn, tcp-session or icmp-echo.
    #[arg(long, default_value = "udp")]
    protocol: String,
    /// Source address or range first-last.
    #[arg(long)]
    src: Option<String>,
    /// Destination address or range first-last.
    #[arg(long)]
    dst: Option<String>,
    #[arg(long, default_value = "1024-65535")]
    src_ports: String,
    #[arg(long, default_value = "9")]
    dst_ports: String,
    /// Distinct flows.
    #[arg(long, default_value_t = 1)]
    flows: usize,
    /// Frame size with the FCS (64-1518), or imix.
    #[arg(long, default_value = "64")]
    size: String,
    /// The port that sends: a or b.
    #[arg(long, default_value = "a")]
    from: String,
    /// pass or drop: what the device under test must do with the stream.
    #[arg(long)]
    expect: Option<String>,
    /// Seconds of sending (overrides the profile's).
    #[arg(long)]
    seconds: Option<f64>,
    /// Frames per second over all streams, 0 = flat out (overrides the profile's).
    #[arg(long)]
    pps: Option<f64>,
    /// Bits per second over all streams, frames with their FCS (overrides
    /// the profile's; instead of --pps).
    #[arg(long, conflicts_with = "pps")]
    bps: Option<f64>,
    /// Queues, one thread each (overrides the profile's).
    #[arg(long)]
    queues: Option<u32>,
    /// Loss a `pass` stream may show, a fraction (overrides the profile's).
    #[arg(long)]
    loss_tolerance: Option<f64>,
    /// Print one JSON object per stream and a summary object instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut profile = match &cli.profile {
        Some(p) => match Profile::load(p) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        },
        None => {
            let (Some(src), Some(dst)) = (cli.src.clone(), cli.dst.clone()) else {
                eprintln!("error: give --profile, or --src and --dst for one stream");
                return ExitCode::from(2);
            };
            Profile {
                run: RunSpec::default(),
                streams: vec![StreamSpec {
                    name: "stream".into(),
                    protocol: cli.protocol.clone(),
                    src,
                    dst,
                    src_ports: cli.src_ports.clone(),
                    dst_ports: cli.dst_ports.clone(),
                    flows: cli.flows,
                    size: cli.size.clone(),
                    from: cli.from.clone(),
                    weight: 1.0,
                    expect: cli.expect.clone(),
                    window: 256,
                }],
            }
        }
    };
    if let Some(s) = cli.seconds {
        profile.run.seconds = s;
    }
    if let Some(p) = cli.pps {
        profile.run.pps = p;
        profile.run.bps = 0.0;
    }
    if let Some(b) = cli.bps {
        profile.run.bps = b;
        profile.run.pps = 0.0;
    }
    if let Some(q) = cli.queues {
        profile.run.queues = q;
    }
    if let Some(l) = cli.loss_tolerance {
        profile.run.loss_tolerance = l;
    }
    let quiet = cli.quiet;
    let mut progress = |t: f64, sent: u64, received: u64| {
        if !quiet {
            let lost = if sent == 0 {
                0.0
            } else {
                sent.saturating_sub(received) as f64 / sent as f64 * 100.0
            };
            eprint!(
                "\r{t:>6.1} s  sent {sent:>12}  received {received:>12}  ({lost:.2}% not back yet or lost)"
            );
            let _ = std::io::stderr().flush();
        }
    };
    let report = match gen::run(&profile, &cli.port_a, &cli.port_b, &mut progress) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("\nerror: {e:#}");
            return ExitCode::from(2);
        }
    };
    if !quiet {
        eprintln!();
    }
    if cli.json {
        for s in &report.streams {
            println!("{}", serde_json::to_string(s).unwrap_or_default());
        }
        let summary =
            serde_json::json!({ "summary": { "seconds": report.seconds, "failed": report.failed } });
        println!("{summary}");
    } else {
        print!("{}", gen::render(&report));
    }
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
