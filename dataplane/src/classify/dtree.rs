//! A decision tree with multi-way cuts, for large rule sets whose prefixes
//! spread over many tuples (ClassBench's acl1 at 10k rules), in the family of
//! HiCuts and HyperSplit with the vector node compare of rte_acl's tries.
//!
//! A key is a point in a few *dimensions* of 32 bits: the source and
//! destination addresses (one for IPv4, four 32-bit chunks for IPv6), the
//! protocol and the two ports. A rule is a box: a prefix is exactly a range
//! in each chunk. Each inner node cuts one dimension of its box into up to
//! [`CUTS`]` + 1` slices; its children hold the rules that overlap their
//! slice. A node becomes a leaf when it holds at most [`BINTH`] rules, or
//! when no cut separates them. Rules are kept in rank order, and a rule that
//! covers its node's whole box hides every later one, which is dropped there.
//!
//! A lookup walks one node per level, comparing the key's value in the node's
//! dimension with all of the node's cut points at once (one AVX-512 compare
//! where the CPU has it), then reads the child's reference from the node's
//! second cache line, next to the first; it ends at a leaf, a slice of rule
//! numbers, and checks them in order: the first that matches is the deciding
//! rule. Leaves take no node: most of a tree's nodes are leaves, and equal
//! leaves share one slice. Address-set fields are not cut on; their
//! membership is checked in the leaf.
//!
//! The tree replicates rules that span cuts, so its memory and build time
//! depend on the rule set; the build stops at a node budget proportional to
//! the rules and returns `None`, and [`super::Engine`] keeps the tuple space.
//! Nothing is allocated or locked during a lookup.

use std::collections::HashMap;
use std::sync::Arc;

use super::bitvec::Simd;
use super::{Addr, AddrMatch, AddrSet, Classifier, Key, Match, Profile, Rule, RuleAction, SetTable};

/// Cut points per inner node; the 16th lane of its first line holds its
/// dimension.
pub const CUTS: usize = 15;

/// Most rules a leaf holds before the builder tries to cut it: few, so that a
/// lookup checks few rules (acl1_10k: 1.3 per lookup, against 1.9 with 8)...
pub const BINTH: usize = 4;

/// ... unless the tree then has more nodes than this: leaves twice as large
/// make a tree several times smaller, which is faster once the small leaves'
/// tree no longer stays in the caches (acl1_100k: 368k nodes with leaves of
/// 4, 14.6 MiB, 20-23 Mlookups/s; 88k with 8, 8.5 MiB, 32-34 Mlookups/s).
pub const CACHED_NODES: usize = 1 << 16;

/// Deepest a leaf may be.
const MAX_DEPTH: usize = 24;

/// Most nodes (inner and leaves) the tree may have per rule (plus
/// [`BASE_NODES`]) before the build gives up.
pub const NODES_PER_RULE: usize = 8;

/// Nodes per rule [`super::Engine`] allows a tree for a set the bit vector
/// also takes: where rules replicate more (fw1_1k's wildcards), the build
/// stops early and the bit vector is faster.
pub const SMALL_NODES_PER_RULE: usize = 4;
const BASE_NODES: usize = 4096;

/// A child reference is an inner node's index, or, with this bit, a leaf:
/// its rule count in the next [`LEN_BITS`] bits and where its rule numbers
/// start in `DecisionTree::lists` in the low [`OFFSET_BITS`].
const LEAF: u32 = 1 << 31;
const LEN_BITS: u32 = 7;
const OFFSET_BITS: u32 = 31 - LEN_BITS;
/// The count of a leaf with at least this many rules: the count is then the
/// list's first entry, before the rule numbers.
const LONG: u32 = (1 << LEN_BITS) - 1;

/// Lanes of a rule row after its bounds: id, priority, flags, source set,
/// destination set.
const ROW_EXTRA: usize = 5;
const FLAG_DENY: u32 = 1;
const FLAG_SRC_SET: u32 = 2;
const FLAG_DST_SET: u32 = 4;

/// Keys walked down the tree together in a batch lookup.
const LANES: usize = 8;

/// An inner node: two cache lines, which CPUs fetch as a pair.
///
/// `cuts`: lanes 0..15 are the cut points, ascending (child `i` takes the
/// values above cut `i - 1` up to cut `i`; unused lanes hold `u32::MAX`), and
/// lane 15 is the dimension. `children`: child `i`'s reference (see [`LEAF`]).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(128))]
struct Node {
    cuts: [u32; 16],
    children: [u32; 16],
}

/// See the module documentation.
#[derive(Debug)]
pub struct DecisionTree<A> {
    /// Inner nodes; the first is the root unless `root` is a leaf.
    nodes: Vec<Node>,
    root: u32,
    /// Inner nodes and leaves, as the tree has them (equal leaves are stored
    /// once).
    count: usize,
    /// Rule rows, `stride` lanes each from `row0`: the low bounds of every
    /// dimension, the high bounds, then [`ROW_EXTRA`] lanes. `row0` aligns the
    /// rows to cache lines.
    rows: Vec<u32>,
    row0: usize,
    stride: usize,
    /// Leaves' rule numbers, in rank order.
    lists: Vec<u32>,
    sets: Vec<Arc<AddrSet<A>>>,
    /// Levels of the deepest leaf.
    depth: usize,
    simd: Simd,
}

/// The dimensions of a key with `D` dimensions for address type `A`.
#[inline(always)]
fn dims<A: Addr, const D: usize>(key: &Key<A>) -> [u32; D] {
    let c = (D - 3) / 2;
    let mut k = [0; D];
    for i in 0..c {
        k[i] = key.src.chunk(i);
        k[c + i] = key.dst.chunk(i);
    }
    k[D - 3] = u32::from(key.proto);
    k[D - 2] = u32::from(key.src_port);
    k[D - 1] = u32::from(key.dst_port);
    k
}

/// How many of `node`'s cut points are below `v`: the child to take.
#[inline(always)]
fn count_lt(node: &[u32; 16], v: u32) -> usize {
    node[..CUTS]
        .iter()
        .enumerate()
        .fold(0u32, |m, (i, &c)| m | (u32::from(c < v) << i))
        .count_ones() as usize
}

#[cfg(target_arch = "x86_64")]
#[allow(
    unsafe_code,
    reason = "AVX-512 intrinsics; the caller guarantees the CPU has them"
)]
mod avx512 {
    use std::arch::x86_64::{
        __m512i, _mm512_load_si512, _mm512_loadu_si512, _mm512_mask_cmple_epu32_mask,
        _mm512_mask_cmplt_epu32_mask, _mm512_maskz_loadu_epi32, _mm512_permutexvar_epi32, _mm512_set1_epi32,
    };

    /// [`super::count_lt`] with one vector compare.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn count_lt(node: &super::Node, v: u32) -> usize {
        // SAFETY: `cuts` is 64 readable bytes at the start of a `Node`,
        // aligned to 128.
        let cuts = unsafe { _mm512_load_si512(node.cuts.as_ptr().cast::<__m512i>()) };
        let v = _mm512_set1_epi32(v.cast_signed());
        _mm512_mask_cmplt_epu32_mask(0x7FFF, cuts, v).count_ones() as usize
    }

    /// Key `k` laid out like a rule row's bounds (each dimension at its low
    /// bound's lane and at its high bound's), in two vectors of 16 lanes:
    /// one load and a permute per vector.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn key_vectors<const D: usize>(k: &[u32; D]) -> [__m512i; 2] {
        const fn lanes<const D: usize>(c: usize) -> [u32; 16] {
            let mut idx = [0u32; 16];
            let mut j = 0;
            while j < 16 {
                // Less than D, at most 11.
                idx[j] = ((16 * c + j) % D) as u32;
                j += 1;
            }
            idx
        }
        let idx: [[u32; 16]; 2] = const { [lanes::<D>(0), lanes::<D>(1)] };
        // At most 16 bits: D is at most 11.
        let first = ((1u32 << D.min(16)) - 1) as u16;
        // SAFETY: the mask reads only the first D lanes, all in `k`.
        let dims = unsafe { _mm512_maskz_loadu_epi32(first, k.as_ptr().cast::<i32>()) };
        // SAFETY: `idx` rows are 16 readable u32.
        let (i0, i1) = unsafe {
            (
                _mm512_loadu_si512(idx[0].as_ptr().cast::<__m512i>()),
                _mm512_loadu_si512(idx[1].as_ptr().cast::<__m512i>()),
            )
        };
        [
            _mm512_permutexvar_epi32(i0, dims),
            _mm512_permutexvar_epi32(i1, dims),
        ]
    }

    /// [`super::inside`] with vector compares, 16 lanes at a time: low
    /// bounds at most the key, the key at most the high bounds. `kv` from
    /// [`key_vectors`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn inside<const D: usize>(row: &[u32], kv: &[__m512i; 2]) -> bool {
        let lanes = |from: usize, to: usize, c: usize| -> u16 {
            let (a, b) = (from.clamp(16 * c, 16 * c + 16), to.clamp(16 * c, 16 * c + 16));
            // At most 16 bits.
            (((1u32 << (b - a)) - 1) << (a - 16 * c)) as u16
        };
        let mut all = true;
        for (c, &k) in kv.iter().enumerate().take((2 * D).div_ceil(16)) {
            assert!(row.len() >= 16 * c + 16, "rows are whole vectors");
            // SAFETY: 16 readable u32 (checked above).
            let r = unsafe { _mm512_loadu_si512(row[16 * c..].as_ptr().cast::<__m512i>()) };
            let (lo, hi) = (lanes(0, D, c), lanes(D, 2 * D, c));
            let m = _mm512_mask_cmple_epu32_mask(lo, r, k) | _mm512_mask_cmple_epu32_mask(hi, k, r);
            all &= m == lo | hi;
        }
        all
    }
}

/// Whether key `k` lies in the box of rule row `row`.
#[inline(always)]
fn inside<const D: usize>(row: &[u32], k: &[u32; D]) -> bool {
    let mut inside = true;
    for d in 0..D {
        inside &= (row[d] <= k[d]) & (k[d] <= row[D + d]);
    }
    inside
}

/// Rule boxes in rank order, while building.
struct Builder<const D: usize> {
    lo: Vec<[u32; D]>,
    hi: Vec<[u32; D]>,
    /// Whether the rule has no address set (so its box is exact).
    exact: Vec<bool>,
    nodes: Vec<Node>,
    lists: Vec<u32>,
    /// Where each distinct leaf starts in `lists`.
    leaves: HashMap<Vec<u32>, u32>,
    /// Nodes so far, inner and leaves.
    count: usize,
    budget: usize,
    depth: usize,
    /// Most rules a leaf holds before it is cut.
    binth: usize,
}

/// The address `m` covers, chunk by chunk; `None` for an address set.
fn chunk_ranges<A: Addr>(m: &AddrMatch<A>) -> Option<Vec<(u32, u32)>> {
    let AddrMatch::Prefix(p) = m else { return None };
    Some(
        (0..A::CHUNKS)
            .map(|i| {
                let (start, end) = (32 * i as u32, 32 * (i as u32 + 1));
                let len = u32::from(p.len);
                let lo = p.addr.chunk(i);
                if len >= end {
                    (lo, lo)
                } else if len <= start {
                    (0, u32::MAX)
                } else {
                    (lo, lo | (u32::MAX >> (len - start)))
                }
            })
            .collect(),
    )
}

impl<const D: usize> Builder<D> {
    fn covers(&self, r: usize, lo: &[u32; D], hi: &[u32; D]) -> bool {
        self.exact[r] && (0..D).all(|d| self.lo[r][d] <= lo[d] && self.hi[r][d] >= hi[d])
    }

    /// Builds the node for the box `lo..=hi` holding `rules` (ascending rank)
    /// and returns its reference. `Err` when the node budget is spent.
    fn node(&mut self, rules: &[u32], lo: [u32; D], hi: [u32; D], depth: usize) -> Result<u32, ()> {
        self.depth = self.depth.max(depth);
        // Rules after one that covers the whole box never decide here.
        let mut kept: Vec<u32> = Vec::with_capacity(rules.len());
        for &r in rules {
            kept.push(r);
            if self.covers(r as usize, &lo, &hi) {
                break;
            }
        }
        let split = if kept.len() > self.binth && depth < MAX_DEPTH {
            self.best_cut(&kept, &lo, &hi)
        } else {
            None
        };
        let Some((dim, cuts)) = split else {
            return self.leaf(&kept);
        };
        let children = cuts.len() + 1;
        let at = self.nodes.len();
        if self.count + children > self.budget || at >= LEAF as usize {
            return Err(());
        }
        self.count += children;
        let mut line = [u32::MAX; 16];
        line[..cuts.len()].copy_from_slice(&cuts);
        line[15] = dim as u32;
        self.nodes.push(Node {
            cuts: line,
            children: [LEAF; 16],
        });
        // Each child's rules: those whose range in `dim` reaches its slice.
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); children];
        for &r in &kept {
            let (a, b) = self.span(r as usize, dim, &cuts, &lo, &hi);
            for list in &mut lists[a..=b] {
                list.push(r);
            }
        }
        for (i, list) in lists.iter().enumerate() {
            let (mut clo, mut chi) = (lo, hi);
            if i > 0 {
                clo[dim] = cuts[i - 1] + 1;
            }
            if i < cuts.len() {
                chi[dim] = cuts[i];
            }
            self.nodes[at].children[i] = self.node(list, clo, chi, depth + 1)?;
        }
        Ok(at as u32)
    }

    /// The reference of a leaf holding `rules`, stored once per distinct list.
    fn leaf(&mut self, rules: &[u32]) -> Result<u32, ()> {
        let offset = match self.leaves.get(rules) {
            Some(&offset) => offset,
            None => {
                let offset = u32::try_from(self.lists.len()).map_err(|_| ())?;
                if offset >> OFFSET_BITS != 0 {
                    return Err(());
                }
                if rules.len() >= LONG as usize {
                    self.lists.push(u32::try_from(rules.len()).map_err(|_| ())?);
                }
                self.lists.extend_from_slice(rules);
                self.leaves.insert(rules.to_vec(), offset);
                offset
            }
        };
        // At most `LONG`.
        let len = rules.len().min(LONG as usize) as u32;
        Ok(LEAF | len << OFFSET_BITS | offset)
    }

    /// The children rule `r` reaches when `dim` is cut at `cuts`.
    fn span(&self, r: usize, dim: usize, cuts: &[u32], lo: &[u32; D], hi: &[u32; D]) -> (usize, usize) {
        let a = self.lo[r][dim].max(lo[dim]);
        let b = self.hi[r][dim].min(hi[dim]);
        (cuts.partition_point(|&c| c < a), cuts.partition_point(|&c| c < b))
    }

    /// The dimension and cut points that leave the fewest rules per child on
    /// average, among those that leave every child fewer rules than `rules`;
    /// `None` when no cut does.
    fn best_cut(&self, rules: &[u32], lo: &[u32; D], hi: &[u32; D]) -> Option<(usize, Vec<u32>)> {
        let mut best: Option<(f64, usize, Vec<u32>)> = None;
        let mut events = Vec::with_capacity(2 * rules.len());
        for d in 0..D {
            events.clear();
            for &r in rules {
                let (a, b) = (
                    self.lo[r as usize][d].max(lo[d]),
                    self.hi[r as usize][d].min(hi[d]),
                );
                if a > lo[d] {
                    events.push(a - 1);
                }
                if b < hi[d] {
                    events.push(b);
                }
            }
            if events.is_empty() {
                continue;
            }
            events.sort_unstable();
            let mut cuts: Vec<u32> = events.clone();
            cuts.dedup();
            if cuts.len() > CUTS {
                // Equally many rule ends between consecutive cuts.
                cuts = (1..=CUTS)
                    .map(|j| events[j * events.len() / (CUTS + 1)])
                    .collect();
                cuts.dedup();
            }
            let children = cuts.len() + 1;
            let mut count = vec![0i64; children + 1];
            for &r in rules {
                let (a, b) = self.span(r as usize, d, &cuts, lo, hi);
                count[a] += 1;
                count[b + 1] -= 1;
            }
            let (mut run, mut sum, mut max) = (0i64, 0i64, 0i64);
            for c in &count[..children] {
                run += c;
                sum += run;
                max = max.max(run);
            }
            if max as usize >= rules.len() {
                continue;
            }
            let score = sum as f64 / children as f64;
            if best.as_ref().is_none_or(|b| score < b.0) {
                best = Some((score, d, cuts));
            }
        }
        best.map(|(_, d, cuts)| (d, cuts))
    }
}

impl<A: Addr> DecisionTree<A> {
    /// Dimensions of a key.
    const DIMS: usize = 2 * A::CHUNKS + 3;

    /// The tree for `rules`, or `None` when it would take more than
    /// [`NODES_PER_RULE`] nodes per rule: with leaves of [`BINTH`] rules
    /// where that takes at most [`CACHED_NODES`] nodes (the build stops
    /// there), else of twice as many.
    pub fn build(rules: &[Rule<A>]) -> Option<Self> {
        let budget = NODES_PER_RULE
            .saturating_mul(rules.len())
            .saturating_add(BASE_NODES);
        Self::build_with(rules, BINTH, budget.min(CACHED_NODES))
            .or_else(|| Self::build_with(rules, 2 * BINTH, budget))
    }

    /// The tree with leaves of at most `binth` rules where cuts can separate
    /// them, or `None` if it needs more than `max_nodes` nodes.
    pub fn build_with(rules: &[Rule<A>], binth: usize, max_nodes: usize) -> Option<Self> {
        match Self::DIMS {
            5 => Self::build_dims::<5>(rules, binth, max_nodes),
            11 => Self::build_dims::<11>(rules, binth, max_nodes),
            _ => unreachable!("addresses are 32 or 128 bits"),
        }
    }

    fn build_dims<const D: usize>(rules: &[Rule<A>], binth: usize, budget: usize) -> Option<Self> {
        let mut order: Vec<&Rule<A>> = rules.iter().collect();
        order.sort_by_key(|r| r.rank());
        let mut sets = SetTable::new();
        let c = A::CHUNKS;
        let stride = (2 * D + ROW_EXTRA).div_ceil(16) * 16;
        let mut rows = vec![0u32; order.len() * stride + 16];
        let row0 = (64 - rows.as_ptr() as usize % 64) % 64 / size_of::<u32>();
        let mut b = Builder::<D> {
            lo: Vec::with_capacity(order.len()),
            hi: Vec::with_capacity(order.len()),
            exact: Vec::with_capacity(order.len()),
            nodes: Vec::new(),
            lists: Vec::new(),
            leaves: HashMap::new(),
            count: 1,
            budget,
            depth: 0,
            binth,
        };
        for (n, r) in order.iter().enumerate() {
            let (mut lo, mut hi) = ([0u32; D], [u32::MAX; D]);
            let src = chunk_ranges(&r.src);
            let dst = chunk_ranges(&r.dst);
            for i in 0..c {
                if let Some(s) = &src {
                    (lo[i], hi[i]) = s[i];
                }
                if let Some(s) = &dst {
                    (lo[c + i], hi[c + i]) = s[i];
                }
            }
            (lo[D - 3], hi[D - 3]) = r.proto.map_or((0, 255), |p| (u32::from(p), u32::from(p)));
            (lo[D - 2], hi[D - 2]) = (u32::from(r.src_ports.0), u32::from(r.src_ports.1));
            (lo[D - 1], hi[D - 1]) = (u32::from(r.dst_ports.0), u32::from(r.dst_ports.1));
            let row = &mut rows[row0 + n * stride..][..stride];
            row[..D].copy_from_slice(&lo);
            row[D..2 * D].copy_from_slice(&hi);
            let mut flags = if r.action == RuleAction::Deny {
                FLAG_DENY
            } else {
                0
            };
            if src.is_none() {
                flags |= FLAG_SRC_SET;
            }
            if dst.is_none() {
                flags |= FLAG_DST_SET;
            }
            row[2 * D..2 * D + ROW_EXTRA].copy_from_slice(&[
                r.id,
                r.priority,
                flags,
                sets.index(&r.src).unwrap_or(0),
                sets.index(&r.dst).unwrap_or(0),
            ]);
            b.lo.push(lo);
            b.hi.push(hi);
            b.exact.push(src.is_some() && dst.is_some());
        }
        // The whole key space: addresses and ports as wide as their types.
        let lo = [0u32; D];
        let mut hi = [u32::MAX; D];
        hi[D - 3] = 255;
        (hi[D - 2], hi[D - 1]) = (65535, 65535);
        // Rules that can never match (an empty range) are left out.
        let all: Vec<u32> = (0..order.len())
            .filter(|&r| (0..D).all(|d| b.lo[r][d] <= b.hi[r][d] && b.lo[r][d] <= hi[d]))
            .map(|r| u32::try_from(r).expect("fewer than 2^32 rules"))
            .collect();
        let root = b.node(&all, lo, hi, 0).ok()?;
        let mut nodes = b.nodes;
        nodes.shrink_to_fit();
        let mut lists = b.lists;
        lists.shrink_to_fit();
        Some(DecisionTree {
            nodes,
            root,
            count: b.count,
            rows,
            row0,
            stride,
            lists,
            sets: sets.into_sets(),
            depth: b.depth,
            simd: Simd::detect(),
        })
    }

    /// The same tree, looked up without AVX-512 whatever the CPU has: for
    /// tests, which otherwise run only the copy for the CPU they are on.
    #[must_use]
    pub fn portable(mut self) -> Self {
        self.simd = Simd::Baseline;
        self
    }

    /// Number of nodes (inner and leaves; equal leaves are stored once).
    pub fn nodes(&self) -> usize {
        self.count
    }

    /// Levels of the deepest leaf.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// [`Classifier::lookup`], adding its cost to `profile`: inner nodes
    /// visited as probes, leaf rules checked as candidates.
    pub fn lookup_profiled(&self, key: &Key<A>, profile: &mut Profile) -> Option<Match> {
        match Self::DIMS {
            5 => self.profiled::<5>(key, profile),
            11 => self.profiled::<11>(key, profile),
            _ => unreachable!("addresses are 32 or 128 bits"),
        }
    }

    fn profiled<const D: usize>(&self, key: &Key<A>, profile: &mut Profile) -> Option<Match> {
        profile.lookups += 1;
        let k = dims::<A, D>(key);
        let mut at = self.root;
        while at & LEAF == 0 {
            profile.probes += 1;
            let node = &self.nodes[at as usize];
            at = self.child::<false>(node, k[node.cuts[15] as usize]);
        }
        self.scan::<D>(at, key, |r| {
            profile.candidates += 1;
            inside::<D>(self.row(r), &k)
        })
    }

    /// The reference of the child of inner `node` that `v` falls in.
    #[inline(always)]
    #[allow(unsafe_code, reason = "AVX-512 compare, guaranteed by the caller")]
    fn child<const AVX512: bool>(&self, node: &Node, v: u32) -> u32 {
        let i = if AVX512 {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `AVX512` is true only in the copy compiled for AVX-512,
            // run only when the CPU has it.
            let i = unsafe { avx512::count_lt(node, v) };
            #[cfg(not(target_arch = "x86_64"))]
            let i = count_lt(&node.cuts, v);
            i
        } else {
            count_lt(&node.cuts, v)
        };
        // At most `CUTS`, so the mask changes nothing but the bounds check.
        node.children[i & 15]
    }

    /// Rule `r`'s row.
    #[inline(always)]
    fn row(&self, r: u32) -> &[u32] {
        &self.rows[self.row0 + r as usize * self.stride..][..self.stride]
    }

    /// Rule `r`'s decision, if its address sets (if any) hold the key.
    #[inline(always)]
    fn decide<const D: usize>(&self, r: u32, key: &Key<A>) -> Option<Match> {
        let extra = &self.row(r)[2 * D..][..ROW_EXTRA];
        if extra[2] & (FLAG_SRC_SET | FLAG_DST_SET) != 0 && !self.in_sets(extra, key) {
            return None;
        }
        Some(Match {
            id: extra[0],
            priority: extra[1],
            action: if extra[2] & FLAG_DENY != 0 {
                RuleAction::Deny
            } else {
                RuleAction::Allow
            },
        })
    }

    /// The deciding rule among the rules of leaf reference `leaf` for a key
    /// that lies in rule `r`'s box when `inside(r)`: the first, in rank
    /// order, whose box and address sets hold the key.
    #[inline(always)]
    fn scan<const D: usize>(
        &self,
        leaf: u32,
        key: &Key<A>,
        mut inside: impl FnMut(u32) -> bool,
    ) -> Option<Match> {
        self.leaf_rules(leaf)
            .iter()
            .filter(|&&r| inside(r))
            .find_map(|&r| self.decide::<D>(r, key))
    }

    /// The rule numbers of leaf `leaf` (a reference), in rank order.
    #[inline(always)]
    fn leaf_rules(&self, leaf: u32) -> &[u32] {
        let offset = (leaf & ((1 << OFFSET_BITS) - 1)) as usize;
        let len = (leaf >> OFFSET_BITS) & LONG;
        if len < LONG {
            &self.lists[offset..][..len as usize]
        } else {
            &self.lists[offset + 1..][..self.lists[offset] as usize]
        }
    }

    #[cold]
    fn in_sets(&self, extra: &[u32], key: &Key<A>) -> bool {
        (extra[2] & FLAG_SRC_SET == 0 || self.sets[extra[3] as usize].contains(key.src))
            && (extra[2] & FLAG_DST_SET == 0 || self.sets[extra[4] as usize].contains(key.dst))
    }

    /// Batch lookup: [`LANES`] keys walk down together, so that their node
    /// loads overlap.
    #[inline(always)]
    #[allow(unsafe_code, reason = "AVX-512 compares, guaranteed by the caller")]
    fn batch<const AVX512: bool, const D: usize>(&self, keys: &[Key<A>], out: &mut [Option<Match>]) {
        for (keys, out) in keys.chunks(LANES).zip(out.chunks_mut(LANES)) {
            let mut k = [[0u32; D]; LANES];
            let mut at = [self.root; LANES];
            let n = keys.len().min(out.len());
            for l in 0..n {
                k[l] = dims::<A, D>(&keys[l]);
            }
            // Every key takes `depth` steps; one at a leaf stays there. A key
            // at a leaf walks the root but keeps its leaf, so that no branch
            // depends on where keys are.
            for _ in 0..self.depth {
                for l in 0..LANES {
                    let leaf = at[l] & LEAF != 0;
                    let node = &self.nodes[if leaf { 0 } else { at[l] as usize }];
                    let dim = node.cuts[15] as usize;
                    let next = self.child::<AVX512>(node, k[l][dim.min(D - 1)]);
                    at[l] = std::hint::select_unpredictable(leaf, at[l], next);
                }
            }
            for l in 0..n {
                out[l] = if AVX512 {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as in `child`.
                    let m = unsafe {
                        let kv = avx512::key_vectors::<D>(&k[l]);
                        self.scan::<D>(at[l], &keys[l], |r| avx512::inside::<D>(self.row(r), &kv))
                    };
                    #[cfg(not(target_arch = "x86_64"))]
                    let m = self.scan::<D>(at[l], &keys[l], |r| inside::<D>(self.row(r), &k[l]));
                    m
                } else {
                    self.scan::<D>(at[l], &keys[l], |r| inside::<D>(self.row(r), &k[l]))
                };
            }
        }
    }

    #[inline(always)]
    fn batch_dims<const AVX512: bool>(&self, keys: &[Key<A>], out: &mut [Option<Match>]) {
        match Self::DIMS {
            5 => self.batch::<AVX512, 5>(keys, out),
            11 => self.batch::<AVX512, 11>(keys, out),
            _ => unreachable!("addresses are 32 or 128 bits"),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt,bmi1")]
    fn batch_avx512(&self, keys: &[Key<A>], out: &mut [Option<Match>]) {
        self.batch_dims::<true>(keys, out);
    }
}

impl<A: Addr> Classifier<A> for DecisionTree<A> {
    fn lookup(&self, key: &Key<A>) -> Option<Match> {
        super::lookup_one(self, key)
    }

    #[allow(
        unsafe_code,
        reason = "calling the copy compiled for AVX-512, which `Simd::detect` found at build"
    )]
    fn lookup_batch(&self, keys: &[Key<A>], out: &mut [Option<Match>]) {
        match self.simd {
            // SAFETY: `simd` is Avx512 only if the CPU has every feature
            // `batch_avx512` is compiled for (checked in `Simd::detect`).
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { self.batch_avx512(keys, out) },
            _ => self.batch_dims::<false>(keys, out),
        }
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self.nodes.capacity() * size_of::<Node>()
            + self.rows.capacity() * size_of::<u32>()
            + self.lists.capacity() * size_of::<u32>()
            + self.sets.iter().map(|s| s.memory_bytes()).sum::<usize>()
    }
}
