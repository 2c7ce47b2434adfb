//! The build's checkpoints in its staging area, and what a resumed build trusts of them.
//!
//! - `build.qvb`: the build state, written first: which index this build makes, from which
//!   input, with which options. A resume with anything different is refused, naming it.
//! - `quantizer.qvq`, `codebooks.qvc`: the trained coarse quantizer and PQ codebooks, in the
//!   index's own format. Every build (resumed or not) reads them back from there before it
//!   streams, so a resumed build assigns and encodes with the very same bytes.
//! - `run-<first>-<end>.qvr`: sorted runs, each covering a range of input rows.
//!
//! Each file is checksummed and written under a temporary name, fsynced and renamed, so a
//! checkpoint under its final name is whole; one that fails its checks is redone, not trusted.

use std::fs;
use std::path::{Path, PathBuf};

use super::run::{parse_run_name, verify_run};
use super::spill::RunFile;
use crate::error::{Error, IoContext, Result};
use crate::format::{self, BuildState, Codebooks, FileEntry, FileHeader, FileKind, QuantizerBlock, HEADER_LEN};
use crate::hnsw::Hnsw;
use crate::input::VectorSource;
use crate::io::durable;
use crate::ivf::CoarseQuantizer;
use crate::pq::ProductQuantizer;
use crate::store;

/// CRC-32C of the input's shape and of its first and last 64 rows as float32: a different
/// input is told apart without reading it all.
pub(super) fn input_fingerprint(source: &dyn VectorSource) -> Result<u32> {
    let (n, d) = (source.len(), source.dim());
    let rows = n.min(64);
    let mut crc = crc32c::crc32c(format!("{n}x{d}").as_bytes());
    let mut buf = Vec::new();
    for start in [0, n - rows] {
        buf.resize(rows * d, 0.0);
        source.read_f32(start, rows, &mut buf)?;
        buf.iter().for_each(|x| crc = crc32c::crc32c_append(crc, &x.to_le_bytes()));
    }
    Ok(crc)
}

/// Writes the build state into the staging area (durably).
pub(super) fn save_state(area: &Path, state: &BuildState, index_id: [u8; 16]) -> Result<()> {
    durable::write_atomic(area, store::BUILD_STATE, &state.encode(index_id)).at(area)
}

/// Reads the state of the unfinished build in `area`.
pub(super) fn load_state(area: &Path) -> Result<(BuildState, [u8; 16])> {
    let path = area.join(store::BUILD_STATE);
    let bytes = fs::read(&path).at(&path)?;
    let (state, h) = BuildState::decode(&path.display().to_string(), &bytes)?;
    Ok((state, h.index_id))
}

/// What differs between the build that was started (`old`) and the one asked for now, as
/// "name: then X, now Y" phrases.
pub(super) fn differences(old: &BuildState, new: &BuildState) -> Vec<String> {
    let (a, b) = (&old.body, &new.body);
    let (pa, pb) = (&a.params, &b.params);
    let mut out = Vec::new();
    let mut cmp = |name: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{name}: started with {x}, now {y}"));
        }
    };
    let factory = |p: &format::Params| {
        let end = p.factory.iter().position(|&c| c == 0).unwrap_or(64);
        String::from_utf8_lossy(&p.factory[..end]).into_owned()
    };
    cmp("factory", factory(pa), factory(pb));
    cmp("metric", pa.metric.to_string(), pb.metric.to_string());
    cmp("input shape", format!("{} × {}", pa.ntotal, pa.dim), format!("{} × {}", pb.ntotal, pb.dim));
    cmp("input element type", a.input_elem.to_string(), b.input_elem.to_string());
    cmp(
        "input rows (first and last 64)",
        format!("{:#010x}", a.input_fingerprint),
        format!("{:#010x}", b.input_fingerprint),
    );
    cmp("seed", pa.seed.to_string(), pb.seed.to_string());
    cmp("training size", pa.train_size.to_string(), pb.train_size.to_string());
    cmp("niter", pa.niter.to_string(), pb.niter.to_string());
    cmp("efConstruction", pa.ef_construction.to_string(), pb.ef_construction.to_string());
    cmp("efSearch", pa.ef_search.to_string(), pb.ef_search.to_string());
    cmp("two-level k-means", a.two_level.to_string(), b.two_level.to_string());
    cmp("segment size", a.segment_bytes.to_string(), b.segment_bytes.to_string());
    cmp("largest extent (from --memory)", a.max_extent_vectors.to_string(), b.max_extent_vectors.to_string());
    out
}

/// Writes the trained quantizer and codebooks into the staging area, each durably.
pub(super) fn save_trained(
    area: &Path,
    index_id: [u8; 16],
    coarse: CoarseQuantizer,
    pq: Option<&ProductQuantizer>,
) -> Result<()> {
    let g = coarse.hnsw;
    let block = QuantizerBlock {
        dim: coarse.d as u32,
        hnsw_m: g.m as u32,
        entry_point: g.entry_point,
        centroids: coarse.centroids,
        levels: g.levels,
        neighbors: g.neighbors.into_vec(),
    };
    let bytes = block.encode(index_id);
    drop(block);
    durable::write_atomic(area, store::QUANTIZER, &bytes).at(area)?;
    drop(bytes);
    // Raw vectors (`…,Flat`) have no codebooks.
    let Some(pq) = pq else { return Ok(()) };
    let codebooks = Codebooks {
        m: pq.m as u32,
        ksub: pq.ksub() as u32,
        dsub: pq.dsub as u32,
        nbits: pq.nbits as u32,
        centroids: pq.centroids.clone(),
    };
    durable::write_atomic(area, store::CODEBOOKS, &codebooks.encode(index_id)).at(area)
}

/// What the trained files must agree with.
pub(super) struct TrainedShape {
    pub index_id: [u8; 16],
    pub d: usize,
    pub metric: crate::distance::Metric,
    pub nlist: usize,
    pub hnsw_m: usize,
    pub pq_m: usize,
    pub pq_nbits: usize,
}

/// Reads the trained quantizer and codebooks from the staging area: `None` when they are
/// missing or fail a check (the caller trains again; the damage is logged).
pub(super) fn load_trained(
    area: &Path,
    s: &TrainedShape,
) -> Result<Option<(CoarseQuantizer, Option<ProductQuantizer>)>> {
    let (qp, cp) = (area.join(store::QUANTIZER), area.join(store::CODEBOOKS));
    if !qp.exists() || (s.pq_m > 0 && !cp.exists()) {
        return Ok(None);
    }
    let load = || -> Result<(CoarseQuantizer, Option<ProductQuantizer>)> {
        let bytes = fs::read(&qp).at(&qp)?;
        let (q, h) = QuantizerBlock::decode(&qp.display().to_string(), &bytes)?;
        drop(bytes);
        let mismatch = |file: &Path| Error::Corrupt {
            file: file.display().to_string(),
            reason: "does not belong to this build".into(),
        };
        if h.index_id != s.index_id || q.dim as usize != s.d || q.nlist() != s.nlist || q.hnsw_m as usize != s.hnsw_m {
            return Err(mismatch(&qp));
        }
        let hnsw = Hnsw::from_parts(q.hnsw_m as usize, q.levels, q.neighbors, q.entry_point)?;
        let coarse = CoarseQuantizer::new(s.d, s.metric.kernel(), q.centroids, hnsw);
        if s.pq_m == 0 {
            return Ok((coarse, None));
        }
        let bytes = fs::read(&cp).at(&cp)?;
        let (cb, h) = Codebooks::decode(&cp.display().to_string(), &bytes)?;
        if h.index_id != s.index_id || cb.m as usize != s.pq_m || cb.nbits as usize != s.pq_nbits {
            return Err(mismatch(&cp));
        }
        let pq = ProductQuantizer::from_codebooks(s.d, s.pq_m, s.pq_nbits, cb.centroids)
            .map_err(|e| Error::Corrupt { file: cp.display().to_string(), reason: e.to_string() })?;
        Ok((coarse, Some(pq)))
    };
    match load() {
        Ok(t) => Ok(Some(t)),
        Err(e) => {
            log::warn!("the trained quantizer in {} is unusable ({e}); training again", area.display());
            Ok(None)
        }
    }
}

/// Links a checkpoint file of the staging area into the index directory under the same name
/// (same file system: the area is inside it) and returns its manifest entry.
pub(super) fn link_into_index(area: &Path, dir: &Path, name: &str, kind: FileKind) -> Result<FileEntry> {
    let (from, to) = (area.join(name), dir.join(name));
    crate::io::durable::hard_link(&from, &to).at(&to)?;
    let mut head = [0u8; HEADER_LEN];
    let f = fs::File::open(&to).at(&to)?;
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0).at(&to)?;
    let h = FileHeader::decode(name, kind, &head)?;
    let size = f.metadata().at(&to)?.len();
    Ok(FileEntry::new(name, kind, size, h.payload_crc.get()))
}

/// Input rows `first..end`.
pub(super) type RowRange = (u64, u64);

/// The runs a resumed build can use: every well-named run in `dir` is read whole and checked;
/// damaged ones and leftover temporaries are removed, and where a merged run and the runs it
/// replaced both survived (a kill between the two), the merged one is kept. Returns the runs
/// kept, in row order, and the row ranges of `0..n` that no run covers.
pub(super) fn usable_runs(
    dir: &Path,
    n: u64,
    nlist: usize,
    code_size: usize,
    index_id: [u8; 16],
) -> Result<(Vec<RunFile>, Vec<RowRange>)> {
    let mut found = Vec::new();
    if dir.exists() {
        for e in fs::read_dir(dir).at(dir)? {
            let e = e.at(dir)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if let Some((first, end)) = parse_run_name(&name) {
                match verify_run(&path, nlist, code_size, index_id) {
                    Ok(h) if h.first_row.get() == first && h.end_row.get() == end && end <= n => {
                        let bytes = e.metadata().at(&path)?.len();
                        found.push(RunFile { first, end, path, bytes });
                    }
                    Ok(_) => discard(&path, "its rows disagree with its name")?,
                    Err(err) => discard(&path, &err.to_string())?,
                }
            } else if name.starts_with("run-") && name.ends_with(".tmp") {
                fs::remove_file(&path).at(&path)?;
            }
        }
    }
    // Widest first among equal starts, so a merged run wins over the runs it replaced.
    found.sort_by_key(|r| (r.first, std::cmp::Reverse(r.end)));
    let (mut kept, mut gaps, mut covered) = (Vec::new(), Vec::new(), 0u64);
    for r in found {
        if r.first < covered {
            fs::remove_file(&r.path).at(&r.path)?;
            continue;
        }
        if r.first > covered {
            gaps.push((covered, r.first));
        }
        covered = r.end;
        kept.push(r);
    }
    if covered < n {
        gaps.push((covered, n));
    }
    Ok((kept, gaps))
}

fn discard(path: &PathBuf, why: &str) -> Result<()> {
    log::warn!("{}: not used ({why}); its rows are streamed again", path.display());
    fs::remove_file(path).at(path)
}
