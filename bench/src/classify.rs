//! The classifier benchmark: build time, memory, correctness against a linear
//! scan and single-core batch lookup rate on a ClassBench rule set and trace,
//! with the linear scan's rate measured in the same run as the baseline.
//!
//! Method: the engine is built `builds` times and the median build time is kept.
//! The whole trace is classified once by both engines to count mismatches. The
//! lookup rate is the median over `reps` repetitions, each looping over the trace
//! in bursts of [`BURST`] for at least `seconds`; the linear scan gets the same
//! treatment (one pass at least, since it is slow on large sets). Every result is
//! folded into a checksum so that no lookup can be optimised away.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rampart_dataplane::classify::{
    BitVector, Classifier, DecisionTree, Engine, Key, Linear, Match, Profile, Rule, TupleSpace,
};
use serde::Serialize;

/// Keys per batch lookup, as the worker will classify an RX burst's misses.
pub const BURST: usize = 64;

/// Which engine to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// The one the dataplane builds for a rule set of this size.
    Auto,
    BitVector,
    TupleSpace,
    DecisionTree,
}

fn build(choice: Choice, rules: &[Rule<u32>]) -> Engine<u32> {
    match choice {
        Choice::Auto => Engine::build(rules),
        // Sets too diverse for it get the tuple space anyway.
        Choice::BitVector => BitVector::build(rules).map_or_else(
            || Engine::TupleSpace(TupleSpace::build(rules)),
            |b| Engine::BitVector(Box::new(b)),
        ),
        Choice::TupleSpace => Engine::TupleSpace(TupleSpace::build(rules)),
        Choice::DecisionTree => DecisionTree::build(rules).map_or_else(
            || Engine::TupleSpace(TupleSpace::build(rules)),
            Engine::DecisionTree,
        ),
    }
}

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub builds: usize,
    pub reps: usize,
    pub seconds: f64,
    pub engine: Choice,
}

/// One set's results; the JSON line has exactly these fields.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub set: String,
    /// `bitvec`, `tuple` or `dtree`.
    pub engine: &'static str,
    pub rules: usize,
    pub trace: usize,
    pub build_ms: f64,
    pub memory_bytes: usize,
    /// Bit vector: distinct class bitmaps over all fields.
    pub classes: Option<usize>,
    /// Tuple space: its hash tables and longest bucket.
    pub tables: Option<usize>,
    pub longest_bucket: Option<usize>,
    /// Decision tree: its nodes (inner and leaves) and deepest leaf.
    pub nodes: Option<usize>,
    pub depth: Option<usize>,
    /// Tuple space: mean tables probed and rules verified per lookup over the
    /// trace; decision tree: mean inner nodes visited and leaf rules checked.
    pub probes_per_lookup: Option<f64>,
    pub candidates_per_lookup: Option<f64>,
    pub mismatches: usize,
    pub lookups_per_sec: f64,
    pub linear_lookups_per_sec: f64,
}

/// The median of a non-empty sample (the upper one of an even count).
/// The value at quantile `q` (0-1) of `sorted` (ascending), NaN when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn checksum(m: Option<Match>) -> u64 {
    m.map_or(u64::MAX, |m| u64::from(m.id))
}

/// Lookups per second of `engine` over `keys`, looping for at least `min`.
fn rate(engine: &dyn Classifier<u32>, keys: &[Key<u32>], min: Duration) -> f64 {
    let mut out = vec![None; BURST];
    let mut done = 0usize;
    let mut sum = 0u64;
    let start = Instant::now();
    loop {
        for burst in keys.chunks(BURST) {
            engine.lookup_batch(black_box(burst), &mut out[..burst.len()]);
            sum = sum.wrapping_add(out[..burst.len()].iter().map(|m| checksum(*m)).sum::<u64>());
            done += burst.len();
            if done.is_multiple_of(BURST * 1024) && start.elapsed() >= min {
                break;
            }
        }
        if start.elapsed() >= min {
            break;
        }
    }
    black_box(sum);
    done as f64 / start.elapsed().as_secs_f64()
}

/// Runs the benchmark on one set.
pub fn run(set: &str, rules: &[Rule<u32>], keys: &[Key<u32>], plan: Plan) -> Report {
    let mut build_ms = Vec::new();
    let mut engine = None;
    for _ in 0..plan.builds.max(1) {
        let start = Instant::now();
        let built = build(plan.engine, black_box(rules));
        build_ms.push(start.elapsed().as_secs_f64() * 1e3);
        engine = Some(built);
    }
    let engine = engine.expect("built at least once");
    let linear = Linear::build(rules);

    // Mismatches counted through the batch lookup, which is what is timed.
    let mut out = vec![None; BURST];
    let mut mismatches = 0;
    for burst in keys.chunks(BURST) {
        engine.lookup_batch(burst, &mut out[..burst.len()]);
        mismatches += burst
            .iter()
            .zip(&out)
            .filter(|(k, got)| **got != linear.lookup(k))
            .count();
    }
    let mut profile = Profile::default();
    let (tuple, tree) = match &engine {
        Engine::TupleSpace(t) => {
            for k in keys {
                t.lookup_profiled(k, &mut profile);
            }
            (Some(t), None)
        }
        Engine::DecisionTree(t) => {
            for k in keys {
                t.lookup_profiled(k, &mut profile);
            }
            (None, Some(t))
        }
        Engine::BitVector(_) => (None, None),
    };
    let per_lookup = |n: u64| n as f64 / profile.lookups.max(1) as f64;

    let min = Duration::from_secs_f64(plan.seconds);
    let lookups = median((0..plan.reps.max(1)).map(|_| rate(&engine, keys, min)).collect());
    let linear_rate = median((0..plan.reps.max(1)).map(|_| rate(&linear, keys, min)).collect());

    Report {
        set: set.to_owned(),
        engine: engine.name(),
        rules: rules.len(),
        trace: keys.len(),
        build_ms: median(build_ms),
        memory_bytes: engine.memory_bytes(),
        classes: match &engine {
            Engine::BitVector(b) => Some(b.classes()),
            Engine::TupleSpace(_) | Engine::DecisionTree(_) => None,
        },
        tables: tuple.map(TupleSpace::tables),
        nodes: tree.map(DecisionTree::nodes),
        depth: tree.map(DecisionTree::depth),
        longest_bucket: tuple.map(TupleSpace::longest_bucket),
        probes_per_lookup: (profile.lookups > 0).then(|| per_lookup(profile.probes)),
        candidates_per_lookup: (profile.lookups > 0).then(|| per_lookup(profile.candidates)),
        mismatches,
        lookups_per_sec: lookups,
        linear_lookups_per_sec: linear_rate,
    }
}
