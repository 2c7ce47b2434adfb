//! Bounded k-best selection. `Neighbor` orders by dissimilarity with `f32::total_cmp`, then by id,
//! so a NaN never corrupts the heap and ties resolve the same way on every run.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// An allow-list of ids: a filtered search returns only these (faiss's `IDSelectorBatch`).
/// Sorted and deduplicated once; a look-up is a binary search, made only for the few vectors
/// that could enter a top-k.
///
/// ```
/// use std::sync::Arc;
/// use quiver::{IdFilter, SearchParams};
///
/// let allow = IdFilter::new([42, 7, 7, 1_000]);
/// assert!(allow.contains(7) && !allow.contains(8) && allow.len() == 3);
/// // Searches with these parameters return only ids 7, 42 and 1,000.
/// let p = SearchParams { k: 3, nprobe: 16, filter: Some(Arc::new(allow)), ..Default::default() };
/// # let _ = p;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdFilter {
    ids: Vec<u64>,
}

impl IdFilter {
    /// The ids to allow, in any order, repeats ignored.
    pub fn new(ids: impl IntoIterator<Item = u64>) -> Self {
        let mut ids: Vec<u64> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        IdFilter { ids }
    }

    #[inline]
    pub fn contains(&self, id: u64) -> bool {
        self.ids.binary_search(&id).is_ok()
    }

    /// Ids allowed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Deleted ids still stored in the lists: an id is hidden in an extent written before the
/// generation that deleted it, so an id deleted and added again is hidden only where it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tombstones {
    /// Deleted ids, ascending, each with the latest generation that deleted it.
    ids: Vec<u64>,
    deleted_at: Vec<u32>,
    /// The generation that wrote each extent (by the extent's number in the directory).
    extent_generation: Vec<u32>,
}

impl Tombstones {
    /// From (id, deleting generation) pairs in any order and each extent's writing generation.
    pub fn new(mut deleted: Vec<(u64, u32)>, extent_generation: Vec<u32>) -> Self {
        deleted.sort_unstable();
        // The latest deletion of an id hides every copy written before it.
        deleted.reverse();
        deleted.dedup_by_key(|d| d.0);
        deleted.reverse();
        let (ids, deleted_at) = deleted.into_iter().unzip();
        Tombstones { ids, deleted_at, extent_generation }
    }

    /// Whether `id` in extent `extent` was deleted.
    #[inline]
    pub fn hides(&self, id: u64, extent: u32) -> bool {
        match self.ids.binary_search(&id) {
            Ok(i) => self.extent_generation.get(extent as usize).is_none_or(|&g| g < self.deleted_at[i]),
            Err(_) => false,
        }
    }

    /// Distinct deleted ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// One result: a vector id and its dissimilarity to the query (smaller is closer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbor {
    pub id: u64,
    pub dist: f32,
}

impl Eq for Neighbor {}

impl Ord for Neighbor {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist.total_cmp(&other.dist).then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Neighbor {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the `k` smallest neighbours pushed so far. The heap's top is the current worst, so a
/// push that cannot enter costs one comparison.
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Held>,
    /// Nothing farther than this enters (+∞ unless made [`bounded`](Self::bounded)).
    bound: f32,
    /// The extent [`push_at`](Self::push_at) positions belong to.
    extent: u32,
    /// Only these ids enter (None: any).
    allow: Option<Arc<IdFilter>>,
    /// Deleted ids, which never enter.
    hidden: Option<Arc<Tombstones>>,
}

/// A held neighbour and where its vector lies: `extent << 32 | position` ([`NOWHERE`] for
/// one pushed without a place). Ordered by the neighbour alone.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Held {
    n: Neighbor,
    at: u64,
}

/// The place of a neighbour pushed without one.
pub const NOWHERE: u64 = u64::MAX;

impl Eq for Held {}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        self.n.cmp(&other.n)
    }
}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK::bounded(k, f32::INFINITY)
    }

    /// A top-k that takes nothing farther than `bound`: the part of a search whose other part
    /// already holds k neighbours at most `bound` away (a tie at `bound` still enters, to be
    /// settled by id when the parts are merged).
    pub fn bounded(k: usize, bound: f32) -> Self {
        TopK { k, heap: BinaryHeap::with_capacity(k + 1), bound, extent: 0, allow: None, hidden: None }
    }

    /// The same top-k taking only the ids `allow` holds (when given): everything offered
    /// otherwise is passed over, so a scan still ends with k neighbours where its lists hold
    /// k allowed ones.
    pub fn filtered(mut self, allow: Option<Arc<IdFilter>>) -> Self {
        self.allow = allow;
        self
    }

    /// The same top-k passing over the deleted ids `hidden` holds (when given and not empty),
    /// as [`filtered`](Self::filtered) passes over ids not allowed.
    pub fn hiding(mut self, hidden: Option<Arc<Tombstones>>) -> Self {
        self.hidden = hidden.filter(|h| !h.is_empty());
        self
    }

    /// Whether pushes are filtered (by an allow-list or deletions).
    #[inline]
    pub fn has_filter(&self) -> bool {
        self.allow.is_some() || self.hidden.is_some()
    }

    /// Whether `id`, in the extent [`set_extent`](Self::set_extent) names, may enter.
    #[inline]
    pub fn admits(&self, id: u64) -> bool {
        self.allow.as_ref().is_none_or(|a| a.contains(id))
            && self.hidden.as_ref().is_none_or(|h| !h.hides(id, self.extent))
    }

    /// Names the extent whose vectors [`push_at`](Self::push_at) gives positions in.
    #[inline]
    pub fn set_extent(&mut self, extent: u32) {
        self.extent = extent;
    }

    /// The dissimilarity a candidate must beat to enter (the bound, +∞ by default, until k are
    /// held).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            self.bound
        } else {
            self.heap.peek().map_or(f32::INFINITY, |h| h.n.dist)
        }
    }

    #[inline]
    pub fn push(&mut self, id: u64, dist: f32) {
        self.push_placed(Neighbor { id, dist }, NOWHERE)
    }

    /// [`push`](Self::push) of the vector at `position` of the extent named by
    /// [`set_extent`](Self::set_extent), which [`into_sorted_placed`](Self::into_sorted_placed)
    /// hands back (a re-rank reads its full vector from there).
    #[inline]
    pub fn push_at(&mut self, id: u64, dist: f32, position: usize) {
        self.push_placed(Neighbor { id, dist }, (self.extent as u64) << 32 | position as u64)
    }

    /// Pushes `n` with its place as [`into_sorted_placed`](Self::into_sorted_placed) gives it.
    #[inline]
    pub fn push_placed(&mut self, n: Neighbor, at: u64) {
        if self.k == 0 || n.dist > self.bound {
            return;
        }
        let h = Held { n, at };
        // The filter last: most offers fail the cheaper compare.
        let full = self.heap.len() >= self.k;
        if (full && self.heap.peek().is_some_and(|top| h >= *top)) || !self.admits(n.id) {
            return;
        }
        if full {
            if let Some(mut top) = self.heap.peek_mut() {
                *top = h;
            }
        } else {
            self.heap.push(h);
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// How many more neighbours it takes to hold k.
    #[inline]
    pub fn room(&self) -> usize {
        self.k - self.heap.len()
    }

    /// The farthest neighbour held, full or not.
    #[inline]
    pub fn worst_held(&self) -> Option<f32> {
        self.heap.peek().map(|h| h.n.dist)
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The held neighbours, closest first.
    pub fn into_sorted_vec(self) -> Vec<Neighbor> {
        self.heap.into_sorted_vec().into_iter().map(|h| h.n).collect()
    }

    /// The held neighbours, closest first, each with its place (`extent << 32 | position`, or
    /// [`NOWHERE`]).
    pub fn into_sorted_placed(self) -> Vec<(Neighbor, u64)> {
        self.heap.into_sorted_vec().into_iter().map(|h| (h.n, h.at)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn keeps_the_k_smallest_in_order() {
        let mut r = Rng::new(5);
        let vals: Vec<f32> = (0..1000).map(|_| r.next_f64() as f32).collect();
        let mut t = TopK::new(10);
        for (i, &v) in vals.iter().enumerate() {
            t.push(i as u64, v);
        }
        let got: Vec<f32> = t.into_sorted_vec().iter().map(|n| n.dist).collect();
        let mut want = vals.clone();
        want.sort_by(f32::total_cmp);
        assert_eq!(got, want[..10]);
    }

    #[test]
    fn nan_never_displaces_a_number() {
        let mut t = TopK::new(2);
        t.push(0, 1.0);
        t.push(1, 2.0);
        t.push(2, f32::NAN);
        let ids: Vec<u64> = t.into_sorted_vec().iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![0, 1]);
    }

    /// A bounded part merged with the part that set its bound gives the top-k of everything.
    #[test]
    fn bounded_parts_merge_to_the_whole() {
        let mut r = Rng::new(9);
        for k in [1, 5, 10] {
            let vals: Vec<f32> = (0..300).map(|_| (r.next_f64() * 40.0).floor() as f32).collect();
            let (a, b) = vals.split_at(60);
            let mut first = TopK::new(k);
            a.iter().enumerate().for_each(|(i, &v)| first.push(i as u64, v));
            let mut second = TopK::bounded(k, first.threshold());
            b.iter().enumerate().for_each(|(i, &v)| second.push((60 + i) as u64, v));
            assert!(second.into_sorted_vec().iter().all(|n| n.dist <= first.threshold()));
            let mut second = TopK::bounded(k, first.threshold());
            b.iter().enumerate().for_each(|(i, &v)| second.push((60 + i) as u64, v));
            let mut merged = TopK::new(k);
            for n in first.into_sorted_vec().into_iter().chain(second.into_sorted_vec()) {
                merged.push(n.id, n.dist);
            }
            let mut whole = TopK::new(k);
            vals.iter().enumerate().for_each(|(i, &v)| whole.push(i as u64, v));
            assert_eq!(merged.into_sorted_vec(), whole.into_sorted_vec());
        }
    }

    #[test]
    fn ties_break_by_id() {
        let mut t = TopK::new(2);
        for id in [9, 3, 7, 1] {
            t.push(id, 0.5);
        }
        let ids: Vec<u64> = t.into_sorted_vec().iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![1, 3]);
    }
}
