//! A set of `hashbrown` tables that never grows and never rehashes.
//!
//! hashbrown removes an entry by leaving a tombstone wherever 16 neighbouring
//! buckets are all occupied, and tombstones use up its spare room. When the room
//! is gone, the next insert rehashes: in place when the table is at most half
//! full, otherwise into a new table twice the size (an allocation, and a copy of
//! every entry). A connection table loses and gains entries all the time, so a
//! single table would do one of the two every so often, on the hot path, for
//! tens of milliseconds at a million entries.
//!
//! Instead the entries are split by hash into `P` partitions, each in its own
//! hashbrown table, plus one spare table, all allocated at start and all the
//! same size. A partition whose table runs short of room (tombstones) moves into
//! the spare a bounded number of buckets per call of [`Table::sweep`]; while it
//! moves, its lookups look in both tables and its inserts go to the new one.
//! When the old table is empty it is cleared (its control bytes reset; the
//! tombstones are gone) and becomes the spare. An insert is refused rather than
//! allowed to reach the point where hashbrown would rehash, so nothing here ever
//! allocates or rehashes after [`Table::new`].
//!
//! Sizing: the tables are allocated so that a partition's mean share is about
//! 35 % of its buckets (`TARGET_64THS`), where hashbrown leaves few
//! tombstones; a partition may grow past its share up to 3/4 of what its
//! table fits, and it moves when its room falls to 1/8, so a freshly moved
//! table always has room to spare. `P` is chosen between 1 and 16 to allocate
//! the fewest buckets for the requested capacity, each partition's share
//! allowing four standard deviations of the hash's imbalance.

use allocator_api2::alloc::Allocator;
use hashbrown::HashTable;

/// Where hashbrown keeps the control bytes of the table that holds `entry` in
/// `bucket`: entries are stored in reverse order just below them.
fn ctrl_address<T>(entry: &T, bucket: usize) -> usize {
    (entry as *const T as usize).wrapping_add((bucket + 1) * size_of::<T>())
}

/// A prefetch hint for the cache line holding `address` (any address: the CPU
/// does not fault on a prefetch).
#[inline]
fn prefetch(address: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and cannot fault, for
    // any address.
    #[allow(unsafe_code, reason = "the prefetch intrinsic; see SAFETY")]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(address as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Partitions at most.
const MAX_PARTS: usize = 16;

/// Where an entry is: a table and a bucket in it. Valid until the entry is
/// removed or moved (moves happen only in [`Table::sweep`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot(usize);

impl Slot {
    fn new(table: usize, bucket: usize) -> Slot {
        Slot(bucket << 5 | table)
    }
    fn table(self) -> usize {
        self.0 & 31
    }
    fn bucket(self) -> usize {
        self.0 >> 5
    }
}

/// A partition moving from one table into another.
#[derive(Clone, Copy, Debug)]
struct Move {
    part: usize,
    from: usize,
    /// The next bucket of `from` to move.
    at: usize,
}

/// See the module docs.
#[derive(Debug)]
pub struct Table<T, A: Allocator + Clone> {
    tables: Vec<HashTable<T, A>>,
    /// The table of each partition.
    map: [u8; MAX_PARTS],
    parts: usize,
    /// The empty table a partition moves into; `None` while one moves.
    spare: Option<usize>,
    moving: Option<Move>,
    /// Entries one partition may hold.
    limit: usize,
    /// A partition moves when its table's room falls to this.
    low: usize,
    len: usize,
    /// The address of each table's control bytes, learnt from its inserts (0
    /// until the first), for [`Table::prefetch`]; and the tables' bucket mask
    /// (every table has the same number of buckets).
    ctrl: [usize; MAX_PARTS + 1],
    mask: usize,
    sweep_at: (usize, usize),
    /// Moves completed, and inserts refused because a table had no room left
    /// (only if tombstones pile up faster than a move can clear them).
    moves: u64,
    no_room: u64,
}

/// A partition's mean share of the entries is at most this many 64ths of
/// what hashbrown fits in its table's buckets (about 35 % of the buckets).
const TARGET_64THS: usize = 26;

/// For a table that fits `full` entries: the entries one partition may hold
/// (leaving a moved partition room for tombstones), and the room at which the
/// partition moves.
fn limits(full: usize) -> (usize, usize) {
    let low = (full / 8).max(1);
    (full.saturating_sub(2 * low).max(1), low)
}

/// The hashbrown capacity to request so that `need` entries are the target share.
fn request(need: usize) -> usize {
    need.saturating_mul(64).div_ceil(TARGET_64THS) + 1
}

/// Buckets hashbrown allocates for a requested capacity (its own rule,
/// restated here to choose `P` without allocating every candidate).
fn buckets_for(capacity: usize) -> usize {
    if capacity < 8 {
        if capacity < 4 {
            4
        } else {
            8
        }
    } else {
        (capacity.saturating_mul(8) / 7).next_power_of_two()
    }
}

/// Entries each of `parts` partitions must hold for `capacity` in all: its
/// share, plus four standard deviations of the hash's imbalance (the table's
/// target load; a partition may exceed it, up to its limit).
fn share(capacity: usize, parts: usize) -> usize {
    if parts == 1 {
        return capacity;
    }
    let mean = capacity.div_ceil(parts);
    mean + 4 * (mean as f64).sqrt().ceil() as usize + 8
}

impl<T, A: Allocator + Clone> Table<T, A> {
    /// Partitions, and the hashbrown capacity to request for each table, for
    /// `capacity` entries in all.
    fn shape_for(capacity: usize) -> (usize, usize) {
        let capacity = capacity.max(1);
        let parts = (1..=MAX_PARTS)
            .min_by_key(|&p| (p + 1) * buckets_for(request(share(capacity, p))))
            .unwrap_or(1);
        (parts, request(share(capacity, parts)))
    }

    /// Bytes [`Table::new`] allocates for `capacity` entries (what
    /// [`Table::memory_bytes`] reports then), computed without allocating:
    /// hashbrown's layout, entries then control bytes (one per bucket plus a
    /// 16-byte group), the control bytes aligned to the larger of the entry's
    /// alignment and 16.
    pub fn bytes_for(capacity: usize) -> usize {
        let (parts, request) = Self::shape_for(capacity);
        let buckets = buckets_for(request);
        let ctrl_align = align_of::<T>().max(16);
        let table = (buckets * size_of::<T>()).next_multiple_of(ctrl_align) + buckets + 16;
        (parts + 1) * table
    }

    /// Tables for `capacity` entries, allocated now.
    pub fn new(capacity: usize, alloc: A) -> Table<T, A> {
        let (parts, request) = Self::shape_for(capacity);
        let tables: Vec<HashTable<T, A>> = (0..=parts)
            .map(|_| HashTable::with_capacity_in(request, alloc.clone()))
            .collect();
        let (limit, low) = limits(tables[0].capacity());
        let mask = tables[0].num_buckets() - 1;
        let mut map = [0; MAX_PARTS];
        for (p, m) in map.iter_mut().enumerate().take(parts) {
            *m = p as u8;
        }
        Table {
            tables,
            map,
            parts,
            spare: Some(parts),
            moving: None,
            limit,
            low,
            len: 0,
            ctrl: [0; MAX_PARTS + 1],
            mask,
            sweep_at: (0, 0),
            moves: 0,
            no_room: 0,
        }
    }

    /// The partition of a hash: bits 24 to 55 (hashbrown uses the low bits for
    /// the bucket and the top 7 for the tag), scaled to `parts`.
    #[inline]
    fn part(&self, hash: u64) -> usize {
        ((u64::from((hash >> 24) as u32) * self.parts as u64) >> 32) as usize
    }

    /// Entries of partition `p`, in both its tables while it moves.
    fn part_len(&self, p: usize) -> usize {
        let moving = match self.moving {
            Some(m) if m.part == p => self.tables[m.from].len(),
            _ => 0,
        };
        self.tables[usize::from(self.map[p])].len() + moving
    }

    /// hashbrown's room left in table `t` before it would rehash.
    fn room(&self, t: usize) -> usize {
        self.tables[t].capacity() - self.tables[t].len()
    }

    pub fn len(&self) -> usize {
        self.len
    }
    /// Partitions, and buckets in each table (for tests).
    #[cfg(test)]
    pub fn shape(&self) -> (usize, usize) {
        (self.parts, self.mask + 1)
    }
    /// Buckets in all tables: what one full cycle of [`Table::sweep`] visits.
    #[cfg(test)]
    pub fn num_buckets(&self) -> usize {
        (self.mask + 1) * self.tables.len()
    }
    /// Bytes allocated for all tables (entries and control bytes).
    pub fn memory_bytes(&self) -> usize {
        self.tables.iter().map(HashTable::allocation_size).sum()
    }
    /// Partition moves completed, and inserts refused for lack of room.
    pub fn moves(&self) -> (u64, u64) {
        (self.moves, self.no_room)
    }

    /// Asks the CPU to start loading what a [`Table::find`] of `hash` will
    /// read first: the control bytes at the hash's home bucket and the entry
    /// there (where most entries are, at this load). A batch calls it a few
    /// lookups ahead, so the cache misses overlap. Only a hint: the addresses
    /// follow hashbrown's layout (entries stored backwards below the control
    /// bytes), which is not its API, and a wrong guess costs nothing but the
    /// hint. (Even tables that fit the L2 cache gain from it: with 1000
    /// flows, 18.5-20.5 Mpps against 18.0-20.1 without, same runs.)
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let t = usize::from(self.map[self.part(hash)]);
        let ctrl = self.ctrl[t];
        if ctrl == 0 {
            return;
        }
        let home = hash as usize & self.mask;
        prefetch(ctrl.wrapping_add(home));
        let entry = ctrl.wrapping_sub((home + 1) * size_of::<T>());
        prefetch(entry);
        if size_of::<T>() > 64 || entry % 64 + size_of::<T>() > 64 {
            prefetch(entry + size_of::<T>() - 1);
        }
    }

    /// The slot of the entry with `hash` for which `eq` holds.
    /// (Inlined into the worker's lookup loop: as a call it cost the pipeline
    /// benchmark about 10 % at 1000 flows.)
    #[inline(always)]
    pub fn find(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<Slot> {
        let p = self.part(hash);
        let t = usize::from(self.map[p]);
        if let Some(b) = self.tables[t].find_bucket_index(hash, &mut eq) {
            return Some(Slot::new(t, b));
        }
        match self.moving {
            Some(m) if m.part == p => self.find_in(m.from, hash, eq),
            _ => None,
        }
    }

    /// A lookup in a moving partition's old table (rare: kept out of line).
    #[cold]
    #[inline(never)]
    fn find_in(&self, t: usize, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<Slot> {
        self.tables[t]
            .find_bucket_index(hash, eq)
            .map(|b| Slot::new(t, b))
    }

    #[inline]
    pub fn get(&self, slot: Slot) -> Option<&T> {
        self.tables.get(slot.table())?.get_bucket(slot.bucket())
    }
    #[inline]
    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut T> {
        self.tables.get_mut(slot.table())?.get_bucket_mut(slot.bucket())
    }

    pub fn remove(&mut self, slot: Slot) -> Option<T> {
        let entry = self
            .tables
            .get_mut(slot.table())?
            .get_bucket_entry(slot.bucket())
            .ok()?;
        self.len -= 1;
        Some(entry.remove().0)
    }

    /// Whether an insert with `hash` would find room in its partition.
    pub fn has_room(&self, hash: u64) -> bool {
        self.part_len(self.part(hash)) < self.limit
    }

    /// Inserts an entry (its key must not be present). `None` when its
    /// partition is full, or (when tombstones outran the moves) its table has
    /// no room left that would not make hashbrown rehash.
    pub fn insert(&mut self, hash: u64, value: T, hasher: impl Fn(&T) -> u64) -> Option<Slot> {
        let p = self.part(hash);
        if self.part_len(p) >= self.limit {
            return None;
        }
        let mut t = usize::from(self.map[p]);
        if self.room(t) <= self.low {
            if let Some(s) = self.spare.take() {
                self.moving = Some(Move {
                    part: p,
                    from: t,
                    at: 0,
                });
                self.map[p] = s as u8;
                t = s;
            }
        }
        if self.room(t) == 0 {
            self.no_room += 1;
            return None;
        }
        let entry = self.tables[t].insert_unique(hash, value, hasher);
        let bucket = entry.bucket_index();
        self.ctrl[t] = ctrl_address(entry.get(), bucket);
        self.len += 1;
        Some(Slot::new(t, bucket))
    }

    /// Bounded upkeep, called once per batch: moves up to `budget` buckets of a
    /// moving partition, then visits the next `budget` buckets of all tables;
    /// both remove the entries for which `dead` holds. Returns how many.
    pub fn sweep(&mut self, budget: usize, dead: impl Fn(&T) -> bool, hasher: impl Fn(&T) -> u64) -> u32 {
        // A move goes faster while another partition is short of room and
        // waits for the spare.
        let waiting = (0..self.parts).any(|p| self.room(usize::from(self.map[p])) <= self.low);
        let move_budget = if waiting { budget * 8 } else { budget };
        let mut removed = self.advance_move(move_budget, &dead, &hasher);
        let (mut t, mut b) = self.sweep_at;
        let buckets = self.mask + 1;
        for _ in 0..budget.min(buckets * self.tables.len()) {
            if self.tables[t].get_bucket(b).is_some_and(&dead) {
                if let Ok(e) = self.tables[t].get_bucket_entry(b) {
                    e.remove();
                    self.len -= 1;
                    removed += 1;
                }
            }
            b += 1;
            if b == buckets {
                (t, b) = ((t + 1) % self.tables.len(), 0);
            }
        }
        self.sweep_at = (t, b);
        removed
    }

    fn advance_move(
        &mut self,
        budget: usize,
        dead: &impl Fn(&T) -> bool,
        hasher: &impl Fn(&T) -> u64,
    ) -> u32 {
        let Some(mut m) = self.moving else {
            return 0;
        };
        let to = usize::from(self.map[m.part]);
        let Ok([from_table, to_table]) = self.tables.get_disjoint_mut([m.from, to]) else {
            return 0;
        };
        let mut removed = 0;
        let end = from_table.num_buckets();
        let stop = (m.at + budget).min(end);
        while m.at < stop {
            if let Ok(e) = from_table.get_bucket_entry(m.at) {
                if dead(e.get()) {
                    e.remove();
                    self.len -= 1;
                    removed += 1;
                } else if to_table.capacity() > to_table.len() {
                    let value = e.remove().0;
                    let entry = to_table.insert_unique(hasher(&value), value, hasher);
                    self.ctrl[to] = ctrl_address(entry.get(), entry.bucket_index());
                } else {
                    // No room that would not rehash: wait for removals.
                    break;
                }
            }
            m.at += 1;
        }
        if m.at == end {
            from_table.clear();
            self.spare = Some(m.from);
            self.moving = None;
            self.moves += 1;
        } else {
            self.moving = Some(m);
        }
        removed
    }

    /// Scans `scan` buckets of the partition of `hash` (both its tables
    /// while it moves), from the bucket where `hash` itself would go, for the
    /// first entry `pick` chooses; removes and returns it. Scanning from a
    /// random place matters: hashbrown leaves a tombstone where it removes an
    /// entry from a long run of occupied buckets, and a cursor sweeping the
    /// table evicts from the densest part (the one visited longest ago), which
    /// made tombstones of about one eviction in ten in a test, against one in
    /// 5000 from random places.
    pub fn evict(&mut self, hash: u64, scan: usize, pick: impl Fn(&T) -> bool) -> Option<T> {
        let p = self.part(hash);
        let tables = [
            Some(usize::from(self.map[p])),
            self.moving.filter(|m| m.part == p).map(|m| m.from),
        ];
        for i in 0..scan.min(self.mask + 1) {
            let b = (hash as usize).wrapping_add(i) & self.mask;
            for t in tables.into_iter().flatten() {
                if self.tables[t].get_bucket(b).is_some_and(&pick) {
                    return self.remove(Slot::new(t, b));
                }
            }
        }
        None
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.tables.iter().flat_map(HashTable::iter)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use allocator_api2::alloc::Global;

    use super::*;

    fn mix(x: u64) -> u64 {
        let z = (x ^ (x >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z ^ (z >> 29)
    }

    /// The memory estimate the daemon checks against the machine's RAM is
    /// what the tables really allocate.
    #[test]
    fn bytes_for_is_what_new_allocates() {
        for capacity in [1, 100, 1024, 20_000, 262_144, 1_125_064, 3_000_000] {
            let table: Table<[u64; 8], Global> = Table::new(capacity, Global);
            assert_eq!(
                Table::<[u64; 8], Global>::bytes_for(capacity),
                table.memory_bytes(),
                "{capacity}"
            );
            let small: Table<u64, Global> = Table::new(capacity, Global);
            assert_eq!(
                Table::<u64, Global>::bytes_for(capacity),
                small.memory_bytes(),
                "{capacity}"
            );
        }
    }

    /// The worst removal order for hashbrown (every entry of partition 0 in
    /// bucket order, as a cursor would, each replaced by a new one) piles up
    /// tombstones until the partition moves. Before, during and after the
    /// moves every live entry is found, in whichever table it is, and removing
    /// one mid-move removes it; no insert is refused and nothing reallocates.
    #[test]
    fn a_partition_full_of_tombstones_moves_and_loses_nothing() {
        let mut table: Table<u64, Global> = Table::new(20_000, Global);
        let bytes = table.memory_bytes();
        let key = |n: &mut u64, table: &Table<u64, Global>| loop {
            *n += 1;
            let k = mix(*n);
            if table.part(k) == 0 {
                return k;
            }
        };
        let mut n = 0;
        let mut live = HashSet::new();
        while table.part_len(0) < 20_000 / table.parts {
            let k = key(&mut n, &table);
            table.insert(k, k, |&k| k).expect("room");
            live.insert(k);
        }
        let mut cursor = 0;
        let mut checked_mid_move = 0;
        let mut removed_mid_move = 0;
        for step in 0..2_000_000 {
            // Remove the next entry of partition 0's table in bucket order.
            let t = usize::from(table.map[0]);
            let buckets = table.tables[t].num_buckets();
            let gone = loop {
                cursor = (cursor + 1) % buckets;
                if let Some(&k) = table.tables[t].get_bucket(cursor) {
                    break table.remove(Slot::new(t, cursor)).map(|v| (k, v));
                }
            };
            let (k, v) = gone.expect("removed");
            assert_eq!(k, v);
            assert!(live.remove(&k));
            let k = key(&mut n, &table);
            table.insert(k, k, |&k| k).expect("room");
            live.insert(k);
            table.sweep(16, |_| false, |&k| k);
            if table.moving.is_some() {
                checked_mid_move += 1;
                if checked_mid_move % 500 == 1 {
                    for &k in &live {
                        let slot = table.find(k, |&x| x == k).expect("found mid-move");
                        assert_eq!(table.get(slot), Some(&k));
                    }
                    // Remove one that is still in the old table.
                    let m = table.moving.expect("moving");
                    if let Some(&k) = live
                        .iter()
                        .find(|&&k| table.find(k, |&x| x == k).is_some_and(|s| s.table() == m.from))
                    {
                        let slot = table.find(k, |&x| x == k).expect("found");
                        assert_eq!(table.remove(slot), Some(k));
                        assert!(table.find(k, |&x| x == k).is_none());
                        live.remove(&k);
                        removed_mid_move += 1;
                    }
                }
            }
            if table.moves().0 >= 3 && table.moving.is_none() {
                eprintln!("3 moves after {step} removals");
                break;
            }
        }
        assert!(table.moves().0 >= 3, "tombstones never made the partition move");
        assert!(
            removed_mid_move > 0,
            "no entry was removed from an old table mid-move"
        );
        assert_eq!(table.moves().1, 0, "an insert found no room");
        assert_eq!(table.len(), live.len());
        for &k in &live {
            assert!(table.find(k, |&x| x == k).is_some());
        }
        assert_eq!(table.iter().count(), live.len());
        assert_eq!(table.memory_bytes(), bytes);
    }
}
