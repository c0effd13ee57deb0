"""Sparsification of task vectors (deltas): which elements of a delta survive.

Selections match mergekit 0.1.5 element for element. mergekit ranks |delta| with a full
torch sort; we find the cut value in O(n) (a histogram for 16-bit data, kthvalue otherwise)
and only sort when the cut falls inside a group of equal, non-zero magnitudes. Which of those
tied elements torch's sort puts first is not a simple rule (on CPU it is x86-simd-sort's
quicksort, and it differs between AVX2/AVX512 and plain builds), so with TIE_ORDER "torch"
we reproduce it by running the very same sort; with "index" ties go to the lowest index,
which is O(n), deterministic everywhere, but may pick other (equal-magnitude) elements.
"""

from __future__ import annotations

import torch

from ..errors import InputError

TIE_ORDER = "torch"  # "torch": exactly mergekit's picks on this device; "index": O(n) always


def _key(x: torch.Tensor) -> torch.Tensor:
    """|x| flattened; float64 is ranked as float32 like mergekit does on CPU."""
    w = x.abs().reshape(-1)
    return w.float() if w.dtype == torch.float64 else w


def _at_rank(w: torch.Tensor, rank: int) -> tuple[torch.Tensor, int, int]:
    """Value at 0-based ascending `rank` of w, and how many elements are below / equal to it."""
    if w.dtype in (torch.bfloat16, torch.float16):
        # |x| >= 0, so its 16-bit pattern orders like its value: a 32768-bin histogram suffices.
        counts = torch.bincount(w.view(torch.int16), minlength=1 << 15)
        upto = counts.cumsum(0)
        b = int(torch.searchsorted(upto, rank, right=True))
        eq = int(counts[b])
        value = torch.tensor(b, dtype=torch.int16).view(w.dtype).to(w.device)
        return value, int(upto[b]) - eq, eq
    value = torch.kthvalue(w, rank + 1).values
    return value, int((w < value).sum()), int((w == value).sum())


def _torch_order(x: torch.Tensor, descending: bool) -> torch.Tensor:
    """mergekit's own ranking call, used only when ties decide the selection."""
    w = x.abs().reshape(-1)
    if w.device.type == "cpu":
        w = w.float()
    return torch.sort(w, descending=descending).indices


def _add_ties(mask: torch.Tensor, w: torch.Tensor, value: torch.Tensor, lo: int, hi: int) -> None:
    """Keep the tied elements (w == value) number lo..hi-1, counted in index order."""
    if hi > lo:
        mask[torch.nonzero(w == value).squeeze(1)[lo:hi]] = True


def keep_largest(x: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask (shape of x) of the k largest |x|, as torch.argsort(|x|, descending)[:k]."""
    w, n = _key(x), x.numel()
    value, below, equal = _at_rank(w, n - k)
    ties = k - (n - below - equal)  # how many of the tied elements are kept
    if ties < equal and value != 0 and TIE_ORDER == "torch":
        mask = torch.zeros(n, dtype=torch.bool, device=x.device)
        mask[_torch_order(x, descending=True)[:k]] = True
    elif ties == equal or value == 0:  # zeros stay zero whether kept or not
        mask = w >= value
    else:
        mask = w > value
        _add_ties(mask, w, value, 0, ties)
    return mask.reshape(x.shape)


def keep_band(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Bool mask of the elements ranked start..stop-1 by ascending |x| (torch.sort order)."""
    w, n = _key(x), x.numel()
    if stop <= start:
        return torch.zeros_like(x, dtype=torch.bool)
    lo, lo_below, lo_equal = _at_rank(w, start)
    hi, hi_below, hi_equal = _at_rank(w, stop - 1)
    cut_lo = start > lo_below and lo != 0
    cut_hi = stop < hi_below + hi_equal and hi != 0
    if (cut_lo or cut_hi) and TIE_ORDER == "torch":
        mask = torch.zeros(n, dtype=torch.bool, device=x.device)
        mask[_torch_order(x, descending=False)[start:stop]] = True
    elif not (cut_lo or cut_hi):
        mask = (w >= lo) & (w <= hi)
    else:
        mask = (w > lo) & (w < hi)
        if lo == hi:
            _add_ties(mask, w, lo, start - lo_below, stop - lo_below)
        else:
            _add_ties(mask, w, lo, start - lo_below, lo_equal)
            _add_ties(mask, w, hi, 0, stop - hi_below)
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
    # Same call as mergekit, so a generator seeded like torch.manual_seed gives its mask.
    mask = torch.bernoulli(torch.full_like(x, density, dtype=work), generator=generator)
    return apply_mask(x.to(work), mask, rescale).to(x.dtype)


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
