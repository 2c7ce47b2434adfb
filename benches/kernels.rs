//! Per-kernel throughput on seeded inputs: the loops build and search spend their time in.
//! Compare `adc_scan` with the machine's memory bandwidth (it streams code bytes) and
//! `nearest_l2` with faiss's k-means (BLAS sgemm) on the same shapes.
//!
//! cargo bench --bench kernels

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quiver::distance::amx::{self, Amx, Bf16Panel};
use quiver::distance::{self, Metric, NearestL2};
use quiver::hnsw::{Hnsw, HnswParams, Points};
use quiver::ivf::{CoarseQuantizer, ScreenScratch};
use quiver::pq::{scan_codes, LutBuilder, PrecomputedTables, ProductQuantizer};
use quiver::topk::TopK;
use quiver::Synthetic;

fn data(n: usize, d: usize) -> Vec<f32> {
    let mut v = Vec::new();
    Synthetic::new(d, 42).rows(0, n, &mut v);
    v
}

fn distances(c: &mut Criterion) {
    let mut g = c.benchmark_group("distance");
    for d in [64, 128, 384] {
        let x = data(2, d);
        g.throughput(Throughput::Elements(d as u64));
        g.bench_with_input(BenchmarkId::new("l2_sqr", d), &d, |b, _| b.iter(|| distance::l2_sqr(&x[..d], &x[d..])));
        g.bench_with_input(BenchmarkId::new("inner_product", d), &d, |b, _| {
            b.iter(|| distance::inner_product(&x[..d], &x[d..]))
        });
    }
    g.finish();
}

fn nearest(c: &mut Criterion) {
    let mut g = c.benchmark_group("nearest_l2");
    g.sample_size(10);
    for (k, d) in [(4096, 128), (256, 4), (1024, 384)] {
        let cents = data(k, d);
        let x = data(1024, d);
        let table = NearestL2::new(&cents, d);
        let mut out = vec![(0u32, 0f32); 1024];
        // Multiply-adds per call: 1024 rows x k centroids x d.
        g.throughput(Throughput::Elements((1024 * k * d) as u64));
        g.bench_function(format!("k{k}_d{d}"), |b| b.iter(|| table.search(&x, &mut out)));
    }
    g.finish();
}

fn adc(c: &mut Criterion) {
    let (d, m, n) = (128, 32, 20_000);
    let x = data(n, d);
    let mut pq = ProductQuantizer::new(d, m).unwrap();
    pq.train(&x[..5000 * d], 10, 1).unwrap();
    let mut codes = vec![0u8; n * m];
    pq.encode_batch(&x, &mut codes);
    let lut_builder = LutBuilder::new(&pq);
    let mut lut = vec![0f32; m * 256];
    let mut g = c.benchmark_group("adc");
    g.bench_function("lut_l2_m32_d128", |b| b.iter(|| lut_builder.compute(Metric::L2, &x[..d], &mut lut)));
    lut_builder.compute(Metric::L2, &x[..d], &mut lut);
    g.throughput(Throughput::Bytes((n * m) as u64));
    g.bench_function("scan_m32_20k_codes", |b| {
        b.iter(|| {
            let mut top = TopK::new(10);
            scan_codes(&lut, m, 0.0, None, &codes, |i| i as u64, &mut top);
            top.len()
        })
    });
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("encode_m32_20k", |b| b.iter(|| pq.encode_batch(&x, &mut codes)));
    g.finish();
}

/// A probed list's part of its L2 distances (‖r‖² + 2⟨c, r⟩ per sub-code), computed from its
/// centroid or read from faiss's precomputed tables (4,096 lists, so a list's part comes from
/// memory, not cache): which is cheaper depends on dsub, the multiply-adds per table entry.
fn list_tables(c: &mut Criterion) {
    let mut g = c.benchmark_group("list_table");
    for (d, m) in [(128, 32), (384, 48)] {
        let (x, nlist) = (data(5000, d), 4096);
        let mut pq = ProductQuantizer::new(d, m).unwrap();
        pq.train(&x, 4, 1).unwrap();
        let builder = LutBuilder::new(&pq);
        let centroids = data(nlist, d);
        let pre = PrecomputedTables::build(&pq, &builder, &centroids);
        let mut part = vec![0f32; m * 256];
        let mut list = 0usize;
        let dsub = d / m;
        g.bench_function(format!("computed_m{m}_dsub{dsub}"), |b| {
            b.iter(|| {
                list = (list + 2_654_435_761) % nlist;
                builder.list_part(&centroids[list * d..(list + 1) * d], &mut part)
            })
        });
        g.bench_function(format!("precomputed_m{m}_dsub{dsub}"), |b| {
            b.iter(|| {
                list = (list + 2_654_435_761) % nlist;
                part.copy_from_slice(pre.of(list))
            })
        });
    }
    g.finish();
}

/// The 4-bit fast-scan kernel against the 8-bit scan at the same 32 bytes per vector (PQ64x4fs
/// against PQ32), and the machine's memory read bandwidth as the ceiling of any scan.
fn fast_scan(c: &mut Criterion) {
    use quiver::pq::fastscan::{
        block_sums, block_sums_scalar, pack_blocks, scan_blocks, BlockScan, QuantizedLut, BLOCK,
    };
    let (n, m) = (20_000usize, 64usize);
    let mut r = quiver::Rng::new(5);
    let codes: Vec<u8> = (0..n * m / 2).map(|_| r.below(256) as u8).collect();
    let lut: Vec<f32> = (0..m * 16).map(|_| r.normal() as f32).collect();
    let q = QuantizedLut::new(&lut, m);
    let mut blocks = Vec::new();
    pack_blocks(&codes, m, &mut blocks);
    let mut sums = vec![0u16; n.div_ceil(BLOCK) * BLOCK];
    let mut g = c.benchmark_group("fast_scan");
    g.throughput(Throughput::Bytes(blocks.len() as u64));
    g.bench_function("block_sums_m64_20k", |b| b.iter(|| block_sums(&q, &blocks, &mut sums)));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        g.bench_function("block_sums_avx2_m64_20k", |b| {
            // SAFETY: the CPU reports AVX2.
            b.iter(|| unsafe { quiver::pq::fastscan::avx2::block_sums(&q, &blocks, &mut sums) })
        });
    }
    g.bench_function("block_sums_scalar_m64_20k", |b| b.iter(|| block_sums_scalar(&q, &blocks, &mut sums)));
    // The whole scan into a top-10: sums, the filter, and exact distances for what passes it.
    let mut scratch = quiver::pq::fastscan::ScanScratch::default();
    g.bench_function("scan_blocks_k10_m64_20k", |b| {
        b.iter(|| {
            let mut top = TopK::new(10);
            let scan = BlockScan { lut: &q, exact: &lut, bias: 0.0, terms: None, blocks: &blocks, n };
            scan_blocks(&scan, |i| i as u64, &mut top, &mut scratch, &[]);
            top.len()
        })
    });
    let big = vec![1u64; 32 << 20];
    g.throughput(Throughput::Bytes((big.len() * 8) as u64));
    g.sample_size(20);
    g.bench_function("memory_read_256MiB", |b| b.iter(|| big.iter().fold(0u64, |a, &x| a.wrapping_add(x))));
    g.finish();
}

/// 8-bit PQ32 codes through the in-register kernel (AVX-512 VBMI; elsewhere its scalar
/// reference) against the scalar ADC scan of `adc/scan_m32_20k_codes`: the same 32 bytes a
/// vector, the same results.
fn fast8(c: &mut Criterion) {
    use quiver::pq::fast8::{arrange, block_sums, scan8, QuantizedLut8, Scan8, BLOCK8};
    let (n, m) = (20_000usize, 32usize);
    let mut r = quiver::Rng::new(5);
    let rows: Vec<u8> = (0..n * m).map(|_| r.below(256) as u8).collect();
    let lut: Vec<f32> = (0..m * 256).map(|_| r.normal() as f32).collect();
    let mut q = QuantizedLut8::zeroed(m);
    q.quantize(&lut);
    let mut blocks = Vec::new();
    arrange(&rows, m, &mut blocks);
    let mut sums = vec![0u16; n.div_ceil(BLOCK8) * BLOCK8];
    let mut g = c.benchmark_group("fast8");
    g.throughput(Throughput::Bytes((n * m) as u64));
    g.bench_function("block_sums_m32_20k", |b| b.iter(|| block_sums(&q, &blocks, &mut sums)));
    g.bench_function("scan8_k10_m32_20k", |b| {
        b.iter(|| {
            let mut top = TopK::new(10);
            let scan = Scan8 { lut: &q, exact: &lut, bias: 0.0, terms: None, blocks: &blocks, n };
            scan8(&scan, &rows, |i| i as u64, &mut top, &mut Vec::new());
            top.len()
        })
    });
    g.bench_function("quantize_m32", |b| b.iter(|| q.quantize(&lut)));
    g.finish();
}

/// The coarse search of 256 queries at nprobe 16: the HNSW walk against the exact search
/// (bfloat16 tiles screened, then float32; where the CPU has no AMX, float32 over every
/// centroid), and the tiles' products alone.
fn coarse(c: &mut Criterion) {
    let mut g = c.benchmark_group("coarse");
    g.sample_size(10);
    for (nlist, d) in [(4096, 128), (1024, 384)] {
        let cents = data(nlist, d);
        let hnsw = Hnsw::build(&Points { data: &cents, d, metric: Metric::L2 }, &HnswParams::default());
        let q = CoarseQuantizer::new(d, Metric::L2, cents.clone(), hnsw);
        let x: Vec<f32> = data(nlist + 256, d).split_off(nlist * d);
        let mut visited = q.visited_set();
        let mut scratch = ScreenScratch::default();
        g.throughput(Throughput::Elements(256));
        g.bench_function(format!("graph_nlist{nlist}_d{d}"), |b| {
            b.iter(|| x.chunks(d).map(|v| q.probe(v, 16, 16, &mut visited).len()).sum::<usize>())
        });
        g.bench_function(format!("exact_nlist{nlist}_d{d}"), |b| b.iter(|| q.probe_exact(&x, 16, &mut scratch).len()));
        if let Some(amx) = Amx::get() {
            let panel = Bf16Panel::new(&cents, d);
            let mut out = vec![0f32; amx::ROWS * panel.padded_len()];
            g.bench_function(format!("amx_dots_nlist{nlist}_d{d}"), |b| {
                b.iter(|| x.chunks(amx::ROWS * d).for_each(|r| amx.dots(&panel, r, &mut out)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, distances, nearest, adc, list_tables, fast_scan, fast8, coarse);
criterion_main!(benches);
