//! The newest generation as a writer changes it (`add`, `delete`, `compact`): taken under the
//! writer's lock after clearing what earlier writers left, read extent by extent, and committed
//! as the next generation (format-spec/12-generations.md).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::codec::Codec;
use crate::error::{Error, IoContext, Result};
use crate::format::{
    self, Deleted, Deletions, Directory, Extent, ExtentView, FileEntry, FileKind, IdsPlace, Manifest, ManifestBody,
    VectorsFile, PAGE,
};
use crate::io::durable;
use crate::ivf::CoarseQuantizer;
use crate::search::open::Generation;
use crate::store::{self, Garbage, WriterLock};
use crate::topk::Tombstones;
use crate::{IndexInfo, RefineVectors};

/// What a change did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeReport {
    /// The generation committed (None when there was nothing to change).
    pub generation: Option<u64>,
    /// Vectors added, deleted, or dropped by a compaction.
    pub vectors: u64,
    /// Ids asked to be deleted that were not live in the index.
    pub not_found: u64,
    /// Lists a compaction rewrote.
    pub lists_rewritten: u64,
    /// Vectors a search can return after the change.
    pub ntotal: u64,
    /// Files removed after the commit (what older generations alone named, once no reader
    /// held them, and what killed writers left), and their bytes.
    pub files_removed: usize,
    pub bytes_removed: u64,
}

pub(super) struct Head {
    pub dir: PathBuf,
    pub lock: WriterLock,
    pub manifest: Manifest,
    pub info: IndexInfo,
    /// Extents name their segments' file numbers.
    pub directory: Directory,
    pub deletions: Deletions,
    /// The generation that wrote each extent's segment, by extent number.
    extent_generation: Vec<u32>,
}

impl Head {
    /// The newest generation of the index in `dir`, under the writer's lock, after removing
    /// what no generation names. `what` names the change for the refusal of a graph index.
    pub fn open(dir: &Path, what: &str) -> Result<Head> {
        // Missing directory, or not an index: said before a lock file is created in it.
        store::manifest_generations(dir)?;
        let lock = WriterLock::acquire(dir)?;
        store::collect_garbage(dir, &lock)?;
        let (manifest, name, _) = store::open_newest_manifest(dir)?;
        let g = Generation::new(dir, &manifest, &name);
        let info = g.info()?;
        if info.is_graph() {
            return Err(Error::Unsupported(format!(
                "{} is one graph over its vectors, which cannot take {what} yet; IVF indexes (8-bit PQ, fast-scan, ,Flat, ,RFlat) can",
                info.factory
            )));
        }
        let directory = g.directory(&info)?;
        let deletions = g.deletions()?;
        let extent_generation = g.extent_generations(&directory);
        Ok(Head { dir: dir.to_owned(), lock, manifest, info, directory, deletions, extent_generation })
    }

    fn generation(&self) -> Generation<'_> {
        Generation::new(&self.dir, &self.manifest, "the newest manifest")
    }

    pub fn coarse(&self) -> Result<CoarseQuantizer> {
        self.generation().quantizer(&self.info)
    }

    pub fn codec(&self) -> Result<Codec> {
        Ok(if self.info.pq_m == 0 {
            Codec::flat(self.info.dim, self.info.metric)
        } else {
            Codec::new(self.generation().codebooks(&self.info)?)
        })
    }

    /// The deleted entries as a search sees them, by extent number in the directory.
    pub fn tombstones(&self) -> Tombstones {
        let pairs = self.deletions.entries.iter().map(|e| (e.id.get(), e.generation.get())).collect();
        Tombstones::new(pairs, self.extent_generation.clone())
    }

    /// A number past every segment and vectors file named or present: new segments start
    /// here, so no name is ever reused.
    pub fn next_segment(&self) -> Result<u32> {
        let named = self.manifest.files.iter().filter_map(|f| store::file_number(&f.name()));
        let mut next = named.map(|n| n + 1).max().unwrap_or(0);
        for e in std::fs::read_dir(&self.dir).at(&self.dir)? {
            if let Some(n) = store::file_number(&e.at(&self.dir)?.file_name().to_string_lossy()) {
                next = next.max(n + 1);
            }
        }
        Ok(next)
    }

    /// Calls `each(list, extent number, extent, its bytes decoded)` for every extent in list
    /// order, each read and checksum-verified, with its ids (from the vectors file where they
    /// are kept there). One extent is in memory at a time.
    pub fn for_each_extent(&self, mut each: impl FnMut(usize, u32, &Extent, &ExtentView) -> Result<()>) -> Result<()> {
        let mut files: HashMap<u32, File> = HashMap::new();
        let mut apart = match (self.directory.ids, self.info.refine) {
            (IdsPlace::WithVectors, Some(kind)) => Some(VectorsAccess::new(self, kind)),
            _ => None,
        };
        let mut buf = Vec::new();
        let mut x = 0u32;
        for list in 0..self.directory.nlist() {
            for e in self.directory.extents_of(list) {
                let no = e.segment.get();
                let name = store::segment_name(no);
                let path = self.dir.join(&name);
                let f = match files.entry(no) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => v.insert(File::open(&path).at(&path)?),
                };
                buf.resize(e.length.get() as usize, 0);
                f.read_exact_at(&mut buf, e.offset.get()).at(&path)?;
                let view = format::decode_extent(&name, e, self.directory.shape(), &buf)?;
                match apart.as_mut() {
                    Some(v) => each(list, x, e, &view.with_ids(&v.ids(e)?))?,
                    None => each(list, x, e, &view)?,
                }
                x += 1;
            }
        }
        Ok(())
    }

    /// The live ids among `wanted` (ascending, distinct) with the list holding each, and the
    /// count of stored entries scanned.
    pub fn find_live(&self, wanted: &[u64]) -> Result<Vec<(u64, u32)>> {
        let hidden = self.tombstones();
        let mut found = Vec::new();
        self.for_each_extent(|list, x, _, view| {
            for id in view.ids() {
                if wanted.binary_search(&id).is_ok() && !hidden.hides(id, x) {
                    found.push((id, list as u32));
                }
            }
            Ok(())
        })?;
        found.sort_unstable();
        Ok(found)
    }

    /// Commits the next generation: `directory` (extents naming segment numbers), `deletions`,
    /// the new files `written` (segments and vectors files already fsynced), with `next_id`.
    /// Files of this generation that the new directory no longer uses are left out of it.
    /// Then removes what no generation a reader holds names.
    pub fn commit(
        self,
        written: Vec<FileEntry>,
        mut directory: Directory,
        deletions: Deletions,
        next_id: u64,
    ) -> Result<(u64, Garbage)> {
        let g = store::next_generation(&self.dir)?;
        let id = self.manifest.index_id;
        let used: std::collections::HashSet<u32> = directory.extents.iter().map(|x| x.segment.get()).collect();
        directory.n_segments = used.iter().map(|&n| n + 1).max().unwrap_or(0);
        directory.ntotal = directory.extents.iter().map(|x| x.count.get() as u64).sum();
        let mut files: Vec<FileEntry> = self
            .manifest
            .files
            .iter()
            .filter(|f| match FileKind::from_u32(f.kind.get()) {
                Some(FileKind::Quantizer | FileKind::Codebooks) => true,
                Some(FileKind::Segment | FileKind::Vectors) => {
                    store::file_number(&f.name()).is_some_and(|n| used.contains(&n))
                }
                _ => false,
            })
            .copied()
            .collect();
        let mut new = written;
        new.retain(|f| store::file_number(&f.name()).is_some_and(|n| used.contains(&n)));
        new.push(write_small(&self.dir, &store::directory_name(g), FileKind::Directory, &directory.encode(id))?);
        if !deletions.entries.is_empty() {
            let name = store::deletions_name(g);
            new.push(write_small(&self.dir, &name, FileKind::Deletions, &deletions.encode(id))?);
        }
        durable::sync_dir(&self.dir).at(&self.dir)?;
        files.extend(new.into_iter().map(|f| f.written_by(g)));
        let mut params = self.manifest.body.params;
        params.ntotal = directory.ntotal.into();
        let body = ManifestBody {
            generation: g.into(),
            params,
            n_files: 0.into(),
            next_id: next_id.into(),
            deleted: (deletions.entries.len() as u64).into(),
            reserved: [0; 4],
        };
        let manifest = Manifest { index_id: id, body, files };
        store::publish(&self.dir, &manifest, &self.lock)?;
        super::failpoint::hit("committed");
        let garbage = store::collect_garbage(&self.dir, &self.lock)?;
        Ok((g, garbage))
    }
}

/// Writes a RAM-resident file whole and fsyncs it; returns its manifest entry.
fn write_small(dir: &Path, name: &str, kind: FileKind, bytes: &[u8]) -> Result<FileEntry> {
    let path = dir.join(name);
    let f = File::create(&path).at(&path)?;
    f.write_all_at(bytes, 0).at(&path)?;
    durable::sync_file(&f).at(&path)?;
    let crc = format::FileHeader::decode(name, kind, bytes)?.payload_crc.get();
    Ok(FileEntry::new(name, kind, bytes.len() as u64, crc))
}

/// The deletion set with `more` entries deleted at generation `g` (the next one).
pub(super) fn with_deleted(old: &Deletions, more: &[(u64, u32)], g: u64) -> Deletions {
    let g = g.min(u32::MAX as u64) as u32;
    let mut entries = old.entries.clone();
    entries.extend(more.iter().map(|&(id, list)| Deleted::new(id, g, list)));
    Deletions::new(entries)
}

/// Ids as the library takes them (int64, as faiss's idx_t): each must be non-negative.
pub(super) fn check_ids(ids: &[i64]) -> Result<Vec<u64>> {
    match ids.iter().position(|&i| i < 0) {
        Some(p) => Err(Error::InvalidParameter(format!("id {} (row {p}) is negative: ids are 0 ..= 2^63 − 1", ids[p]))),
        None => Ok(ids.iter().map(|&i| i as u64).collect()),
    }
}

/// Reads extents' full vectors and ids from their segments' vectors files, each page checked
/// against the file's page table.
pub(super) struct VectorsAccess<'a> {
    head: &'a Head,
    kind: RefineVectors,
    files: HashMap<u32, (String, File, VectorsFile)>,
}

impl<'a> VectorsAccess<'a> {
    pub fn new(head: &'a Head, kind: RefineVectors) -> Self {
        VectorsAccess { head, kind, files: HashMap::new() }
    }

    /// The vectors file of segment `no`, opened and its header and page table checked once.
    fn file(&mut self, no: u32) -> Result<&(String, File, VectorsFile)> {
        let head = self.head;
        Ok(match self.files.entry(no) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let mname = store::manifest_name(head.manifest.body.generation.get());
                let g = Generation::new(&head.dir, &head.manifest, &mname);
                let (name, table) = g.vectors_file(no, &head.info, self.kind, head.directory.ids)?;
                let path = head.dir.join(&name);
                v.insert((name, File::open(&path).at(&path)?, table))
            }
        })
    }

    /// Data pages `first ..< first + n` of a vectors file (in `dir`), each checked.
    fn pages(dir: &Path, (name, file, table): &(String, File, VectorsFile), first: u64, n: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; (n * PAGE) as usize];
        let path = dir.join(name);
        file.read_exact_at(&mut buf, VectorsFile::page_offset(first)).at(&path)?;
        for (j, page) in buf.chunks_exact(PAGE as usize).enumerate() {
            table.check_page(name, first + j as u64, page)?;
        }
        Ok(buf)
    }

    /// Extent `e`'s full vectors, back to back (without the ids their records carry).
    pub fn vectors(&mut self, e: &Extent) -> Result<Vec<u8>> {
        let (head, vb) = (self.head, self.kind.vector_bytes(self.head.info.dim));
        let count = e.count.get() as u64;
        let f = self.file(e.segment.get())?;
        let rb = f.2.header.record_bytes();
        let buf = Self::pages(&head.dir, f, e.vectors_page.get() as u64, (count * rb).div_ceil(PAGE))?;
        Ok(buf.chunks_exact(rb as usize).take(count as usize).flat_map(|r| &r[..vb]).copied().collect())
    }

    /// Extent `e`'s ids (8 · count bytes) from its block in the vectors file, where the index
    /// keeps them there.
    pub fn ids(&mut self, e: &Extent) -> Result<Vec<u8>> {
        let head = self.head;
        let f = self.file(e.segment.get())?;
        let (first, len) = f.2.header.ids_block(e.vectors_page.get() as u64, e.count.get() as u64);
        let mut buf = Self::pages(&head.dir, f, first, len.div_ceil(PAGE))?;
        buf.truncate(len as usize);
        Ok(buf)
    }
}
