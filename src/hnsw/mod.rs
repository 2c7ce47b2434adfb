//! Hierarchical navigable small-world graph (Malkov & Yashunin 2018) as faiss lays it out: one
//! flat `u32` neighbour array, node `i` owning `2M` slots on level 0 and `M` on every level above
//! it up to its own, unused slots holding [`EMPTY`]. The graph does not own the vectors; build
//! and search take them as a slice, so the same code serves the coarse quantizer (a graph over
//! centroids) and `HNSW32,Flat` (a graph over the base).

mod build;
mod search;

use std::sync::Arc;

pub use build::HnswParams;
pub(crate) use search::QueryDist;
pub use search::{HalfPoints, Points, Space, VisitedSet};

/// Marks an unused neighbour slot.
pub const EMPTY: u32 = u32::MAX;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    #[error("HNSW graph is inconsistent: {0}")]
    Invalid(String),
}

/// Where a graph's neighbour slots live: in a vector of their own (built, or read into RAM),
/// or in storage the caller keeps — a memory-mapped file, say, so that a graph larger than
/// RAM pages in what searches touch.
#[derive(Clone)]
pub enum Slots {
    Owned(Vec<u32>),
    Shared(Arc<dyn AsRef<[u32]> + Send + Sync>),
}

impl std::ops::Deref for Slots {
    type Target = [u32];
    #[inline]
    fn deref(&self) -> &[u32] {
        match self {
            Slots::Owned(v) => v,
            Slots::Shared(s) => (**s).as_ref(),
        }
    }
}

impl Slots {
    /// The slots as a vector of their own (copied out of shared storage).
    pub fn into_vec(self) -> Vec<u32> {
        match self {
            Slots::Owned(v) => v,
            Slots::Shared(s) => (*s).as_ref().to_vec(),
        }
    }

    /// Mutable slots, copied out of shared storage first.
    fn make_mut(&mut self) -> &mut [u32] {
        if let Slots::Shared(s) = self {
            *self = Slots::Owned((**s).as_ref().to_vec());
        }
        match self {
            Slots::Owned(v) => v,
            Slots::Shared(_) => unreachable!("made owned above"),
        }
    }
}

impl PartialEq for Slots {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = if matches!(self, Slots::Owned(_)) { "owned" } else { "shared" };
        write!(f, "Slots({} {place})", self.len())
    }
}

/// The graph: adjacency only.
#[derive(Clone, Debug, PartialEq)]
pub struct Hnsw {
    /// Links per node on levels ≥ 1; level 0 has `2 * m`.
    pub m: usize,
    /// Top level of each node.
    pub levels: Vec<u8>,
    /// Neighbour slots of all nodes, node by node, level 0 first.
    pub neighbors: Slots,
    pub entry_point: u32,
    pub max_level: u8,
    offsets: Vec<usize>,
}

impl Hnsw {
    /// Number of neighbour slots a node on `level` owns in total.
    pub fn slots_for_level(m: usize, level: u8) -> usize {
        2 * m + level as usize * m
    }

    /// Reassembles a graph from its stored parts, checking every invariant search relies on
    /// (slot counts, ids in range, entry point on the top level) so that a damaged graph is an
    /// error here and never an out-of-bounds access later.
    pub fn from_parts(m: usize, levels: Vec<u8>, neighbors: Vec<u32>, entry_point: u32) -> Result<Self, GraphError> {
        let n = levels.len();
        if let Some(&v) = neighbors.iter().find(|&&v| v != EMPTY && v as usize >= n) {
            return Err(GraphError::Invalid(format!("neighbour id {v} out of range (n = {n})")));
        }
        Self::assemble(m, levels, Slots::Owned(neighbors), entry_point)
    }

    /// [`from_parts`](Self::from_parts) over slots kept elsewhere (a mapped file): the slot
    /// count and entry point are checked here, the slots' ids are not read (that would page
    /// in the whole graph); a walk skips an id out of range instead of following it.
    pub fn from_shared_parts(
        m: usize,
        levels: Vec<u8>,
        neighbors: Arc<dyn AsRef<[u32]> + Send + Sync>,
        entry_point: u32,
    ) -> Result<Self, GraphError> {
        Self::assemble(m, levels, Slots::Shared(neighbors), entry_point)
    }

    fn assemble(m: usize, levels: Vec<u8>, neighbors: Slots, entry_point: u32) -> Result<Self, GraphError> {
        let n = levels.len();
        let bad = |s: String| Err(GraphError::Invalid(s));
        if m == 0 {
            return bad("M = 0".into());
        }
        let offsets = Self::offsets_for(m, &levels);
        let total = offsets[n];
        if total != neighbors.len() {
            return bad(format!("{} neighbour slots stored, levels need {total}", neighbors.len()));
        }
        let max_level = levels.iter().copied().max().unwrap_or(0);
        if n > 0 && (entry_point as usize >= n || levels[entry_point as usize] != max_level) {
            return bad(format!("entry point {entry_point} is not a node on the top level {max_level}"));
        }
        Ok(Hnsw { m, levels, neighbors, entry_point, max_level, offsets })
    }

    /// A graph with every slot empty, sized for `levels`.
    pub(crate) fn with_levels(m: usize, levels: Vec<u8>) -> Self {
        let offsets = Self::offsets_for(m, &levels);
        let neighbors = Slots::Owned(vec![EMPTY; offsets[levels.len()]]);
        Hnsw { m, levels, neighbors, entry_point: 0, max_level: 0, offsets }
    }

    fn offsets_for(m: usize, levels: &[u8]) -> Vec<usize> {
        let mut offsets = Vec::with_capacity(levels.len() + 1);
        let mut total = 0usize;
        for &l in levels {
            offsets.push(total);
            total += Self::slots_for_level(m, l);
        }
        offsets.push(total);
        offsets
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    fn range(&self, node: u32, level: u8) -> std::ops::Range<usize> {
        let base = self.offsets[node as usize];
        if level == 0 {
            base..base + 2 * self.m
        } else {
            let s = base + 2 * self.m + (level as usize - 1) * self.m;
            s..s + self.m
        }
    }

    /// The used neighbour slots of `node` on `level`. An id past the graph (possible only in
    /// shared slots, whose ids are not checked up front) ends the list like an empty slot.
    #[inline]
    pub fn neighbors_of(&self, node: u32, level: u8) -> impl Iterator<Item = u32> + '_ {
        let n = self.levels.len();
        self.neighbors[self.range(node, level)].iter().copied().take_while(move |&v| (v as usize) < n)
    }

    /// The neighbour slots, for the builder.
    pub(crate) fn slots_mut(&mut self) -> &mut [u32] {
        self.neighbors.make_mut()
    }

    /// An order of the nodes in which near nodes tend to follow each other: a walk that steps
    /// to the nearest unvisited level-0 neighbour (by `dist`), else to the first unvisited
    /// neighbour of a neighbour, else to the lowest unvisited node. Returns node ids in walk
    /// order. Inverted lists stored in this order put the lists one query probes (neighbours
    /// of each other) next to each other, so their reads coalesce.
    pub fn locality_order(&self, dist: impl Fn(u32, u32) -> f32) -> Vec<u32> {
        let n = self.len();
        let mut visited = vec![false; n];
        let mut order = Vec::with_capacity(n);
        let (mut cur, mut lowest) = (0u32, 0usize);
        while order.len() < n {
            visited[cur as usize] = true;
            order.push(cur);
            let nearest = self
                .neighbors_of(cur, 0)
                .filter(|&v| !visited[v as usize])
                .map(|v| (dist(cur, v), v))
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let next = nearest.map(|(_, v)| v).or_else(|| {
                self.neighbors_of(cur, 0).flat_map(|u| self.neighbors_of(u, 0)).find(|&v| !visited[v as usize])
            });
            cur = match next {
                Some(v) => v,
                None => {
                    while lowest < n && visited[lowest] {
                        lowest += 1;
                    }
                    if lowest == n {
                        break;
                    }
                    lowest as u32
                }
            };
        }
        order
    }

    /// The same graph with node `i` named `new_of_old[i]` (a permutation of 0 .. len).
    pub fn relabel(&self, new_of_old: &[u32]) -> Hnsw {
        let n = self.len();
        let mut levels = vec![0u8; n];
        for (old, &new) in new_of_old.iter().enumerate() {
            levels[new as usize] = self.levels[old];
        }
        let mut out = Hnsw::with_levels(self.m, levels);
        for (old, &new) in new_of_old.iter().enumerate() {
            for level in 0..=self.levels[old] {
                let (from, to) = (self.range(old as u32, level), out.range(new, level));
                let src = &self.neighbors[from];
                let dst = &mut out.slots_mut()[to];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = if (s as usize) < n { new_of_old[s as usize] } else { EMPTY };
                }
            }
        }
        out.entry_point = new_of_old.get(self.entry_point as usize).copied().unwrap_or(0);
        out.max_level = self.max_level;
        out
    }
}
