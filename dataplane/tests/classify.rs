//! Every engine against the linear reference: on the shipped ClassBench sets
//! (0 mismatches on every trace header) and on random rule sets that exercise
//! what ClassBench does not (IPv6, address sets, deny rules, priority ties).

use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;

use rampart_dataplane::classify::*;
use rampart_testkit::classbench;

fn classbench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/classbench")
}

/// Loads a ClassBench set; panics with the path if the shared data is missing.
fn load(set: &str) -> (Vec<Rule<u32>>, Vec<Key<u32>>) {
    let read = |ext: &str| {
        let path = classbench_dir().join(format!("{set}.{ext}"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (../shared must sit beside the repository)",
                path.display()
            )
        })
    };
    (
        classbench::parse_rules(&read("rules")).expect("a ClassBench rule set"),
        classbench::parse_trace(&read("trace")).expect("a ClassBench trace"),
    )
}

/// Builds an engine for a rule set.
type Build = fn(&[Rule<u32>]) -> Box<dyn Classifier<u32>>;

/// Classifies the whole trace with `engine` and the linear scan, in bursts as
/// the worker will; returns the number of headers where they differ.
fn mismatches(set: &str, engine: Build) -> usize {
    let (rules, keys) = load(set);
    let linear = Linear::build(&rules);
    let engine = engine(&rules);
    let mut out = vec![None; 64];
    let mut differ = 0;
    for burst in keys.chunks(64) {
        engine.lookup_batch(burst, &mut out[..burst.len()]);
        for (key, got) in burst.iter().zip(&out) {
            let want = linear.lookup(key);
            assert!(want.is_some(), "{set}: every trace header matches some rule");
            differ += usize::from(*got != want);
        }
    }
    differ
}

fn bit_vector(rules: &[Rule<u32>]) -> Box<dyn Classifier<u32>> {
    Box::new(BitVector::build(rules).expect("a small set gets the bit vector"))
}

fn tuple_space(rules: &[Rule<u32>]) -> Box<dyn Classifier<u32>> {
    Box::new(TupleSpace::build(rules))
}

fn decision_tree(rules: &[Rule<u32>]) -> Box<dyn Classifier<u32>> {
    Box::new(DecisionTree::build(rules).expect("within the node budget"))
}

fn auto(rules: &[Rule<u32>]) -> Box<dyn Classifier<u32>> {
    Box::new(Engine::build(rules))
}

#[test]
fn classbench_acl1_1k_matches_a_linear_scan_on_every_header() {
    assert_eq!(mismatches("acl1_1k", bit_vector), 0);
    assert_eq!(mismatches("acl1_1k", tuple_space), 0);
}

#[test]
fn classbench_acl1_1k_decision_tree_matches_a_linear_scan_on_every_header() {
    assert_eq!(mismatches("acl1_1k", decision_tree), 0);
    // Leaves of one rule where cuts allow: the deepest tree.
    let deepest = |rules: &[Rule<u32>]| -> Box<dyn Classifier<u32>> {
        Box::new(DecisionTree::build_with(rules, 1, usize::MAX).expect("no budget"))
    };
    assert_eq!(mismatches("acl1_1k", deepest), 0);
}

#[test]
fn classbench_fw1_1k_matches_a_linear_scan_on_every_header() {
    assert_eq!(mismatches("fw1_1k", bit_vector), 0);
    assert_eq!(mismatches("fw1_1k", tuple_space), 0);
}

#[test]
fn each_set_gets_the_engine_that_measured_fastest_for_its_kind() {
    let (small, _) = load("fw1_1k");
    // fw1's wildcards replicate rules past the small sets' node budget.
    assert_eq!(Engine::build(&small).name(), "bitvec");
    let (acl_small, _) = load("acl1_1k");
    assert_eq!(Engine::build(&acl_small).name(), "dtree");
    // One rule, one tuple: the tuple space probes once and builds faster.
    assert_eq!(Engine::build(&small[..1]).name(), "tuple");
    let (acl, _) = load("acl1_10k");
    assert!(BitVector::build(&acl).is_none(), "over MAX_RULES");
    assert_eq!(Engine::build(&acl).name(), "dtree");
    // fw1's wildcards replicate rules past the tree's node budget.
    let (fw, _) = load("fw1_10k");
    assert!(DecisionTree::build(&fw).is_none());
    assert_eq!(Engine::build(&fw).name(), "tuple");
}

#[test]
#[ignore = "takes minutes in a debug build; run with --release -- --ignored"]
fn classbench_large_sets_match_a_linear_scan_on_every_header() {
    for set in ["acl1_10k", "fw1_10k", "acl1_100k"] {
        assert_eq!(mismatches(set, auto), 0, "{set}");
        assert_eq!(mismatches(set, tuple_space), 0, "{set}");
    }
    for set in ["acl1_10k", "acl1_100k"] {
        assert_eq!(mismatches(set, decision_tree), 0, "{set}");
    }
}

// ------------------------------------------------------------------ random rule sets

/// Addresses from a small pool so that rules overlap and keys hit them.
fn v4_pool() -> Vec<u32> {
    vec![
        0xC612_0000,
        0xC612_0001,
        0xC612_0100,
        0xC612_01FF,
        0xC613_0000,
        0x0A00_0001,
        0xFFFF_FFFF,
        0,
    ]
}

fn v6_pool() -> Vec<u128> {
    let base: u128 = 0x2001_0db8 << 96;
    vec![
        base,
        base | 1,
        base | (1 << 64),
        base | (0xFF << 80),
        0xFE80 << 112,
        u128::MAX,
        0,
    ]
}

fn addr_match<A: Addr>(pool: Vec<A>, sets: Vec<Arc<AddrSet<A>>>) -> impl Strategy<Value = AddrMatch<A>> {
    let n = pool.len();
    let steps = [0u8, 1, 4, 8, 12, 16, 24, 31, 32, 48, 64, 96, 120, 127, 128];
    prop_oneof![
        4 => (0..n, 0..steps.len()).prop_map(move |(i, l)| AddrMatch::Prefix(Prefix::new(pool[i], steps[l].min(A::BITS)))),
        1 => (0..sets.len()).prop_map(move |i| AddrMatch::Set(Arc::clone(&sets[i]))),
    ]
}

fn port_range() -> impl Strategy<Value = (u16, u16)> {
    prop_oneof![
        Just((0, 65535)),
        Just((65535, 65535)),
        Just((7, 65535)),
        (0..6u16).prop_map(|p| (p, p)),
        (0..6u16, 0..4u16).prop_map(|(lo, n)| (lo, lo + n))
    ]
}

fn rules<A: Addr>(pool: Vec<A>) -> impl Strategy<Value = Vec<Rule<A>>> {
    let sets: Vec<Arc<AddrSet<A>>> = vec![
        Arc::new(AddrSet::new(vec![pool[1], pool[2]], vec![])),
        Arc::new(AddrSet::new(
            vec![pool[0]],
            vec![Prefix::new(pool[3], A::BITS / 2)],
        )),
    ];
    let rule = (
        addr_match(pool.clone(), sets.clone()),
        addr_match(pool, sets),
        prop::option::of(prop_oneof![Just(1u8), Just(6), Just(17), Just(58)]),
        port_range(),
        port_range(),
        1..5u32,
        any::<bool>(),
    );
    proptest::collection::vec(rule, 0..40).prop_map(|rs| {
        rs.into_iter()
            .enumerate()
            .map(|(i, (src, dst, proto, sp, dp, priority, deny))| Rule {
                src,
                dst,
                proto,
                src_ports: sp,
                dst_ports: dp,
                priority,
                action: if deny { RuleAction::Deny } else { RuleAction::Allow },
                id: u32::try_from(i).expect("few rules"),
            })
            .collect()
    })
}

fn keys<A: Addr>(pool: Vec<A>) -> impl Strategy<Value = Vec<Key<A>>> {
    let n = pool.len();
    let key = (
        0..n,
        0..n,
        prop_oneof![
            Just(1u8),
            Just(6),
            Just(17),
            Just(58),
            Just(47),
            Just(0),
            Just(255)
        ],
        prop_oneof![0..8u16, Just(65534), Just(65535)],
        prop_oneof![0..8u16, Just(65534), Just(65535)],
    );
    proptest::collection::vec(key, 1..40).prop_map(move |ks| {
        ks.into_iter()
            .map(|(s, d, proto, sp, dp)| Key {
                src: pool[s],
                dst: pool[d],
                proto,
                src_port: sp,
                dst_port: dp,
            })
            .collect()
    })
}

/// Rules that no cut separates (the same box; each source is its own address
/// set) make one leaf of all of them: counts around where a leaf's rule count
/// moves from its reference into its list.
#[test]
fn decision_tree_leaves_of_many_rules_keep_rank_order() {
    for n in [126u32, 127, 128, 300] {
        let rules: Vec<Rule<u32>> = (0..n)
            .map(|i| Rule {
                src: AddrMatch::Set(Arc::new(AddrSet::new(vec![0xC612_0000 + i % 200], vec![]))),
                dst: AddrMatch::Prefix(Prefix::new(0xC613_0000, 16)),
                proto: Some(6),
                src_ports: (0, 65535),
                dst_ports: (80, 80),
                priority: 1 + i % 7,
                action: if i % 3 == 0 {
                    RuleAction::Deny
                } else {
                    RuleAction::Allow
                },
                id: i,
            })
            .collect();
        let keys: Vec<Key<u32>> = (0..210)
            .map(|i| Key {
                src: 0xC612_0000 + i,
                dst: 0xC613_0001,
                proto: 6,
                src_port: 1024,
                dst_port: 80,
            })
            .collect();
        let tree = DecisionTree::build_with(&rules, BINTH, usize::MAX).expect("no budget");
        assert_eq!(tree.nodes(), 1, "{n} rules, one leaf");
        same_as_linear(&rules, &keys).unwrap();
    }
}

fn same_as_linear<A: Addr>(rules: &[Rule<A>], keys: &[Key<A>]) -> Result<(), TestCaseError> {
    let linear = Linear::build(rules);
    // Without a node budget (random rules replicate more than real sets,
    // past the one `DecisionTree::build` sets); with leaves of one rule where
    // cuts allow too: the deepest trees.
    let tree = |binth| DecisionTree::build_with(rules, binth, usize::MAX).expect("no budget");
    let engines: [Box<dyn Classifier<A>>; 6] = [
        Box::new(TupleSpace::build(rules)),
        Box::new(BitVector::build(rules).expect("a small set")),
        Box::new(BitVector::build(rules).expect("a small set").portable()),
        Box::new(tree(BINTH)),
        Box::new(tree(1)),
        Box::new(tree(1).portable()),
    ];
    for engine in engines {
        let mut batch = vec![None; keys.len()];
        engine.lookup_batch(keys, &mut batch);
        for (key, &got) in keys.iter().zip(&batch) {
            prop_assert_eq!(got, linear.lookup(key), "key {:?}", key);
            prop_assert_eq!(engine.lookup(key), got);
        }
        // A shorter `out` takes the first keys' decisions.
        let mut half = vec![None; keys.len() / 2];
        engine.lookup_batch(keys, &mut half);
        prop_assert_eq!(&half[..], &batch[..half.len()]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn engines_equal_linear_scan_on_random_ipv4_rules(rules in rules(v4_pool()), keys in keys(v4_pool())) {
        same_as_linear(&rules, &keys)?;
    }

    #[test]
    fn engines_equal_linear_scan_on_random_ipv6_rules(rules in rules(v6_pool()), keys in keys(v6_pool())) {
        same_as_linear(&rules, &keys)?;
    }
}

#[test]
fn the_deciding_rule_is_the_smallest_priority_then_deny_then_smallest_id() {
    let any = |priority, action, id| Rule::<u32> {
        src: AddrMatch::any(),
        dst: AddrMatch::any(),
        proto: None,
        src_ports: (0, 65535),
        dst_ports: (0, 65535),
        priority,
        action,
        id,
    };
    let key = Key::default();
    for (rules, want) in [
        (vec![any(2, RuleAction::Deny, 0), any(1, RuleAction::Allow, 1)], 1),
        (vec![any(1, RuleAction::Allow, 0), any(1, RuleAction::Deny, 1)], 1),
        (
            vec![any(1, RuleAction::Allow, 5), any(1, RuleAction::Allow, 3)],
            3,
        ),
    ] {
        assert_eq!(TupleSpace::build(&rules).lookup(&key).map(|m| m.id), Some(want));
        assert_eq!(
            BitVector::build(&rules).unwrap().lookup(&key).map(|m| m.id),
            Some(want)
        );
        assert_eq!(Linear::build(&rules).lookup(&key).map(|m| m.id), Some(want));
    }
    assert_eq!(TupleSpace::<u32>::build(&[]).lookup(&key), None);
    assert_eq!(BitVector::<u32>::build(&[]).unwrap().lookup(&key), None);
}

/// proptest's deterministic generator, so that a failure reproduces.
struct Stream(proptest::test_runner::TestRng);

impl Stream {
    fn new() -> Self {
        Stream(proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` rules with many distinct prefixes, and many distinct source port
/// ranges with `diverse_ports` (else a few), so that the bit vector's search
/// trees have every shape: a root, inner levels, padding. (Diverse ports in
/// both fields would combine to more port classes than it takes.)
fn many_rules<A: Addr>(
    n: usize,
    diverse_ports: bool,
    addr: fn(&mut Stream) -> A,
    s: &mut Stream,
) -> Vec<Rule<A>> {
    (0..n)
        .map(|i| {
            let prefix = |s: &mut Stream| {
                let len = if s.below(8) == 0 {
                    0
                } else {
                    (A::BITS / 4) + s.below(u64::from(A::BITS) * 3 / 4 + 1) as u8
                };
                AddrMatch::Prefix(Prefix::new(addr(s), len))
            };
            let ports = |s: &mut Stream| match s.below(4) {
                0 => (0, 65535),
                1 if diverse_ports => {
                    let p = s.below(65536) as u16;
                    (p, p)
                }
                _ if diverse_ports => {
                    let lo = s.below(65536) as u16;
                    (lo, lo.saturating_add(s.below(2000) as u16))
                }
                1 => (80, 80),
                2 => (1024, 65535),
                _ => (65535, 65535),
            };
            Rule {
                src: prefix(s),
                dst: prefix(s),
                proto: [None, Some(6), Some(17), Some(1)][s.below(4) as usize],
                src_ports: ports(s),
                dst_ports: if diverse_ports { (0, 65535) } else { ports(s) },
                priority: s.below(50) as u32,
                action: if s.below(3) == 0 {
                    RuleAction::Deny
                } else {
                    RuleAction::Allow
                },
                id: u32::try_from(i).expect("few rules"),
            }
        })
        .collect()
}

/// Keys on and next to every boundary of the rules, the extremes, and random.
fn edge_keys<A: Addr>(rules: &[Rule<A>], addr: fn(&mut Stream) -> A, s: &mut Stream) -> Vec<Key<A>> {
    let mut addrs = vec![A::default(), A::default().or_not(A::default())];
    let mut ports = vec![0u16, 65535];
    for r in rules {
        for m in [&r.src, &r.dst] {
            for (lo, hi) in m.ranges() {
                addrs.extend([lo, hi, hi.next()]);
            }
        }
        for (lo, hi) in [r.src_ports, r.dst_ports] {
            ports.extend([lo, hi, hi.wrapping_add(1), lo.wrapping_sub(1)]);
        }
    }
    (0..20_000)
        .map(|_| {
            let a = |s: &mut Stream| {
                if s.below(4) == 0 {
                    addr(s)
                } else {
                    addrs[s.below(addrs.len() as u64) as usize]
                }
            };
            Key {
                src: a(s),
                dst: a(s),
                proto: [6u8, 17, 1, 0, 255][s.below(5) as usize],
                src_port: ports[s.below(ports.len() as u64) as usize],
                dst_port: ports[s.below(ports.len() as u64) as usize],
            }
        })
        .collect()
}

#[test]
fn the_bit_vector_equals_a_linear_scan_on_the_largest_sets_it_takes() {
    let mut s = Stream::new();
    let v4 = |s: &mut Stream| s.next() as u32;
    let v6 = |s: &mut Stream| (u128::from(s.next()) << 64) | u128::from(s.next());
    for (n, diverse_ports) in [
        (1, false),
        (17, true),
        (300, false),
        (MAX_RULES, false),
        (MAX_RULES, true),
    ] {
        // Every engine (the bit vector, its portable copy, the tuple space)
        // against the linear scan, in v4 and v6.
        let rules = many_rules(n, diverse_ports, v4, &mut s);
        let keys = edge_keys(&rules, v4, &mut s);
        same_as_linear(&rules, &keys).unwrap_or_else(|e| panic!("v4, {n} rules: {e}"));
        let rules = many_rules(n, diverse_ports, v6, &mut s);
        let keys = edge_keys(&rules, v6, &mut s);
        same_as_linear(&rules, &keys).unwrap_or_else(|e| panic!("v6, {n} rules: {e}"));
    }
}
