use std::io::Write;

use quiver::Index;

use super::CmdResult;
pub use super::IndexArgs as Args;

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
