import os
from typing import Literal, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

class Error(RuntimeError): ...

def build(
    data_or_path: Union[npt.ArrayLike, str, os.PathLike],
    index_dir: Union[str, os.PathLike],
    factory: str,
    metric: str = "l2",
    memory: Union[int, str, None] = None,
    *,
    train_size: Optional[int] = ...,
    niter: int = ...,
    ef_construction: int = ...,
    ef_search: int = ...,
    seed: int = ...,
    chunk_size: int = ...,
) -> dict: ...

class Index:
    def __init__(self, index_dir: Union[str, os.PathLike], cache_bytes: Union[int, str] = 0) -> None: ...
    def search(
        self,
        xq: npt.ArrayLike,
        k: int,
        nprobe: Optional[int] = None,
        ef_search: Optional[int] = None,
        k_factor: Optional[int] = None,
        coarse: Optional[Literal["graph", "exact"]] = None,
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
    def add(self, xb: npt.ArrayLike, ids: Optional[npt.ArrayLike] = None) -> int: ...
    def delete(self, ids: npt.ArrayLike) -> int: ...
    def reload(self) -> bool: ...
    @property
    def ntotal(self) -> int: ...
    @property
    def d(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def factory(self) -> str: ...
    @property
    def nlist(self) -> int: ...
    @property
    def generation(self) -> int: ...
