//! File names of an index directory, in one place: every module that names a file asks here.

pub const QUANTIZER: &str = "quantizer.qvq";
pub const CODEBOOKS: &str = "codebooks.qvc";
/// The list directory of generation 1 (a build); later generations name theirs
/// [`directory_name`].
pub const DIRECTORY: &str = "lists.qvd";
/// `HNSW{M},Flat`: the graph over every vector, and the vectors in id order.
pub const GRAPH: &str = "graph.qvg";
pub const FLAT_VECTORS: &str = "vectors.qvv";
/// `HNSW{M}_PQ{m}`: the PQ codes in id order (a vectors file of m-byte rows), beside the
/// graph and `codebooks.qvc`.
pub const CODES: &str = "codes.qvv";
/// The staging area of a build in progress (its build state, the trained quantizer and
/// codebooks, and by default its sorted runs), inside the index directory; removed after the
/// build commits, kept after a failure once it holds a checkpoint (for `--resume`).
pub const STAGING: &str = ".build-tmp";

/// The scratch area of `add` and `compact` (sorted runs); removed when they finish, and by the
/// next writer if a killed one left it.
pub const WRITE_STAGING: &str = ".write-tmp";

/// Where the shards of a build fanned out over processes prepare their segments
/// (`.shards/<n>/`), until the driver commits them into the index. No writer's clean-up
/// touches it: shards may be running.
pub const SHARDS: &str = ".shards";

/// The writer's lock file ([`super::WriterLock`]): no part of the index, never removed.
pub const LOCK: &str = "LOCK";

pub fn manifest_name(generation: u64) -> String {
    format!("MANIFEST-{generation:06}")
}

/// The generation a manifest's file name carries (`MANIFEST-<digits>`), if it is one.
pub fn parse_manifest_name(name: &str) -> Option<u64> {
    name.strip_prefix("MANIFEST-").filter(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()))?.parse().ok()
}

pub fn segment_name(n: u32) -> String {
    format!("seg-{n:06}.qvs")
}

/// Whether `name` is a segment file name (`seg-<digits>.qvs`).
pub fn is_segment_name(name: &str) -> bool {
    is_numbered(name, "seg-", ".qvs")
}

/// Whether `name` is `prefix`, decimal digits, `suffix`.
fn is_numbered(name: &str, prefix: &str, suffix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|r| r.strip_suffix(suffix))
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The vectors file beside segment `n` (`,RFlat` indexes).
pub fn vectors_name(n: u32) -> String {
    format!("vec-{n:06}.qvv")
}

/// Whether `name` is a vectors file name (`vec-<digits>.qvv`).
pub fn is_vectors_name(name: &str) -> bool {
    is_numbered(name, "vec-", ".qvv")
}

/// The build state in the staging area: the first file a build writes.
pub const BUILD_STATE: &str = "build.qvb";

/// Whether `name` is a file of an index: one a manifest may name.
pub fn is_index_file(name: &str) -> bool {
    name == QUANTIZER
        || name == CODEBOOKS
        || name == GRAPH
        || name == FLAT_VECTORS
        || name == CODES
        || is_directory_name(name)
        || is_deletions_name(name)
        || is_segment_name(name)
        || is_vectors_name(name)
}

/// Whether `name` is a manifest being written (`.MANIFEST-<g>.tmp`).
pub fn is_manifest_temporary(name: &str) -> bool {
    name.starts_with(".MANIFEST-") && name.ends_with(".tmp")
}

/// The list directory of generation `g`: `lists.qvd` for a build's generation 1, else
/// `lists-<g>.qvd`.
pub fn directory_name(g: u64) -> String {
    if g <= 1 {
        DIRECTORY.to_string()
    } else {
        format!("lists-{g:06}.qvd")
    }
}

/// Whether `name` is a list directory's name.
pub fn is_directory_name(name: &str) -> bool {
    name == DIRECTORY || is_numbered(name, "lists-", ".qvd")
}

/// The deletion set generation `g` writes (format 1.4).
pub fn deletions_name(g: u64) -> String {
    format!("deleted-{g:06}.qvx")
}

/// Whether `name` is a deletion set's name.
pub fn is_deletions_name(name: &str) -> bool {
    is_numbered(name, "deleted-", ".qvx")
}

/// The number a segment or vectors file name carries.
pub fn file_number(name: &str) -> Option<u32> {
    let digits = name
        .strip_prefix("seg-")
        .and_then(|r| r.strip_suffix(".qvs"))
        .or_else(|| name.strip_prefix("vec-").and_then(|r| r.strip_suffix(".qvv")))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(file_number(&segment_name(7)), Some(7));
        assert_eq!(file_number(&vectors_name(1_234_567)), Some(1_234_567));
        assert_eq!(file_number("seg-.qvs"), None);
        assert_eq!(file_number("seg-12a.qvs"), None);
        assert_eq!(directory_name(1), DIRECTORY);
        assert!(is_directory_name(&directory_name(12)) && is_directory_name(DIRECTORY));
        assert!(is_deletions_name(&deletions_name(3)) && !is_deletions_name("deleted-.qvx"));
        assert_eq!(parse_manifest_name(&manifest_name(42)), Some(42));
    }
}
