//! A cache of extents in RAM, between the query pipeline and the device. Bytes enter verified
//! (their checksum was checked when they were read) and are served without another check.
//!
//! What it keeps: the extents that save the most device reads per byte of cache. Every access
//! to an extent (hit or miss) counts; counts are halved every `AGING` × (extents cached)
//! accesses, so the cache follows a drifting workload. On a miss the extent is admitted only
//! when the extents it would displace are worth less (count per byte) than it is; a one-off
//! scan of cold lists therefore cannot flush the hot ones, which is what LRU does.
//! [`Policy::Lru`] is kept for comparison (`benches/README.md`, hit rates on a skewed stream).

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};

/// Counts are halved after this many accesses per cached extent.
const AGING: u64 = 8;

/// Which extents the cache keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Most accesses per byte, with admission (the default).
    #[default]
    Frequency,
    /// Least recently used is evicted; every miss is admitted.
    Lru,
}

/// One cached extent: its verified bytes, and what scans derive from them once, kept with
/// them for the next query: the per-vector list terms of L2 scans of residual codes, and 8-bit
/// codes transposed for the in-register kernel ([`crate::pq::fast8`]).
#[derive(Debug, Default)]
pub struct Cached {
    pub bytes: Vec<u8>,
    pub derived: OnceLock<Vec<f32>>,
    pub arranged: OnceLock<Vec<u8>>,
}

struct Entry {
    /// Bytes charged: the extent's, plus room for what is derived from it.
    size: u64,
    key: u64,
}

/// What changes only when extents come and go: held under the write lock.
struct Inner {
    /// Each extent's cached bytes, indexed by extent: a hit is one load.
    slots: Vec<Option<Arc<Cached>>>,
    entries: HashMap<u32, Entry>,
    /// (key, extent), lowest key evicted first.
    order: BTreeSet<(u64, u32)>,
    used: u64,
}

/// Extent bytes in RAM, at most `capacity` bytes of them. Look-ups share a read lock
/// ([`view`](Self::view)) and count accesses without read-modify-write instructions: a look-up
/// of a hot extent is a load or two, not a lock, a hash and two atomic reference counts.
pub struct ListCache {
    capacity: u64,
    policy: Policy,
    inner: RwLock<Inner>,
    /// Accesses per extent (plain loads and stores: two threads counting the same extent at
    /// the same instant may lose counts, which makes an eviction choice at worst a little
    /// less apt, and costs no locked instruction per look-up).
    counts: Vec<AtomicU32>,
    /// The tick of each extent's latest access (LRU's key).
    last: Vec<AtomicU64>,
    tick: AtomicU64,
    since_aging: AtomicU64,
    /// Serializes aging (the counts' halving and the re-keying of `order`).
    aging: Mutex<()>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Look-ups under one read lock (see [`ListCache::view`]); hits and misses are added to the
/// cache's totals when it is dropped.
pub struct CacheView<'a> {
    cache: &'a ListCache,
    inner: RwLockReadGuard<'a, Inner>,
    hits: Cell<u64>,
    misses: Cell<u64>,
}

impl CacheView<'_> {
    /// Records an access to `extent` and returns it if it is cached.
    #[inline]
    pub fn get(&self, extent: u32) -> Option<&Cached> {
        self.cache.count(extent);
        let found = self.inner.slots.get(extent as usize).and_then(Option::as_deref);
        let tally = if found.is_some() { &self.hits } else { &self.misses };
        tally.set(tally.get() + 1);
        found
    }
}

impl Drop for CacheView<'_> {
    fn drop(&mut self) {
        let (hits, misses) = (self.hits.get(), self.misses.get());
        self.cache.hits.fetch_add(hits, Ordering::Relaxed);
        self.cache.misses.fetch_add(misses, Ordering::Relaxed);
        self.cache.since_aging.fetch_add(hits + misses, Ordering::Relaxed);
    }
}

impl ListCache {
    /// A cache of `capacity` bytes over `n_extents` extents.
    pub fn new(capacity: u64, n_extents: usize, policy: Policy) -> Self {
        ListCache {
            capacity,
            policy,
            inner: RwLock::new(Inner {
                slots: vec![None; n_extents],
                entries: HashMap::new(),
                order: BTreeSet::new(),
                used: 0,
            }),
            counts: (0..n_extents).map(|_| AtomicU32::new(0)).collect(),
            last: (0..if policy == Policy::Lru { n_extents } else { 0 }).map(|_| AtomicU64::new(0)).collect(),
            tick: AtomicU64::new(0),
            since_aging: AtomicU64::new(0),
            aging: Mutex::new(()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn key(&self, extent: u32, len: u64) -> u64 {
        match self.policy {
            // Accesses per byte, scaled to keep precision in an integer key.
            Policy::Frequency => ((self.counts[extent as usize].load(Ordering::Relaxed) as u64) << 32) / len.max(1),
            Policy::Lru => self.last[extent as usize].load(Ordering::Relaxed),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock leaves entries consistent enough to serve: every
        // update below keeps `order`, `entries`, `slots` and `used` in step before it can fail.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Look-ups until the view is dropped. Offers wait for it: drop it before offering, and
    /// make no other call on the cache while holding it (a writer waiting in between would
    /// wait for this view, and the call for the writer).
    pub fn view(&self) -> CacheView<'_> {
        self.age_if_due();
        CacheView { cache: self, inner: self.read(), hits: Cell::new(0), misses: Cell::new(0) }
    }

    /// Counts an access to `extent`.
    #[inline]
    fn count(&self, extent: u32) {
        let Some(c) = self.counts.get(extent as usize) else { return };
        c.store(c.load(Ordering::Relaxed).saturating_add(1), Ordering::Relaxed);
        if self.policy == Policy::Lru {
            self.last[extent as usize].store(self.tick.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// Halves every count once enough accesses have gone by (the period grows with the number
    /// of extents too: at most one halved count per access, however many the index has), and
    /// re-keys what is cached.
    fn age_if_due(&self) {
        // Every look-up passes here: the lock is taken for the count of entries only once the
        // accesses exceed the period's lower bound.
        let since = self.since_aging.load(Ordering::Relaxed);
        let floor = AGING * (self.counts.len() as u64 / AGING).max(64);
        if since <= floor || since <= AGING * self.read().entries.len() as u64 {
            return;
        }
        let Ok(_one) = self.aging.try_lock() else { return };
        self.since_aging.store(0, Ordering::Relaxed);
        for c in &self.counts {
            c.store(c.load(Ordering::Relaxed) / 2, Ordering::Relaxed);
        }
        let mut g = self.write();
        let inner = &mut *g;
        inner.order.clear();
        for (&x, e) in inner.entries.iter_mut() {
            e.key = self.key(x, e.size);
            inner.order.insert((e.key, x));
        }
    }

    /// Whether `extent` is cached, without counting an access.
    pub fn contains(&self, extent: u32) -> bool {
        self.read().slots.get(extent as usize).is_some_and(Option::is_some)
    }

    /// Brings the lowest entry of `order` up to date, as often as it takes for the first
    /// entry's stored key to be its current one: then it is the true minimum, as every other
    /// stored key is at most its current key (keys only grow between agings).
    fn refresh_first(&self, inner: &mut Inner) {
        while let Some(&(k, x)) = inner.order.first() {
            let len = inner.entries[&x].size;
            let cur = self.key(x, len);
            if cur == k {
                return;
            }
            inner.order.pop_first();
            inner.order.insert((cur, x));
            if let Some(e) = inner.entries.get_mut(&x) {
                e.key = cur;
            }
        }
    }

    /// Offers the verified bytes of `extent`, just read after a miss, charged `extra` bytes
    /// more for what scans will derive from them; the policy decides. Returns the entry when
    /// it was admitted (or was already there), so the scan at hand can fill what is derived.
    pub fn offer(&self, extent: u32, bytes: &[u8], extra: u64) -> Option<Arc<Cached>> {
        let len = bytes.len() as u64 + extra;
        if len > self.capacity || extent as usize >= self.counts.len() {
            return None;
        }
        let mut g = self.write();
        let inner = &mut *g;
        if let Some(item) = &inner.slots[extent as usize] {
            return Some(item.clone());
        }
        let key = self.key(extent, len);
        // The lowest-keyed extents, as many as it takes to make room, taken out of `order`
        // and put back if the newcomer is not worth them.
        let mut victims = Vec::new();
        let mut free = self.capacity - inner.used;
        let mut admit = true;
        while free < len {
            self.refresh_first(inner);
            let Some(&(k, x)) = inner.order.first() else { break };
            if self.policy == Policy::Frequency && k >= key {
                admit = false;
                break;
            }
            inner.order.pop_first();
            victims.push((k, x));
            free += inner.entries[&x].size;
        }
        if !admit || free < len {
            inner.order.extend(victims);
            return None;
        }
        for (_, x) in victims {
            if let Some(e) = inner.entries.remove(&x) {
                inner.used -= e.size;
                inner.slots[x as usize] = None;
            }
        }
        inner.order.insert((key, extent));
        let item = Arc::new(Cached { bytes: bytes.to_vec(), ..Default::default() });
        inner.entries.insert(extent, Entry { size: len, key });
        inner.slots[extent as usize] = Some(item.clone());
        inner.used += len;
        Some(item)
    }

    /// Most bytes it holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.read().used
    }

    /// (hits, misses) since the cache was made.
    pub fn hits_misses(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A skewed stream over `n` equal extents: extent i drawn with probability ∝ 1/(i+1)
    /// (Zipf, s = 1), with a cold scan of every extent once in the middle.
    fn stream(n: usize, len: usize, seed: u64) -> Vec<u32> {
        let mut r = Rng::new(seed);
        let weights: Vec<f64> = (0..n).map(|i| 1.0 / (i + 1) as f64).collect();
        let total: f64 = weights.iter().sum();
        let mut out: Vec<u32> = (0..len)
            .map(|_| {
                let mut u = r.below(1 << 30) as f64 / (1u64 << 30) as f64 * total;
                let mut i = 0;
                while i + 1 < n && u >= weights[i] {
                    u -= weights[i];
                    i += 1;
                }
                i as u32
            })
            .collect();
        let mid = out.len() / 2;
        out.splice(mid..mid, (0..n as u32).rev());
        out
    }

    fn hit_rate(policy: Policy, s: &[u32], n: usize, capacity: u64) -> f64 {
        let c = ListCache::new(capacity, n, policy);
        for &x in s {
            let hit = c.view().get(x).is_some();
            if !hit {
                c.offer(x, &[x as u8; 100], 0);
            }
            assert!(c.used() <= capacity);
        }
        let (h, m) = c.hits_misses();
        h as f64 / (h + m) as f64
    }

    #[test]
    fn never_holds_more_than_its_capacity_and_serves_what_it_was_given() {
        let c = ListCache::new(1000, 50, Policy::Frequency);
        for round in 0..3 {
            for x in 0..50u32 {
                let held = c.view().get(x).map(|b| b.bytes.clone());
                match held {
                    Some(b) => assert_eq!(b, vec![x as u8; 100 + x as usize], "round {round}"),
                    None => {
                        c.offer(x, &vec![x as u8; 100 + x as usize], 0);
                    }
                }
                assert!(c.used() <= 1000);
            }
        }
        let huge = ListCache::new(10, 1, Policy::Lru);
        huge.offer(0, &[0; 11], 0);
        assert_eq!(huge.used(), 0, "larger than the whole cache: not admitted");
        huge.offer(0, &[0; 6], 4);
        assert_eq!(huge.used(), 10, "charged for its bytes and what is derived from them");
    }

    #[test]
    fn keeps_hot_extents_through_a_cold_scan_better_than_lru() {
        let (n, cap) = (1000, 100 * 100);
        let s = stream(n, 50_000, 3);
        let (freq, lru) = (hit_rate(Policy::Frequency, &s, n, cap), hit_rate(Policy::Lru, &s, n, cap));
        assert!(freq > lru, "frequency {freq:.3} vs LRU {lru:.3}");
    }
}
