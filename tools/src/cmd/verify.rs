use std::io::Write;
use std::path::PathBuf;

use quiver::Index;

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Opening checks the manifest, headers, RAM-resident files and sizes; verify then reads every
/// segment byte. Exit status 1 and the first problem on stderr if anything is wrong.
pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    let r = Index::open(&a.index)?.verify()?;
    if a.json {
        writeln!(
            out,
            "{{\"ok\":true,\"files\":{},\"segments\":{},\"extents\":{},\"vectors\":{},\"bytes\":{}}}",
            r.files, r.segments, r.extents, r.vectors, r.bytes
        )?;
    } else {
        writeln!(
            out,
            "ok: {} files, {} segment(s), {} extents, {} vectors, {} bytes verified",
            r.files, r.segments, r.extents, r.vectors, r.bytes
        )?;
    }
    Ok(())
}
