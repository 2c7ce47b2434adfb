import os
from typing import Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

def build(
    paths: Sequence[Union[str, os.PathLike]],
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
) -> int: ...
def search(
    shard_dirs: Sequence[Union[str, os.PathLike]],
    xq: npt.ArrayLike,
    k: int,
    nprobe: Optional[int] = None,
    ef_search: Optional[int] = None,
    k_factor: Optional[int] = None,
    coarse: Optional[Literal["graph", "exact"]] = None,
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
