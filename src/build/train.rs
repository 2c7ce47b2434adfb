//! Training on a seeded sample: coarse k-means (flat, or two-level for large nlist), the HNSW
//! over its centroids, then PQ on residuals (sample vectors minus the centroid the HNSW assigns
//! them to, exactly as base vectors will be encoded).
//!
//! The sample is drawn without holding the input (sorted row numbers, read range by range) and
//! kept in the input's element type: a uint8 input gives a uint8 sample, a quarter of the
//! memory of float32.

use std::time::Instant;

use super::{prepare_rows, BuildOptions, Plan, Progress};
use crate::error::{try_vec, Result};
use crate::hnsw::{Hnsw, HnswParams, Points};
use crate::input::{Elem, VectorSource};
use crate::ivf::CoarseQuantizer;
use crate::kmeans::{self, Element, KMeansParams, TwoLevelParams};
use crate::pq::ProductQuantizer;
use crate::rng::Rng;

/// faiss's PQ training: 25 k-means iterations per sub-quantizer.
pub(super) const PQ_NITER: usize = 25;

/// The sample, in the input's element type.
enum Sample {
    F32(Vec<f32>),
    U8(Vec<u8>),
    I8(Vec<i8>),
}

pub(super) struct Trained {
    pub coarse: CoarseQuantizer,
    /// None for raw vectors (`…,Flat`).
    pub pq: Option<ProductQuantizer>,
    pub sample_s: f64,
    pub kmeans_s: f64,
    pub hnsw_s: f64,
    pub pq_s: f64,
}

/// `k` sorted row numbers of `0..n`, drawn with the seed (selection sampling: one pass, no
/// set, memory for the result only).
fn sorted_sample(n: usize, k: usize, seed: u64) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(k);
    for i in 0..n {
        let (need, left) = ((k - out.len()) as u64, (n - i) as u64);
        if rng.below(left) < need {
            out.push(i);
            if out.len() == k {
                break;
            }
        }
    }
    out
}

/// Calls `read(start, count)` for each run of consecutive rows in `rows` (sorted).
fn for_runs(rows: &[usize], mut read: impl FnMut(usize, usize) -> Result<()>) -> Result<()> {
    let mut i = 0;
    while i < rows.len() {
        let mut j = i + 1;
        while j < rows.len() && rows[j] == rows[j - 1] + 1 {
            j += 1;
        }
        read(rows[i], j - i)?;
        i = j;
    }
    Ok(())
}

/// Appends rows `start..start + count` of the input to a buffer.
type ReadRows<'a, T> = dyn Fn(usize, usize, &mut Vec<T>) -> Result<()> + Sync + 'a;

/// Reads rows `idx` (sorted) into `out` (idx.len() × d values), in parallel over pieces of
/// `idx`, each piece writing its own part of `out`: the result does not depend on the threads.
fn read_rows<T: Copy + Send + Default>(
    idx: &[usize],
    d: usize,
    out: &mut [T],
    read: &ReadRows<T>,
    progress: &dyn Progress,
) -> Result<()> {
    use rayon::prelude::*;
    const PIECE: usize = 4096;
    out.par_chunks_mut(PIECE * d).zip(idx.par_chunks(PIECE)).try_for_each(|(dst, rows)| {
        let mut buf = Vec::with_capacity(rows.len() * d);
        for_runs(rows, |start, count| read(start, count, &mut buf))?;
        dst.copy_from_slice(&buf);
        progress.advance(rows.len() as u64);
        Ok(())
    })
}

fn draw_sample(source: &dyn VectorSource, opts: &BuildOptions, rows: usize, progress: &dyn Progress) -> Result<Sample> {
    let (n, d) = (source.len(), source.dim());
    let idx = sorted_sample(n, rows, opts.seed);
    progress.begin("sample", rows as u64);
    let bytes = super::sample_keeps_bytes(source, opts.metric);
    let what = || format!("the training sample ({rows} × {d})");
    let sample = if bytes {
        let mut b: Vec<u8> = try_vec(rows * d, what, "lower --train-size or --memory")?;
        b.resize(rows * d, 0);
        read_rows(&idx, d, &mut b, &|s, c, out| Ok(source.read_bytes(s, c, out)?), progress)?;
        if source.elem() == Elem::I8 {
            Sample::I8(b.into_iter().map(|v| v as i8).collect())
        } else {
            Sample::U8(b)
        }
    } else {
        let mut x: Vec<f32> = try_vec(rows * d, what, "lower --train-size or --memory")?;
        x.resize(rows * d, 0.0);
        read_rows(&idx, d, &mut x, &|s, c, out| Ok(source.read_f32(s, c, out)?), progress)?;
        prepare_rows(opts.metric, &mut x, d);
        Sample::F32(x)
    };
    progress.end();
    Ok(sample)
}

fn centroids<T: Element>(
    x: &[T],
    d: usize,
    nlist: usize,
    km: &KMeansParams,
    two_level: bool,
    progress: &dyn Progress,
) -> Result<Vec<f32>> {
    if two_level {
        let k1 = (nlist as f64).sqrt().round().max(1.0) as u64;
        let p = TwoLevelParams { kmeans: km.clone(), ..Default::default() };
        progress.begin(
            &format!("k-means, two-level ({k1} cells, then {} refinement iterations)", p.refine_iters),
            k1 + p.refine_iters as u64,
        );
        let last = std::sync::atomic::AtomicU64::new(0);
        let c = kmeans::train_two_level(x, d, nlist, &p, &|done, _| {
            let prev = last.fetch_max(done as u64, std::sync::atomic::Ordering::Relaxed);
            if done as u64 > prev {
                progress.advance(done as u64 - prev);
            }
        })?;
        progress.end();
        Ok(c)
    } else {
        progress.begin(&format!("k-means, flat ({nlist} centroids)"), km.niter as u64);
        let c = kmeans::train_with(x, d, nlist, km, &|_| progress.advance(1))?;
        progress.end();
        Ok(c)
    }
}

/// Rows `idx` of the sample as f32.
fn rows_f32(sample: &Sample, d: usize, idx: &[usize]) -> Vec<f32> {
    fn pick<T: Element>(x: &[T], d: usize, idx: &[usize]) -> Vec<f32> {
        idx.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().map(|v| v.to_f32())).collect()
    }
    match sample {
        Sample::F32(x) => pick(x, d, idx),
        Sample::U8(x) => pick(x, d, idx),
        Sample::I8(x) => pick(x, d, idx),
    }
}

pub(super) fn train(
    source: &dyn VectorSource,
    opts: &BuildOptions,
    plan: &Plan,
    train_size: usize,
    progress: &dyn Progress,
) -> Result<Trained> {
    let d = source.dim();
    let t = Instant::now();
    let sample = draw_sample(source, opts, train_size, progress)?;
    let sample_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let metric = opts.metric.kernel();
    let km = KMeansParams {
        niter: opts.niter,
        max_points_per_centroid: 256,
        spherical: metric == crate::distance::Metric::InnerProduct,
        seed: opts.seed.wrapping_add(2),
    };
    let two_level = plan.two_level(opts.kmeans);
    let centroids = match &sample {
        Sample::F32(x) => centroids(x, d, plan.nlist, &km, two_level, progress)?,
        Sample::U8(x) => centroids(x, d, plan.nlist, &km, two_level, progress)?,
        Sample::I8(x) => centroids(x, d, plan.nlist, &km, two_level, progress)?,
    };
    let kmeans_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    progress.begin("HNSW over the centroids", plan.nlist as u64);
    let hp = HnswParams { m: plan.hnsw_m, ef_construction: opts.ef_construction, seed: opts.seed.wrapping_add(1) };
    let last = std::sync::atomic::AtomicU64::new(0);
    let hnsw = Hnsw::build_with(&Points { data: &centroids, d, metric }, &hp, &|done| {
        let prev = last.swap(done as u64, std::sync::atomic::Ordering::Relaxed);
        progress.advance((done as u64).saturating_sub(prev));
    });
    progress.end();
    // Lists numbered in a walk of the graph, so that the lists a query probes (near each
    // other) lie near each other in the segments and their reads coalesce: on the 1M
    // synthetic set at nprobe 64, 63.1 reads a query become 40.7 (benches/README.md).
    let order = hnsw.locality_order(|a, b| {
        let (a, b) = (a as usize * d, b as usize * d);
        crate::distance::l2_sqr(&centroids[a..a + d], &centroids[b..b + d])
    });
    let mut new_of_old = vec![0u32; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_of_old[old as usize] = new as u32;
    }
    let hnsw = hnsw.relabel(&new_of_old);
    let centroids: Vec<f32> =
        order.iter().flat_map(|&old| &centroids[old as usize * d..(old as usize + 1) * d]).copied().collect();
    let coarse = CoarseQuantizer::new(d, metric, centroids, hnsw);
    let hnsw_s = t.elapsed().as_secs_f64();

    if plan.flat {
        return Ok(Trained { coarse, pq: None, sample_s, kmeans_s, hnsw_s, pq_s: 0.0 });
    }
    // PQ on a seeded subset of the sample (k-means would use no more): on its residuals from
    // their lists' centroids, or on the rows themselves for codes of raw vectors.
    let t = Instant::now();
    progress.begin(&format!("train PQ ({} sub-quantizers)", plan.pq_m), plan.pq_m as u64);
    let rows = train_size.min(super::budget::PQ_TRAIN_ROWS);
    let mut idx = Rng::new(opts.seed.wrapping_add(4)).sample_indices(train_size, rows);
    idx.sort_unstable();
    let mut x = rows_f32(&sample, d, &idx);
    drop(sample);
    if plan.by_residual {
        let lists = coarse.assign_batch(&x, opts.ef_search);
        coarse.to_residuals(&mut x, &lists);
    }
    let mut pq = ProductQuantizer::with_nbits(d, plan.pq_m, plan.pq_nbits)?;
    pq.train_with(&x, PQ_NITER, opts.seed.wrapping_add(3), &|| progress.advance(1))?;
    progress.end();
    let pq_s = t.elapsed().as_secs_f64();
    Ok(Trained { coarse, pq: Some(pq), sample_s, kmeans_s, hnsw_s, pq_s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_sample_is_sorted_distinct_and_seeded() {
        let s = sorted_sample(1000, 100, 7);
        assert_eq!(s.len(), 100);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s, sorted_sample(1000, 100, 7));
        assert_ne!(s, sorted_sample(1000, 100, 8));
        assert_eq!(sorted_sample(5, 9, 1), vec![0, 1, 2, 3, 4]);
    }
}
