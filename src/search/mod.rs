//! Opening and searching an index. `open` reads only the RAM-resident parts (manifest,
//! quantizer, codebooks, list directory) and checks every checksum and cross-reference; a query
//! then reads only the extents of the lists it probes, all in flight at once.

mod batch;
pub mod cache;
mod executor;
mod graph;
mod lists;
pub(crate) mod open;
mod pipeline;
mod refine;
mod searcher;

pub use searcher::{Batch, Searcher, MAX_INFLIGHT};

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::codec::Codec;
use crate::distance::Metric;
use crate::error::{Error, IoContext, Result};
use crate::format::{self, FileEntry};
use crate::io::{self, IoEngine, IoMode};
use crate::ivf::{CoarseQuantizer, CoarseSearch};
use crate::pq::{LutBuilder, PrecomputedTables};
use crate::store;
use cache::ListCache;
pub use cache::Policy as CachePolicy;
use lists::{ListStore, Segment};

/// Per-search parameters, named as in faiss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchParams {
    /// Neighbours per query.
    pub k: usize,
    /// Inverted lists visited per query.
    pub nprobe: usize,
    /// HNSW search width over the centroids. With `nprobe` above it, the walk keeps `nprobe`
    /// candidates and stops as faiss's does: once `ef_search` of them are closer than the next
    /// to expand.
    pub ef_search: usize,
    /// `,RFlat` indexes: the codes' k × k_factor best are re-ranked by exact distance from
    /// their full vectors (faiss's `IndexRefine::k_factor`, default 1). Other indexes take
    /// only 1.
    pub k_factor: usize,
    /// Only these ids are returned (IVF indexes): the lists' other vectors are passed over
    /// where a top-k is kept, so a query still gets k results where its probed lists hold k
    /// allowed ones (faiss's `SearchParameters::sel`). None: every id.
    pub filter: Option<std::sync::Arc<crate::topk::IdFilter>>,
    /// IVF indexes: how the nprobe lists are found — a walk of the HNSW graph over the
    /// centroids (the default, as the factory string says), or every centroid's distance
    /// (exact; faster in batches on CPUs with AMX where nlist · d is small: see
    /// [`CoarseSearch`]). `ef_search` applies to the walk only.
    pub coarse: CoarseSearch,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams { k: 10, nprobe: 1, ef_search: 16, k_factor: 1, filter: None, coarse: CoarseSearch::Graph }
    }
}

/// Largest k_factor a search takes: past it the candidates' reads cost more than probing more
/// lists buys back.
pub const MAX_K_FACTOR: usize = 1024;

/// Counters of one `search` call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Bytes read from the device (whole 4 KiB-aligned extents; cached extents are not read).
    pub bytes_read: u64,
    /// Extents read from the device.
    pub extents_read: u64,
    /// Reads issued to the device: extents adjacent in a segment file are read together, so
    /// this is at most `extents_read`.
    pub reads: u64,
    /// Extents served from the list cache.
    pub cache_hits: u64,
    /// Extents looked up in the list cache and not found (0 without a cache).
    pub cache_misses: u64,
    /// Pages of full vectors read to re-rank (`,RFlat`; counted in `bytes_read` and `reads`
    /// too).
    pub refine_pages: u64,
    /// The engine that served the reads (None if nothing was read).
    pub io: Option<IoEngine>,
}

impl SearchStats {
    pub(crate) fn add(&mut self, o: &SearchStats) {
        self.bytes_read += o.bytes_read;
        self.extents_read += o.extents_read;
        self.reads += o.reads;
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        self.refine_pages += o.refine_pages;
        self.io = self.io.or(o.io);
    }
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
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    pub io: IoMode,
    /// RAM for faiss's precomputed tables of L2 indexes of residual codes: nlist × m × ksub
    /// floats, computed at open, holding each list's part of a distance (‖r_jk‖² + 2⟨c_j, r_jk⟩).
    /// A search turns a list's part into one number per vector, so that one table per query
    /// serves every list; for a cached list that is done once and kept, for a list read from
    /// the device it is done per read, and the tables spare computing the list's part each
    /// time (m·dsub·ksub multiply-adds). Built for 8-bit codes with sub-vectors of at least
    /// [`PRECOMPUTED_MIN_DSUB`] dimensions, and only when they fit (faiss's
    /// `precomputed_table_max_bytes`; its default is 2 GiB for an in-RAM index, ours leaves RAM
    /// to the lists). 0 = never. Results are the same with and without them.
    pub precomputed_table_max_bytes: u64,
    /// RAM for a cache of list extents (0 = none, the default): extents enter verified after
    /// a read, and the cache keeps those that save the most device reads per byte. An L2 index
    /// of residual codes (`PQ{m}`, `PQ{m}x4fsr`) keeps 4 bytes per cached vector beside its
    /// extent (the list's part of each distance, computed once), so holding all of it takes
    /// its segments plus 4 × ntotal.
    pub cache_bytes: u64,
    /// Fill the cache at open by reading lists in order until it is full.
    pub cache_preload: bool,
    /// Which extents the cache keeps.
    pub cache_policy: CachePolicy,
    /// `HNSW{M},Flat` and `HNSW{M}_PQ{m}`: read the graph (and the vectors) into RAM at open,
    /// checking every page, instead of mapping them (the default), which opens at once, holds
    /// only what queries touch, and leaves the pages' checksums to `verify`. (PQ codes are
    /// always read into RAM and checked.)
    pub load_into_ram: bool,
}

/// Default of [`OpenOptions::precomputed_table_max_bytes`]: 256 MiB, the tables of 8,192 lists
/// at PQ32.
pub const PRECOMPUTED_TABLE_MAX_BYTES: u64 = 256 << 20;

/// Precomputed tables are built from this sub-vector dimension on (8-bit codes). Reading a
/// list's part from them streams m·1 KiB from memory; computing it costs m·dsub·256
/// multiply-adds in cache. Measured on the reference machine (`cargo bench --bench kernels --
/// list_table`): at dsub 4 the two cost the same (2.5 against 2.7 µs for m = 32) and whole
/// searches from the device were 6–9 % slower with the tables (their memory traffic); at dsub 8
/// the tables are 1.9× faster (4.6 against 8.5 µs for m = 48). 4-bit parts (16 centroids) are
/// always computed: m·dsub·16 multiply-adds cost less than reading them.
pub const PRECOMPUTED_MIN_DSUB: usize = 8;

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            io: IoMode::default(),
            precomputed_table_max_bytes: PRECOMPUTED_TABLE_MAX_BYTES,
            cache_bytes: 0,
            cache_preload: false,
            cache_policy: CachePolicy::Frequency,
            load_into_ram: false,
        }
    }
}

/// The parameters an index was built with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexInfo {
    pub factory: String,
    pub dim: usize,
    pub metric: Metric,
    /// Vectors a search can return (faiss's `ntotal`): those stored less those deleted.
    pub ntotal: u64,
    /// Deleted vectors still stored in the lists, until a compaction drops them.
    pub deleted: u64,
    /// The id an addition without ids starts from: one past the largest ever assigned.
    pub next_id: u64,
    pub nlist: usize,
    pub pq_m: usize,
    /// Bits per PQ sub-code: 8 (`PQ{m}`) or 4 (`PQ{m}x4fs`, `PQ{m}x4fsr`).
    pub pq_nbits: usize,
    /// Whether codes quantize residuals from their list's centroid (faiss's `by_residual`):
    /// 8-bit PQ and `x4fsr`; `x4fs` codes quantize the vectors themselves.
    pub by_residual: bool,
    pub hnsw_m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    pub niter: usize,
    pub train_size: u64,
    pub seed: u64,
    pub generation: u64,
    /// `,RFlat`: how the index keeps its full vectors for re-ranking (None: codes only).
    pub refine: Option<RefineVectors>,
}

/// How an `,RFlat` index keeps its full vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefineVectors {
    /// Little-endian float32, as the codes saw them (normalised for cosine).
    Float32,
    /// The input's uint8 values (uint8 input, L2 or inner product).
    Uint8,
}

impl RefineVectors {
    /// From the manifest's `refine` byte (0 = none).
    pub(crate) fn from_code(code: u8) -> Option<Option<Self>> {
        match code {
            0 => Some(None),
            format::REFINE_F32 => Some(Some(RefineVectors::Float32)),
            format::REFINE_U8 => Some(Some(RefineVectors::Uint8)),
            _ => None,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            RefineVectors::Float32 => format::REFINE_F32,
            RefineVectors::Uint8 => format::REFINE_U8,
        }
    }

    /// Bytes of one vector of dimension `d`.
    pub fn vector_bytes(self, d: usize) -> usize {
        match self {
            RefineVectors::Float32 => 4 * d,
            RefineVectors::Uint8 => d,
        }
    }
}

impl IndexInfo {
    /// Whether the index is one HNSW graph over its vectors (`HNSW{M},Flat`, `HNSW{M}_PQ{m}`)
    /// rather than inverted lists: it has no lists (nlist = 0).
    pub fn is_graph(&self) -> bool {
        self.nlist == 0
    }

    /// How the lists' codes are laid out on disk.
    pub fn code_layout(&self) -> format::CodeLayout {
        if self.pq_m == 0 {
            // Raw float32 vectors (`…,Flat`), row after row.
            return format::CodeLayout::RowMajor { code_size: 4 * self.dim as u32 };
        }
        let code_size = (self.pq_m * self.pq_nbits / 8) as u32;
        if self.pq_nbits == 4 {
            format::CodeLayout::Blocks32 { code_size }
        } else {
            format::CodeLayout::RowMajor { code_size }
        }
    }
}

/// An open index. `Send + Sync`: share it between threads; each concurrent search reads
/// through an io_uring of its own (see [`Searcher`] for a pool that keeps them).
///
/// ```no_run
/// use quiver::{Index, SearchParams};
/// let index = Index::open("my-index")?;
/// let queries = vec![0.0f32; index.info().dim * 2]; // two queries, row-major
/// let res = index.search(&queries, &SearchParams { k: 10, nprobe: 16, ef_search: 16, ..Default::default() })?;
/// println!("nearest to query 0: {:?} at {:?}", res.ids_of(0), res.distances_of(0));
/// # Ok::<(), quiver::Error>(())
/// ```
pub struct Index {
    dir: PathBuf,
    info: IndexInfo,
    pub(crate) files: Vec<FileEntry>,
    opts: OpenOptions,
    /// The generation held open.
    snapshot: store::Snapshot,
    pub(crate) body: Body,
    /// Workers lent to [`Index::search`] calls, kept between calls so rings and buffers are
    /// made once per concurrent caller, not once per query.
    idle: std::sync::Mutex<Vec<pipeline::Worker>>,
}

/// What an index is made of, by kind.
pub(crate) enum Body {
    /// `IVF{nlist}_HNSW{M},…`: inverted lists on disk.
    Ivf(Box<Ivf>),
    /// `HNSW{M},Flat`, `HNSW{M}_PQ{m}`: one graph over the vectors.
    Graph(graph::GraphIndex),
}

/// The parts of an IVF index a search uses. The query pipeline takes these alone, so they
/// carry a copy of the index's parameters.
pub(crate) struct Ivf {
    pub(crate) info: IndexInfo,
    pub(crate) coarse: CoarseQuantizer,
    pub(crate) codec: Codec,
    /// Builds a query's PQ tables (None for raw vectors, whose table is the query).
    pub(crate) lut: Option<LutBuilder>,
    /// L2 only, and only when they fit `precomputed_table_max_bytes`.
    pub(crate) precomputed: Option<PrecomputedTables>,
    /// How (query, list) distances are assembled, fixed at open.
    pub(crate) scan_mode: pipeline::ScanMode,
    /// The list directory, the segments and the list cache.
    pub(crate) lists: ListStore,
    /// `,RFlat`: the full vectors.
    pub(crate) vectors: Option<refine::VectorStore>,
    /// Deleted ids still in the lists (None when nothing is deleted).
    pub(crate) hidden: Option<std::sync::Arc<crate::topk::Tombstones>>,
    /// What a compaction would do now.
    pub(crate) compaction: CompactionStats,
}

/// How the lists are stored now and what `compact` would gain: lists with more than one extent
/// (after additions) or with deleted entries are the ones it rewrites.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub extents: u64,
    /// Lists with more than one extent, and the most extents one list has.
    pub lists_split: u64,
    pub max_extents_per_list: u64,
    /// Deleted vectors still stored, and the lists holding them.
    pub deleted: u64,
    pub lists_with_deleted: u64,
    /// Lists a compaction would rewrite.
    pub lists_to_compact: u64,
    /// Bytes a compaction would give back: the segment (and vectors) files it frees less what
    /// it writes (0 when it would free no file).
    pub reclaimable_bytes: u64,
}

impl CompactionStats {
    fn of(
        directory: &format::Directory,
        deletions: &format::Deletions,
        refine: Option<(RefineVectors, usize)>,
    ) -> Self {
        let nlist = directory.nlist();
        let mut deleted_in = vec![0u64; nlist];
        for e in &deletions.entries {
            if let Some(c) = deleted_in.get_mut(e.list.get() as usize) {
                *c += 1;
            }
        }
        let vector_bytes = refine.map(|(k, d)| k.vector_bytes(d) as u64);
        let plan = store::plan_compaction(directory, &deleted_in, vector_bytes);
        let mut s = CompactionStats {
            extents: directory.extents.len() as u64,
            lists_to_compact: plan.lists(),
            reclaimable_bytes: plan.reclaimable_bytes,
            ..Default::default()
        };
        for (l, &deleted) in deleted_in.iter().enumerate() {
            let xs = directory.extents_of(l);
            s.max_extents_per_list = s.max_extents_per_list.max(xs.len() as u64);
            s.lists_split += (xs.len() > 1) as u64;
            s.lists_with_deleted += (deleted > 0) as u64;
            s.deleted += deleted;
        }
        s
    }
}

impl Ivf {
    /// Whether a grouped batch ([`Searcher::search_grouped`]) beats query-by-query scanning:
    /// not for 8-bit codes, whose tables (32 KiB a query at PQ32) crowd the lists out of the
    /// CPU's caches when lists come in list order: measured on wordnet-minilm at 13,910 against
    /// 24,266 QPS (benches/README.md).
    pub(crate) fn groups_well(&self) -> bool {
        self.codec.is_fast_scan()
    }
}

impl Index {
    /// Opens the newest generation of the index in `dir` with io_uring where available.
    pub fn open(dir: impl AsRef<Path>) -> Result<Index> {
        Self::open_with(dir, OpenOptions::default())
    }

    /// [`open`](Self::open) with options. The index holds its generation (a shared lock on its
    /// manifest): writers that commit newer generations meanwhile leave its files in place, and
    /// it answers from the generation it opened until [`reload`](Self::reload).
    pub fn open_with(dir: impl AsRef<Path>, opts: OpenOptions) -> Result<Index> {
        let dir = dir.as_ref().to_owned();
        check_memory_options(&opts)?;
        let snapshot = store::Snapshot::open_newest(&dir)?;
        let g = open::Generation::new(&dir, &snapshot.manifest, &snapshot.name);
        let info = g.info()?;
        let body = if info.is_graph() {
            Body::Graph(graph::GraphIndex::open(&g, &info, &opts)?)
        } else {
            Body::Ivf(Box::new(Ivf::open(&g, &dir, info.clone(), &opts)?))
        };
        Ok(Index {
            dir,
            info,
            files: snapshot.manifest.files.clone(),
            opts,
            snapshot,
            body,
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Moves to the newest generation of the directory (after an `add`, `delete` or
    /// `compact`), with the options it was opened with; returns whether there was a newer one.
    /// On an error the index stays as it was. The list cache starts empty again.
    ///
    /// ```no_run
    /// let mut index = quiver::Index::open("my-index")?;
    /// // ... another process runs `quiver add --index my-index --input more.fvecs` ...
    /// if index.reload()? {
    ///     println!("now at generation {}, {} vectors", index.info().generation, index.info().ntotal);
    /// }
    /// # Ok::<(), quiver::Error>(())
    /// ```
    pub fn reload(&mut self) -> Result<bool> {
        match self.reopened()? {
            Some(fresh) => {
                *self = fresh;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The newest generation of the directory opened with this index's options, or None when
    /// this index already holds it: for callers that share an index (an `Arc`) and swap in the
    /// new one while searches in flight finish on the old.
    pub fn reopened(&self) -> Result<Option<Index>> {
        let newest = store::next_generation(&self.dir)?.saturating_sub(1);
        if newest == self.info.generation {
            return Ok(None);
        }
        let fresh = Index::open_with(&self.dir, self.opts)?;
        Ok((fresh.info.generation != self.info.generation).then_some(fresh))
    }
}

/// Opens the graph of a graph index's generation (for `verify`: an error says what is wrong).
pub(crate) fn open_graph(g: &open::Generation, info: &IndexInfo, opts: &OpenOptions) -> Result<()> {
    graph::GraphIndex::open(g, info, opts).map(|_| ())
}

/// Refuses RAM options past the machine's memory: both are filled as queries (or the open) ask,
/// so a size past RAM would end in the OOM killer rather than an error.
fn check_memory_options(opts: &OpenOptions) -> Result<()> {
    for (name, bytes) in
        [("cache_bytes", opts.cache_bytes), ("precomputed_table_max_bytes", opts.precomputed_table_max_bytes)]
    {
        if !io::fits_in_memory(bytes) {
            return Err(Error::InvalidParameter(format!(
                "{name} = {} is more than this machine's memory ({}); give at most what the index may hold in RAM",
                crate::error::human_bytes(bytes),
                crate::error::human_bytes(io::physical_memory())
            )));
        }
    }
    Ok(())
}

impl Ivf {
    fn open(g: &open::Generation, dir: &Path, info: IndexInfo, opts: &OpenOptions) -> Result<Ivf> {
        let dir = dir.to_owned();
        let coarse = g.quantizer(&info)?;
        let codec = if info.pq_m == 0 { Codec::flat(info.dim, info.metric) } else { Codec::new(g.codebooks(&info)?) };
        let pq = codec.pq();
        let mut directory = g.directory(&info)?;
        // Segments by their place among the manifest's (numbers may have gaps once a
        // compaction has dropped some): the extents in RAM name that place.
        let numbers = g.segment_numbers();
        let extent_generation = g.extent_generations(&directory);
        open::renumber_segments(&mut directory, &numbers);
        let mut segments = Vec::with_capacity(numbers.len());
        for &no in &numbers {
            let (name, size) = g.segment_header(no)?;
            let path = dir.join(&name);
            let (file, _) = io::open_for_reads(&path).at(&path)?;
            segments.push(Segment { name, file, size });
        }
        for (i, x) in directory.extents.iter().enumerate() {
            let seg = &segments[x.segment.get() as usize];
            open::check_extent_bounds(i, x, &seg.name, seg.size)?;
        }
        let deleted = g.deletions()?;
        let compaction = CompactionStats::of(&directory, &deleted, info.refine.map(|k| (k, info.dim)));
        let hidden = (!deleted.entries.is_empty()).then(|| {
            let pairs = deleted.entries.iter().map(|e| (e.id.get(), e.generation.get())).collect();
            std::sync::Arc::new(crate::topk::Tombstones::new(pairs, extent_generation))
        });
        let vectors = match info.refine {
            None => None,
            Some(kind) => {
                let mut files = Vec::with_capacity(numbers.len());
                for &no in &numbers {
                    let (name, table) = g.vectors_file(no, &info, kind, directory.ids)?;
                    let path = dir.join(&name);
                    let (file, _) = io::open_for_reads(&path).at(&path)?;
                    files.push(refine::VectorsSegment { name, file, table });
                }
                let metric = info.metric.kernel();
                let store = refine::VectorStore {
                    dir: dir.clone(),
                    kind,
                    dim: info.dim,
                    ids: directory.ids,
                    metric,
                    files,
                    io: opts.io,
                };
                store.check_extents(&directory)?;
                Some(store)
            }
        };
        let lut = pq.map(LutBuilder::new);
        let precomputed = match (pq, &lut) {
            (Some(pq), Some(lut))
                if coarse.metric == Metric::L2
                    && info.by_residual
                    && pq.ksub() == 256
                    && pq.dsub >= PRECOMPUTED_MIN_DSUB
                    && PrecomputedTables::bytes(info.nlist, pq.m, pq.ksub()) <= opts.precomputed_table_max_bytes =>
            {
                Some(PrecomputedTables::build(pq, lut, &coarse.centroids))
            }
            _ => None,
        };
        // Where the ids are kept with the vectors, the cache also keeps the blocks of ids that
        // filtered scans read, extent x's as entry n_extents + x.
        let entries = match directory.ids {
            format::IdsPlace::InExtent => directory.extents.len(),
            format::IdsPlace::WithVectors => 2 * directory.extents.len(),
        };
        let cache = (opts.cache_bytes > 0).then(|| ListCache::new(opts.cache_bytes, entries, opts.cache_policy));
        let scan_mode = pipeline::ScanMode::of(coarse.metric, info.by_residual);
        let lists = ListStore {
            dir: dir.clone(),
            directory,
            segments,
            cache,
            io: opts.io,
            derived_per_vector: scan_mode.derived_per_vector() + codec.transposed_per_vector(),
        };
        if opts.cache_preload {
            lists.preload()?;
        }
        Ok(Ivf { info, coarse, lut, precomputed, scan_mode, codec, lists, vectors, hidden, compaction })
    }
}

impl Index {
    /// The IVF parts, where the index has inverted lists.
    pub(crate) fn ivf(&self) -> Option<&Ivf> {
        match &self.body {
            Body::Ivf(ivf) => Some(ivf),
            Body::Graph(_) => None,
        }
    }

    /// The list cache's bytes held and (hits, misses) so far (of extents, and of the blocks of
    /// ids a filtered search reads where the ids are kept with the vectors); None without a
    /// cache.
    pub fn cache_stats(&self) -> Option<(u64, u64, u64)> {
        self.ivf()?.lists.cache.as_ref().map(|c| {
            let (h, m) = c.hits_misses();
            (c.used(), h, m)
        })
    }

    /// Newer generations whose manifests did not verify and were passed over at open (each
    /// was also logged as a warning). Empty for a sound index.
    pub fn skipped_generations(&self) -> &[store::SkippedManifest] {
        &self.snapshot.skipped
    }

    pub fn info(&self) -> &IndexInfo {
        &self.info
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// RAM held by precomputed tables (0 when this index computes each list's table instead;
    /// see [`OpenOptions::precomputed_table_max_bytes`]).
    pub fn precomputed_table_bytes(&self) -> u64 {
        let Some((ivf, pq)) = self.ivf().and_then(|i| Some((i, i.codec.pq()?))) else { return 0 };
        ivf.precomputed.as_ref().map_or(0, |_| PrecomputedTables::bytes(self.info.nlist, pq.m, pq.ksub()))
    }

    /// Whether the ids are kept with the full vectors (an `,RFlat` index built from format 1.5
    /// on): its lists hold codes alone, and a candidate's id is read with its vector.
    pub fn ids_with_vectors(&self) -> bool {
        self.ivf().is_some_and(|ivf| ivf.lists.directory.ids == format::IdsPlace::WithVectors)
    }

    /// Number of vectors in list `list` (0 past nlist, and for an index without lists).
    pub fn list_len(&self, list: usize) -> u64 {
        let Some(ivf) = self.ivf().filter(|_| list < self.info.nlist) else { return 0 };
        ivf.lists.directory.extents_of(list).iter().map(|e| e.count.get() as u64).sum()
    }

    /// How the lists are stored and what a compaction would gain (None for an index without
    /// lists).
    pub fn compaction_stats(&self) -> Option<CompactionStats> {
        self.ivf().map(|i| i.compaction)
    }

    /// Extents list `list` is stored in: one after a build or a compaction, one more per
    /// addition that put vectors in it (0 past nlist, and for an index without lists).
    pub fn list_extents(&self, list: usize) -> usize {
        let Some(ivf) = self.ivf().filter(|_| list < self.info.nlist) else { return 0 };
        ivf.lists.directory.extents_of(list).len()
    }

    /// One query on worker `w`, by the index's kind.
    pub(crate) fn search_one(
        &self,
        q: &[f32],
        params: &SearchParams,
        w: &mut pipeline::Worker,
    ) -> Result<pipeline::QueryResult> {
        match &self.body {
            Body::Ivf(ivf) => pipeline::search_one(ivf, q, params, w),
            Body::Graph(g) => Ok(g.search_one(&self.info, q, params, &mut w.graph, &mut w.visited)),
        }
    }

    /// Searches `queries` (nq × dim, row-major), in parallel over queries on the current rayon
    /// pool. Errors on a wrong dimension, a non-finite query, k = 0, k > ntotal,
    /// nprobe = 0, nprobe > nlist, efSearch = 0, k_factor outside 1 ..= 1024 or above 1 for
    /// an index without full vectors; and on any read or checksum failure.
    pub fn search(&self, queries: &[f32], params: &SearchParams) -> Result<SearchResults> {
        self.check_params(queries, params)?;
        let d = self.info.dim;
        if let (Body::Ivf(ivf), CoarseSearch::Exact) = (&self.body, params.coarse) {
            // A tile's rows of queries at a time, so that their exact coarse searches share the
            // tiles (each wave's stats ride on its first query).
            let waves: Vec<Result<pipeline::Wave>> = queries
                .par_chunks(d * crate::distance::amx::ROWS)
                .map(|c| self.with_worker(|w| pipeline::search_wave(ivf, &c.chunks(d).collect::<Vec<_>>(), params, w)))
                .collect();
            let mut per_query = Vec::with_capacity(queries.len() / d);
            for wave in waves {
                per_query.extend(pipeline::unwave(wave?).map(Ok));
            }
            return self.collect(per_query, params);
        }
        let per_query: Vec<Result<pipeline::QueryResult>> =
            queries.par_chunks(d).map(|q| self.with_worker(|w| self.search_one(q, params, w))).collect();
        self.collect(per_query, params)
    }

    /// Runs `f` with an idle worker (or a new one), and keeps the worker for the next call.
    pub(crate) fn with_worker<R>(&self, f: impl FnOnce(&mut pipeline::Worker) -> R) -> R {
        let lock = || self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut w = lock().pop().unwrap_or_default();
        let r = f(&mut w);
        lock().push(w);
        r
    }

    /// Assembles per-query results into a batch's, in query order.
    pub(crate) fn collect(
        &self,
        per_query: Vec<Result<pipeline::QueryResult>>,
        params: &SearchParams,
    ) -> Result<SearchResults> {
        let len = per_query.len().saturating_mul(params.k);
        let what = || format!("results of {} queries × k = {}", per_query.len(), params.k);
        let mut out = SearchResults {
            k: params.k,
            ids: crate::error::try_vec(len, what, "search fewer queries at a time or lower k")?,
            distances: crate::error::try_vec(len, what, "search fewer queries at a time or lower k")?,
            stats: SearchStats::default(),
        };
        let missing = match self.info.metric {
            Metric::L2 => f32::INFINITY,
            _ => f32::NEG_INFINITY,
        };
        for r in per_query {
            let r = r?;
            out.stats.add(&r.stats);
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

    pub(crate) fn check_params(&self, queries: &[f32], p: &SearchParams) -> Result<()> {
        let d = self.info.dim;
        if queries.is_empty() {
            return Err(Error::InvalidParameter("no queries were given: pass at least one row of dimension d".into()));
        }
        if !queries.len().is_multiple_of(d) {
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
        if self.info.is_graph() {
            if p.filter.is_some() {
                return Err(Error::Unsupported(format!(
                    "{} searches a graph, which cannot pass over vectors yet: filtered search is for IVF indexes",
                    self.info.factory
                )));
            }
            if p.nprobe != 1 {
                return Err(Error::InvalidParameter(format!(
                    "nprobe = {} applies to IVF indexes; {} searches its graph with efSearch alone: leave nprobe at its default, 1",
                    p.nprobe, self.info.factory
                )));
            }
            if p.coarse != CoarseSearch::Graph {
                return Err(Error::InvalidParameter(format!(
                    "coarse = {} applies to IVF indexes, which have lists to choose; {} has none",
                    p.coarse.name(),
                    self.info.factory
                )));
            }
        } else if p.nprobe == 0 || p.nprobe > self.info.nlist {
            return Err(Error::InvalidParameter(format!(
                "nprobe = {} is out of range: 1 ..= {} (nlist)",
                p.nprobe, self.info.nlist
            )));
        }
        if p.ef_search == 0 {
            return Err(Error::InvalidParameter("efSearch must be at least 1".into()));
        }
        if p.k_factor == 0 || p.k_factor > MAX_K_FACTOR {
            return Err(Error::InvalidParameter(format!(
                "k_factor = {} is out of range: 1 ..= {MAX_K_FACTOR}",
                p.k_factor
            )));
        }
        if p.k_factor > 1 && self.ivf().is_none_or(|i| i.vectors.is_none()) {
            return Err(Error::InvalidParameter(format!(
                "k_factor = {} asks for a re-rank, and this index ({}) keeps no full vectors: build it with ',RFlat' at the end of the factory string",
                p.k_factor, self.info.factory
            )));
        }
        Ok(())
    }
}
