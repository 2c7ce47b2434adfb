//! What a build will write to disk, computed before it starts: the sorted runs (temporary; all
//! of them, plus one merged group while a multi-pass merge writes it), the finished index, and
//! the RAM the index needs when served. The figures are upper bounds, so a build that passes
//! the check up front does not run out of disk half-way on account of its own files.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::{self, run_payload_len, PAGE};

/// The disk (and serving RAM) a build needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskPlan {
    /// Sorted runs once every vector is streamed.
    pub runs_bytes: u64,
    /// Peak of the runs on disk (`runs_bytes`, plus a merged group while a pass writes it).
    pub temp_bytes: u64,
    /// Merge passes before the final merge (0: one pass).
    pub merge_passes: usize,
    /// Segment files: codes, ids, and padding of each extent to 4 KiB (and, for `,RFlat`, the
    /// vectors files beside them: the disk shape's `code_size` then counts each full vector).
    pub segments_bytes: u64,
    pub quantizer_bytes: u64,
    pub codebooks_bytes: u64,
    pub directory_bytes: u64,
    /// The finished index: segments and the RAM-resident files.
    pub final_bytes: u64,
    /// What the index holds in RAM when served: quantizer (centroids and HNSW graph),
    /// codebooks and list directory.
    pub serving_ram: u64,
}

/// The shape the plan is computed from.
pub struct DiskShape {
    pub n: u64,
    pub d: u64,
    pub nlist: u64,
    pub hnsw_m: u64,
    pub code_size: u64,
    pub chunk_rows: u64,
    pub fan_in: u64,
    pub max_extent_vectors: u64,
    pub segment_bytes: u64,
}

fn run_bytes(rows: u64, nlist: u64, code_size: u64) -> u64 {
    format::HEADER_LEN as u64 + run_payload_len(rows, rows.min(nlist), code_size as usize)
}

pub fn disk_plan(s: &DiskShape) -> DiskPlan {
    let chunk = s.chunk_rows.max(1);
    let mut runs: Vec<u64> = (0..s.n.div_ceil(chunk)).map(|i| chunk.min(s.n - i * chunk)).collect();
    let runs_bytes: u64 = runs.iter().map(|&r| run_bytes(r, s.nlist, s.code_size)).sum();
    let (mut temp_bytes, mut merge_passes) = (runs_bytes, 0);
    let fan_in = s.fan_in.max(2) as usize;
    while runs.len() > fan_in {
        merge_passes += 1;
        let now: u64 = runs.iter().map(|&r| run_bytes(r, s.nlist, s.code_size)).sum();
        runs = runs.chunks(fan_in).map(|g| g.iter().sum()).collect();
        let largest = runs.iter().map(|&r| run_bytes(r, s.nlist, s.code_size)).max().unwrap_or(0);
        temp_bytes = temp_bytes.max(now + largest);
    }

    // Every extent holds codes and 8-byte ids and is padded to a page; a list longer than the
    // largest extent is split.
    let extents = s.nlist + s.n / s.max_extent_vectors.max(1);
    let data = s.n * (s.code_size + 8) + extents * PAGE;
    let segments = data.div_ceil(s.segment_bytes.max(2 * PAGE)).max(1);
    let segments_bytes = data + segments * PAGE;
    // Levels above 0 hold M slots with probability 1/M per level: under 2 extra per node.
    let slots = s.nlist * (2 * s.hnsw_m + 2);
    let quantizer_bytes = format::HEADER_LEN as u64 + 32 + s.nlist * s.d * 4 + s.nlist.next_multiple_of(4) + slots * 4;
    let codebooks_bytes = format::HEADER_LEN as u64 + 16 + 256 * s.d * 4;
    let directory_bytes = format::HEADER_LEN as u64 + 32 + (s.nlist + 1) * 4 + extents * 32;
    DiskPlan {
        runs_bytes,
        temp_bytes,
        merge_passes,
        segments_bytes,
        quantizer_bytes,
        codebooks_bytes,
        directory_bytes,
        final_bytes: segments_bytes + quantizer_bytes + codebooks_bytes + directory_bytes + PAGE,
        serving_ram: quantizer_bytes + codebooks_bytes + directory_bytes,
    }
}

/// Checks that the file systems holding the index and the runs have room for what the build
/// still has to write (`credit`: bytes of runs already on disk from an interrupted build).
/// Runs and index share one file system's free space when they are on the same one (the runs
/// are removed only after the commit).
pub fn check_space(plan: &DiskPlan, index_dir: &Path, runs_dir: &Path, credit: u64) -> Result<()> {
    let (index_dev, index_free) = crate::io::disk_space(index_dir).at(index_dir)?;
    let (runs_dev, runs_free) = crate::io::disk_space(runs_dir).at(runs_dir)?;
    let temp = plan.temp_bytes.saturating_sub(credit);
    let human = crate::error::human_bytes;
    let mut needs: Vec<(PathBuf, u64, u64, String)> = Vec::new();
    if index_dev == runs_dev {
        needs.push((
            index_dir.to_owned(),
            temp + plan.final_bytes,
            index_free,
            format!("{} of sorted runs and {} of index", human(temp), human(plan.final_bytes)),
        ));
    } else {
        needs.push((
            index_dir.to_owned(),
            plan.final_bytes,
            index_free,
            format!("{} of index", human(plan.final_bytes)),
        ));
        needs.push((runs_dir.to_owned(), temp, runs_free, format!("{} of sorted runs", human(temp))));
    }
    for (path, need, available, detail) in needs {
        if need > available {
            return Err(Error::DiskTooSmall { path, need, available, detail });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> DiskShape {
        DiskShape {
            n: 100_000_000,
            d: 128,
            nlist: 65_536,
            hnsw_m: 32,
            code_size: 32,
            chunk_rows: 262_144,
            fan_in: 1_000,
            max_extent_vectors: 1 << 20,
            segment_bytes: 1 << 30,
        }
    }

    #[test]
    fn runs_cost_a_list_boundary_per_group_not_per_record() {
        let p = disk_plan(&shape());
        let records = 100_000_000u64 * 36;
        assert!(p.runs_bytes > records && p.runs_bytes < records + 382 * 65_536 * 8 + 382 * 4096, "{p:?}");
        assert_eq!(p.merge_passes, 0);
        assert_eq!(p.temp_bytes, p.runs_bytes);
        // 100M × (32 + 8) bytes of codes and ids, and at most a page of padding per list.
        assert!(p.segments_bytes >= 4_000_000_000 && p.segments_bytes < 4_000_000_000 + 70_000 * PAGE);
    }

    #[test]
    fn a_multi_pass_merge_needs_room_for_one_merged_group_more() {
        let p = disk_plan(&DiskShape { fan_in: 8, ..shape() });
        assert_eq!(p.merge_passes, 2, "382 runs -> 48 -> 6");
        assert!(p.temp_bytes > p.runs_bytes && p.temp_bytes < p.runs_bytes + p.runs_bytes / 5, "{p:?}");
    }

    #[test]
    fn a_shortfall_names_the_place_and_both_amounts() {
        let dir = tempfile::tempdir().unwrap();
        let huge = DiskPlan { temp_bytes: u64::MAX / 4, final_bytes: 1, ..Default::default() };
        match check_space(&huge, dir.path(), &dir.path().join(".build-tmp"), 0) {
            Err(Error::DiskTooSmall { path, need, available, .. }) => {
                assert_eq!(path, dir.path());
                assert!(need > available);
            }
            other => panic!("{other:?}"),
        }
        let small = DiskPlan { temp_bytes: 1 << 20, final_bytes: 1 << 20, ..Default::default() };
        check_space(&small, dir.path(), dir.path(), 0).unwrap();
        let credited = DiskPlan { temp_bytes: u64::MAX / 4, final_bytes: 1, ..Default::default() };
        check_space(&credited, dir.path(), dir.path(), u64::MAX / 4).unwrap();
    }
}
