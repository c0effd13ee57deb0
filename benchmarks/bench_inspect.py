"""Drill-down time for one big tensor (a 70B model's MLP, 28672 x 8192 bf16, ~470 MB per file), a base and
one fine-tune in temporary safetensors files; the spectrum by torch.svd_lowrank. Then on a smaller tensor
(4096 x 1024, where the exact SVD is affordable) the exact spectrum against the randomized one on the same
data, as a ratio; and the time of reopening the big tensor (the in-memory cache).

    python benchmarks/bench_inspect.py [--rows 28672] [--cols 8192] [--threads N]

Prints wall times, the peak RSS of the process, and the drill-down's numbers as a check.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fusion_gui.engine.inspect import pictures, tensor  # noqa: E402

NAME = "model.layers.0.mlp.up_proj.weight"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_pair(folder: Path, rows: int, cols: int, rank: int = 16) -> list[str]:
    """base.safetensors (random bf16) and ft.safetensors = base + a rank-`rank` change + small noise."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(rows, cols, generator=g, dtype=torch.bfloat16)
    save_file({NAME: base}, str(folder / "base.safetensors"))
    u, v = torch.randn(rows, rank, generator=g) * 0.02, torch.randn(rank, cols, generator=g)
    step = 4096
    for a in range(0, rows, step):  # the fine-tune is formed in place, a row block at a time
        block = base[a:a + step].float() + u[a:a + step] @ v + 0.002 * torch.randn(min(step, rows - a), cols, generator=g)
        base[a:a + step] = block.to(torch.bfloat16)
    save_file({NAME: base}, str(folder / "ft.safetensors"))
    del base
    return [str(folder / "base.safetensors"), str(folder / "ft.safetensors")]


def timed_drill_down(paths: list[str]):
    start = time.perf_counter()
    gen = tensor.drill_down(NAME, paths[1:], paths[0], density=0.5)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=28672)
    ap.add_argument("--cols", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, {platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="bench-inspect-") as tmp:
        small_dir = Path(tmp) / "small"
        small_dir.mkdir()
        small = write_pair(small_dir, 4096, 1024)
        exact_max = pictures.EXACT_SVD_MAX
        pictures.EXACT_SVD_MAX = 0  # randomized on this tensor too
        result, randomized = timed_drill_down(small)
        tensor.clear_cache()
        pictures.EXACT_SVD_MAX = 1 << 30
        exact_result, exact = timed_drill_down(small)
        pictures.EXACT_SVD_MAX = exact_max
        tensor.clear_cache()
        m = torch.randn(4096, 1024, generator=torch.Generator().manual_seed(1))
        t0 = time.perf_counter()
        torch.linalg.svdvals(m)
        svd_exact = time.perf_counter() - t0
        t0 = time.perf_counter()
        torch.svd_lowrank(m, q=pictures.SVD_RANK, niter=pictures.SVD_ITERATIONS)
        svd_low = time.perf_counter() - t0
        print(f"4096 x 1024 drill-down: randomized {randomized:.2f} s ({result.svd}; rank 90/99% "
              f"{result.changes[0].rank_90}/{result.changes[0].rank_99}), exact {exact:.2f} s "
              f"(rank 90/99% {exact_result.changes[0].rank_90}/{exact_result.changes[0].rank_99}); "
              f"exact / randomized {exact / randomized:.2f}x")
        print(f"4096 x 1024 SVD alone: exact svdvals {svd_exact:.2f} s, svd_lowrank(q={pictures.SVD_RANK}) "
              f"{svd_low:.2f} s: {svd_exact / svd_low:.2f}x")
        big_dir = Path(tmp) / "big"
        big_dir.mkdir()
        t0 = time.perf_counter()
        big = write_pair(big_dir, args.rows, args.cols)
        print(f"built 2 x {Path(big[0]).stat().st_size / 1e6:.0f} MB files in {time.perf_counter() - t0:.1f} s; "
              f"peak RSS so far {peak_rss_mb():.0f} MB")
        result, seconds = timed_drill_down(big)
        c = result.changes[0]
        print(f"{args.rows} x {args.cols} drill-down: {seconds:.1f} s, peak RSS {peak_rss_mb():.0f} MB; {result.svd}; "
              f"relative change {c.relative_change:.4g}, effective rank {c.effective_rank:.1f}, rank 90/99% "
              f"{c.rank_90}/{c.rank_99}; kept {', '.join(f'{k} {v:.1%}' for k, v in c.kept.items())}; "
              f"image {c.image.shape}, block {result.block}")
        again, cached = timed_drill_down(big)
        print(f"reopened: {cached * 1000:.1f} ms (cached={again.cached}), {seconds / cached:.0f}x faster")


if __name__ == "__main__":
    main()
