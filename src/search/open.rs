//! The steps of opening one manifest generation, each a function that checks one file and
//! returns what it holds or a typed error. `Index::open` runs them in order and stops at the
//! first error; `verify` runs every one it can and collects the errors as faults, so the two
//! can never disagree about what a sound index is.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::distance::Metric;
use crate::error::{Error, IoContext, Result};
use crate::format::{
    self, Codebooks, Deletions, Directory, Extent, FileEntry, FileHeader, FileKind, FormatError, GraphFile, Manifest,
    QuantizerBlock, VectorsFile, HEADER_LEN, PAGE,
};
use crate::hnsw::Hnsw;
use crate::ivf::CoarseQuantizer;
use crate::pq::ProductQuantizer;
use crate::spec::{IndexSpec, Payload};
use crate::store;

use super::IndexInfo;

/// One manifest and the directory it lives in.
pub(crate) struct Generation<'a> {
    pub dir: &'a Path,
    pub manifest: &'a Manifest,
    pub mname: &'a str,
}

impl<'a> Generation<'a> {
    pub fn new(dir: &'a Path, manifest: &'a Manifest, mname: &'a str) -> Self {
        Generation { dir, manifest, mname }
    }

    fn invalid(&self, reason: String) -> Error {
        Error::Corrupt { file: self.mname.into(), reason }
    }

    /// The manifest's parameters, checked for what this library reads and for agreement with
    /// the factory string they were built from.
    pub fn info(&self) -> Result<IndexInfo> {
        let p = self.manifest.body.params;
        let metric = match p.metric {
            format::METRIC_L2 => Metric::L2,
            format::METRIC_INNER_PRODUCT => Metric::InnerProduct,
            format::METRIC_COSINE => Metric::Cosine,
            m => return Err(self.invalid(format!("unknown metric code {m}"))),
        };
        let known = matches!(
            (p.code_layout, p.pq_nbits.get()),
            (format::CODE_LAYOUT_PQ8, 8) | (format::CODE_LAYOUT_PQ4FS, 4) | (format::CODE_LAYOUT_FLAT, 0)
        );
        if !known {
            return Err(Error::Unsupported(format!(
                "{}: code layout {} ({} bits) is not readable by this quiver; use a newer quiver",
                self.mname,
                p.code_layout,
                p.pq_nbits.get()
            )));
        }
        let end = p.factory.iter().position(|&b| b == 0).unwrap_or(64);
        let info = IndexInfo {
            factory: String::from_utf8_lossy(&p.factory[..end]).into_owned(),
            dim: p.dim.get() as usize,
            metric,
            ntotal: p.ntotal.get().saturating_sub(self.manifest.body.deleted.get()),
            deleted: self.manifest.body.deleted.get(),
            next_id: self.manifest.body.next_id(),
            nlist: p.nlist.get() as usize,
            pq_m: p.pq_m.get() as usize,
            pq_nbits: p.pq_nbits.get() as usize,
            by_residual: p.raw_codes == 0,
            hnsw_m: p.hnsw_m.get() as usize,
            ef_construction: p.ef_construction.get() as usize,
            ef_search: p.ef_search.get() as usize,
            niter: p.niter.get() as usize,
            train_size: p.train_size.get(),
            seed: p.seed.get(),
            generation: self.manifest.body.generation.get(),
            refine: super::RefineVectors::from_code(p.refine)
                .ok_or_else(|| self.invalid(format!("unknown refine kind {}", p.refine)))?,
        };
        let spec: IndexSpec = info
            .factory
            .parse()
            .map_err(|e: crate::spec::SpecError| self.invalid(format!("factory string: {}", e.reason)))?;
        let agrees = match spec {
            IndexSpec::Ivf { nlist, hnsw_m, payload, refine } => {
                let (m, nbits, residual) = match payload {
                    Payload::Pq { m } => (m, 8, true),
                    Payload::PqFastScan { m, residual } => (m, 4, residual),
                    Payload::Flat => (0, 0, false),
                };
                nlist == info.nlist
                    && hnsw_m == info.hnsw_m
                    && m == info.pq_m
                    && nbits == info.pq_nbits
                    && residual == info.by_residual
                    && p.raw_codes <= 1
                    && refine == info.refine.is_some()
                    && (payload == Payload::Flat) == (p.code_layout == format::CODE_LAYOUT_FLAT)
            }
            IndexSpec::Hnsw { m, payload } => {
                let (pq_m, layout) = match payload {
                    Payload::Flat => (0, format::CODE_LAYOUT_FLAT),
                    Payload::Pq { m } => (m, format::CODE_LAYOUT_PQ8),
                    Payload::PqFastScan { .. } => (usize::MAX, 0),
                };
                m == info.hnsw_m
                    && info.nlist == 0
                    && info.pq_m == pq_m
                    && p.code_layout == layout
                    && info.refine.is_none()
            }
        };
        if info.deleted > p.ntotal.get() || info.next_id < info.ntotal {
            return Err(self.invalid(format!(
                "{} deleted and next id {} disagree with {} vectors stored",
                info.deleted,
                info.next_id,
                p.ntotal.get()
            )));
        }
        if info.is_graph() && (info.deleted > 0 || self.manifest.body.generation.get() > 1) {
            return Err(self.invalid("a graph index has generations past its build".into()));
        }
        let divides = info.pq_m == 0 || info.dim.is_multiple_of(info.pq_m);
        if !agrees || info.dim == 0 || !divides || info.ef_search == 0 {
            return Err(self.invalid(format!(
                "parameters disagree with each other (factory {}, dim {}, nlist {}, HNSW M {}, PQ m {}, efSearch {})",
                info.factory, info.dim, info.nlist, info.hnsw_m, info.pq_m, info.ef_search
            )));
        }
        Ok(info)
    }

    /// The manifest's entry for `name`.
    pub fn entry(&self, name: &str) -> Result<&'a FileEntry> {
        self.manifest.files.iter().find(|f| f.name() == name).ok_or_else(|| self.invalid(format!("names no {name}")))
    }

    /// The name of the manifest's one file of `kind` (a list directory, a deletion set), if it
    /// names one.
    pub fn name_of_kind(&self, kind: FileKind) -> Result<Option<String>> {
        let mut found = self.manifest.files.iter().filter(|f| f.kind.get() == kind as u32);
        let first = found.next().map(FileEntry::name);
        if found.next().is_some() {
            return Err(self.invalid(format!("names more than one {}", kind.name())));
        }
        Ok(first)
    }

    /// The numbers of the segments the manifest names, ascending.
    pub fn segment_numbers(&self) -> Vec<u32> {
        let mut n: Vec<u32> = self
            .manifest
            .files
            .iter()
            .filter(|f| f.kind.get() == FileKind::Segment as u32)
            .filter_map(|f| store::file_number(&f.name()))
            .collect();
        n.sort_unstable();
        n
    }

    /// The generation that wrote each extent's segment (1 for files of manifests before
    /// format 1.4), by the extent's number in `directory` (whose extents name segment numbers).
    pub fn extent_generations(&self, directory: &Directory) -> Vec<u32> {
        let by_number: std::collections::HashMap<u32, u32> = self
            .manifest
            .files
            .iter()
            .filter(|f| f.kind.get() == FileKind::Segment as u32)
            .filter_map(|f| Some((store::file_number(&f.name())?, f.generation())))
            .collect();
        directory.extents.iter().map(|x| by_number.get(&x.segment.get()).copied().unwrap_or(1)).collect()
    }

    /// The deletion set (empty where the manifest names none), its owner checked and its
    /// size against the manifest's count.
    pub fn deletions(&self) -> Result<Deletions> {
        let Some(name) = self.name_of_kind(FileKind::Deletions)? else {
            if self.manifest.body.deleted.get() != 0 {
                return Err(self.invalid(format!(
                    "counts {} deleted vectors but names no deletion set",
                    self.manifest.body.deleted.get()
                )));
            }
            return Ok(Deletions::default());
        };
        let bytes = self.small_file(&name)?;
        let (d, h) = Deletions::decode(&name, &bytes)?;
        self.check_owner(&name, &h)?;
        if d.entries.len() as u64 != self.manifest.body.deleted.get() {
            return Err(Error::Corrupt {
                file: name,
                reason: format!(
                    "holds {} entries, the manifest counts {} deleted",
                    d.entries.len(),
                    self.manifest.body.deleted.get()
                ),
            });
        }
        let g = self.manifest.body.generation.get();
        if let Some(e) = d.entries.iter().find(|e| e.generation.get() as u64 > g) {
            return Err(Error::Corrupt {
                file: name,
                reason: format!("an entry deleted at generation {}, after this one ({g})", e.generation.get()),
            });
        }
        Ok(d)
    }

    /// A RAM-resident file, read whole, its header and payload verified and its owner checked.
    fn small_file(&self, name: &str) -> Result<Vec<u8>> {
        let e = self.entry(name)?;
        let path = self.dir.join(name);
        let bytes = std::fs::read(&path).map_err(|err| missing_or_io(name, &path, err))?;
        if bytes.len() as u64 != e.size.get() {
            return Err(size_mismatch(name, e.size.get(), bytes.len() as u64));
        }
        Ok(bytes)
    }

    pub fn quantizer(&self, info: &IndexInfo) -> Result<CoarseQuantizer> {
        let name = store::QUANTIZER;
        let bytes = self.small_file(name)?;
        let (q, h) = QuantizerBlock::decode(name, &bytes)?;
        self.check_owner(name, &h)?;
        if q.dim as usize != info.dim || q.nlist() != info.nlist || q.hnsw_m as usize != info.hnsw_m {
            return Err(Error::Corrupt { file: name.into(), reason: "shape disagrees with the manifest".into() });
        }
        let hnsw = Hnsw::from_parts(q.hnsw_m as usize, q.levels, q.neighbors, q.entry_point)?;
        Ok(CoarseQuantizer::new(info.dim, info.metric.kernel(), q.centroids, hnsw))
    }

    pub fn codebooks(&self, info: &IndexInfo) -> Result<ProductQuantizer> {
        let name = store::CODEBOOKS;
        let bytes = self.small_file(name)?;
        let (cb, h) = Codebooks::decode(name, &bytes)?;
        self.check_owner(name, &h)?;
        if cb.m as usize != info.pq_m
            || (cb.m as usize).saturating_mul(cb.dsub as usize) != info.dim
            || cb.nbits as usize != info.pq_nbits
        {
            return Err(Error::Corrupt { file: name.into(), reason: "shape disagrees with the manifest".into() });
        }
        ProductQuantizer::from_codebooks(info.dim, info.pq_m, info.pq_nbits, cb.centroids)
            .map_err(|e| Error::Corrupt { file: name.into(), reason: e.to_string() })
    }

    /// The list directory, checked against the manifest: its shape, and every extent in a
    /// segment the manifest names. Extents keep their segments' file numbers.
    pub fn directory(&self, info: &IndexInfo) -> Result<Directory> {
        let name =
            self.name_of_kind(FileKind::Directory)?.ok_or_else(|| self.invalid("names no list directory".into()))?;
        let bytes = self.small_file(&name)?;
        let layout = info.code_layout();
        let (directory, h) = Directory::decode(&name, &bytes, layout)?;
        self.check_owner(&name, &h)?;
        if directory.nlist() != info.nlist || directory.ntotal != info.ntotal + info.deleted {
            return Err(Error::Corrupt { file: name, reason: "shape disagrees with the manifest".into() });
        }
        let numbers = self.segment_numbers();
        if let Some((i, x)) =
            directory.extents.iter().enumerate().find(|(_, x)| numbers.binary_search(&x.segment.get()).is_err())
        {
            return Err(Error::Corrupt {
                file: name,
                reason: format!(
                    "extent {i} lies in {}, which the manifest does not name",
                    store::segment_name(x.segment.get())
                ),
            });
        }
        Ok(directory)
    }

    /// Segment `no`'s name and size, after checking its size, header page and owner. The
    /// extent area's checksum is left to `verify` (reading it means reading the whole file).
    pub fn segment_header(&self, no: u32) -> Result<(String, u64)> {
        let name = store::segment_name(no);
        let (size, page) = self.sized_header_page(&name)?;
        let h = FileHeader::decode(&name, FileKind::Segment, &page)?;
        if h.payload_offset.get() != PAGE || h.payload_len.get() != size - PAGE {
            return Err(Error::Corrupt {
                file: name,
                reason: "header's extent area disagrees with the file size".into(),
            });
        }
        self.check_owner(&name, &h)?;
        Ok((name, size))
    }

    /// Vectors file `no` (`,RFlat`): its size, header page, owner and page table checked, and
    /// its shape against the index's. Its pages are checked as queries read them (and all of
    /// them by `verify`).
    /// `ids`: where the list directory says the ids are; the file must agree (records with
    /// ids exactly where they are kept there).
    pub fn vectors_file(
        &self,
        no: u32,
        info: &IndexInfo,
        kind: super::RefineVectors,
        ids: crate::format::IdsPlace,
    ) -> Result<(String, VectorsFile)> {
        let (name, f) = self.named_vectors_file(store::vectors_name(no), info.dim, kind)?;
        let with_ids = ids == crate::format::IdsPlace::WithVectors;
        if f.header.ids_with_vectors() != with_ids {
            let (has, says) = if with_ids { ("no ids", "with the vectors") } else { ("ids", "in the lists") };
            return Err(Error::Corrupt {
                file: name,
                reason: format!("its records carry {has}, but the list directory keeps the ids {says}"),
            });
        }
        Ok((name, f))
    }

    /// A vectors file by name, of rows of `dim` values (an `HNSW{M},Flat` index keeps every
    /// vector in one, in id order; an `HNSW{M}_PQ{m}` index its codes, as rows of m bytes),
    /// checked as [`vectors_file`](Self::vectors_file) does.
    pub fn named_vectors_file(
        &self,
        name: String,
        dim: usize,
        kind: super::RefineVectors,
    ) -> Result<(String, VectorsFile)> {
        let (size, page) = self.sized_header_page(&name)?;
        let path = self.dir.join(&name);
        let (fh, h) = VectorsFile::decode_head(&name, &page)?;
        self.check_owner(&name, &fh)?;
        if h.dim.get() as usize != dim || h.elem != kind.code() {
            return Err(Error::Corrupt {
                file: name,
                reason: format!(
                    "holds vectors of dimension {} (element type {}), the index's are {} ({})",
                    h.dim.get(),
                    h.elem,
                    dim,
                    kind.code()
                ),
            });
        }
        let (at, len) = VectorsFile::table_span(h.n_pages.get());
        if VectorsFile::file_len(h.n_pages.get()) != size {
            return Err(Error::Corrupt { file: name, reason: "its size disagrees with its page count".into() });
        }
        let mut table = vec![0u8; len as usize];
        File::open(&path).and_then(|f| f.read_exact_at(&mut table, at)).at(&path)?;
        Ok((name.clone(), VectorsFile::decode(&name, h, &table)?))
    }

    /// The graph file of an `HNSW{M},Flat` index: its size, header page, owner and page table
    /// checked, and its node count and M against the index's. Its pages are checked when read
    /// into RAM, or by `verify` when it is mapped.
    pub fn graph_file(&self, info: &IndexInfo) -> Result<(String, GraphFile)> {
        let name = store::GRAPH.to_string();
        let (size, page) = self.sized_header_page(&name)?;
        let path = self.dir.join(&name);
        let (fh, h) = GraphFile::decode_head(&name, &page)?;
        self.check_owner(&name, &fh)?;
        if h.n_nodes.get() != info.ntotal || h.m.get() as usize != info.hnsw_m {
            return Err(Error::Corrupt {
                file: name,
                reason: format!(
                    "holds a graph of {} nodes with M = {}, the index has {} vectors and M = {}",
                    h.n_nodes.get(),
                    h.m.get(),
                    info.ntotal,
                    info.hnsw_m
                ),
            });
        }
        let n_pages = h.n_pages.get();
        if format::file_len(n_pages) != size {
            return Err(Error::Corrupt { file: name, reason: "its size disagrees with its page count".into() });
        }
        let (at, len) = format::table_span(n_pages);
        let mut table = vec![0u8; len as usize];
        File::open(&path).and_then(|f| f.read_exact_at(&mut table, at)).at(&path)?;
        Ok((name.clone(), GraphFile::decode(&name, h, &table)?))
    }

    /// The size of a file read per query (a segment or a vectors file), checked against the
    /// manifest, and its header page.
    fn sized_header_page(&self, name: &str) -> Result<(u64, Vec<u8>)> {
        let e = self.entry(name)?;
        let path = self.dir.join(name);
        let size = std::fs::metadata(&path).map_err(|err| missing_or_io(name, &path, err))?.len();
        if size != e.size.get() {
            return Err(size_mismatch(name, e.size.get(), size));
        }
        Ok((size, read_header_page(&path, name)?))
    }

    /// The file's header must carry the manifest's index id and the payload crc it recorded.
    fn check_owner(&self, name: &str, h: &FileHeader) -> Result<()> {
        let entry = self.entry(name)?;
        if h.index_id != self.manifest.index_id {
            return Err(Error::Corrupt {
                file: name.into(),
                reason: "belongs to a different index (index id differs from the manifest's)".into(),
            });
        }
        let crc = h.payload_crc.get();
        if crc != entry.crc.get() {
            return Err(Error::Corrupt {
                file: name.into(),
                reason: format!("payload crc {crc:#010x} differs from the manifest's {:#010x}", entry.crc.get()),
            });
        }
        Ok(())
    }
}

/// The first page of a segment (shorter if the file is).
pub(crate) fn read_header_page(path: &Path, name: &str) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|err| missing_or_io(name, path, err))?;
    let mut page = vec![0u8; PAGE as usize];
    let mut got = 0;
    while got < page.len() {
        match f.read_at(&mut page[got..], got as u64).at(path)? {
            0 => break,
            n => got += n,
        }
    }
    if got < HEADER_LEN {
        return Err(FormatError::Truncated {
            file: name.into(),
            what: "file header".into(),
            offset: 0,
            needed: HEADER_LEN as u64,
            available: got as u64,
        }
        .into());
    }
    page.truncate(got);
    Ok(page)
}

/// Makes each extent name its segment's place in `numbers` (the manifest's segment numbers,
/// ascending, each extent's among them: checked by [`Generation::directory`]).
pub(crate) fn renumber_segments(directory: &mut Directory, numbers: &[u32]) {
    for x in &mut directory.extents {
        let place = numbers.binary_search(&x.segment.get()).unwrap_or_else(|_| unreachable!("checked at open"));
        x.segment = (place as u32).into();
    }
    directory.n_segments = numbers.len() as u32;
}

/// An extent must lie inside its segment's extent area.
pub(crate) fn check_extent_bounds(i: usize, x: &Extent, seg_name: &str, seg_size: u64) -> Result<()> {
    let (off, len) = (x.offset.get(), x.length.get());
    if off < PAGE || off.checked_add(len).is_none_or(|end| end > seg_size) {
        return Err(Error::Corrupt {
            file: store::DIRECTORY.into(),
            reason: format!("extent {i} (offset {off}, length {len}) lies outside {seg_name} ({seg_size} bytes)"),
        });
    }
    Ok(())
}

/// A file the manifest names and the directory lacks is damage to the index, said as such.
pub(crate) fn missing_or_io(name: &str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::Corrupt {
            file: name.into(),
            reason: "is missing: the manifest names it but it is not in the directory".into(),
        }
    } else {
        Error::Io { path: path.to_owned(), source: e }
    }
}

/// A file whose size differs from the manifest's record: cut short, or written to since.
pub(crate) fn size_mismatch(name: &str, want: u64, got: u64) -> Error {
    if got < want {
        FormatError::Truncated {
            file: name.into(),
            what: "file (size recorded in the manifest)".into(),
            offset: 0,
            needed: want,
            available: got,
        }
        .into()
    } else {
        Error::Corrupt {
            file: name.into(),
            reason: format!("is {got} bytes, the manifest records {want}: it grew after the index was written"),
        }
    }
}
