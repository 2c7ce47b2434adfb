//! Integrity walk of an index directory: every manifest, every file the newest sound one names,
//! every checksum, every byte the spec says is zero, every extent's bounds and every id. It
//! does not stop at the first problem: each is a [`Fault`] naming the file, the offset and what
//! is wrong, and the walk goes on with whatever can still be checked.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{try_vec, Error, IoContext, Result};
use crate::format::{self, Directory, Extent, FormatError, HEADER_LEN, PAGE};
use crate::search::open::{self, Generation};
use crate::search::{Index, IndexInfo};
use crate::store;

/// One thing wrong with an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// File name inside the index directory.
    pub file: String,
    /// Byte offset in that file, where one applies.
    pub offset: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{} at offset {o}: {}", self.file, self.what),
            None => write!(f, "{}: {}", self.file, self.what),
        }
    }
}

/// At most this many faults are kept (the rest are counted): a wrecked billion-vector index
/// must not turn its report into gigabytes.
pub const MAX_FAULTS: usize = 10_000;

/// What `verify` checked and what it found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// The generation verified: the newest whose manifest is sound (None if none is).
    pub generation: Option<u64>,
    pub files: usize,
    pub segments: usize,
    pub extents: u64,
    /// Vectors stored in the lists, deleted ones included.
    pub vectors: u64,
    /// Stored vectors that the deletion set hides.
    pub hidden: u64,
    pub bytes: u64,
    pub faults: Vec<Fault>,
    /// Faults found beyond `MAX_FAULTS`.
    pub faults_omitted: u64,
}

impl VerifyReport {
    /// True when no fault was found.
    pub fn is_ok(&self) -> bool {
        self.faults.is_empty() && self.faults_omitted == 0
    }

    fn fault(&mut self, file: &str, offset: Option<u64>, what: String) {
        if self.faults.len() < MAX_FAULTS {
            self.faults.push(Fault { file: file.into(), offset, what });
        } else {
            self.faults_omitted += 1;
        }
    }

    /// Records an error from a reading step as a fault, with its file and offset.
    fn error(&mut self, fallback_file: &str, e: Error) {
        match e {
            Error::Format(f) => {
                let (file, offset) = (f.file().to_string(), f.offset());
                self.fault(&file, Some(offset), f.to_string())
            }
            Error::Corrupt { file, reason } => self.fault(&file, None, reason),
            Error::Io { path, source } => {
                let file = path.file_name().map_or(fallback_file.into(), |n| n.to_string_lossy().into_owned());
                self.fault(&file, None, format!("cannot be read: {source}"))
            }
            other => self.fault(fallback_file, None, other.to_string()),
        }
    }
}

/// Verifies the index in `dir`, reading every byte of it. Errors only when `dir` is not an
/// index at all (missing, or no manifest) or cannot be listed; damage is reported in the
/// report's faults.
pub fn verify_index(dir: &Path) -> Result<VerifyReport> {
    let mut r = VerifyReport::default();
    let mut newest = None;
    for (gen, path) in store::manifest_generations(dir)? {
        let name = store::manifest_name(gen);
        match store::read_manifest(gen, &path) {
            Ok(m) => {
                if newest.is_none() {
                    newest = Some((gen, name, m));
                }
            }
            Err(e) => r.error(&name, e),
        }
    }
    let Some((gen, mname, manifest)) = newest else { return Ok(r) };
    r.generation = Some(gen);
    r.files = manifest.files.len() + 1;
    if let Err(e) = check_manifest_zeros(&mname, &manifest) {
        r.error(&mname, e);
    }
    let g = Generation::new(dir, &manifest, &mname);
    check_entries(&mut r, &manifest, &mname);
    let info = match g.info() {
        Ok(i) => Some(i),
        Err(e) => {
            r.error(&mname, e);
            None
        }
    };
    if let Some(info) = info.as_ref().filter(|i| i.is_graph()) {
        verify_graph(&mut r, &g, info);
        return Ok(r);
    }
    let mut directory = None;
    if let Some(info) = &info {
        if let Err(e) = g.quantizer(info) {
            r.error(store::QUANTIZER, e);
        }
        if info.pq_m > 0 {
            if let Err(e) = g.codebooks(info) {
                r.error(store::CODEBOOKS, e);
            }
        }
        match g.directory(info) {
            Ok(d) => directory = Some(d),
            Err(e) => r.error(store::DIRECTORY, e),
        }
    }
    // Segments: those the manifest names (every extent's segment among them, checked with the
    // directory).
    let numbers = g.segment_numbers();
    r.segments = numbers.len();
    let segments: Vec<OpenSegment> = numbers.iter().map(|&no| verify_segment(&mut r, &g, no)).collect();
    let deletions = match g.deletions() {
        Ok(d) => d,
        Err(e) => {
            let name = g.name_of_kind(format::FileKind::Deletions).ok().flatten().unwrap_or_else(|| mname.clone());
            r.error(&name, e);
            format::Deletions::default()
        }
    };
    if let (Some(d), Some(info)) = (&directory, &info) {
        let generations = g.extent_generations(d);
        let pairs = deletions.entries.iter().map(|e| (e.id.get(), e.generation.get())).collect();
        let hidden = crate::topk::Tombstones::new(pairs, generations);
        let mut ids_apart = match (d.ids, info.refine) {
            (format::IdsPlace::WithVectors, Some(kind)) => {
                Some(IdsBlocks { g: &g, info, kind, files: Default::default() })
            }
            _ => None,
        };
        verify_extents(&mut r, d, info, (&numbers, &segments), &hidden, ids_apart.as_mut())?;
        if let Some(kind) = info.refine {
            for &no in &numbers {
                verify_vectors(&mut r, &g, info, kind, d, no);
            }
        }
    }
    Ok(r)
}

/// The blocks of ids of an index that keeps them with its vectors, read extent by extent.
struct IdsBlocks<'g> {
    g: &'g Generation<'g>,
    info: &'g IndexInfo,
    kind: crate::RefineVectors,
    files: std::collections::HashMap<u32, Option<(File, format::VectorsFile)>>,
}

impl IdsBlocks<'_> {
    /// Extent `e`'s ids, its block's pages checked; an error names the vectors file.
    fn ids(&mut self, e: &Extent) -> std::result::Result<Vec<u8>, (String, crate::Error)> {
        let no = e.segment.get();
        let name = store::vectors_name(no);
        let (g, info, kind) = (self.g, self.info, self.kind);
        let opened = self.files.entry(no).or_insert_with(|| {
            let (_, table) = g.vectors_file(no, info, kind, format::IdsPlace::WithVectors).ok()?;
            Some((File::open(g.dir.join(&name)).ok()?, table))
        });
        let Some((f, table)) = opened else {
            return Err((
                name.clone(),
                crate::Error::Corrupt { file: name, reason: "cannot be opened for its ids".into() },
            ));
        };
        let count = e.count.get() as u64;
        let (first, len) = table.header.ids_block(e.vectors_page.get() as u64, count);
        let mut buf = vec![0u8; len.div_ceil(PAGE) as usize * PAGE as usize];
        let path = g.dir.join(&name);
        let read = f.read_exact_at(&mut buf, format::VectorsFile::page_offset(first)).at(&path);
        let checked = read.and_then(|_| {
            for (j, page) in buf.chunks_exact(PAGE as usize).enumerate() {
                table.check_page(&name, first + j as u64, page)?;
            }
            Ok(())
        });
        checked.map_err(|err| (name.clone(), err))?;
        buf.truncate(len as usize);
        Ok(buf)
    }
}

/// Checks one vectors file (`,RFlat`): its header page and page table as an open does, every
/// data page against the table and the whole payload against the manifest, the zero padding
/// of its header page, and that each extent of the segment has its vectors where the
/// directory says, in whole pages of the file.
fn verify_vectors(
    r: &mut VerifyReport,
    g: &Generation,
    info: &IndexInfo,
    kind: crate::RefineVectors,
    d: &Directory,
    no: u32,
) {
    let name = store::vectors_name(no);
    let table = match g.vectors_file(no, info, kind, d.ids) {
        Ok((_, t)) => t,
        Err(e) => return r.error(&name, e),
    };
    let n_pages = table.header.n_pages.get();
    // Extents of this segment, in file order: their vectors follow each other from page 0.
    let mut mine: Vec<(u64, usize)> =
        d.extents.iter().enumerate().filter(|(_, e)| e.segment.get() == no).map(|(i, e)| (e.offset.get(), i)).collect();
    mine.sort_unstable();
    // Where the ids are kept here, each record's id must be the one its extent's block holds:
    // checked as the pass over the pages goes by, each extent's pages gathered in turn (one
    // read of the file, not two).
    let h = table.header;
    let mut spans: Vec<(u64, u64, usize)> = mine
        .iter()
        .map(|&(_, i)| {
            let e = &d.extents[i];
            (e.vectors_page.get() as u64, h.extent_pages(e.count.get() as u64), i)
        })
        .collect();
    spans.sort_unstable();
    let vb = kind.vector_bytes(info.dim);
    let (mut at, mut gathered, mut mismatched) = (0usize, Vec::new(), Vec::new());
    let mut each_page = |page: u64, bytes: &[u8]| {
        if !h.ids_with_vectors() {
            return;
        }
        while spans.get(at).is_some_and(|&(first, n, _)| page >= first + n) {
            at += 1;
            gathered.clear();
        }
        let Some(&(first, n, i)) = spans.get(at) else { return };
        if page < first {
            return;
        }
        gathered.extend_from_slice(bytes);
        if page + 1 == first + n {
            if let Some(j) = record_with_another_id(&h, vb, d.extents[i].count.get() as u64, &gathered) {
                mismatched.push((i, j));
            }
        }
    };
    verify_pages(r, g, &name, size_of::<format::VectorsHeader>(), &table.pages, &mut each_page);
    for (i, j) in mismatched {
        r.fault(&name, None, format!("extent {i}: record {j} carries another id than the extent's block of ids"));
    }
    let mut next = 0u64;
    for (_, i) in mine {
        let e = &d.extents[i];
        let start = e.vectors_page.get() as u64;
        if start != next {
            r.fault(
                store::DIRECTORY,
                None,
                format!("extent {i}: its vectors start at page {start} of {name}, expected {next}"),
            );
        }
        next = start + h.extent_pages(e.count.get() as u64);
    }
    if next != n_pages {
        r.fault(&name, None, format!("{n_pages} data pages, the extents' vectors take {next}"));
    }
}

/// Checks the pages of paged file `name` (a vectors or graph file, whose own header after the
/// file header takes `header_len` bytes): the zero padding of its header page, every data page
/// against `pages`, and the whole payload against the manifest's checksum.
/// In the pages of one extent of `count` vectors (its records, then its block of ids, as a
/// vectors file that keeps ids lays them out), the first record whose id is not the one at its
/// position in the block.
fn record_with_another_id(h: &format::VectorsHeader, vb: usize, count: u64, pages: &[u8]) -> Option<usize> {
    let (block, len) = h.ids_block(0, count);
    let ids = pages.get((block * PAGE) as usize..)?.get(..len as usize)?;
    let records = pages.chunks_exact(h.record_bytes() as usize).take(count as usize);
    records.zip(ids.chunks_exact(8)).position(|(rec, id)| &rec[vb..] != id)
}

/// `each_page(page, bytes)` sees every data page as it goes by, in order.
fn verify_pages(
    r: &mut VerifyReport,
    g: &Generation,
    name: &str,
    header_len: usize,
    pages: &format::PageTable,
    each_page: &mut dyn FnMut(u64, &[u8]),
) {
    let path = g.dir.join(name);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) => return r.error(name, open::missing_or_io(name, &path, e)),
    };
    if let Ok(page) = open::read_header_page(&path, name) {
        let used = HEADER_LEN + header_len;
        if let Some(i) = page[used..].iter().position(|&b| b != 0) {
            r.fault(name, Some((used + i) as u64), "header page padding is not zero".into());
        }
    }
    let n_pages = pages.crcs.len() as u64;
    let mut crc = 0u32;
    let mut buf = vec![0u8; 256 * PAGE as usize];
    let mut page = 0u64;
    while page < n_pages {
        let n = (n_pages - page).min(256);
        let bytes = &mut buf[..(n * PAGE) as usize];
        if let Err(e) = f.read_exact_at(bytes, format::page_offset(page)) {
            return r.fault(name, Some(format::page_offset(page)), format!("cannot be read: {e}"));
        }
        for (j, p) in bytes.chunks(PAGE as usize).enumerate() {
            if let Err(e) = pages.check_page(name, "data", page + j as u64, p) {
                r.error(name, e.into());
            }
            each_page(page + j as u64, p);
        }
        crc = crc32c::crc32c_append(crc, bytes);
        page += n;
    }
    let (at, len) = format::table_span(n_pages);
    let mut t = vec![0u8; len as usize];
    if f.read_exact_at(&mut t, at).is_ok() {
        crc = crc32c::crc32c_append(crc, &t);
    }
    if g.entry(name).is_ok_and(|e| e.crc.get() != crc) {
        r.fault(name, Some(PAGE), "payload checksum differs from the manifest's".into());
    }
    r.bytes += format::file_len(n_pages);
}

/// Checks an `HNSW{M},Flat` or `HNSW{M}_PQ{m}` index: the graph's and the vectors' (or codes')
/// pages as [`verify_pages`] does and the codebooks, then the graph read whole as an open into
/// RAM reads it (slot counts, every neighbour id in range, the
/// entry point on the top level).
fn verify_graph(r: &mut VerifyReport, g: &Generation, info: &IndexInfo) {
    let before = r.faults.len();
    let mut sound = true;
    match g.graph_file(info) {
        Ok((name, file)) => verify_pages(r, g, &name, size_of::<format::GraphHeader>(), &file.pages, &mut |_, _| {}),
        Err(e) => {
            sound = false;
            r.error(store::GRAPH, e)
        }
    }
    let (rows, dim, kind) = if info.pq_m > 0 {
        if let Err(e) = g.codebooks(info) {
            sound = false;
            r.error(store::CODEBOOKS, e);
        }
        (store::CODES, info.pq_m, crate::RefineVectors::Uint8)
    } else {
        (store::FLAT_VECTORS, info.dim, crate::RefineVectors::Float32)
    };
    match g.named_vectors_file(rows.into(), dim, kind) {
        Ok((name, file)) => verify_pages(r, g, &name, size_of::<format::VectorsHeader>(), &file.pages, &mut |_, _| {}),
        Err(e) => {
            sound = false;
            r.error(rows, e)
        }
    }
    if sound && r.faults.len() == before {
        let opts = crate::OpenOptions { load_into_ram: true, ..Default::default() };
        if let Err(e) = crate::search::open_graph(g, info, &opts) {
            r.error(store::GRAPH, e);
        }
    }
    r.vectors = info.ntotal;
}

/// Reserved fields the spec says are zero, in the manifest itself.
fn check_manifest_zeros(name: &str, m: &format::Manifest) -> Result<()> {
    let b = &m.body;
    let nonzero = b.reserved.iter().any(|&x| x != 0)
        || b.params.reserved1.get() != 0
        || m.files.iter().any(|f| f.reserved2.get() != 0);
    if nonzero {
        return Err(Error::Corrupt { file: name.into(), reason: "a reserved field is not zero".into() });
    }
    let g = b.generation.get();
    if let Some(f) = m.files.iter().find(|f| f.generation.get() as u64 > g) {
        return Err(Error::Corrupt {
            file: name.into(),
            reason: format!("names {} as written by generation {}, after its own ({g})", f.name(), f.generation.get()),
        });
    }
    Ok(())
}

/// A version-1 manifest names each file once, with the kind its name implies, and nothing else.
fn check_entries(r: &mut VerifyReport, m: &format::Manifest, mname: &str) {
    use format::FileKind;
    let mut seen = std::collections::HashSet::new();
    for f in &m.files {
        let name = f.name();
        if !seen.insert(name.clone()) {
            r.fault(mname, None, format!("names {name} twice"));
        }
        let want = match name.as_str() {
            store::QUANTIZER => Some(FileKind::Quantizer),
            store::CODEBOOKS => Some(FileKind::Codebooks),
            n if store::is_directory_name(n) => Some(FileKind::Directory),
            n if store::is_deletions_name(n) => Some(FileKind::Deletions),
            store::GRAPH => Some(FileKind::Graph),
            store::FLAT_VECTORS | store::CODES => Some(FileKind::Vectors),
            n if store::is_segment_name(n) => Some(FileKind::Segment),
            n if store::is_vectors_name(n) => Some(FileKind::Vectors),
            _ => None,
        };
        match want {
            Some(k) if k as u32 == f.kind.get() => {}
            Some(k) => {
                r.fault(mname, None, format!("records {name} as kind {}, its name says {}", f.kind.get(), k.name()))
            }
            None => r.fault(mname, None, format!("names {name:?}, which is no file of a version-1 index")),
        }
    }
}

/// A segment as `verify` reads it: the open file and its size, where it can be read.
type OpenSegment = Option<(File, u64)>;

/// Checks one segment's size, header, owner, the zero padding of its header page and the
/// checksum of its whole extent area. Returns the open file and its size when it can be read.
fn verify_segment(r: &mut VerifyReport, g: &Generation, no: u32) -> Option<(File, u64)> {
    let name = store::segment_name(no);
    let path = g.dir.join(&name);
    let size = match g.segment_header(no) {
        Ok((_, size)) => size,
        Err(e) => {
            r.error(&name, e);
            // Go on reading what is there: the extents may still be checkable.
            std::fs::metadata(&path).ok()?.len()
        }
    };
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            r.error(&name, open::missing_or_io(&name, &path, e));
            return None;
        }
    };
    if let Ok(page) = open::read_header_page(&path, &name) {
        if let Some(i) = page[HEADER_LEN - 12..HEADER_LEN - 4].iter().position(|&b| b != 0) {
            r.fault(&name, Some((HEADER_LEN - 12 + i) as u64), "header's reserved field is not zero".into());
        }
        if let Some(i) = page[HEADER_LEN..].iter().position(|&b| b != 0) {
            r.fault(&name, Some((HEADER_LEN + i) as u64), "header page padding is not zero".into());
        }
    }
    if size > PAGE {
        let mut buf = vec![0u8; 8 << 20];
        let mut crc = 0u32;
        let mut off = PAGE;
        while off < size {
            let n = ((size - off) as usize).min(buf.len());
            if let Err(e) = f.read_exact_at(&mut buf[..n], off) {
                r.fault(&name, Some(off), format!("cannot be read: {e}"));
                return Some((f, size));
            }
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            off += n as u64;
        }
        let stored = g.entry(&name).map(|e| e.crc.get()).ok();
        if stored.is_some_and(|s| s != crc) {
            let e = FormatError::ChecksumMismatch {
                file: name.clone(),
                what: "extent area".into(),
                offset: PAGE,
                len: size - PAGE,
                stored: stored.unwrap_or_default(),
                computed: crc,
            };
            r.fault(&name, Some(PAGE), e.to_string());
        }
        r.bytes += size;
    }
    Some((f, size))
}

/// Reads every extent: bounds, no overlap, checksum, zero padding, ids in range, ascending
/// within the extent and each appearing once in the index.
fn verify_extents(
    r: &mut VerifyReport,
    d: &Directory,
    info: &IndexInfo,
    (numbers, segments): (&[u32], &[OpenSegment]),
    hidden: &crate::topk::Tombstones,
    mut ids_apart: Option<&mut IdsBlocks>,
) -> Result<()> {
    let (ntotal, next_id) = (info.ntotal, info.next_id);
    let words = usize::try_from(next_id.div_ceil(64)).unwrap_or(usize::MAX);
    let mut seen: Vec<u64> =
        try_vec(words, || format!("a bitmap of {next_id} ids"), "verify on a machine with more memory")?;
    seen.resize(words, 0);
    let layout = d.layout;
    let mut buf = Vec::new();
    let mut spans: Vec<Vec<(u64, u64, usize)>> = vec![Vec::new(); segments.len()];
    let mut index_no = 0usize;
    for list in 0..d.nlist() {
        for e in d.extents_of(list) {
            let i = index_no;
            index_no += 1;
            let seg_name = store::segment_name(e.segment.get());
            // Checked with the directory: every extent's segment is one the manifest names.
            let Ok(no) = numbers.binary_search(&e.segment.get()) else { continue };
            let Some((f, size)) = &segments[no] else { continue };
            if let Err(err) = open::check_extent_bounds(i, e, &seg_name, *size) {
                r.error(store::DIRECTORY, err);
                continue;
            }
            spans[no].push((e.offset.get(), e.length.get(), list));
            let len = e.length.get() as usize;
            buf.resize(len, 0);
            if let Err(err) = f.read_exact_at(&mut buf, e.offset.get()) {
                r.fault(&seg_name, Some(e.offset.get()), format!("list {list}: extent cannot be read: {err}"));
                continue;
            }
            let view = match format::decode_extent(&seg_name, e, d.shape(), &buf) {
                Ok(v) => v,
                Err(err) => {
                    r.fault(&seg_name, Some(e.offset.get()), format!("list {list}: {err}"));
                    continue;
                }
            };
            let kept;
            let view = match ids_apart.as_deref_mut() {
                None => view,
                Some(blocks) => match blocks.ids(e) {
                    Ok(ids) => {
                        kept = ids;
                        view.with_ids(&kept)
                    }
                    Err((name, err)) => {
                        r.error(&name, err);
                        continue;
                    }
                },
            };
            if info.refine.is_none() && e.vectors_page.get() != 0 {
                r.fault(
                    store::DIRECTORY,
                    None,
                    format!("list {list}: extent {i} names vectors the index does not keep"),
                );
            }
            let count = e.count.get() as u64;
            let codes_end = layout.codes_len(count) as usize;
            let (ids_at, ids_end) = match d.ids {
                format::IdsPlace::InExtent => {
                    let at = layout.ids_offset(count) as usize;
                    (at, at + 8 * count as usize)
                }
                format::IdsPlace::WithVectors => (codes_end, codes_end),
            };
            let pad = buf[codes_end..ids_at].iter().chain(&buf[ids_end..]).position(|&b| b != 0);
            if let Some(p) = pad {
                let at = if p < ids_at - codes_end { codes_end + p } else { ids_end + p - (ids_at - codes_end) };
                r.fault(
                    &seg_name,
                    Some(e.offset.get() + at as u64),
                    format!("list {list}: extent padding is not zero"),
                );
            }
            let mut prev: Option<u64> = None;
            for id in view.ids() {
                if hidden.hides(id, i as u32) {
                    r.hidden += 1;
                    prev = Some(id);
                    continue;
                }
                let fresh = id < next_id && {
                    let (w, b) = ((id / 64) as usize, id % 64);
                    let was = seen[w] >> b & 1 == 1;
                    seen[w] |= 1 << b;
                    !was
                };
                if !fresh {
                    r.fault(
                        &seg_name,
                        Some(e.offset.get()),
                        format!("list {list}: id {id} is out of range (next id {next_id}) or live twice"),
                    );
                }
                if prev.is_some_and(|p| p >= id) {
                    r.fault(
                        &seg_name,
                        Some(e.offset.get()),
                        format!("list {list}: ids do not ascend within the extent"),
                    );
                }
                prev = Some(id);
            }
            r.extents += 1;
            r.vectors += count;
        }
    }
    if r.hidden != info.deleted {
        r.fault(
            store::DIRECTORY,
            None,
            format!("{} stored vectors are deleted, the manifest counts {}", r.hidden, info.deleted),
        );
    }
    if r.vectors - r.hidden != ntotal {
        r.fault(
            store::DIRECTORY,
            None,
            format!("{} vectors are live, the manifest counts {ntotal}", r.vectors - r.hidden),
        );
    }
    for (place, s) in spans.iter_mut().enumerate() {
        s.sort_unstable();
        for w in s.windows(2) {
            if w[0].0 + w[0].1 > w[1].0 {
                r.fault(
                    &store::segment_name(numbers[place]),
                    Some(w[1].0),
                    format!("the extents of lists {} and {} overlap", w[0].2, w[1].2),
                );
            }
        }
    }
    Ok(())
}

/// List sizes of an index, for `inspect`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListStats {
    pub nlist: usize,
    pub empty: usize,
    pub min: u64,
    pub max: u64,
    pub mean: f64,
    /// Imbalance factor as faiss defines it: nlist · Σ size² / (Σ size)².
    pub imbalance: f64,
    /// Quantiles p50, p90, p99 of the list sizes.
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
}

impl Index {
    /// Verifies this index's directory: see [`verify_index`].
    pub fn verify(&self) -> Result<VerifyReport> {
        verify_index(self.dir())
    }

    /// List-size statistics (None for an index without lists).
    pub fn list_stats(&self) -> Option<ListStats> {
        let nlist = self.info().nlist;
        if nlist == 0 {
            return None;
        }
        let mut sizes: Vec<u64> = (0..nlist).map(|l| self.list_len(l)).collect();
        sizes.sort_unstable();
        let total: u64 = sizes.iter().sum();
        let sq: f64 = sizes.iter().map(|&s| (s as f64) * (s as f64)).sum();
        let q = |p: f64| sizes[((nlist as f64 - 1.0) * p).round() as usize];
        Some(ListStats {
            nlist,
            empty: sizes.iter().filter(|&&s| s == 0).count(),
            min: sizes[0],
            max: sizes[nlist - 1],
            mean: total as f64 / nlist as f64,
            imbalance: if total > 0 { nlist as f64 * sq / (total as f64 * total as f64) } else { 0.0 },
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
        })
    }

    /// The index's files as (name, kind, bytes).
    pub fn files(&self) -> Vec<(String, &'static str, u64)> {
        self.files
            .iter()
            .map(|f| (f.name(), format::FileKind::from_u32(f.kind.get()).map_or("?", |k| k.name()), f.size.get()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20 records of a 400-byte vector and its id fill two pages, the block of ids the third;
    /// a record whose id differs from the block's is found, and short pages are no panic.
    #[test]
    fn a_record_with_another_id_than_its_block_is_found() {
        let h = format::VectorsHeader::new(100, format::REFINE_F32, 400, true, 3, 20, 0);
        let mut pages = vec![0u8; 3 * PAGE as usize];
        for i in 0..20u64 {
            let at = i as usize * 408 + 400;
            pages[at..at + 8].copy_from_slice(&(1000 + i).to_le_bytes());
            let b = 2 * PAGE as usize + 8 * i as usize;
            pages[b..b + 8].copy_from_slice(&(1000 + i).to_le_bytes());
        }
        assert_eq!(record_with_another_id(&h, 400, 20, &pages), None);
        pages[7 * 408 + 400] ^= 1;
        assert_eq!(record_with_another_id(&h, 400, 20, &pages), Some(7));
        assert_eq!(record_with_another_id(&h, 400, 20, &pages[..PAGE as usize]), None);
    }
}
