#!/usr/bin/env python3
"""DiskANN's throughput on several threads, the peer figure for `quiver search --threads N
--inflight M` (benches/README.md). `../shared/bench/peers.py` times DiskANN one query at a time
from one thread; this runs diskannpy's `StaticDiskIndex.batch_search` — every query of the file
at once, spread over N threads — on an index peers.py built (its --workdir keeps it), and prints
one JSON object per thread count: wall-clock QPS over `--passes` timed passes (after one untimed
pass), recall@10 against the ground truth, and the block-layer bytes read per query. DiskANN
reads its disk index with O_DIRECT, so every pass reads from the device as a cold quiver search
does.

    venv-diskann/bin/python benches/diskann_batch.py \\
        --index-dir /work/data/peers/work/diskann_base_R64_L100_pq32_dpq0_l2 \\
        --query syn1m/query.fbin --gt syn1m/gt.ivecs --beam-width 4 --L 20 --threads 1,2

Queries: .fbin or .fvecs (float32); ground truth: .ivecs or .ibin.
"""

import argparse
import json
import time

import numpy as np


def read_vectors(path: str) -> np.ndarray:
    if path.endswith(".fvecs"):
        raw = np.fromfile(path, dtype=np.int32)
        d = int(raw[0])
        return raw.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()
    head = np.fromfile(path, dtype=np.int32, count=2)
    n, d = int(head[0]), int(head[1])
    return np.fromfile(path, dtype=np.float32, offset=8, count=n * d).reshape(n, d)


def read_ids(path: str) -> np.ndarray:
    if path.endswith(".ivecs"):
        raw = np.fromfile(path, dtype=np.int32)
        d = int(raw[0])
        return raw.reshape(-1, d + 1)[:, 1:]
    head = np.fromfile(path, dtype=np.int32, count=2)
    n, d = int(head[0]), int(head[1])
    return np.fromfile(path, dtype=np.int32, offset=8, count=n * d).reshape(n, d)


def read_bytes() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index-dir", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--beam-width", type=int, default=4)
    ap.add_argument("--L", type=int, default=20)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()

    import diskannpy

    xq = read_vectors(args.query)
    gt = read_ids(args.gt)[:, : args.k]
    threads = [int(t) for t in args.threads.split(",")]
    # diskannpy 0.7.0 deadlocks while loading with num_threads=1 (see peers.py): open with >= 2.
    index = diskannpy.StaticDiskIndex(index_directory=args.index_dir, num_threads=max(2, max(threads)),
                                      num_nodes_to_cache=0, cache_mechanism=0, index_prefix="ann")
    for t in threads:
        def run():
            return index.batch_search(xq, k_neighbors=args.k, complexity=args.L, num_threads=t,
                                      beam_width=args.beam_width)

        first = run()
        io0 = read_bytes()
        t0 = time.perf_counter()
        for _ in range(args.passes):
            run()
        wall = time.perf_counter() - t0
        io = read_bytes() - io0
        ids = first.identifiers[:, : args.k]
        recall = float(np.mean([len(set(ids[i]) & set(gt[i])) / args.k for i in range(len(xq))]))
        nq = len(xq) * args.passes
        print(json.dumps({"system": "diskann", "beam_width": args.beam_width, "L": args.L, "threads": t,
                          "qps": round(nq / wall, 1), "recall_at_10": round(recall, 4),
                          "read_bytes_per_query": round(io / nq, 1), "queries": nq}), flush=True)


if __name__ == "__main__":
    main()
