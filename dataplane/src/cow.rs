//! Copy-on-write tables for the snapshot: a new snapshot shares every part of
//! the previous one that did not change, so building it costs what changed,
//! not the size of the tables.
//!
//! - [`Chunks`]: a vector in chunks of [`CHUNK`] slots; writing a slot copies
//!   its chunk if an older snapshot still holds it.
//! - [`Shards`]: a hash map in [`SHARDS`] shards chosen by the key; writing a
//!   key copies its shard if an older snapshot still holds it.
//!
//! Cloning either copies one pointer per chunk or shard. Reads are one extra
//! indirection over a plain vector or map.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// Slots per chunk of [`Chunks`].
pub const CHUNK: usize = 256;

/// A vector of `T` in shared chunks. Unwritten slots hold `T::default()`.
#[derive(Clone, Debug, Default)]
pub struct Chunks<T> {
    chunks: Vec<Arc<[T]>>,
}

impl<T: Clone + Default> Chunks<T> {
    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK).map(|c| &c[i % CHUNK])
    }

    /// Writes slot `i`, growing the vector as needed.
    pub fn set(&mut self, i: usize, value: T) {
        while self.chunks.len() <= i / CHUNK {
            self.chunks.push((0..CHUNK).map(|_| T::default()).collect());
        }
        let chunk = &mut self.chunks[i / CHUNK];
        if Arc::get_mut(chunk).is_none() {
            *chunk = chunk.iter().cloned().collect();
        }
        Arc::get_mut(chunk).expect("just made unique")[i % CHUNK] = value;
    }
}

/// Shards per [`Shards`] map.
pub const SHARDS: usize = 256;

/// A key of a [`Shards`] map: which shard it lives in, from bits of the key
/// that spread well (the maps' own hash is independent of it).
pub trait ShardKey: Hash + Eq {
    fn shard(&self) -> usize;
}

/// Spreads `x` over the shards (Fibonacci hashing: the top bits of a
/// multiplication by 2^64 / phi).
fn spread(x: u64) -> usize {
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARDS.trailing_zeros())) as usize
}

impl ShardKey for (u16, u32) {
    fn shard(&self) -> usize {
        spread(u64::from(self.1) | (u64::from(self.0) << 32))
    }
}

impl ShardKey for (u16, u128) {
    fn shard(&self) -> usize {
        let high = ((self.1 >> 64) as u64)
            .wrapping_mul(0xff51_afd7_ed55_8ccd)
            .rotate_left(29);
        spread((self.1 as u64) ^ high ^ (u64::from(self.0) << 48))
    }
}

/// A hash map in shared shards.
#[derive(Clone, Debug)]
pub struct Shards<K, V> {
    shards: Vec<Arc<HashMap<K, V>>>,
}

impl<K, V> Default for Shards<K, V> {
    fn default() -> Self {
        let empty = Arc::new(HashMap::new());
        Shards {
            shards: (0..SHARDS).map(|_| Arc::clone(&empty)).collect(),
        }
    }
}

impl<K: ShardKey + Clone, V: Clone> Shards<K, V> {
    pub fn get(&self, key: &K) -> Option<&V> {
        self.shards[key.shard()].get(key)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        Arc::make_mut(&mut self.shards[key.shard()]).insert(key, value)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let shard = &mut self.shards[key.shard()];
        if !shard.contains_key(key) {
            return None;
        }
        Arc::make_mut(shard).remove(key)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_to_a_copy_leaves_the_original_and_copies_one_chunk() {
        let mut a: Chunks<Option<u32>> = Chunks::default();
        for i in 0..3 * CHUNK {
            a.set(i, Some(i as u32));
        }
        let mut b = a.clone();
        b.set(CHUNK + 5, None);
        b.set(4 * CHUNK, Some(7));
        assert_eq!(a.get(CHUNK + 5), Some(&Some(CHUNK as u32 + 5)));
        assert_eq!(b.get(CHUNK + 5), Some(&None));
        assert_eq!(a.get(4 * CHUNK), None);
        assert_eq!(b.get(4 * CHUNK), Some(&Some(7)));
        assert_eq!(b.get(4 * CHUNK + 1), Some(&None), "unwritten slots are default");
        assert!(
            Arc::ptr_eq(&a.chunks[0], &b.chunks[0]),
            "untouched chunks are shared"
        );
        assert!(!Arc::ptr_eq(&a.chunks[1], &b.chunks[1]));
    }

    #[test]
    fn a_write_to_a_copy_leaves_the_original_and_copies_one_shard() {
        let mut a: Shards<(u16, u32), u32> = Shards::default();
        for i in 0..10_000u32 {
            a.insert((1, 0xc612_0000 + i), i);
        }
        assert_eq!(a.len(), 10_000);
        let mut b = a.clone();
        let key = (1, 0xc612_0007);
        assert_eq!(b.remove(&key), Some(7));
        assert_eq!(b.remove(&key), None);
        b.insert((2, 0xc612_0007), 70);
        assert_eq!((a.get(&key), b.get(&key)), (Some(&7), None));
        assert_eq!(b.get(&(2, 0xc612_0007)), Some(&70));
        let copied = a
            .shards
            .iter()
            .zip(&b.shards)
            .filter(|(x, y)| !Arc::ptr_eq(x, y))
            .count();
        assert!((1..=2).contains(&copied), "{copied} shards copied");
        // The keys spread: no shard holds more than twice its share.
        let most = a.shards.iter().map(|s| s.len()).max().unwrap();
        assert!(most < 2 * 10_000 / SHARDS, "{most}");
    }

    #[test]
    fn v6_keys_spread_too() {
        let net = 0x2001_0db8_0000_0000_0000_0000_0000_0000u128;
        for key in [|i: u128| i, |i: u128| (i << 64) | i, |i: u128| i << 80] {
            let mut a: Shards<(u16, u128), ()> = Shards::default();
            for i in 0..10_000u128 {
                a.insert((0, net | key(i)), ());
            }
            let most = a.shards.iter().map(|s| s.len()).max().unwrap();
            assert!(most < 2 * 10_000 / SHARDS, "{most}");
        }
    }
}
