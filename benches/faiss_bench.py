#!/usr/bin/env python3
"""faiss beside quiver, for `quiver bench --faiss`: one factory string, one build, a sweep of
search settings, one JSON object per setting on stdout (flushed as each is measured), with the
same keys and definitions as `quiver bench`'s results.jsonl:

  system, factory, hnsw_m, ef_construction, nprobe, ef, k, recall_at_1, one_recall_at_3,
  recall_at_10, ms_mean, ms_p50, ms_p99, qps, index_bytes, build_s, peak_rss_bytes, threads

Recall is against the given exact ground truth: recall_at_1 = the first result is the true
nearest; one_recall_at_3 = the true nearest is among the first three; recall_at_10 = |top-10
∩ true top-10| / 10. Queries are searched one at a time (each timed) on --threads threads;
qps = queries / wall time of that loop. index_bytes = the serialized index; build_s = train +
add, on --build-threads threads; peak_rss_bytes = this process's peak (VmHWM) after the build,
the base included. IVF indexes are trained on max(100,000, 40 · nlist) vectors (capped at the
base), as `quiver build` does by default; from nlist 8,192 on (quiver's `--kmeans auto`) the
coarse centroids come from faiss's own two_level_clustering (√nlist first-level cells, 10
first-level iterations, faiss's default 25 inside each cell), as quiver trains them, since flat
k-means on 65,536 centroids takes hours on a few cores. --kmeans flat keeps faiss's flat k-means.

Written for quiver in the manner of ../shared/bench/faiss_baseline.py. Needs numpy and
faiss-cpu (pip install faiss-cpu numpy).

    python3 faiss_bench.py --base b.fbin --queries q.fbin --gt gt.ivecs --factory HNSW32,Flat \\
        --ef 16,32,64 --ef-construction 40
"""

import argparse
import json
import re
import sys
import time

import numpy as np
import faiss


def read_vectors(path):
    """fvecs, bvecs, ivecs, fbin, u8bin, i8bin, ibin or npy, as a 2-D array."""
    p = path.lower()
    if p.endswith(".npy"):
        return np.load(path, mmap_mode="r")
    if p.endswith((".fvecs", ".ivecs")):
        raw = np.fromfile(path, dtype=np.int32)
        d = int(raw[0])
        rows = raw.reshape(-1, d + 1)[:, 1:]
        return rows.view(np.float32) if p.endswith(".fvecs") else rows
    if p.endswith(".bvecs"):
        raw = np.fromfile(path, dtype=np.uint8)
        d = int(raw[:4].view(np.int32)[0])
        return raw.reshape(-1, d + 4)[:, 4:]
    dtype = {".fbin": np.float32, ".u8bin": np.uint8, ".i8bin": np.int8, ".ibin": np.int32}
    for ext, t in dtype.items():
        if p.endswith(ext):
            n, d = np.fromfile(path, dtype=np.int32, count=2)
            return np.memmap(path, dtype=t, mode="r", offset=8, shape=(int(n), int(d)))
    raise SystemExit(f"{path}: unknown vector file extension")


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def nearest_rank(values, p):
    """The percentile as quiver computes it: sorted[round((n - 1) · p)]."""
    s = np.sort(values)
    return float(s[int(round((len(s) - 1) * p))])


TWO_LEVEL_FROM = 8192


def two_level_centroids(x, nlist):
    """faiss's two-level k-means (faiss.contrib.clustering), as `quiver build --kmeans auto`
    uses from 8,192 lists on."""
    import contextlib

    # The contrib module prints a note about scipy on import; stdout carries only JSON rows.
    with contextlib.redirect_stdout(sys.stderr):
        from faiss.contrib.clustering import two_level_clustering
    nc1 = max(1, int(round(nlist**0.5)))
    centroids, _ = two_level_clustering(np.ascontiguousarray(x, dtype=np.float32), nc1, nlist, clustering_niter=10)
    return np.ascontiguousarray(centroids, dtype=np.float32)


def ints(s):
    return [int(v) for v in s.split(",") if v]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--factory", required=True)
    ap.add_argument("--metric", choices=["l2", "ip"], default="l2")
    ap.add_argument("--ef-construction", type=int, default=40)
    ap.add_argument("--nprobe", type=ints, default=[])
    ap.add_argument("--ef", type=ints, default=[16])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--build-threads", type=int, default=0)
    ap.add_argument("--kmeans", choices=["auto", "flat", "two-level"], default="auto")
    a = ap.parse_args()

    xb = np.ascontiguousarray(read_vectors(a.base), dtype=np.float32)
    xq = np.ascontiguousarray(read_vectors(a.queries), dtype=np.float32)
    gt = np.asarray(read_vectors(a.gt))[: len(xq)]
    n, d = xb.shape
    metric = faiss.METRIC_L2 if a.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    if a.build_threads:
        faiss.omp_set_num_threads(a.build_threads)
    index = faiss.index_factory(d, a.factory, metric)
    ivf = faiss.try_extract_index_ivf(index)
    hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
    if hnsw is not None:
        hnsw.efConstruction = a.ef_construction
    t0 = time.perf_counter()
    if not index.is_trained:
        nlist = ivf.nlist if ivf is not None else 0
        size = min(n, max(100_000, 40 * nlist))
        sample = xb[np.random.default_rng(1234).choice(n, size, replace=False)] if size < n else xb
        if ivf is not None and (a.kmeans == "two-level" or (a.kmeans == "auto" and nlist >= TWO_LEVEL_FROM)):
            # Centroids in the quantizer: index.train then trains only the codes (faiss skips
            # an IVF quantizer that already holds nlist vectors).
            ivf.quantizer.add(two_level_centroids(sample, nlist))
        index.train(sample)
    index.add(xb)
    build_s = time.perf_counter() - t0
    peak = peak_rss_bytes()
    index_bytes = int(faiss.serialize_index(index).size)
    faiss.omp_set_num_threads(a.threads)

    ps = faiss.ParameterSpace()
    m = re.search(r"HNSW(\d+)", a.factory)
    settings = [(p, a.ef[0] if a.ef else 16) for p in a.nprobe] if ivf is not None else [(None, e) for e in a.ef]
    for nprobe, ef in settings:
        if ivf is not None:
            ps.set_index_parameter(index, "nprobe", nprobe)
            ps.set_index_parameter(index, "quantizer_efSearch", ef)
        else:
            ps.set_index_parameter(index, "efSearch", ef)
        k = a.k
        index.search(xq[: min(16, len(xq))], k)
        ids = np.empty((len(xq), k), dtype=np.int64)
        lat = np.empty(len(xq))
        w0 = time.perf_counter()
        for i in range(len(xq)):
            t = time.perf_counter()
            _, ids[i : i + 1] = index.search(xq[i : i + 1], k)
            lat[i] = (time.perf_counter() - t) * 1e3
        wall = time.perf_counter() - w0
        depth = min(10, k, gt.shape[1])
        r1 = float(np.mean(ids[:, 0] == gt[:, 0]))
        r3 = float(np.mean([gt[i, 0] in ids[i, :3] for i in range(len(xq))]))
        r10 = float(np.mean([len(set(ids[i, :depth]) & set(gt[i, :depth])) / depth for i in range(len(xq))]))
        row = {
            "system": "faiss",
            "factory": a.factory,
            "hnsw_m": int(m.group(1)) if m else None,
            "ef_construction": a.ef_construction,
            "nprobe": nprobe,
            "ef": ef,
            "k": k,
            "recall_at_1": r1,
            "one_recall_at_3": r3,
            "recall_at_10": r10,
            "ms_mean": float(lat.mean()),
            "ms_p50": nearest_rank(lat, 0.50),
            "ms_p99": nearest_rank(lat, 0.99),
            "qps": len(xq) / wall,
            "index_bytes": index_bytes,
            "build_s": build_s,
            "peak_rss_bytes": peak,
            "threads": a.threads,
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
