"""quiver: disk-resident approximate nearest-neighbour search (IVF-PQ with an HNSW coarse
quantizer), with numpy in and out, shaped like faiss.

    import numpy as np, quiver
    xb = np.random.rand(100_000, 128).astype("float32")
    quiver.build(xb, "my-index", "IVF1024_HNSW32,PQ32")
    index = quiver.Index("my-index")
    D, I = index.search(xb[:5], 10, nprobe=16)     # float32 (5, 10), int64 (5, 10)

Errors carry the library's message: ValueError for shapes, dtypes and parameters,
quiver.Error (a RuntimeError) for the rest.
"""

from __future__ import annotations

import os
import re
from typing import Optional, Tuple, Union

import numpy as np

from . import _quiver
from ._quiver import Error

__all__ = ["build", "Index", "Error"]

_ACCEPTED = (np.float32, np.float64, np.uint8, np.int8, np.float16)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _rows(x, what: str, d: Optional[int] = None) -> np.ndarray:
    """`x` as a C-contiguous float32 2-D array (a 1-D array is one row)."""
    a = np.asarray(x)
    if a.dtype.type not in _ACCEPTED:
        raise ValueError(f"{what}: dtype {a.dtype} is not supported; pass float32, float64, float16, uint8 or int8")
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array (n, d), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{what}: the array is empty (shape {a.shape})")
    if d is not None and a.shape[1] != d:
        raise ValueError(f"{what}: rows have dimension {a.shape[1]}, the index holds {d}-dimensional vectors")
    return np.ascontiguousarray(a, dtype=np.float32)


def _ids(ids, what: str, n: Optional[int] = None) -> np.ndarray:
    a = np.asarray(ids)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{what}: ids must be integers, got dtype {a.dtype}")
    a = np.ascontiguousarray(a.reshape(-1), dtype=np.int64)
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{what}: {a.shape[0]} ids for {n} vectors; give one id per vector")
    return a


def _check_options(options: dict, known: set) -> None:
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; known: {sorted(known)}")


def _bytes(memory) -> Optional[int]:
    """A memory size as bytes: an int, or a string such as '2GiB', '512M', '1.5G'."""
    if memory is None or isinstance(memory, int):
        return memory
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(memory), re.IGNORECASE)
    if not m:
        raise ValueError(f"memory={memory!r} is not a size: give bytes, or a number with KiB, MiB, GiB or TiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def build(
    data_or_path: Union[np.ndarray, str, os.PathLike],
    index_dir: Union[str, os.PathLike],
    factory: str,
    metric: str = "l2",
    memory: Union[int, str, None] = None,
    **options,
) -> dict:
    """Builds an index in `index_dir` (new or empty) from an array (n, d) or a vector file
    (.fvecs .bvecs .fbin .u8bin .i8bin .npy), with a faiss factory string such as
    "IVF4096_HNSW32,PQ32", "IVF4096_HNSW32,PQ64x4fs", "…,RFlat" or "HNSW32,Flat".

    metric: "l2", "ip" or "cosine". memory: a hard bound on peak memory (bytes or "2GiB").
    options: train_size, niter, ef_construction, ef_search, seed, chunk_size.
    Returns the build report (ntotal, dim, nlist, train_size, index_bytes, segments, build_s).
    The GIL is released while it builds."""
    _check_options(options, {"train_size", "niter", "ef_construction", "ef_search", "seed", "chunk_size"})
    kw = dict(options, memory=_bytes(memory))
    if isinstance(data_or_path, (str, os.PathLike)):
        return _quiver.build(os.fspath(index_dir), factory, metric, path=os.fspath(data_or_path), **kw)
    return _quiver.build(os.fspath(index_dir), factory, metric, data=_rows(data_or_path, "data"), **kw)


class Index:
    """An open index. `search` answers from the generation it has open; `add` and `delete`
    commit a new generation and move to it; `reload()` moves to the newest (after another
    process changed the index)."""

    def __init__(self, index_dir: Union[str, os.PathLike], cache_bytes: Union[int, str] = 0):
        self._index = _quiver.Index(os.fspath(index_dir), _bytes(cache_bytes) or 0)

    def search(
        self,
        xq,
        k: int,
        nprobe: Optional[int] = None,
        ef_search: Optional[int] = None,
        k_factor: Optional[int] = None,
        coarse: Optional[str] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """(D, I): float32 and int64 arrays of shape (n, k), closest first; -1 ids where fewer
        than k were found. None takes the index's default (nprobe 1, efSearch as built,
        k_factor 1, coarse "graph"); a parameter that does not apply to the index's kind is a
        ValueError. coarse="exact" finds each query's lists from every centroid's distance
        instead of the HNSW walk (the true nprobe closest; faster for batches on CPUs with
        AMX where nlist x d is a few million or less). The GIL is released while it searches."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k = {k!r} must be a positive integer")
        return self._index.search(_rows(xq, "xq", self.d), int(k), nprobe, ef_search, k_factor, coarse)

    def add(self, xb, ids=None) -> int:
        """Adds rows (IVF indexes), numbered after the largest id ever assigned, or with `ids`
        (int64, none live in the index). Returns the new ntotal."""
        x = _rows(xb, "xb", self.d)
        return self._index.add(x, None if ids is None else _ids(ids, "ids", x.shape[0]))

    def delete(self, ids) -> int:
        """Deletes ids (IVF indexes); ids not in the index are ignored. Returns how many were."""
        return self._index.delete(_ids(ids, "ids"))

    def reload(self) -> bool:
        """Moves to the newest generation of the directory; returns whether there was one."""
        return self._index.reload()

    @property
    def ntotal(self) -> int:
        """Vectors a search can return."""
        return self._index.ntotal

    @property
    def d(self) -> int:
        return self._index.d

    @property
    def metric(self) -> str:
        return self._index.metric

    @property
    def factory(self) -> str:
        return self._index.factory

    @property
    def nlist(self) -> int:
        return self._index.nlist

    @property
    def generation(self) -> int:
        return self._index.generation

    def __repr__(self) -> str:
        return f"quiver.Index({self.factory!r}, ntotal={self.ntotal}, d={self.d}, metric={self.metric!r})"
