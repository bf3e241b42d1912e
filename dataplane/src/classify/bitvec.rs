//! A bit-vector classifier for small rule sets, after Lakshman and Stiliadis
//! (1998) with the equivalence classes of RFC (Gupta and McKeown, 1999).
//!
//! Rules are numbered in rank order. Each field is cut into *elementary
//! intervals*: the pieces between consecutive rule-range boundaries, inside
//! which every value is matched by the same rules. Intervals matched by the same
//! rules share one *class*, stored once as a bitmap of those rules. Protocol,
//! source port and destination port are combined: the AND of their three
//! classes is tabulated once per combination, so a lookup ANDs only three
//! bitmaps (source address, destination address, protocol and ports) and
//! returns the first set bit: the matching rule of smallest rank.
//!
//! A field's interval is found with a static search tree (an S+-tree): a root
//! of up to 64 keys and leaves of 16, each node compared at once with one
//! AVX-512 instruction where the CPU has it, so two dependent steps cover 1040
//! boundaries. Keys are classified [`LANES`] at a time, phase by phase, so the
//! loads of different keys overlap; there is no data-dependent branch but the
//! end of the bitmap scan.
//!
//! Why: the tuple space's cost is its probes, one hash table per prefix-length
//! tuple; on sets whose prefixes spread over many tuples (ClassBench's acl1 and
//! fw1) this engine looks up about twice as fast. Its memory grows with
//! classes x rules and its build with the boundaries, so [`super::Engine`]
//! builds it only for sets of at most [`MAX_RULES`] rules that the tuple space
//! would need more than [`super::FEW_TABLES`] tables for, and that do not expand
//! large address sets.
//!
//! The lookup is written once and compiled three times (AVX-512, AVX2, baseline
//! x86-64); the CPU is checked once, at build. Nothing is allocated or locked
//! during a lookup.

use hashbrown::HashTable;

use super::{Addr, AddrMatch, Classifier, Key, Match, Rule};

/// Largest rule set [`super::Engine`] builds this engine for: beyond it the
/// bitmaps outgrow the cache and the tuple space is faster (measured with
/// `rampart-bench classify --engine`).
pub const MAX_RULES: usize = 1024;
const _: () = assert!(MAX_RULES <= 64 * 64, "bitmaps of at most 64 words");

/// Most address set members per rule, on average, the engine expands (see
/// [`BitVector::build`]).
pub const MAX_SET_MEMBERS_PER_RULE: usize = 4;

/// Most combinations of protocol, source port and destination port classes
/// the engine tabulates (4 bytes each, plus the distinct bitmaps they make).
pub const MAX_PORT_CLASSES: usize = 1 << 16;

/// Keys whose field searches are interleaved in a batch lookup.
const LANES: usize = 8;

/// Keys per search-tree node: one cache line of `u32`.
const NODE: usize = 16;
/// Children per inner node: one left of each key, one right of the last.
const FANOUT: usize = NODE + 1;

/// A value a search tree holds: an address or a port.
#[allow(unsafe_code, reason = "an unsafe method: its callers must check the CPU")]
pub trait Lane: Copy + Ord {
    /// How many of `node`'s keys are at most `v`: one vector compare and a
    /// population count where the type has an AVX-512 form, a scalar loop
    /// otherwise.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VL.
    #[inline(always)]
    unsafe fn count_le_avx512(node: &[Self; NODE], v: Self) -> usize {
        count_le(node, v)
    }
}

/// [`Lane::count_le_avx512`] without vectors: a mask and its population count
/// (`filter().count()` would add the lanes one by one).
#[inline(always)]
fn count_le<T: Copy + Ord>(node: &[T; NODE], v: T) -> usize {
    node.iter()
        .enumerate()
        .fold(0u32, |m, (i, &b)| m | (u32::from(b <= v) << i))
        .count_ones() as usize
}

#[cfg(target_arch = "x86_64")]
#[allow(
    unsafe_code,
    reason = "AVX-512 intrinsics; the caller guarantees the CPU has them"
)]
mod avx512 {
    use std::arch::x86_64::{
        __m256i, __m512i, _mm256_cmple_epu16_mask, _mm256_loadu_si256, _mm256_set1_epi16, _mm512_and_si512,
        _mm512_cmple_epu32_mask, _mm512_loadu_si512, _mm512_set1_epi32, _mm512_test_epi64_mask,
    };

    /// The AND of three 8-word vectors: bit i of the result is set when word
    /// i is not zero.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn and3_nonzero(v: [&[u64; 8]; 3]) -> u8 {
        // SAFETY: each is 8 readable u64, 64 bytes; the loads are unaligned.
        let load = |x: &[u64; 8]| unsafe { _mm512_loadu_si512(x.as_ptr().cast::<__m512i>()) };
        let x = _mm512_and_si512(load(v[0]), load(v[1]));
        _mm512_test_epi64_mask(x, load(v[2]))
    }

    use super::NODE;

    /// # Safety
    /// The CPU must have AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn count_le_u32(node: &[u32; NODE], v: u32) -> usize {
        // SAFETY: `node` is 16 readable u32, 64 bytes; the load is unaligned.
        let keys = unsafe { _mm512_loadu_si512(node.as_ptr().cast::<__m512i>()) };
        // Bit-for-bit reinterpretation for the broadcast.
        let v = _mm512_set1_epi32(v.cast_signed());
        _mm512_cmple_epu32_mask(keys, v).count_ones() as usize
    }

    /// # Safety
    /// The CPU must have AVX-512 BW and VL.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn count_le_u16(node: &[u16; NODE], v: u16) -> usize {
        // SAFETY: `node` is 16 readable u16, 32 bytes; the load is unaligned.
        let keys = unsafe { _mm256_loadu_si256(node.as_ptr().cast::<__m256i>()) };
        let v = _mm256_set1_epi16(v.cast_signed());
        _mm256_cmple_epu16_mask(keys, v).count_ones() as usize
    }
}

#[allow(unsafe_code, reason = "forwarding the caller's guarantee to the intrinsics")]
impl Lane for u32 {
    #[inline(always)]
    unsafe fn count_le_avx512(node: &[Self; NODE], v: Self) -> usize {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller guarantees AVX-512 F.
        return unsafe { avx512::count_le_u32(node, v) };
        #[cfg(not(target_arch = "x86_64"))]
        count_le(node, v)
    }
}

#[allow(unsafe_code, reason = "forwarding the caller's guarantee to the intrinsics")]
impl Lane for u16 {
    #[inline(always)]
    unsafe fn count_le_avx512(node: &[Self; NODE], v: Self) -> usize {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller guarantees AVX-512 BW and VL.
        return unsafe { avx512::count_le_u16(node, v) };
        #[cfg(not(target_arch = "x86_64"))]
        count_le(node, v)
    }
}

impl Lane for u128 {}
impl Lane for u8 {}

/// A static search tree over sorted boundaries (an S+-tree): leaves hold the
/// boundaries in blocks of [`NODE`], padded with the largest value; inner node
/// `c` of a level has children `FANOUT * c + j`, and its key `j - 1` is the first
/// boundary under child `j`. A search compares a whole node at once (one vector
/// compare where the CPU has them) and visits one node per level: three levels
/// cover 4913 blocks, 78 608 boundaries.
#[derive(Debug)]
struct Tree<T> {
    /// Up to [`ROOT`] keys (a whole number of nodes), compared all at once:
    /// their count is the child in the first of `levels`. Empty when the
    /// leaves are one block.
    root: Vec<T>,
    /// Levels below the root down to the leaves, `NODE` keys per node.
    levels: Vec<Vec<T>>,
}

/// Most keys in a tree's root: four nodes, compared independently, so the root
/// costs one step of latency and covers 65 children.
const ROOT: usize = 4 * NODE;

impl<T: Lane> Tree<T> {
    fn build(bounds: &[T], max: T) -> Self {
        if bounds.is_empty() {
            return Tree {
                root: Vec::new(),
                levels: Vec::new(),
            };
        }
        let blocks = bounds.len().div_ceil(NODE);
        let mut leaves = bounds.to_vec();
        leaves.resize(blocks * NODE, max);
        // Built bottom-up; `span`: leaf blocks under one node of the level.
        let mut inner = Vec::new();
        let mut span = 1;
        let mut nodes = blocks;
        while nodes > ROOT + 1 {
            nodes = nodes.div_ceil(FANOUT);
            let child_span = span;
            span *= FANOUT;
            let mut level = Vec::with_capacity(nodes * NODE);
            for c in 0..nodes {
                for j in 1..FANOUT {
                    let block = c * span + j * child_span;
                    level.push(if block < blocks { leaves[block * NODE] } else { max });
                }
            }
            inner.push(level);
        }
        // The root: the first key under each of its children but the first.
        let mut root: Vec<T> = (1..nodes).map(|j| leaves[j * span * NODE]).collect();
        root.resize(root.len().div_ceil(NODE) * NODE, max);
        inner.reverse();
        inner.push(leaves);
        Tree { root, levels: inner }
    }

    /// For each of `vs`, the number of boundaries at most it, or more when it
    /// is the largest value (padding counts then; the caller maps every such
    /// rank to the last interval). The values descend level by level
    /// together, so their loads and compares overlap.
    ///
    /// `AVX512`: whether to compare nodes with AVX-512, which the caller then
    /// guarantees the CPU has.
    #[inline(always)]
    #[allow(unsafe_code, reason = "AVX-512 compares, guaranteed by the caller")]
    fn ranks<const AVX512: bool, const N: usize>(&self, vs: &[T; N]) -> [usize; N] {
        let count = |keys: &[T], v: T| -> usize {
            let keys: &[T; NODE] = keys.try_into().expect("whole nodes");
            if AVX512 {
                // SAFETY: `AVX512` is true only in `batch_avx512`'s copy, run
                // only when the CPU has AVX-512.
                unsafe { T::count_le_avx512(keys, v) }
            } else {
                count_le(keys, v)
            }
        };
        let mut idx = [0; N];
        if !self.root.is_empty() {
            for (i, &v) in idx.iter_mut().zip(vs) {
                *i = self.root.chunks_exact(NODE).map(|keys| count(keys, v)).sum();
            }
        }
        let depth = self.levels.len();
        for (l, level) in self.levels.iter().enumerate() {
            // A child past the last node exists only under the padding key,
            // which only the largest value reaches: stay on the last node.
            let last = level.len() / NODE - 1;
            let width = if l + 1 == depth { NODE } else { FANOUT };
            for (i, &v) in idx.iter_mut().zip(vs) {
                let node = (*i).min(last);
                *i = node * width + count(&level[node * NODE..][..NODE], v);
            }
        }
        idx
    }

    fn memory_bytes(&self) -> usize {
        (self.root.capacity() + self.levels.iter().map(Vec::capacity).sum::<usize>()) * size_of::<T>()
    }
}

/// One field: its elementary intervals and each one's class.
#[derive(Debug)]
struct Field<T> {
    tree: Tree<T>,
    /// Per rank, the offset of its interval's class bitmap in
    /// `BitVector::bits` (for the port fields, the class number that indexes
    /// `BitVector::ports`); padded to cover every rank the tree returns.
    offsets: Vec<u32>,
}

impl<T: Lane> Field<T> {
    /// `bounds`: starts of the intervals after the first (which starts at 0),
    /// ascending; `offsets[i]`: interval i's class.
    fn new(bounds: &[T], mut offsets: Vec<u32>, max: T) -> Self {
        let tree = Tree::build(bounds, max);
        let ranks = tree.levels.last().map_or(0, Vec::len) + 1;
        let last = *offsets.last().expect("at least one interval");
        offsets.resize(ranks.max(offsets.len()), last);
        Field { tree, offsets }
    }

    /// The class bitmap offsets of values `vs`.
    #[inline(always)]
    fn offsets<const AVX512: bool, const N: usize>(&self, vs: &[T; N]) -> [usize; N] {
        self.tree.ranks::<AVX512, N>(vs).map(|r| self.offsets[r] as usize)
    }

    fn memory_bytes(&self) -> usize {
        self.tree.memory_bytes() + self.offsets.capacity() * size_of::<u32>()
    }
}

/// Builds a field from each rule's ranges, adding new class bitmaps to `bits`.
/// `classes` maps a bitmap already stored to its offset (shared by all fields).
struct Builder {
    words: usize,
    bits: Vec<u64>,
    /// Offsets of the bitmaps in `bits`, by [`bitmap_hash`].
    classes: HashTable<u32>,
}

/// A quick hash of a bitmap (build time only; multiply-rotate per word).
fn bitmap_hash(bitmap: &[u64]) -> u64 {
    bitmap.iter().fold(0x243F_6A88_85A3_08D3u64, |h, &w| {
        (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
    })
}

impl Builder {
    fn new(words: usize) -> Self {
        Builder {
            words,
            bits: Vec::new(),
            classes: HashTable::new(),
        }
    }

    /// Number of bitmaps stored.
    fn classes(&self) -> usize {
        self.bits.len() / self.words
    }

    fn class(&mut self, bitmap: &[u64]) -> u32 {
        let (bits, words) = (&self.bits, self.words);
        let stored = |&o: &u32| &bits[o as usize..][..words];
        let hash = bitmap_hash(bitmap);
        if let Some(&offset) = self.classes.find(hash, |o| stored(o) == bitmap) {
            return offset;
        }
        let offset = u32::try_from(self.bits.len()).expect("class bitmaps fit 2^32 words");
        self.bits.extend_from_slice(bitmap);
        let (bits, words) = (&self.bits, self.words);
        self.classes
            .insert_unique(hash, offset, |&o| bitmap_hash(&bits[o as usize..][..words]));
        offset
    }

    /// `ranges[i]`: rule i's inclusive ranges, ascending, disjoint and not
    /// touching; `next` the successor of a value (wrapping after `max`).
    fn field<T: Lane>(
        &mut self,
        ranges: impl Iterator<Item = (usize, (T, T))>,
        zero: T,
        max: T,
        next: fn(T) -> T,
    ) -> Field<T> {
        let (mut bounds, mut offsets) = (Vec::new(), Vec::new());
        // (point, rule, set?) events: a rule enters at a range's start and
        // leaves after its end.
        let mut events: Vec<(T, u32, bool)> = Vec::with_capacity(ranges.size_hint().0 * 2);
        for (i, (lo, hi)) in ranges {
            let i = u32::try_from(i).expect("fewer than 2^32 rules");
            events.push((lo, i, true));
            if hi != max {
                events.push((next(hi), i, false));
            }
        }
        events.sort_unstable_by_key(|e| e.0);

        let mut current = vec![0u64; self.words];
        let mut k = 0;
        let mut point = zero;
        loop {
            while k < events.len() && events[k].0 == point {
                let (_, rule, set) = events[k];
                let (word, bit) = (rule as usize / 64, rule % 64);
                if set {
                    current[word] |= 1 << bit;
                } else {
                    current[word] &= !(1 << bit);
                }
                k += 1;
            }
            let offset = self.class(&current);
            if offsets.last() != Some(&offset) {
                if !offsets.is_empty() {
                    bounds.push(point);
                }
                offsets.push(offset);
            }
            match events.get(k) {
                Some(e) => point = e.0,
                None => break,
            }
        }
        Field::new(&bounds, offsets, max)
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct BitVector<A> {
    /// u64 words per class bitmap.
    words: usize,
    src: Field<A>,
    dst: Field<A>,
    /// Protocol and ports are classified together: each port field gives a
    /// class number (`src_port`'s premultiplied by the number of destination
    /// port classes), the protocol a number premultiplied by both; their sum
    /// indexes `ports`, the offset of the AND of the three classes' bitmaps.
    src_port: Field<u16>,
    dst_port: Field<u16>,
    proto: Box<[u32; 256]>,
    ports: Vec<u32>,
    /// Every class bitmap, `words` each.
    bits: Vec<u64>,
    /// The rules' answers, in rank order (bit i = `matches[i]`), then `None`
    /// for no match.
    matches: Vec<Option<Match>>,
    /// The widest vector instructions this CPU has, detected at build.
    simd: Simd,
}

/// Which compiled copy of a lookup to run: the same code, compiled for
/// more or less vector width (see [`BitVector::batch`]; the decision tree
/// has an AVX-512 copy and the baseline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Simd {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Simd {
    pub(super) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("popcnt")
                && std::arch::is_x86_feature_detected!("bmi1")
            {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("popcnt")
                && std::arch::is_x86_feature_detected!("bmi1")
            {
                return Simd::Avx2;
            }
        }
        Simd::Baseline
    }
}

impl<A: Addr> BitVector<A> {
    /// The engine for `rules`, or `None` when they are more than
    /// [`MAX_RULES`], their address sets hold more than
    /// [`MAX_SET_MEMBERS_PER_RULE`] members per rule, or their protocol and
    /// port classes combine to more than [`MAX_PORT_CLASSES`]: the tuple space
    /// suits such sets better.
    pub fn build(rules: &[Rule<A>]) -> Option<Self> {
        if rules.len() > MAX_RULES {
            return None;
        }
        // Address sets expand into one range per member, each a boundary to
        // sort and a class to hash at build: beyond a few per rule, building
        // costs more than the tuple space (which checks set members only on a
        // candidate) gains at lookup.
        let set_ranges: usize = rules
            .iter()
            .flat_map(|r| [&r.src, &r.dst])
            .map(|m| match m {
                AddrMatch::Prefix(_) => 0,
                AddrMatch::Set(s) => s.len(),
            })
            .sum();
        if set_ranges > MAX_SET_MEMBERS_PER_RULE * rules.len().max(1) {
            return None;
        }
        let mut order: Vec<&Rule<A>> = rules.iter().collect();
        order.sort_by_key(|r| r.rank());
        // A whole number of 512-bit vectors per bitmap.
        let words = rules.len().div_ceil(512).max(1) * 8;
        let mut b = Builder::new(words);
        let all = A::default().or_not(A::default());
        // Each rule's address ranges: a prefix is one, a set many.
        let addrs = |f: fn(&Rule<A>) -> &AddrMatch<A>| {
            order
                .iter()
                .enumerate()
                .flat_map(move |(i, r)| f(r).ranges().into_iter().map(move |x| (i, x)))
        };
        let src = b.field(addrs(|r| &r.src), A::default(), all, A::next);
        let dst = b.field(addrs(|r| &r.dst), A::default(), all, A::next);

        // Protocol and port classes, each field in an arena of its own (so a
        // class's number is its offset / `words`), then their combinations.
        let (mut sp_arena, mut dp_arena, mut proto_arena) =
            (Builder::new(words), Builder::new(words), Builder::new(words));
        let ports = |f: fn(&Rule<A>) -> (u16, u16)| order.iter().enumerate().map(move |(i, r)| (i, f(r)));
        let next16 = |p: u16| p.wrapping_add(1);
        let mut src_port = sp_arena.field(ports(|r| r.src_ports), 0, u16::MAX, next16);
        let mut dst_port = dp_arena.field(ports(|r| r.dst_ports), 0, u16::MAX, next16);
        let protos = order
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r.proto.map_or((0, u8::MAX), |p| (p, p))));
        let proto_field = proto_arena.field(protos, 0, u8::MAX, |p| p.wrapping_add(1));
        let (np, ns, nd) = (proto_arena.classes(), sp_arena.classes(), dp_arena.classes());
        let combinations = np * ns * nd;
        if combinations > MAX_PORT_CLASSES {
            return None;
        }
        // From offsets to the premultiplied class numbers `ports` is indexed by.
        let w = u32::try_from(words).expect("words fit u32");
        let (ns, nd) = (ns as u32, nd as u32);
        for o in &mut src_port.offsets {
            *o = *o / w * nd;
        }
        for o in &mut dst_port.offsets {
            *o /= w;
        }
        let leaves = proto_field.tree.levels.last().map_or(&[][..], Vec::as_slice);
        let mut proto = Box::new([0u32; 256]);
        for (p, slot) in (0..=u8::MAX).zip(proto.iter_mut()) {
            *slot = proto_field.offsets[leaves.partition_point(|&b| b <= p)] / w * ns * nd;
        }

        let mut ports_table = Vec::with_capacity(combinations);
        let mut pair = vec![0u64; words];
        let mut and = vec![0u64; words];
        let zero = b.class(&vec![0u64; words]);
        for x in proto_arena.bits.chunks_exact(words) {
            for y in sp_arena.bits.chunks_exact(words) {
                for (i, w) in pair.iter_mut().enumerate() {
                    *w = x[i] & y[i];
                }
                // Common: no rule of this protocol has such source ports.
                if pair.iter().all(|&w| w == 0) {
                    ports_table.extend(std::iter::repeat_n(zero, nd as usize));
                    continue;
                }
                for z in dp_arena.bits.chunks_exact(words) {
                    for (i, w) in and.iter_mut().enumerate() {
                        *w = pair[i] & z[i];
                    }
                    ports_table.push(b.class(&and));
                }
            }
        }
        let matches = order
            .iter()
            .map(|r| Some(Match::from(*r)))
            .chain([None])
            .collect();
        Some(BitVector {
            words,
            src,
            dst,
            src_port,
            dst_port,
            proto,
            ports: ports_table,
            bits: b.bits,
            matches,
            simd: Simd::detect(),
        })
    }

    /// Runs the portable copy of the lookup from now on, whatever the CPU
    /// has: for tests, which otherwise run only the copy for the CPU they
    /// are on.
    #[must_use]
    pub fn portable(mut self) -> Self {
        self.simd = Simd::Baseline;
        self
    }

    /// Number of distinct class bitmaps over all fields.
    pub fn classes(&self) -> usize {
        self.bits.len() / self.words
    }

    /// The three class bitmap offsets (source, destination, protocol and
    /// ports) of each of `keys`.
    #[inline(always)]
    fn offsets<const AVX512: bool, const N: usize>(&self, keys: &[Key<A>; N]) -> [[usize; 3]; N] {
        let src = self.src.offsets::<AVX512, N>(&keys.map(|k| k.src));
        let dst = self.dst.offsets::<AVX512, N>(&keys.map(|k| k.dst));
        let src_port = self.src_port.offsets::<AVX512, N>(&keys.map(|k| k.src_port));
        let dst_port = self.dst_port.offsets::<AVX512, N>(&keys.map(|k| k.dst_port));
        std::array::from_fn(|i| {
            let ports = self.proto[usize::from(keys[i].proto)] as usize + src_port[i] + dst_port[i];
            [src[i], dst[i], self.ports[ports] as usize]
        })
    }

    /// Which words of the AND of the three bitmaps are not zero: bit i for
    /// word i (bitmaps have at most 64 words, see [`MAX_RULES`]).
    #[inline(always)]
    #[allow(unsafe_code, reason = "AVX-512 ANDs, guaranteed by the caller")]
    fn nonzero<const AVX512: bool>(&self, o: [usize; 3]) -> u64 {
        let mut nonzero = 0u64;
        for v in (0..self.words).step_by(8) {
            let vectors: [&[u64; 8]; 3] = o.map(|o| {
                self.bits[o + v..][..8]
                    .try_into()
                    .expect("bitmaps are whole vectors")
            });
            #[cfg(target_arch = "x86_64")]
            if AVX512 {
                // SAFETY: `AVX512` is true only in `batch_avx512`'s copy, run
                // only when the CPU has AVX-512.
                nonzero |= u64::from(unsafe { avx512::and3_nonzero(vectors) }) << v;
                continue;
            }
            let mask = (0..8).fold(0u8, |m, i| {
                m | (u8::from(vectors[0][i] & vectors[1][i] & vectors[2][i] != 0) << i)
            });
            nonzero |= u64::from(mask) << v;
        }
        nonzero
    }

    /// The first rule set in all three bitmaps, as an index into `matches`
    /// (past its end when there is none), given their `nonzero` words.
    #[inline(always)]
    fn first(&self, o: [usize; 3], nonzero: u64) -> usize {
        if nonzero == 0 {
            return usize::MAX;
        }
        let i = nonzero.trailing_zeros() as usize;
        let x = o.iter().fold(u64::MAX, |x, &o| x & self.bits[o + i]);
        i * 64 + x.trailing_zeros() as usize
    }
}

impl<A: Addr> BitVector<A> {
    /// The lookup proper, written once and inlined into one copy per
    /// instruction set: nodes are compared and bitmaps ANDed with vectors as
    /// wide as the copy's target allows.
    ///
    /// Whole groups of [`LANES`] keys go together; the rest (and a single
    /// lookup) one by one, so no lane is computed for nothing.
    #[inline(always)]
    fn batch<const AVX512: bool>(&self, keys: &[Key<A>], out: &mut [Option<Match>]) {
        let keys = &keys[..keys.len().min(out.len())];
        let mut groups = keys.chunks_exact(LANES);
        let mut outs = out.chunks_mut(LANES);
        for (keys, out) in groups.by_ref().zip(outs.by_ref()) {
            self.group::<AVX512, LANES>(keys.try_into().expect("chunks of LANES"), out);
        }
        let rest = groups.remainder();
        for (key, slot) in rest.iter().zip(out[keys.len() - rest.len()..].iter_mut()) {
            self.group::<AVX512, 1>(&[*key], std::slice::from_mut(slot));
        }
    }

    /// `N` keys phase by phase, so that each phase's loads for different keys
    /// overlap.
    #[inline(always)]
    fn group<const AVX512: bool, const N: usize>(&self, keys: &[Key<A>; N], out: &mut [Option<Match>]) {
        let offsets = self.offsets::<AVX512, N>(keys);
        let nonzero = offsets.map(|o| self.nonzero::<AVX512>(o));
        let rules: [usize; N] = std::array::from_fn(|i| self.first(offsets[i], nonzero[i]));
        for (&rule, slot) in rules.iter().zip(out.iter_mut()) {
            *slot = self.matches[rule.min(self.matches.len() - 1)];
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt,bmi1")]
    fn batch_avx512(&self, keys: &[Key<A>], out: &mut [Option<Match>]) {
        self.batch::<true>(keys, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,popcnt,bmi1")]
    fn batch_avx2(&self, keys: &[Key<A>], out: &mut [Option<Match>]) {
        self.batch::<false>(keys, out);
    }
}

impl<A: Addr> Classifier<A> for BitVector<A> {
    fn lookup(&self, key: &Key<A>) -> Option<Match> {
        super::lookup_one(self, key)
    }

    #[allow(
        unsafe_code,
        reason = "calling a copy compiled for CPU features, which `Simd::detect` found at build"
    )]
    fn lookup_batch(&self, keys: &[Key<A>], out: &mut [Option<Match>]) {
        match self.simd {
            // SAFETY: `simd` is Avx512 only if the CPU has every feature that
            // `batch_avx512` is compiled for (checked in `Simd::detect`).
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { self.batch_avx512(keys, out) },
            // SAFETY: as above, for `batch_avx2`.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { self.batch_avx2(keys, out) },
            Simd::Baseline => self.batch::<false>(keys, out),
        }
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self.src.memory_bytes()
            + self.dst.memory_bytes()
            + self.src_port.memory_bytes()
            + self.dst_port.memory_bytes()
            + size_of::<[u32; 256]>()
            + self.ports.capacity() * size_of::<u32>()
            + self.bits.capacity() * size_of::<u64>()
            + self.matches.capacity() * size_of::<Option<Match>>()
    }
}
