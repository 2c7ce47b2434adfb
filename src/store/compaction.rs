//! What a compaction rewrites and what it frees. Lists with more than one extent or any
//! deleted entry are rewritten into one extent each; a segment whose extents are then less
//! than half still in use has all its lists rewritten too, so that the segment itself goes
//! (repeated until nothing changes). Only whole files are freed, so what a compaction gains
//! is the files it frees less what it writes — the figure `inspect` reports.

use crate::format::{Directory, PAGE};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionPlan {
    /// Per list: rewritten or kept where it is.
    pub rewrite: Vec<bool>,
    /// Segment numbers whose every extent is rewritten: their files go.
    pub freed_segments: Vec<u32>,
    /// Bytes of the freed segments (and vectors files) less the bytes written, at least 0.
    pub reclaimable_bytes: u64,
}

impl CompactionPlan {
    pub fn lists(&self) -> u64 {
        self.rewrite.iter().filter(|&&r| r).count() as u64
    }
}

/// The plan for `directory` (extents naming segment numbers) with `deleted[l]` deleted
/// entries in list l; `vector_bytes` is what one full vector takes in a vectors file, for
/// `,RFlat` indexes.
pub fn plan(directory: &Directory, deleted: &[u64], vector_bytes: Option<u64>) -> CompactionPlan {
    let nlist = directory.nlist();
    // With the ids kept with the vectors: records of the vector and its id, then a block of ids.
    let vector_pages = |count: u64| match (vector_bytes, directory.ids) {
        (None, _) => 0,
        (Some(b), crate::format::IdsPlace::InExtent) => (count * b).div_ceil(PAGE),
        (Some(b), crate::format::IdsPlace::WithVectors) => {
            (count * (b + 8)).div_ceil(PAGE) + (count * 8).div_ceil(PAGE)
        }
    };
    let bytes = |count: u64, length: u64| length + vector_pages(count) * PAGE;
    let mut rewrite: Vec<bool> =
        (0..nlist).map(|l| directory.extents_of(l).len() > 1 || deleted.get(l).is_some_and(|&d| d > 0)).collect();
    let mut segments: Vec<u32> = directory.extents.iter().map(|x| x.segment.get()).collect();
    segments.sort_unstable();
    segments.dedup();
    let slot = |no: u32| segments.binary_search(&no).unwrap_or(0);
    // Per segment: (bytes of all its extents, bytes of those kept).
    let tally = |rewrite: &[bool]| {
        let mut t = vec![(0u64, 0u64); segments.len()];
        for (l, &r) in rewrite.iter().enumerate() {
            for x in directory.extents_of(l) {
                let b = bytes(x.count.get() as u64, x.length.get());
                let e = &mut t[slot(x.segment.get())];
                e.0 += b;
                if !r {
                    e.1 += b;
                }
            }
        }
        t
    };
    loop {
        let t = tally(&rewrite);
        let mostly_dead: Vec<u32> = segments
            .iter()
            .zip(&t)
            .filter(|(_, &(all, kept))| kept < all && 2 * kept < all && kept > 0)
            .map(|(&s, _)| s)
            .collect();
        if mostly_dead.is_empty() {
            break;
        }
        for (l, r) in rewrite.iter_mut().enumerate() {
            if directory.extents_of(l).iter().any(|x| mostly_dead.binary_search(&x.segment.get()).is_ok()) {
                *r = true;
            }
        }
    }
    let t = tally(&rewrite);
    let freed_segments: Vec<u32> =
        segments.iter().zip(&t).filter(|(_, &(all, kept))| all > 0 && kept == 0).map(|(&s, _)| s).collect();
    // A freed segment's file is its extents plus the header page (and a vectors file's header
    // and page table, left out: small).
    let freed: u64 = segments.iter().zip(&t).filter(|(_, &(_, kept))| kept == 0).map(|(_, &(all, _))| all + PAGE).sum();
    let written: u64 = (0..nlist)
        .filter(|&l| rewrite[l])
        .map(|l| {
            let stored: u64 = directory.extents_of(l).iter().map(|x| x.count.get() as u64).sum();
            let live = stored.saturating_sub(deleted.get(l).copied().unwrap_or(0));
            if live == 0 {
                0
            } else {
                bytes(live, directory.layout.extent_len_in(live, directory.ids))
            }
        })
        .sum();
    CompactionPlan { rewrite, freed_segments, reclaimable_bytes: freed.saturating_sub(written) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{CodeLayout, Extent};

    fn extent(segment: u32, count: u32) -> Extent {
        let layout = CodeLayout::RowMajor { code_size: 8 };
        Extent {
            segment: segment.into(),
            count: count.into(),
            offset: PAGE.into(),
            length: layout.extent_len(count as u64).into(),
            crc: 0.into(),
            vectors_page: 0.into(),
        }
    }

    /// Lists given as their extents' (segment, count).
    fn directory(lists: &[&[(u32, u32)]]) -> Directory {
        let mut list_starts = vec![0];
        let mut extents = Vec::new();
        for l in lists {
            extents.extend(l.iter().map(|&(s, c)| extent(s, c)));
            list_starts.push(extents.len() as u32);
        }
        let ntotal = extents.iter().map(|x| x.count.get() as u64).sum();
        let layout = CodeLayout::RowMajor { code_size: 8 };
        Directory { n_segments: 3, layout, ntotal, ids: Default::default(), list_starts, extents }
    }

    #[test]
    fn whole_files_are_what_a_compaction_frees() {
        // Four lists in segment 0; one deletion in list 0: list 0 is rewritten, segment 0
        // keeps three quarters of its bytes and stays, so nothing is freed (the new extent is a
        // cost, not a gain).
        let d = directory(&[&[(0, 400)], &[(0, 400)], &[(0, 400)], &[(0, 400)]]);
        let p = plan(&d, &[1, 0, 0, 0], None);
        assert_eq!(
            (p.rewrite.clone(), p.freed_segments.clone(), p.reclaimable_bytes),
            (vec![true, false, false, false], vec![], 0)
        );
        // Deletions in three of the four: segment 0 would keep a quarter, so all four are
        // rewritten and the segment goes.
        let p = plan(&d, &[1, 1, 300, 0], None);
        assert_eq!((p.lists(), p.freed_segments.clone()), (4, vec![0]));
        assert!(p.reclaimable_bytes > 0);
        // After an addition every list has two extents (segments 0 and 1): all rewritten, both
        // segments freed, and the gain is their padding and header pages.
        let d = directory(&[&[(0, 400), (1, 10)], &[(0, 400), (1, 10)]]);
        let p = plan(&d, &[0, 0], Some(64));
        assert_eq!((p.lists(), p.freed_segments.clone()), (2, vec![0, 1]));
        assert!(p.reclaimable_bytes >= 2 * PAGE, "{p:?}");
        // Nothing split, nothing deleted: nothing to do.
        let d = directory(&[&[(0, 400)], &[(1, 400)]]);
        assert_eq!(plan(&d, &[0, 0], None), CompactionPlan { rewrite: vec![false, false], ..Default::default() });
    }
}
