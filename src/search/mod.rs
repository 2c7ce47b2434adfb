//! Opening and searching an index. `open` reads only the RAM-resident parts (manifest,
//! quantizer, codebooks, list directory) and checks every checksum and cross-reference; a query
//! then reads only the extents of the lists it probes, all in flight at once.

mod pipeline;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::distance::Metric;
use crate::error::{Error, IoContext, Result};
use crate::format::{
    self, Codebooks, Directory, FileEntry, FileHeader, FileKind, FormatError, Manifest, QuantizerBlock, PAGE,
};
use crate::hnsw::Hnsw;
use crate::io::{self, IoEngine, IoMode};
use crate::ivf::CoarseQuantizer;
use crate::pq::{LutBuilder, ProductQuantizer};
use crate::store;

/// Per-search parameters, named as in faiss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchParams {
    /// Neighbours per query.
    pub k: usize,
    /// Inverted lists visited per query.
    pub nprobe: usize,
    /// HNSW search width over the centroids; raised to `nprobe` when smaller.
    pub ef_search: usize,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams { k: 10, nprobe: 1, ef_search: 16 }
    }
}

/// Counters of one `search` call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Bytes read from segment files (whole 4 KiB-aligned extents).
    pub bytes_read: u64,
    /// Extents read.
    pub extents_read: u64,
    /// The engine that served the reads (None if nothing was read).
    pub io: Option<IoEngine>,
}

/// Results of a batch: row `i` of `ids`/`distances` (k entries each) answers query `i`,
/// closest first. Missing results (fewer than k vectors in the probed lists) are id −1 and
/// distance +∞ (L2) or −∞ (inner product), as in faiss.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchResults {
    pub k: usize,
    pub ids: Vec<i64>,
    pub distances: Vec<f32>,
    pub stats: SearchStats,
}

impl SearchResults {
    pub fn ids_of(&self, query: usize) -> &[i64] {
        &self.ids[query * self.k..(query + 1) * self.k]
    }

    pub fn distances_of(&self, query: usize) -> &[f32] {
        &self.distances[query * self.k..(query + 1) * self.k]
    }
}

/// How to open an index.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    pub io: IoMode,
}

/// The parameters an index was built with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexInfo {
    pub factory: String,
    pub dim: usize,
    pub metric: Metric,
    pub ntotal: u64,
    pub nlist: usize,
    pub pq_m: usize,
    pub hnsw_m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    pub niter: usize,
    pub train_size: u64,
    pub seed: u64,
    pub generation: u64,
}

pub(crate) struct Segment {
    pub name: String,
    pub file: File,
    pub size: u64,
}

/// An open index. `Send + Sync`: share it between threads; each thread reads through its own
/// io_uring.
///
/// ```no_run
/// use quiver::{Index, SearchParams};
/// let index = Index::open("my-index")?;
/// let queries = vec![0.0f32; index.info().dim * 2]; // two queries, row-major
/// let res = index.search(&queries, &SearchParams { k: 10, nprobe: 16, ef_search: 16 })?;
/// println!("nearest to query 0: {:?} at {:?}", res.ids_of(0), res.distances_of(0));
/// # Ok::<(), quiver::Error>(())
/// ```
pub struct Index {
    dir: PathBuf,
    info: IndexInfo,
    pub(crate) coarse: CoarseQuantizer,
    pub(crate) pq: ProductQuantizer,
    pub(crate) lut: LutBuilder,
    pub(crate) directory: Directory,
    pub(crate) segments: Vec<Segment>,
    pub(crate) files: Vec<FileEntry>,
    io: IoMode,
}

fn read_whole(dir: &Path, entry: &FileEntry) -> Result<Vec<u8>> {
    let name = entry.name();
    let path = dir.join(&name);
    let bytes = std::fs::read(&path).at(&path)?;
    if bytes.len() as u64 != entry.size.get() {
        return Err(size_mismatch(&name, entry.size.get(), bytes.len() as u64));
    }
    Ok(bytes)
}

fn size_mismatch(name: &str, want: u64, got: u64) -> Error {
    FormatError::Truncated {
        file: name.into(),
        what: "file (size recorded in the manifest)".into(),
        offset: 0,
        needed: want,
        available: got,
    }
    .into()
}

/// The file's header must carry the manifest's index id and the payload crc the manifest recorded.
fn check_owner(name: &str, h: &FileHeader, want: [u8; 16], entry: &FileEntry) -> Result<()> {
    let crc = h.payload_crc.get();
    if h.index_id != want {
        return Err(Error::Corrupt {
            file: name.into(),
            reason: "belongs to a different index (index id differs from the manifest's)".into(),
        });
    }
    if crc != entry.crc.get() {
        return Err(Error::Corrupt {
            file: name.into(),
            reason: format!("payload crc {crc:#010x} differs from the manifest's {:#010x}", entry.crc.get()),
        });
    }
    Ok(())
}

impl Index {
    /// Opens the newest generation of the index in `dir` with io_uring where available.
    pub fn open(dir: impl AsRef<Path>) -> Result<Index> {
        Self::open_with(dir, OpenOptions::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, opts: OpenOptions) -> Result<Index> {
        let dir = dir.as_ref().to_owned();
        let (_, mpath) = store::latest_manifest(&dir)?;
        let mname = mpath.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mbytes = std::fs::read(&mpath).at(&mpath)?;
        let manifest = Manifest::decode(&mname, &mbytes)?;
        let p = manifest.body.params;
        let invalid = |reason: String| Error::Corrupt { file: mname.clone(), reason };
        let metric = match p.metric {
            format::METRIC_L2 => Metric::L2,
            format::METRIC_INNER_PRODUCT => Metric::InnerProduct,
            format::METRIC_COSINE => Metric::Cosine,
            m => return Err(invalid(format!("unknown metric code {m}"))),
        };
        if p.code_layout != format::CODE_LAYOUT_PQ8 || p.pq_nbits.get() != 8 {
            return Err(Error::Unsupported(format!(
                "{mname}: code layout {} is not readable by this quiver",
                p.code_layout
            )));
        }
        let end = p.factory.iter().position(|&b| b == 0).unwrap_or(64);
        let info = IndexInfo {
            factory: String::from_utf8_lossy(&p.factory[..end]).into_owned(),
            dim: p.dim.get() as usize,
            metric,
            ntotal: p.ntotal.get(),
            nlist: p.nlist.get() as usize,
            pq_m: p.pq_m.get() as usize,
            hnsw_m: p.hnsw_m.get() as usize,
            ef_construction: p.ef_construction.get() as usize,
            ef_search: p.ef_search.get() as usize,
            niter: p.niter.get() as usize,
            train_size: p.train_size.get(),
            seed: p.seed.get(),
            generation: manifest.body.generation.get(),
        };
        let entry = |name: &str| {
            manifest.files.iter().find(|f| f.name() == name).ok_or_else(|| invalid(format!("names no {name}")))
        };
        let id = manifest.index_id;

        let e = entry(store::QUANTIZER)?;
        let bytes = read_whole(&dir, e)?;
        let (q, qh) = QuantizerBlock::decode(store::QUANTIZER, &bytes)?;
        check_owner(store::QUANTIZER, &qh, id, e)?;
        if q.dim as usize != info.dim || q.nlist() != info.nlist || q.hnsw_m as usize != info.hnsw_m {
            return Err(Error::Corrupt {
                file: store::QUANTIZER.into(),
                reason: "shape disagrees with the manifest".into(),
            });
        }
        let hnsw = Hnsw::from_parts(q.hnsw_m as usize, q.levels, q.neighbors, q.entry_point)?;
        let coarse = CoarseQuantizer { d: info.dim, metric: metric.kernel(), centroids: q.centroids, hnsw };

        let e = entry(store::CODEBOOKS)?;
        let bytes = read_whole(&dir, e)?;
        let (cb, ch) = Codebooks::decode(store::CODEBOOKS, &bytes)?;
        check_owner(store::CODEBOOKS, &ch, id, e)?;
        if cb.m as usize != info.pq_m || (cb.m * cb.dsub) as usize != info.dim {
            return Err(Error::Corrupt {
                file: store::CODEBOOKS.into(),
                reason: "shape disagrees with the manifest".into(),
            });
        }
        let pq = ProductQuantizer::from_codebooks(info.dim, info.pq_m, cb.centroids)
            .map_err(|e| Error::Corrupt { file: store::CODEBOOKS.into(), reason: e.to_string() })?;

        let e = entry(store::DIRECTORY)?;
        let bytes = read_whole(&dir, e)?;
        let (directory, dh) = Directory::decode(store::DIRECTORY, &bytes)?;
        check_owner(store::DIRECTORY, &dh, id, e)?;
        if directory.nlist() != info.nlist
            || directory.code_size as usize != pq.code_size()
            || directory.ntotal != info.ntotal
        {
            return Err(Error::Corrupt {
                file: store::DIRECTORY.into(),
                reason: "shape disagrees with the manifest".into(),
            });
        }

        let mut segments = Vec::with_capacity(directory.n_segments as usize);
        for no in 0..directory.n_segments {
            let name = store::segment_name(no);
            let e = entry(&name)?;
            let path = dir.join(&name);
            let size = std::fs::metadata(&path).at(&path)?.len();
            if size != e.size.get() {
                return Err(size_mismatch(&name, e.size.get(), size));
            }
            let mut page = vec![0u8; PAGE as usize];
            File::open(&path).at(&path)?.read_exact_at(&mut page, 0).at(&path)?;
            let h = FileHeader::decode(&name, FileKind::Segment, &page)?;
            if h.payload_offset.get() != PAGE || h.payload_len.get() != size - PAGE {
                return Err(Error::Corrupt {
                    file: name,
                    reason: "header's extent area disagrees with the file size".into(),
                });
            }
            check_owner(&name, &h, id, e)?;
            let (file, _) = io::open_for_reads(&path).at(&path)?;
            segments.push(Segment { name, file, size });
        }
        for (i, x) in directory.extents.iter().enumerate() {
            let seg = &segments[x.segment.get() as usize];
            if x.offset.get() < PAGE || x.offset.get().checked_add(x.length.get()).is_none_or(|end| end > seg.size) {
                return Err(Error::Corrupt {
                    file: store::DIRECTORY.into(),
                    reason: format!("extent {i} lies outside {}", seg.name),
                });
            }
        }
        Ok(Index {
            dir,
            info,
            coarse,
            lut: LutBuilder::new(&pq),
            pq,
            directory,
            segments,
            files: manifest.files,
            io: opts.io,
        })
    }

    pub fn info(&self) -> &IndexInfo {
        &self.info
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of vectors in list `list`.
    pub fn list_len(&self, list: usize) -> u64 {
        self.directory.extents_of(list).iter().map(|e| e.count.get() as u64).sum()
    }

    /// Searches `queries` (nq × dim, row-major), in parallel over queries on the current rayon
    /// pool. Errors on a wrong dimension, a non-finite query, k = 0, k > ntotal,
    /// nprobe = 0, nprobe > nlist or efSearch = 0; and on any read or checksum failure.
    pub fn search(&self, queries: &[f32], params: &SearchParams) -> Result<SearchResults> {
        self.check_params(queries, params)?;
        let d = self.info.dim;
        let per_query: Vec<Result<pipeline::QueryResult>> =
            queries.par_chunks(d).map(|q| pipeline::search_one(self, q, params)).collect();
        let mut out = SearchResults {
            k: params.k,
            ids: Vec::with_capacity(per_query.len() * params.k),
            distances: Vec::new(),
            stats: SearchStats::default(),
        };
        let missing = match self.info.metric {
            Metric::L2 => f32::INFINITY,
            _ => f32::NEG_INFINITY,
        };
        for r in per_query {
            let r = r?;
            out.stats.bytes_read += r.stats.bytes_read;
            out.stats.extents_read += r.stats.extents_read;
            out.stats.io = out.stats.io.or(r.stats.io);
            for i in 0..params.k {
                match r.neighbors.get(i) {
                    Some(n) => {
                        out.ids.push(n.id as i64);
                        out.distances.push(self.info.metric.to_user_distance(n.dist));
                    }
                    None => {
                        out.ids.push(-1);
                        out.distances.push(missing);
                    }
                }
            }
        }
        Ok(out)
    }

    fn check_params(&self, queries: &[f32], p: &SearchParams) -> Result<()> {
        let d = self.info.dim;
        if queries.is_empty() || queries.len() % d != 0 {
            return Err(Error::DimensionMismatch { query: queries.len() / d, got: queries.len() % d, expected: d });
        }
        if let Some(pos) = queries.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteQuery { query: pos / d, col: pos % d, value: queries[pos] });
        }
        if p.k == 0 || p.k as u64 > self.info.ntotal {
            return Err(Error::InvalidParameter(format!(
                "k = {} is out of range: 1 ..= {} (the vectors in the index)",
                p.k, self.info.ntotal
            )));
        }
        if p.nprobe == 0 || p.nprobe > self.info.nlist {
            return Err(Error::InvalidParameter(format!(
                "nprobe = {} is out of range: 1 ..= {} (nlist)",
                p.nprobe, self.info.nlist
            )));
        }
        if p.ef_search == 0 {
            return Err(Error::InvalidParameter("efSearch must be at least 1".into()));
        }
        Ok(())
    }

    pub(crate) fn io_mode(&self) -> IoMode {
        self.io
    }
}
