"""quiver on Ray, for indexes that outgrow one machine's time.

`build` trains once on the driver, encodes the input files as Ray tasks (each writes its own
segments under `<index_dir>/.shards/`, so `index_dir` must be on storage every node sees), and
commits them as one generation: no byte is copied to merge. Ids number the rows of the files
taken in order, and with the same seed the index answers exactly as `quiver.build` of the
concatenated files.

`search` fans a batch out over several indexes (shards built apart, each with its own ids) and
merges their top-k.

    import ray, quiver.ray
    ray.init()
    quiver.ray.build(["part-0.fbin", "part-1.fbin"], "/shared/index", "IVF4096_HNSW32,PQ32")
    D, I = quiver.ray.search(["/shared/a", "/shared/b"], xq, 10, nprobe=16)
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from . import Index, _bytes, _check_options, _quiver, _rows

try:
    import ray
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError("quiver.ray needs Ray: pip install 'quiver[ray]' (or pip install ray)") from e

Path = Union[str, os.PathLike]


@ray.remote
def _prepare(index_dir: str, path: str, first_id: int, shard: int, memory: Optional[int]) -> str:
    return os.fspath(_quiver.prepare_shard(index_dir, path, first_id, shard, memory))


def build(
    paths: Sequence[Path],
    index_dir: Path,
    factory: str,
    metric: str = "l2",
    memory: Union[int, str, None] = None,
    **options,
) -> int:
    """Builds an IVF index of the files `paths` (one dataset, in order) in `index_dir`: trains
    on the driver, encodes each file as a Ray task, commits them as one generation. options:
    train_size, niter, ef_construction, ef_search, seed. Returns the number of vectors."""
    _check_options(options, {"train_size", "niter", "ef_construction", "ef_search", "seed"})
    if not paths:
        raise ValueError("no input files")
    paths = [os.path.abspath(os.fspath(p)) for p in paths]
    index_dir = os.path.abspath(os.fspath(index_dir))
    mem = _bytes(memory)
    _quiver.train(index_dir, factory, metric, paths, memory=mem, **options)
    firsts, total = [], 0
    for p in paths:
        firsts.append(total)
        total += _quiver.file_rows(p)
    areas = ray.get([_prepare.remote(index_dir, p, f, i, mem) for i, (p, f) in enumerate(zip(paths, firsts))])
    _quiver.commit_shards(index_dir, areas)
    return total


@ray.remote
def _search(index_dir: str, xq: np.ndarray, k: int, params: dict) -> Tuple[np.ndarray, np.ndarray]:
    return Index(index_dir).search(xq, k, **params)


def search(
    shard_dirs: Sequence[Path],
    xq,
    k: int,
    nprobe: Optional[int] = None,
    ef_search: Optional[int] = None,
    k_factor: Optional[int] = None,
    coarse: Optional[str] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Searches every index of `shard_dirs` with `xq` as Ray tasks and merges their top-k:
    (D, I) as `Index.search` returns them. The shards must share a metric."""
    if not shard_dirs:
        raise ValueError("no shard indexes")
    first = Index(shard_dirs[0])
    x = _rows(xq, "xq", first.d)
    params = {"nprobe": nprobe, "ef_search": ef_search, "k_factor": k_factor, "coarse": coarse}
    parts = ray.get([_search.remote(os.fspath(d), x, k, params) for d in shard_dirs])
    larger_is_closer = first.metric in ("ip", "cosine")
    D = np.concatenate([p[0] for p in parts], axis=1)
    I = np.concatenate([p[1] for p in parts], axis=1)
    key = np.where(I < 0, np.inf, -D if larger_is_closer else D)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, order, axis=1), np.take_along_axis(I, order, axis=1)
