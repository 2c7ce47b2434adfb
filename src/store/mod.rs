//! The index directory: its file names, finding the generation to open, and the staging area
//! and commit of a build. Every path of an index is named here, so later layouts (generations
//! that add segments, deletions, compaction) change this seam rather than its callers.
//!
//! ```text
//! MANIFEST-000001   commit point, written last and atomically (one per generation; a
//!                   reader holds a shared flock on the one it reads)
//! LOCK              the writer's flock (held while a build, add, delete or compact runs)
//! quantizer.qvq     centroids + HNSW graph      (RAM-resident)
//! codebooks.qvc     PQ codebooks                (RAM-resident)
//! lists.qvd         list directory: extents     (RAM-resident; lists-NNNNNN.qvd after
//!                   generation 1)
//! deleted-NNNNNN.qvx the deletion set of generation NNNNNN (RAM-resident)
//! seg-000000.qvs    segment files: extents of PQ codes + ids, read per query
//! .build-tmp/       staging area of a build in progress: build.qvb, the trained
//!                   quantizer.qvq and codebooks.qvc, sorted runs run-*.qvr (checkpoints)
//! .write-tmp/       scratch of an add or a compaction (sorted runs)
//! ```

mod compaction;
mod gc;
mod lock;
mod names;
mod open;
mod snapshot;
mod staging;

pub use compaction::{plan as plan_compaction, CompactionPlan};
pub use gc::{collect_garbage, next_generation, publish, Garbage};
pub use lock::WriterLock;
pub use names::*;
pub use open::{manifest_generations, open_newest_manifest, read_manifest, SkippedManifest};
pub use snapshot::Snapshot;
pub use staging::{dir_state, DirState, Staging};

/// The format's view of a codec: its layout byte and bytes per vector.
pub(crate) fn code_layout(codec: &crate::codec::Codec) -> crate::format::CodeLayout {
    use crate::codec::CodeKind;
    use crate::format::CodeLayout;
    let code_size = codec.code_size() as u32;
    match codec.kind() {
        // Raw vectors sit in an extent as 8-bit codes do: row after row.
        CodeKind::Pq8 | CodeKind::Flat => CodeLayout::RowMajor { code_size },
        CodeKind::Pq4FastScan => CodeLayout::Blocks32 { code_size },
    }
}
