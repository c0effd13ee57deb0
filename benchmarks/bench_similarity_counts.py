"""The similarity engine's sign counts in float32 against float64 (issue 17's follow-up): the same
similarity job, the engine alone, on small real bf16 models (built under .bench/similarity_counts once:
a Llama-shaped base and 4 fine-tunes), timed in interleaved rounds (float64, float32, float64, ...) so
the machine's load falls on both alike; reports each round, the medians and their ratio, and checks
that both give identical matrices. Then pair_sums alone on one chunk, interleaved likewise.

    python benchmarks/bench_similarity_counts.py [--rounds 3] [--layers 6] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inspect_views import _shapes  # noqa: E402

from fusion_gui.engine.inspect import similarity as sim  # noqa: E402

WORK = ROOT / ".bench" / "similarity_counts"
MODELS = 4


def pair_sums_float64(changes: torch.Tensor):
    """The previous pair_sums: all three products in float64."""
    c = changes.double()
    pos, neg = (changes > 0).double(), (changes < 0).double()
    nonzero = pos + neg
    opposite = pos @ neg.T
    return (c @ c.T).numpy(), (opposite + opposite.T).numpy(), (nonzero @ nonzero.T).numpy()


def build(layers: int, hidden: int, inter: int, vocab: int) -> list[str]:
    from safetensors.torch import save_file

    root = WORK / f"l{layers}_h{hidden}_i{inter}_v{vocab}"
    files = [root / f"{n}.safetensors" for n in ["base"] + [f"ft{k}" for k in range(MODELS)]]
    if all(f.exists() for f in files):
        return [str(f) for f in files]
    root.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    base = {n: (torch.randn(s, generator=g) * 0.02).to(torch.bfloat16)
            for n, s in _shapes(layers, hidden, inter, vocab).items()}
    save_file(base, str(files[0]))
    for k, f in enumerate(files[1:]):
        # half the fine-tunes share a direction; bf16 rounding leaves many elements unchanged (zeros)
        family = torch.Generator().manual_seed(100 + k // 2)
        own = torch.Generator().manual_seed(200 + k)
        save_file({n: (t.float() + 0.002 * torch.randn(t.shape, generator=family)
                       + 0.0015 * torch.randn(t.shape, generator=own)).to(torch.bfloat16)
                   for n, t in base.items()}, str(f))
    return [str(f) for f in files]


def block_of_changes() -> torch.Tensor:
    """One chunk as the engine forms it: MODELS x CHUNK_ELEMENTS changes, a third of them zero."""
    g = torch.Generator().manual_seed(1)
    block = torch.randn(MODELS, sim.CHUNK_ELEMENTS, generator=g)
    block[torch.rand(block.shape, generator=g) < 1 / 3] = 0
    return block


def run_once(paths: list[str], pair_sums) -> tuple[float, object]:
    sim.pair_sums = pair_sums
    gen = sim.similarity(paths[1:], paths[0])
    start = time.perf_counter()
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return time.perf_counter() - start, stop.value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--inter", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--out")
    args = ap.parse_args()
    paths = build(args.layers, args.hidden, args.inter, args.vocab)
    size = os.path.getsize(paths[0]) / 1e9
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    lines = [f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
             f"commit: {commit}{' (with uncommitted changes)' if dirty else ''}",
             f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
             f"load average at start {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
             f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads",
             f"models: base + {MODELS} fine-tunes, {args.layers} layers, hidden {args.hidden}, MLP {args.inter}, "
             f"{args.vocab} tokens: {size:.2f} GB each (bf16)"]
    new = sim.pair_sums
    times = {"float64": [], "float32": []}
    results = {}
    run_once(paths, new)  # warm-up: page cache and torch's kernels
    for r in range(args.rounds):
        for name, fn in (("float64", pair_sums_float64), ("float32", new)):
            seconds, results[name] = run_once(paths, fn)
            times[name].append(seconds)
            lines.append(f"round {r + 1} {name} counts: {seconds:.2f} s")
    sim.pair_sums = new
    block = block_of_changes()
    alone = {"float64": [], "float32": []}
    for _ in range(args.rounds * 3):
        for name, fn in (("float64", pair_sums_float64), ("float32", new)):
            t = time.perf_counter()
            fn(block)
            alone[name].append(time.perf_counter() - t)
    b64, b32 = float(np.median(alone["float64"])), float(np.median(alone["float32"]))
    lines.append(f"pair_sums alone on one chunk ({block.shape[0]} x {block.shape[1]}), {args.rounds * 3} "
                 f"interleaved rounds, median: float64 counts {b64 * 1000:.0f} ms, float32 counts "
                 f"{b32 * 1000:.0f} ms: {b64 / b32:.2f}x as fast")
    a, b = results["float64"], results["float32"]
    same = all(np.array_equal(getattr(x, f), getattr(y, f)) for x, y in zip((a.whole,) + a.groups, (b.whole,) + b.groups)
               for f in ("cosine", "sign_conflict", "change_norm"))
    m64, m32 = float(np.median(times["float64"])), float(np.median(times["float32"]))
    lines += [f"median: float64 counts {m64:.2f} s, float32 counts {m32:.2f} s: {m64 / m32:.2f}x as fast",
              f"matrices identical (cosine, sign conflict, norms; whole model and every layer): {same}",
              f"load average at end {', '.join(f'{x:.1f}' for x in os.getloadavg())}"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n\n")


if __name__ == "__main__":
    main()
