//! The list store: where a query's inverted lists come from, between the query pipeline and
//! `io`. It knows the list directory and the segment files, holds the list cache, and hands the
//! scanner each extent of the probed lists — cached ones at once, the others as their reads
//! complete, each verified by its checksum first. The pipeline above it knows nothing of files,
//! reads or the cache.

use std::fs::File;
use std::path::PathBuf;

use super::cache::{Cached, ListCache};
use super::SearchStats;
use crate::error::{Error, Result};
use crate::format::{self, Directory, Extent, ExtentView};
use crate::io::{self, IoMode, ReadRequest};
use crate::topk::Neighbor;

/// How much of the next cached list a scan asks the CPU to load ahead.
const PREFETCH_BYTES: usize = 2048;

/// The most bytes one read of adjacent extents may cover: lists in a batch of probes that lie
/// next to each other in a segment (nearby lists, or a grouped batch's lists in list order)
/// cost one device request instead of one each, and a request this size still completes in
/// about the time of a few small ones.
const COALESCE_MAX_BYTES: u64 = 1 << 20;

/// A segment file opened for reads.
pub(crate) struct Segment {
    pub name: String,
    pub file: File,
    pub size: u64,
}

pub(crate) struct ListStore {
    /// The index directory, for error messages.
    pub dir: PathBuf,
    pub directory: Directory,
    pub segments: Vec<Segment>,
    pub cache: Option<ListCache>,
    pub io: IoMode,
    /// RAM a cached extent is charged per vector beyond its bytes, for what scans derive
    /// from it (see [`Cached`]).
    pub derived_per_vector: u64,
}

/// One list a query probes: `owner` names the query among those scanned together, `qc` is the
/// coarse search's distance to the list.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Probe {
    pub owner: u32,
    pub list: u32,
    pub qc: f32,
}

/// Where a scan keeps what it derives from an extent once: the cached extent's slots, or none
/// for an extent read from the device for this query alone.
pub(crate) type Derived<'a> = Option<&'a Cached>;

impl ListStore {
    /// Calls `scan(list, x, qc, extent, derived, ahead)` for every extent of the `probes` (the
    /// coarse search's lists; `x` is the extent's number in the directory, `qc` the distance
    /// the coarse search found, ‖q − c‖² for L2; `ahead`, codes the scan after this one will
    /// read, for the scan to prefetch, or empty), reading what the cache does not hold in one
    /// batch through `reader`; returns what it cost.
    pub fn scan_lists(
        &self,
        probes: &[Neighbor],
        reader: &mut io::Reader,
        mut scan: impl FnMut(usize, u32, f32, ExtentView, Derived, &[u8]),
    ) -> Result<SearchStats> {
        let probes = probes.iter().map(|n| Probe { owner: 0, list: n.id as u32, qc: n.dist });
        self.scan_probes(probes, reader, |_, list, x, qc, view, derived, ahead| scan(list, x, qc, view, derived, ahead))
    }

    /// [`scan_lists`](Self::scan_lists) for the probes of several queries at once (each
    /// probe's `owner` is handed to `scan`): all their reads in flight together, an extent
    /// two of them probe read once and scanned for each.
    pub fn scan_probes(
        &self,
        probes: impl IntoIterator<Item = Probe>,
        reader: &mut io::Reader,
        mut scan: impl FnMut(u32, usize, u32, f32, ExtentView, Derived, &[u8]),
    ) -> Result<SearchStats> {
        let reads = self.scan_cached(probes, &mut scan)?;
        let engine = reader
            .read_all::<ReadError>(self.io, &reads.reqs, |i, bytes| self.scan_read(&reads, i, bytes, &mut scan))
            .map_err(|e| self.error(e))?;
        let mut stats = reads.stats;
        if !reads.reqs.is_empty() {
            stats.io = Some(engine);
        }
        Ok(stats)
    }

    /// The first half of [`scan_probes`](Self::scan_probes): scans the extents the cache
    /// holds, and returns the reads of the others (in `stats`, what they will cost), for
    /// [`scan_read`](Self::scan_read) to scan as each arrives.
    pub fn scan_cached(
        &self,
        probes: impl IntoIterator<Item = Probe>,
        mut scan: impl FnMut(u32, usize, u32, f32, ExtentView, Derived, &[u8]),
    ) -> Result<ListReads<'_>> {
        let mut pending: Vec<(Probe, u32)> = Vec::new();
        let mut cached: Vec<(Probe, u32, &Cached)> = Vec::new();
        // The cached extents are scanned under one read view of the cache, released before
        // the reads of the others (whose offers need the cache to themselves).
        let held = self.cache.as_ref().map(ListCache::view);
        for p in probes {
            let list = p.list as usize;
            let first = self.directory.list_starts[list];
            for i in 0..self.directory.extents_of(list).len() {
                let x = first + i as u32;
                match held.as_ref().and_then(|v| v.get(x)) {
                    Some(item) => cached.push((p, x, item)),
                    None => pending.push((p, x)),
                }
            }
        }
        let (reqs, members) = self.coalesced_reads(&mut pending, |p| p.1)?;
        let lookups = if self.cache.is_some() { (cached.len() as u64, pending.len() as u64) } else { (0, 0) };
        // `pending` is sorted by extent now: an extent two probes share counts once.
        let distinct = pending.iter().enumerate().filter(|&(i, p)| i == 0 || pending[i - 1].1 != p.1).count();
        let stats = SearchStats {
            bytes_read: reqs.iter().map(|r| r.len() as u64).sum(),
            extents_read: distinct as u64,
            reads: reqs.len() as u64,
            cache_hits: lookups.0,
            cache_misses: lookups.1,
            refine_pages: 0,
            io: None,
        };
        let shape = self.directory.shape();
        let view = |x: u32, bytes| format::extent_view(&self.directory.extents[x as usize], shape, bytes);
        for (i, (p, x, item)) in cached.iter().enumerate() {
            // The start of the next list's codes as its scan will stream them (transposed, where
            // a copy is kept), and its derived terms; the rest of its codes is the scan's to
            // prefetch as it goes (asking for all of it at once only fills the CPU's miss queue
            // and stalls here).
            let mut ahead: &[u8] = &[];
            if let Some((_, next, next_item)) = cached.get(i + 1) {
                let codes = match next_item.arranged.get() {
                    Some(transposed) => transposed.as_slice(),
                    None => view(*next, &next_item.bytes).codes,
                };
                let (start, rest) = codes.split_at(codes.len().min(PREFETCH_BYTES));
                crate::distance::prefetch_bytes(start);
                ahead = rest;
                if let Some(t) = next_item.derived.get() {
                    crate::distance::prefetch(&t[..t.len().min(PREFETCH_BYTES / 4)]);
                }
            }
            scan(p.owner, p.list as usize, *x, p.qc, view(*x, &item.bytes), Some(*item), ahead);
        }
        Ok(ListReads { pending, reqs, members, stats })
    }

    /// Read `i` of `reads` has arrived as `bytes`: each extent in it is checked, offered to
    /// the cache and scanned.
    pub fn scan_read(
        &self,
        reads: &ListReads,
        i: usize,
        bytes: &[u8],
        mut scan: impl FnMut(u32, usize, u32, f32, ExtentView, Derived, &[u8]),
    ) -> std::result::Result<(), ReadError> {
        let run = &reads.pending[reads.members[i].clone()];
        self.split(
            reads.reqs[i].offset(),
            bytes,
            run,
            |p| p.1,
            |&(p, x), bytes, view| {
                let kept = self.cache.as_ref().and_then(|c| c.offer(x, bytes, self.derived_bytes(x)));
                scan(p.owner, p.list as usize, x, p.qc, view, kept.as_deref(), &[]);
            },
        )
    }

    /// The reads of the `pending` extents (`extent_of` names each one's extent; sorted here by
    /// segment and offset): runs of extents that follow each other in a segment become one
    /// read of at most [`COALESCE_MAX_BYTES`] (a larger extent alone is one read; an extent
    /// named twice is read once). Read `i` holds `pending[members[i]]`.
    fn coalesced_reads<T>(
        &self,
        pending: &mut [T],
        extent_of: impl Fn(&T) -> u32,
    ) -> Result<(Vec<ReadRequest<'_>>, Vec<std::ops::Range<usize>>)> {
        let extent = |t: &T| &self.directory.extents[extent_of(t) as usize];
        pending.sort_unstable_by_key(|t| (extent(t).segment.get(), extent(t).offset.get()));
        let (mut reqs, mut members) = (Vec::new(), Vec::new());
        let mut start = 0;
        while start < pending.len() {
            let first = extent(&pending[start]);
            let (mut end, mut len, mut last) = (start + 1, first.length.get(), first.offset.get());
            while let Some(e) = pending.get(end).map(extent) {
                let again = e.segment == first.segment && e.offset.get() == last;
                let adjacent = e.segment == first.segment && e.offset.get() == first.offset.get() + len;
                if !again && (!adjacent || len + e.length.get() > COALESCE_MAX_BYTES) {
                    break;
                }
                if !again {
                    len += e.length.get();
                    last = e.offset.get();
                }
                end += 1;
            }
            reqs.push(self.request(first, len)?);
            members.push(start..end);
            start = end;
        }
        Ok((reqs, members))
    }

    /// Cuts read `bytes` (which starts at `start` in its segment) into the extents of `run`
    /// (`extent_of` names each one's extent), checks each, and calls `each(item, extent bytes,
    /// view)`.
    fn split<'b, T>(
        &self,
        start: u64,
        bytes: &'b [u8],
        run: &[T],
        extent_of: impl Fn(&T) -> u32,
        mut each: impl FnMut(&T, &'b [u8], ExtentView<'b>),
    ) -> std::result::Result<(), ReadError> {
        for t in run {
            let x = extent_of(t);
            let e = &self.directory.extents[x as usize];
            let bytes = &bytes[(e.offset.get() - start) as usize..][..e.length.get() as usize];
            each(t, bytes, self.verified(x, bytes)?);
        }
        Ok(())
    }

    /// Whether every extent of `list` is in the cache (no access is counted).
    pub fn is_cached(&self, list: usize) -> bool {
        let first = self.directory.list_starts[list];
        let cache = self.cache.as_ref();
        (0..self.directory.extents_of(list).len() as u32).all(|i| cache.is_some_and(|c| c.contains(first + i)))
    }

    /// Reads lists in order into the cache until it is full (or every list is read).
    pub fn preload(&self) -> Result<()> {
        let Some(cache) = &self.cache else { return Ok(()) };
        let mut budget = cache.capacity();
        let extents: Vec<u32> = (0..self.directory.extents.len() as u32)
            .take_while(|&x| {
                let len = self.directory.extents[x as usize].length.get();
                let fits = len <= budget;
                budget = budget.saturating_sub(len);
                fits
            })
            .collect();
        let mut reader = io::Reader::new();
        for batch in extents.chunks(256) {
            let mut batch = batch.to_vec();
            let (reqs, members) = self.coalesced_reads(&mut batch, |&x| x)?;
            reader
                .read_all::<ReadError>(self.io, &reqs, |i, bytes| {
                    self.split(
                        reqs[i].offset(),
                        bytes,
                        &batch[members[i].clone()],
                        |&x| x,
                        |&x, bytes, _| {
                            cache.offer(x, bytes, self.derived_bytes(x));
                        },
                    )
                })
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    fn derived_bytes(&self, x: u32) -> u64 {
        self.directory.extents[x as usize].count.get() as u64 * self.derived_per_vector
    }

    /// The read of `len` bytes from extent `e` on (`e` alone, or a run of adjacent extents).
    fn request<'a>(&'a self, e: &Extent, len: u64) -> Result<ReadRequest<'a>> {
        let seg = &self.segments[e.segment.get() as usize];
        ReadRequest::new(&seg.file, e.offset.get(), len as usize)
            .map_err(|err| Error::Io { path: self.dir.join(&seg.name), source: err })
    }

    /// Checks the bytes of extent `x` just read: length and checksum.
    fn verified<'b>(&self, x: u32, bytes: &'b [u8]) -> std::result::Result<ExtentView<'b>, ReadError> {
        let e = &self.directory.extents[x as usize];
        let seg = &self.segments[e.segment.get() as usize];
        Ok(format::decode_extent(&seg.name, e, self.directory.shape(), bytes)?)
    }

    pub fn error(&self, e: ReadError) -> Error {
        e.into_error(&self.dir)
    }
}

/// The reads of a query's (or a wave's) lists that the cache could not serve
/// ([`ListStore::scan_cached`]).
pub(crate) struct ListReads<'s> {
    /// (probe, extent) pairs sorted by extent; read `i` holds `pending[members[i]]`.
    pending: Vec<(Probe, u32)>,
    pub reqs: Vec<ReadRequest<'s>>,
    members: Vec<std::ops::Range<usize>>,
    /// What the reads cost and what the cache served.
    pub stats: SearchStats,
}

/// What can go wrong while extents (or vectors pages) arrive: the read itself (the io layer
/// names the offset; the index directory is added here) or the bytes (the format layer names
/// the file and offset).
pub(crate) enum ReadError {
    Io(std::io::Error),
    Format(format::FormatError),
}

impl ReadError {
    pub fn into_error(self, dir: &std::path::Path) -> Error {
        match self {
            ReadError::Io(source) => Error::Io { path: dir.to_owned(), source },
            ReadError::Format(f) => Error::Format(f),
        }
    }
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<format::FormatError> for ReadError {
    fn from(e: format::FormatError) -> Self {
        ReadError::Format(e)
    }
}
