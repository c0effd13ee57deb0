"""Sparsification of task vectors (deltas): which elements of a delta survive.

Selections match mergekit 0.1.5 element for element. mergekit ranks |delta| with a full
torch sort; on CPU we find the cut value in O(n) (radix select on the bit patterns) and only
sort when the cut falls inside a group of equal, non-zero magnitudes (on a GPU sorting is the
cheaper way anyway). Which tied elements torch's sort puts first follows no simple rule (on
CPU it is x86-simd-sort's quicksort, which differs between AVX2/AVX512 and plain builds; CUDA
sorts differently again), so with TIE_ORDER "torch" we run that very sort. With "spread" the
kept ties are evenly spaced through the tensor: O(n), the same on every device, but other
(equal-magnitude) elements than mergekit's. 16-bit deltas tie massively (often 10% of all
elements are tied at the cut).
"""

from __future__ import annotations

import torch

from ..errors import InputError

TIE_ORDER = "torch"  # "torch": exactly mergekit's picks on this device; "spread": O(n) always


def _key(x: torch.Tensor) -> torch.Tensor:
    """|x| flattened; float64 is ranked as float32 like mergekit does on CPU."""
    w = x.abs().reshape(-1)
    return w.float() if w.dtype == torch.float64 else w


def _bin_at(counts: torch.Tensor, rank: int) -> tuple[int, int, int]:
    """Histogram bin holding ascending `rank`, with the counts below it and in it."""
    upto = counts.cumsum(0)
    b = int(torch.searchsorted(upto, rank, right=True))
    equal = int(counts[b])
    return b, int(upto[b]) - equal, equal


def _at_ranks(w: torch.Tensor, *ranks: int) -> list[tuple[torch.Tensor, int, int]]:
    """For each 0-based ascending rank of w >= 0: the value there, and how many elements
    are below it and equal to it.

    On CPU, radix select: non-negative floats order like their bit patterns, so one
    2**15-bin histogram settles 16-bit data and two (high, then low 16 bits) float32.
    On a GPU a sort is faster than histogram atomics piling onto a few tied values.
    """
    found = []
    if w.device.type != "cpu":
        ordered = torch.sort(w).values
        for rank in ranks:
            value = ordered[rank:rank + 1]
            below = int(torch.searchsorted(ordered, value))
            upto = int(torch.searchsorted(ordered, value, right=True))
            found.append((value[0], below, upto - below))
    elif w.element_size() == 2:
        counts = torch.bincount(w.view(torch.int16), minlength=1 << 15)
        for rank in ranks:
            b, below, equal = _bin_at(counts, rank)
            found.append((torch.tensor(b, dtype=torch.int16).view(w.dtype), below, equal))
    else:
        bits = w.view(torch.int32)
        high = bits >> 16
        counts = torch.bincount(high, minlength=1 << 15)
        for rank in ranks:
            b, below, _ = _bin_at(counts, rank)
            low = bits[high == b] & 0xFFFF
            b2, below2, equal = _bin_at(torch.bincount(low, minlength=1 << 16), rank - below)
            value = torch.tensor((b << 16) | b2, dtype=torch.int32).view(torch.float32)
            found.append((value, below + below2, equal))
    return found


def _by_torch_order(x: torch.Tensor, descending: bool, start: int, stop: int) -> torch.Tensor:
    """Mask of ranks start..stop-1 in mergekit's own ranking call (float32 keys on CPU)."""
    w = x.abs().reshape(-1)
    if w.device.type == "cpu":
        w = w.float()
    # Sorted in place (w is a fresh copy): the same kernel on the same keys, so the same order,
    # without a second buffer of sorted values.
    order = torch.empty(w.numel(), dtype=torch.int64, device=x.device)
    torch.sort(w, descending=descending, out=(w, order))
    del w
    mask = torch.zeros(order.numel(), dtype=torch.bool, device=x.device)
    mask[order[start:stop]] = True
    return mask.reshape(x.shape)


def _add_ties(mask: torch.Tensor, w: torch.Tensor, value: torch.Tensor, count: int) -> None:
    """Keep `count` of the elements equal to value, evenly spaced in index order (not the
    first ones, which would favour the top rows of a matrix)."""
    if count > 0:
        ties = torch.nonzero(w == value).squeeze(1)
        step = torch.arange(count, device=w.device) * ties.numel() // count
        mask[ties[step]] = True


def _exact_by_sort(x: torch.Tensor) -> bool:
    # On a GPU the sort itself is cheaper than deciding whether it is needed.
    return TIE_ORDER == "torch" and x.device.type != "cpu"


def keep_largest(x: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask (shape of x) of the k largest |x|, as torch.argsort(|x|, descending)[:k].

    Where the cut falls among zeros, zeros may be marked either way: they stay zero.
    """
    if _exact_by_sort(x):
        return _by_torch_order(x, True, 0, k)
    w, n = _key(x), x.numel()
    [(value, below, equal)] = _at_ranks(w, n - k)
    ties = k - (n - below - equal)  # how many of the tied elements are kept
    if ties < equal and value != 0 and TIE_ORDER == "torch":
        del w  # the sort makes its own keys; free these first
        return _by_torch_order(x, True, 0, k)
    if ties == equal or value == 0:  # zeros stay zero whether kept or not
        mask = w >= value
    else:
        mask = w > value
        _add_ties(mask, w, value, ties)
    return mask.reshape(x.shape)


def keep_band(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Bool mask of the elements ranked start..stop-1 by ascending |x| (torch.sort order);
    zeros at a cut may be marked either way, as in keep_largest."""
    if stop <= start:
        return torch.zeros_like(x, dtype=torch.bool)
    if _exact_by_sort(x):
        return _by_torch_order(x, False, start, stop)
    w = _key(x)
    (lo, lo_below, lo_equal), (hi, hi_below, hi_equal) = _at_ranks(w, start, stop - 1)
    cut_lo = start > lo_below and lo != 0
    cut_hi = stop < hi_below + hi_equal and hi != 0
    if (cut_lo or cut_hi) and TIE_ORDER == "torch":
        del w  # the sort makes its own keys; free these first
        return _by_torch_order(x, False, start, stop)
    if not (cut_lo or cut_hi):
        mask = (w >= lo) & (w <= hi)
    else:
        mask = (w > lo) & (w < hi)
        if lo == hi:
            _add_ties(mask, w, lo, stop - start)
        else:
            _add_ties(mask, w, lo, lo_below + lo_equal - start)
            _add_ties(mask, w, hi, stop - hi_below)
    return mask.reshape(x.shape)


def apply_mask(x: torch.Tensor, mask: torch.Tensor, rescale: bool) -> torch.Tensor:
    """x * mask; with rescale, scaled back to x's L1 norm (mergekit's l1 rescale, same ops)."""
    masked = x * mask
    if not rescale:
        return masked
    before = x.abs().sum()
    after = masked.abs().sum()
    if before < 1e-7 or after < 1e-7:
        return masked
    return masked * (before / after)


def magnitude(x: torch.Tensor, density: float, rescale: bool = False) -> torch.Tensor:
    """Keep the `density` fraction of largest-magnitude elements (at least one)."""
    if density >= 1:
        return x
    if density <= 0 or x.numel() == 0:
        return torch.zeros_like(x)
    k = max(1, int(density * x.numel()))
    return apply_mask(x, keep_largest(x, k), rescale)


def magnitude_outliers(x: torch.Tensor, density: float, gamma: float = 0.01,
                       rescale: bool = False) -> torch.Tensor:
    """Model Breadcrumbs: drop the `gamma` largest, then the smallest, keeping `density`."""
    if density >= 1:
        return x
    n = x.numel()
    keep = max(0, int(density * n))
    # mergekit shrinks the outlier cut when density leaves no room for it.
    skip = max(0, n - keep - int(gamma * n))
    return apply_mask(x, keep_band(x, skip, skip + keep), rescale)


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    # mergekit's CPU rule (bernoulli has no CPU float16 kernel), used on every device so a
    # seed gives the same merge on CPU and GPU.
    return torch.bfloat16 if x.dtype == torch.bfloat16 else torch.float32


def bernoulli(x: torch.Tensor, density: float, rescale: bool = False,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """DARE: keep each element with probability `density`."""
    if density >= 1:
        return x
    work = _work_dtype(x)
    # Uniform draws below density: the same distribution as mergekit's torch.bernoulli over a
    # full tensor of probabilities, about 3x faster on the CPU (another random stream, so the
    # masks differ from mergekit's; random methods are reproducible by seed, not by mergekit).
    mask = torch.rand(x.shape, generator=generator, dtype=torch.float32, device=x.device) < density
    return apply_mask(x.to(work), mask.to(work), rescale).to(x.dtype)


def della_probabilities(x: torch.Tensor, density: float, epsilon: float) -> torch.Tensor:
    """DELLA keep probabilities: density-eps for the smallest |x| of a row up to density+eps
    for the largest, linear in rank along dim 1 (1-D tensors are one row), as float32."""
    rows = x if x.dim() >= 2 else x.reshape(1, -1)
    cols = rows.shape[1]
    if cols < 2:
        return torch.full_like(x, density, dtype=torch.float32)
    order = torch.argsort(rows.abs(), dim=1, stable=True)
    shape = [1] * rows.dim()
    shape[1] = cols
    steps = torch.arange(cols, dtype=torch.float32, device=x.device).reshape(shape)
    ranks = torch.empty(rows.shape, dtype=torch.float32, device=x.device)
    ranks.scatter_(1, order, steps.expand(rows.shape))
    del order
    # Same formula as mergekit: (density - eps) + rank_norm * 2 * eps.
    probs = ranks.div_(cols - 1).mul_(2 * epsilon).add_(density - epsilon)
    return probs.reshape(x.shape)


def della_magprune(x: torch.Tensor, density: float, epsilon: float, rescale: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """DELLA MagPrune: keep larger elements with higher probability (see della_probabilities)."""
    if density >= 1:
        return x
    if density <= 0:
        return torch.zeros_like(x)
    if density + epsilon >= 1 or density - epsilon <= 0:
        raise InputError(
            f"DELLA needs density - epsilon > 0 and density + epsilon < 1, "
            f"but density is {density} and epsilon is {epsilon}.")
    work = _work_dtype(x)
    mask = torch.bernoulli(della_probabilities(x, density, epsilon), generator=generator)
    return apply_mask(x.to(work), mask.to(work), rescale).to(x.dtype)
