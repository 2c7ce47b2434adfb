//! `add`, `delete` and `compact`: each commits one new generation of an IVF index; searches
//! already running keep their generation, `search` and `serve` started later see the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use quiver::{human_bytes, ChangeOptions, ChangeReport, VectorFiles};
use serde_json::json;

use super::{pool, CmdResult};
use crate::args::{self, usage};
use crate::progress::Reporter;

#[derive(clap::Args)]
pub struct AddArgs {
    /// Index directory (an IVF index: 8-bit PQ, fast-scan, ,Flat or ,RFlat).
    #[arg(long)]
    index: PathBuf,
    /// Vectors to add (.fvecs .bvecs .fbin .u8bin .i8bin .npy), of the index's dimension.
    /// An index that keeps uint8 full vectors (built from uint8 input with ,RFlat) takes
    /// uint8 input only.
    #[arg(long, num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    /// Their ids, one per vector in input order (.ivecs, .ibin or .npy of int32 or int64),
    /// none live in the index and none twice (a deleted id may come back) [default: one past
    /// the largest id the index ever assigned, counting up].
    #[arg(long, value_name = "FILE")]
    ids: Option<PathBuf>,
    /// Hard bound on peak memory, as for build (512MiB, 2GiB, ...) [default: half of this
    /// machine's memory].
    #[arg(long, value_parser = args::size)]
    memory: Option<u64>,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0, value_parser = args::threads)]
    threads: usize,
    /// One JSON object on stdout: index, generation, added, ntotal, files_removed,
    /// bytes_removed, memory_budget, peak_rss_bytes (the kernel's high-water mark).
    #[arg(long)]
    json: bool,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// Index directory (an IVF index).
    #[arg(long)]
    index: PathBuf,
    /// Ids to delete (.ivecs, .ibin or .npy of int32 or int64, any shape; -1 entries are
    /// ignored). Ids not in the index are counted, not an error.
    #[arg(long, value_name = "FILE")]
    ids: PathBuf,
    /// One JSON object on stdout: index, generation (null when nothing was deleted), deleted,
    /// not_found, ntotal, files_removed, bytes_removed.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct CompactArgs {
    /// Index directory (an IVF index). Lists with more than one extent or any deleted entry
    /// are rewritten into one extent each; files no generation in use names are removed.
    #[arg(long)]
    index: PathBuf,
    /// Hard bound on peak memory [default: half of this machine's memory].
    #[arg(long, value_parser = args::size)]
    memory: Option<u64>,
    /// One JSON object on stdout: index, generation (null when there was nothing to
    /// compact), lists_rewritten, dropped, ntotal, files_removed, bytes_removed.
    #[arg(long)]
    json: bool,
}

/// The ids of a file, as int64.
fn read_ids(flag: &str, path: &Path) -> Result<Vec<i64>, Box<dyn std::error::Error>> {
    quiver::VectorFile::open(path).and_then(|f| f.read_all_i64()).map_err(|e| args::flag_error(flag, e))
}

fn removed(r: &ChangeReport) -> String {
    if r.files_removed == 0 {
        String::new()
    } else {
        format!("; removed {} unused files ({})", r.files_removed, human_bytes(r.bytes_removed))
    }
}

pub fn add(a: AddArgs, out: &mut dyn Write) -> CmdResult {
    let input = VectorFiles::open(&a.input)?;
    let ids = a.ids.as_deref().map(|p| read_ids("--ids", p)).transpose()?;
    if let Some(ids) = &ids {
        if ids.len() != quiver::VectorSource::len(&input) {
            return usage(format!(
                "--ids holds {} ids for {} vectors: give exactly one per vector",
                ids.len(),
                quiver::VectorSource::len(&input)
            ));
        }
    }
    let opts = ChangeOptions { memory_budget: a.memory, ..Default::default() };
    let progress = Reporter::new(a.quiet || a.json);
    let r = pool(a.threads)?.install(|| quiver::add_vectors(&a.index, &input, ids.as_deref(), &opts, &progress))?;
    if a.json {
        let j = json!({
            "index": a.index, "generation": r.generation, "added": r.vectors, "ntotal": r.ntotal,
            "files_removed": r.files_removed, "bytes_removed": r.bytes_removed,
            "memory_budget": a.memory, "peak_rss_bytes": super::build::peak_rss_bytes(),
        });
        writeln!(out, "{j}")?;
    } else {
        writeln!(
            out,
            "added {} vectors to {}: generation {}, {} vectors{}",
            r.vectors,
            a.index.display(),
            r.generation.unwrap_or(0),
            r.ntotal,
            removed(&r)
        )?;
    }
    Ok(())
}

pub fn delete(a: DeleteArgs, out: &mut dyn Write) -> CmdResult {
    let ids: Vec<i64> = read_ids("--ids", &a.ids)?.into_iter().filter(|&i| i != -1).collect();
    if ids.is_empty() {
        return usage(format!("--ids {}: holds no ids", a.ids.display()));
    }
    let r = quiver::delete_ids(&a.index, &ids)?;
    if a.json {
        let j = json!({
            "index": a.index, "generation": r.generation, "deleted": r.vectors, "not_found": r.not_found,
            "ntotal": r.ntotal, "files_removed": r.files_removed, "bytes_removed": r.bytes_removed,
        });
        writeln!(out, "{j}")?;
    } else {
        match r.generation {
            Some(g) => writeln!(
                out,
                "deleted {} vectors from {} ({} of the ids were not in it): generation {g}, {} vectors{}",
                r.vectors,
                a.index.display(),
                r.not_found,
                r.ntotal,
                removed(&r)
            )?,
            None => writeln!(out, "none of the {} ids is in {}: nothing changed", r.not_found, a.index.display())?,
        }
    }
    Ok(())
}

pub fn compact(a: CompactArgs, out: &mut dyn Write) -> CmdResult {
    let opts = ChangeOptions { memory_budget: a.memory, ..Default::default() };
    let r = quiver::compact(&a.index, &opts)?;
    if a.json {
        let j = json!({
            "index": a.index, "generation": r.generation, "lists_rewritten": r.lists_rewritten,
            "dropped": r.vectors, "ntotal": r.ntotal, "files_removed": r.files_removed,
            "bytes_removed": r.bytes_removed,
        });
        writeln!(out, "{j}")?;
    } else {
        match r.generation {
            Some(g) => writeln!(
                out,
                "compacted {}: {} lists rewritten, {} deleted vectors dropped: generation {g}, {} vectors{}",
                a.index.display(),
                r.lists_rewritten,
                r.vectors,
                r.ntotal,
                removed(&r)
            )?,
            None => writeln!(out, "{}: nothing to compact{}", a.index.display(), removed(&r))?,
        }
    }
    Ok(())
}
