//! Training on a seeded sample: coarse k-means and the HNSW over its centroids, then PQ on the
//! sample's residuals (each sample vector minus the centroid the HNSW assigns it to, exactly as
//! base vectors will be encoded).

use super::{prepare_rows, BuildOptions, Plan, Progress};
use crate::error::Result;
use crate::hnsw::HnswParams;
use crate::input::VectorSource;
use crate::ivf::{CoarseParams, CoarseQuantizer};
use crate::pq::ProductQuantizer;
use crate::rng::Rng;

/// faiss's PQ training: 25 k-means iterations per sub-quantizer.
const PQ_NITER: usize = 25;

pub(super) fn train(
    source: &dyn VectorSource,
    opts: &BuildOptions,
    plan: &Plan,
    train_size: usize,
    progress: &dyn Progress,
) -> Result<(CoarseQuantizer, ProductQuantizer)> {
    let (n, d) = (source.len(), source.dim());
    progress.begin("sample", train_size as u64);
    let mut sample = crate::error::try_vec(
        train_size.saturating_mul(d),
        || format!("the training sample ({train_size} × {d} float32)"),
        "lower --train-size",
    )?;
    if train_size == n {
        source.read_f32(0, n, &mut sample)?;
    } else {
        let rows = Rng::new(opts.seed).sample_indices(n, train_size);
        let mut i = 0;
        while i < rows.len() {
            let mut j = i + 1;
            while j < rows.len() && rows[j] == rows[j - 1] + 1 {
                j += 1;
            }
            source.read_f32(rows[i], j - i, &mut sample)?;
            progress.advance((j - i) as u64);
            i = j;
        }
    }
    progress.end();
    prepare_rows(opts.metric, &mut sample, d);

    progress.begin("train coarse quantizer (k-means + HNSW)", 0);
    let cp = CoarseParams {
        nlist: plan.nlist,
        niter: opts.niter,
        hnsw: HnswParams { m: plan.hnsw_m, ef_construction: opts.ef_construction, seed: opts.seed.wrapping_add(1) },
        seed: opts.seed.wrapping_add(2),
    };
    let coarse = CoarseQuantizer::train(&sample, d, opts.metric, &cp)?;
    progress.end();

    progress.begin("train PQ on residuals", 0);
    let lists = coarse.assign_batch(&sample, opts.ef_search);
    coarse.to_residuals(&mut sample, &lists);
    let mut pq = ProductQuantizer::new(d, plan.pq_m)?;
    pq.train(&sample, PQ_NITER, opts.seed.wrapping_add(3))?;
    progress.end();
    Ok((coarse, pq))
}
