"""The pictures of one tensor's change, as small numpy arrays: a histogram over shared bins, an image of
|change| by block norms, the singular value spectrum with the ranks it implies, and block-level masks."""

from __future__ import annotations

import math

import numpy as np
import torch

# Up to this many rows or columns (the smaller side) the spectrum is exact (torch.linalg.svdvals);
# above it torch.svd_lowrank finds the largest SVD_RANK singular values.
EXACT_SVD_MAX = 1024
SVD_RANK = 256
SVD_ITERATIONS = 2
CHUNK_ELEMENTS = 1 << 24  # rows are processed in chunks of about this many elements (bounded temporaries)


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """2-D view: a vector is one row; conv kernels and the like keep their first dimension as rows."""
    if t.dim() == 2:
        return t
    if t.dim() < 2:
        return t.reshape(1, -1)
    return t.reshape(t.shape[0], -1)


def block_shape(rows: int, cols: int, size: int) -> tuple[int, int]:
    """Elements per pixel so that the image is at most size x size."""
    return max(1, math.ceil(rows / size)), max(1, math.ceil(cols / size))


def row_chunks(rows: int, cols: int, block_rows: int):
    """Row ranges of about CHUNK_ELEMENTS elements, aligned to whole blocks of rows."""
    step = max(block_rows, (CHUNK_ELEMENTS // max(1, cols)) // block_rows * block_rows)
    for start in range(0, rows, step):
        yield start, min(rows, start + step)


def _block_sums(x: torch.Tensor, block: tuple[int, int], square: bool) -> np.ndarray:
    """Sum (of squares, with `square`) of a 2-D tensor over each block; the last row/column of blocks
    may be partial. Row chunks keep the float32 temporaries small; blocks accumulate in float64."""
    rows, cols = x.shape
    br, bc = block
    out_rows, out_cols = math.ceil(rows / br), math.ceil(cols / bc)
    sums = torch.zeros(out_rows, out_cols, dtype=torch.float64)
    pad_cols = out_cols * bc - cols
    for start, stop in row_chunks(rows, cols, br):
        chunk = x[start:stop].float()  # the tensor itself when it is float32: never modified in place
        if square:
            chunk = chunk.square()
        pad_rows = math.ceil((stop - start) / br) * br - (stop - start)
        if pad_rows or pad_cols:
            chunk = torch.nn.functional.pad(chunk, (0, pad_cols, 0, pad_rows))
        r = chunk.shape[0] // br
        sums[start // br:start // br + r] += chunk.reshape(r, br, out_cols, bc).sum((1, 3)).double()
    return sums.numpy()


def block_squares(change: torch.Tensor, block: tuple[int, int]) -> np.ndarray:
    """Sum of squares of `change` (2-D) over each block."""
    return _block_sums(change, block, square=True)


def block_sizes(shape: tuple[int, int], block: tuple[int, int]) -> np.ndarray:
    """Elements in each block (the last row and column of blocks may be partial)."""
    (rows, cols), (br, bc) = shape, block
    r = np.full(math.ceil(rows / br), br)
    c = np.full(math.ceil(cols / bc), bc)
    r[-1], c[-1] = rows - br * (len(r) - 1), cols - bc * (len(c) - 1)
    return np.outer(r, c)


def block_fraction(mask: torch.Tensor, block: tuple[int, int]) -> np.ndarray:
    """Fraction of each block's elements a bool mask keeps."""
    return (_block_sums(mask, block, square=False) / block_sizes(tuple(mask.shape), block)).astype(np.float32)


def histogram(change: torch.Tensor, edges: np.ndarray) -> np.ndarray:
    """Counts of `change`'s elements in the shared bins (outermost bins closed, as numpy's)."""
    lo, hi, bins = float(edges[0]), float(edges[-1]), len(edges) - 1
    counts = torch.zeros(bins, dtype=torch.float64)
    flat = change.reshape(-1)
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        counts += torch.histc(flat[start:start + CHUNK_ELEMENTS].float(), bins=bins, min=lo, max=hi).double()
    return counts.numpy().astype(np.int64)


def spectrum(change: torch.Tensor) -> tuple[np.ndarray, str]:
    """Singular values of a 2-D change, largest first, and how they were found."""
    m = change.float()
    if min(m.shape) <= EXACT_SVD_MAX:
        return torch.linalg.svdvals(m).double().numpy(), "exact"
    q = min(SVD_RANK, min(m.shape))
    torch.manual_seed(0)  # the same picture each time the tensor is opened
    _, s, _ = torch.svd_lowrank(m, q=q, niter=SVD_ITERATIONS)
    return s.double().numpy(), f"randomized (top {q} of {min(m.shape)}, {SVD_ITERATIONS} power iterations)"


def effective_rank(values: np.ndarray) -> float:
    """Roy & Vetterli (2007): exp of the Shannon entropy of the singular values normalised to sum 1."""
    total = float(values.sum())
    if total <= 0:
        return 0.0
    p = values[values > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def energy_rank(values: np.ndarray, total_energy: float, fraction: float) -> int | None:
    """Fewest singular values whose squares hold `fraction` of total_energy (||change||_F^2, exact even
    when the spectrum is truncated); None when the values found do not reach it."""
    if total_energy <= 0:
        return 0
    kept = np.cumsum(values.astype(np.float64) ** 2) / total_energy
    # a relative tolerance: float32 SVD of an exactly rank-r change must still report r
    hit = np.nonzero(kept >= fraction - 1e-6)[0]
    return int(hit[0]) + 1 if hit.size else None
