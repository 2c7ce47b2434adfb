//! Shared fixtures: seeded generated data, brute-force ground truth, recall, and helpers to
//! damage an index on purpose.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use quiver::{build_index, BuildOptions, ExactKnn, Metric, NoProgress, SliceSource, Synthetic};

/// `n` base rows and `nq` query rows of synthetic `d`-dimensional data.
pub fn synthetic(n: usize, nq: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let g = Synthetic::new(d, seed);
    let (mut base, mut q) = (Vec::new(), Vec::new());
    g.rows(0, n, &mut base);
    g.rows(n as u64, nq, &mut q);
    (base, q)
}

/// Exact top-k ids of every query.
pub fn ground_truth(base: &[f32], queries: &[f32], d: usize, k: usize, metric: Metric) -> Vec<Vec<u64>> {
    let mut e = ExactKnn::new(queries, d, k, metric);
    e.add(base, 0);
    e.finish().into_iter().map(|v| v.into_iter().map(|n| n.id).collect()).collect()
}

/// k-recall@k: mean |found top-k ∩ true top-k| / k.
pub fn recall_at(ids: &[i64], k_res: usize, gt: &[Vec<u64>], k: usize) -> f64 {
    let mut hits = 0usize;
    for (q, truth) in gt.iter().enumerate() {
        let row = &ids[q * k_res..q * k_res + k];
        hits += row.iter().filter(|&&id| id >= 0 && truth[..k].contains(&(id as u64))).count();
    }
    hits as f64 / (gt.len() * k) as f64
}

/// Builds, then checks that the index's own `verify` finds it sound: a build must never
/// report success for an index its reader rejects.
pub fn build_slice(data: &[f32], d: usize, dir: &Path, opts: &BuildOptions) -> quiver::BuildReport {
    let r = build_index(&SliceSource { data, dim: d }, dir, opts, &NoProgress).expect("build");
    let v = quiver::verify_index(dir).expect("verify");
    assert!(v.is_ok(), "the build wrote an index its verify rejects: {:?}", v.faults);
    r
}

pub fn opts(factory: &str, metric: Metric) -> BuildOptions {
    BuildOptions { factory: factory.into(), metric, seed: 7, ..Default::default() }
}

/// `../shared/data/<name>` if present (it is in CI, not in a user's fresh clone).
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(name);
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("SKIPPED: ../shared/data/{name} is not present (it ships with the project's CI machine, not with the repository)");
        None
    }
}

pub fn segment_path(dir: &Path) -> PathBuf {
    dir.join("seg-000000.qvs")
}

/// XORs one byte of a file.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

/// The ids and vectors of dimension `D` an index should hold, searched by brute force.
#[derive(Clone, Default)]
pub struct Model<const D: usize> {
    pub rows: Vec<(u64, Vec<f32>)>,
}

impl<const D: usize> Model<D> {
    pub fn add(&mut self, ids: impl IntoIterator<Item = u64>, data: &[f32]) {
        self.rows.extend(ids.into_iter().zip(data.chunks(D).map(<[f32]>::to_vec)));
    }

    pub fn delete(&mut self, ids: &[u64]) {
        self.rows.retain(|(id, _)| !ids.contains(id));
    }

    /// Exact k nearest ids of `q` (L2), ties by id, -1 past the end.
    pub fn search(&self, q: &[f32], k: usize) -> Vec<i64> {
        let mut d: Vec<(f32, u64)> =
            self.rows.iter().map(|(id, v)| (v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), *id)).collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<i64> = d.iter().take(k).map(|x| x.1 as i64).collect();
        out.resize(k, -1);
        out
    }
}
