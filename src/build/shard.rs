//! A build fanned out over processes or machines (quiver.ray.build): the driver trains once
//! ([`train_index`]: generation 1 holds the quantizer and codebooks and no vectors), each
//! worker encodes its shard into segments of its own under `.shards/<n>/` of the shared index
//! directory ([`prepare_shard`], no lock: shards write disjoint files), and the driver commits
//! them all as one generation ([`commit_shards`]): the segments are renamed into the index, each
//! list's extents from every shard appended, so no byte is copied. With ids numbered from each
//! shard's first row in the concatenated input, the index answers as one built from the
//! concatenation with the same seed (same training sample, same codes; only the extents differ).

use std::path::{Path, PathBuf};

use super::change::ChangeOptions;
use super::head::{ChangeReport, Head};
use super::merge::{self, IdMap, MergeParams};
use super::{checkpoint, index_id, params, refine_elem, spill, train, BuildOptions, Progress, RefineElem};
use crate::error::{Error, IoContext, Result};
use crate::format::{self, Directory, FileKind, Manifest, ManifestBody};
use crate::input::{Elem, VectorSource};
use crate::io::durable;
use crate::search::open::Generation;
use crate::store;

/// A prepared shard's record: a manifest naming its segments, its list directory beside it.
const FRAGMENT: &str = "FRAGMENT";

/// Trains the quantizer and codebooks of `opts.factory` on a sample of `source` (as a build of
/// all of `source` would, with the same seed) and commits generation 1 of an index in `dir`
/// holding no vectors yet. IVF kinds only.
pub fn train_index(source: &dyn VectorSource, dir: &Path, opts: &BuildOptions, progress: &dyn Progress) -> Result<()> {
    let (n, d) = (source.len(), source.dim());
    let (spec, plan, _) = opts.check_input(n, d)?;
    let mem = opts.memory_plan(source)?;
    let train_size = mem.train_rows;
    let refine = refine_elem(&plan, source.elem(), opts.metric, d);
    let id = index_id(opts, &spec, n, d);
    let mut staging = store::Staging::begin(dir)?;
    let area = staging.area();
    let t = train::train(source, opts, &plan, train_size, progress)?;
    checkpoint::save_trained(&area, id, t.coarse, t.pq.as_ref())?;
    staging.keep_on_failure();
    let mut files = vec![checkpoint::link_into_index(&area, dir, store::QUANTIZER, FileKind::Quantizer)?];
    if !plan.flat {
        files.push(checkpoint::link_into_index(&area, dir, store::CODEBOOKS, FileKind::Codebooks)?);
    }
    let layout = format::CodeLayout::from_code(
        if plan.flat {
            format::CODE_LAYOUT_FLAT
        } else if plan.pq_nbits == 4 {
            format::CODE_LAYOUT_PQ4FS
        } else {
            format::CODE_LAYOUT_PQ8
        },
        plan.code_size(d) as u32,
    )
    .unwrap_or(format::CodeLayout::RowMajor { code_size: plan.code_size(d) as u32 });
    let ids = if refine.is_some() { format::IdsPlace::WithVectors } else { format::IdsPlace::InExtent };
    let empty =
        Directory { n_segments: 0, layout, ntotal: 0, ids, list_starts: vec![0; plan.nlist + 1], extents: Vec::new() };
    files.push(super::write_directory(dir, id, &empty)?);
    durable::sync_dir(dir).at(dir)?;
    let mut p = params(opts, &spec, &plan, 0, d, train_size, refine);
    p.ntotal = 0.into();
    let mut body = ManifestBody::first(p);
    body.next_id = 0.into();
    let manifest = Manifest { index_id: id, body, files: files.into_iter().map(|f| f.written_by(1)).collect() };
    staging.commit(1, &manifest.encode(), || {})
}

/// Encodes `source` (ids `first_id` ..) with the trained index in `dir` into segments under
/// `dir/.shards/<shard>/`, without taking the writer's lock (each shard writes only there).
/// Returns that area, for [`commit_shards`].
pub fn prepare_shard(
    dir: &Path,
    source: &dyn VectorSource,
    first_id: u64,
    shard: u32,
    opts: &ChangeOptions,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    let (n, d) = (source.len(), source.dim());
    super::check_shape(n, d)?;
    let (manifest, name, _) = store::open_newest_manifest(dir)?;
    let g = Generation::new(dir, &manifest, &name);
    let info = g.info()?;
    if info.is_graph() {
        return Err(Error::Unsupported(format!("{} cannot be built in shards: IVF indexes can", info.factory)));
    }
    if d != info.dim {
        return Err(Error::InvalidParameter(format!(
            "shard {shard} has dimension {d}, the index holds {}-dimensional vectors",
            info.dim
        )));
    }
    let refine = match info.refine {
        Some(crate::RefineVectors::Uint8) if source.elem() != Elem::U8 => {
            return Err(Error::InvalidParameter(format!(
                "shard {shard}: this index keeps uint8 vectors; give uint8 input"
            )))
        }
        Some(kind) => Some(RefineElem { code: kind.code(), vector_bytes: kind.vector_bytes(d) }),
        None => None,
    };
    let coarse = g.quantizer(&info)?;
    let codec = if info.pq_m == 0 {
        crate::codec::Codec::flat(d, info.metric)
    } else {
        crate::codec::Codec::new(g.codebooks(&info)?)
    };
    let area = dir.join(store::SHARDS).join(shard.to_string());
    if area.exists() {
        std::fs::remove_dir_all(&area).at(&area)?;
    }
    let runs = area.join("runs");
    std::fs::create_dir_all(&runs).at(&runs)?;
    let record = codec.code_size() + refine.map_or(0, |r| r.vector_bytes);
    let mem = super::change::stream_budget(opts, n, d, &info, record)?;
    let bopts = BuildOptions { metric: info.metric, ef_search: info.ef_search, ..Default::default() };
    let target = spill::SpillTarget {
        dir: &runs,
        index_id: manifest.index_id,
        nlist: info.nlist,
        by_residual: info.by_residual,
        refine,
    };
    let spilled =
        spill::spill_runs(source, &coarse, &codec, &bopts, mem.chunk_rows, &[(0, n as u64)], &target, progress)?;
    let merged = merge::merge_runs(
        spilled,
        &MergeParams {
            ids: IdMap::From(first_id),
            ..MergeParams::new(
                manifest.index_id,
                &codec,
                (info.nlist, n as u64, opts.segment_bytes),
                &mem,
                refine.map(|r| r.shape(d)),
            )
        },
        &area,
        progress,
    )?;
    std::fs::remove_dir_all(&runs).at(&runs)?;
    let mut files = merged.segment_files;
    files.push(super::write_directory(&area, manifest.index_id, &merged.directory)?);
    let mut body = manifest.body;
    body.params.ntotal = (n as u64).into();
    body.next_id = (first_id + n as u64).into();
    body.generation = 0.into();
    let fragment = Manifest { index_id: manifest.index_id, body, files };
    durable::write_atomic(&area, FRAGMENT, &fragment.encode()).at(&area)?;
    Ok(area)
}

/// Commits the shards prepared in `areas` as one new generation of `dir` (under the writer's
/// lock): their segments are renamed into the index with fresh numbers and each list gets
/// their extents, shard after shard. Shards' id ranges must not overlap each other or the
/// index's. The areas are removed once committed.
pub fn commit_shards(dir: &Path, areas: &[PathBuf]) -> Result<ChangeReport> {
    let head = Head::open(dir, "shards")?;
    let mut next = head.next_segment()?;
    let mut directory = head.directory.clone();
    let (mut written, mut added, mut next_id) = (Vec::new(), 0u64, head.info.next_id);
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for area in areas {
        let fname = area.join(FRAGMENT).display().to_string();
        let fragment = Manifest::decode(&fname, &std::fs::read(area.join(FRAGMENT)).at(area)?)?;
        if fragment.index_id != head.manifest.index_id {
            return Err(Error::Corrupt { file: fname, reason: "was prepared for another index".into() });
        }
        let n = fragment.body.params.ntotal.get();
        let end = fragment.body.next_id.get();
        let first = end.saturating_sub(n);
        if first < head.info.next_id || ranges.iter().any(|&(a, b)| first < b && a < end) {
            return Err(Error::InvalidParameter(format!(
                "{}: ids {first} .. {end} overlap the index's or another shard's",
                area.display()
            )));
        }
        ranges.push((first, end));
        let dname = store::DIRECTORY;
        let (part, _) = Directory::decode(dname, &std::fs::read(area.join(dname)).at(area)?, directory.layout)?;
        let mut renumber = std::collections::HashMap::new();
        for f in fragment.files.iter().filter(|f| f.kind.get() == FileKind::Segment as u32) {
            let Some(old) = store::file_number(&f.name()) else { continue };
            renumber.insert(old, next);
            for (from, to, kind) in [
                (store::segment_name(old), store::segment_name(next), FileKind::Segment),
                (store::vectors_name(old), store::vectors_name(next), FileKind::Vectors),
            ] {
                let Some(entry) = fragment.files.iter().find(|e| e.name() == from) else { continue };
                let target = dir.join(&to);
                std::fs::rename(area.join(&from), &target).at(target)?;
                written.push(format::FileEntry::new(&to, kind, entry.size.get(), entry.crc.get()));
            }
            next += 1;
        }
        let mut part = part;
        for x in &mut part.extents {
            x.segment = renumber.get(&x.segment.get()).copied().unwrap_or(u32::MAX).into();
        }
        directory = super::change::append_extents(&directory, &part);
        added += n;
        next_id = next_id.max(end);
    }
    let deletions = head.deletions.clone();
    let ntotal = head.info.ntotal + added;
    let (g, garbage) = head.commit(written, directory, deletions, next_id)?;
    for area in areas {
        let _ = std::fs::remove_dir_all(area);
    }
    let shards = dir.join(store::SHARDS);
    if std::fs::read_dir(&shards).is_ok_and(|mut d| d.next().is_none()) {
        let _ = std::fs::remove_dir(&shards);
    }
    Ok(ChangeReport {
        generation: Some(g),
        vectors: added,
        ntotal,
        files_removed: garbage.removed.len(),
        bytes_removed: garbage.bytes,
        ..Default::default()
    })
}
