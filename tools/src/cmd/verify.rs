use std::io::Write;

use serde_json::json;

use super::CmdResult;
pub use super::IndexArgs as Args;

/// The verify found faults: exit status 1, after the report is printed.
#[derive(Debug)]
struct Unsound(usize);

impl std::fmt::Display for Unsound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the index is damaged ({} fault(s) above): rebuild it or restore it from a copy", self.0)
    }
}

impl std::error::Error for Unsound {}

/// Reads every byte of the index and checks everything the format spec states, reporting every
/// fault it finds (file, offset, what). Exit status 1 if there is any.
pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    let r = quiver::verify_index(&a.index)?;
    let total = r.faults.len() + r.faults_omitted as usize;
    if a.json {
        let faults: Vec<_> =
            r.faults.iter().map(|f| json!({"file": f.file, "offset": f.offset, "what": f.what})).collect();
        let report = json!({
            "ok": r.is_ok(),
            "generation": r.generation,
            "files": r.files,
            "segments": r.segments,
            "extents": r.extents,
            "vectors": r.vectors,
            "deleted": r.hidden,
            "bytes": r.bytes,
            "faults": faults,
            "faults_omitted": r.faults_omitted,
        });
        writeln!(out, "{report}")?;
    } else if r.is_ok() {
        writeln!(
            out,
            "ok: generation {}, {} files, {} segment(s), {} extents, {} vectors ({} of them deleted), {} bytes verified",
            r.generation.unwrap_or(0),
            r.files,
            r.segments,
            r.extents,
            r.vectors,
            r.hidden,
            r.bytes
        )?;
    } else {
        for f in &r.faults {
            writeln!(out, "fault: {f}")?;
        }
        if r.faults_omitted > 0 {
            writeln!(out, "fault: … and {} more", r.faults_omitted)?;
        }
        writeln!(
            out,
            "damaged: {total} fault(s); checked generation {}, {} segment(s), {} extents, {} vectors, {} bytes",
            r.generation.map_or("none (no manifest verifies)".to_string(), |g| g.to_string()),
            r.segments,
            r.extents,
            r.vectors,
            r.bytes
        )?;
    }
    if r.is_ok() {
        Ok(())
    } else {
        Err(Box::new(Unsound(total)))
    }
}
