"""Merge search on the demo models: quality against the demo's default merge, speed of in-memory candidates
against writing each candidate to disk, and peak memory of a search against one merge plus one evaluation.

    python benchmarks/bench_search.py [--trials 100] [--seconds 600] [--rounds 3] [--round-trials 4]
        [--parts quality,speed,memory] [--out benchmarks/results/search_bench.txt]

1. Quality: a CMA-ES search (task arithmetic, one weight per fine-tune and layer (the demo has 2 layers) in
   [0, 1.6], trial 0 the demo's merge, the mean of both skills on `--examples` problems each) within the budget; its best recipe and the demo's default merge (weight 0.8
   each) are scored on the same `--held-out` problems per skill, which the search never saw.
2. Speed: interleaved rounds of `--round-trials` trials each way, the same evaluation: in memory (the
   search's CandidateMerger) against the normal merge to a folder + loading it, each trial scored on
   `--speed-examples` problems per skill. Medians and their ratio, for whole trials and for making the
   candidate alone (the part in-memory candidates change; the evaluation costs the same both ways), and the
   median time of one trial's evaluation. `--parts speed` runs only this part.
3. Memory: fresh processes; the job's own peak RSS growth (engine/merge/memory.py's JobMemory) of a short
   search against that of one merge to disk plus loading and evaluating the result.
The machine is shared: the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = ROOT / ".bench"


def drain(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def demo_models(folder: Path):
    from fusion_gui.engine.evaluate.demo import build_demo

    return drain(build_demo(folder))


def settings(demo, args, **kw):
    from fusion_gui.engine.search.settings import Objective, SearchSettings, Tuned

    base = dict(method="task_arithmetic", base=str(demo.base), models=(str(demo.count), str(demo.reverse)),
                # one weight per fine-tune and layer group; trial 0 is the demo's merge, CMA-ES starts there too
                tune=(Tuned("weight", "layer", 0.0, 1.6, 0.8),), layer_granularity=1,
                objectives=(Objective("count"), Objective("reverse")),
                combine="mean", examples=args.examples, held_out=args.held_out, trials=args.trials,
                seconds=args.seconds, sampler="cmaes", seed=0, device="cpu", rescore=3)
    return SearchSettings(**{**base, **kw})


def quality(demo, args, say) -> None:
    from fusion_gui.engine.search.candidates import CandidateMerger
    from fusion_gui.engine.search.genome import dimensions, recipe_dict
    from fusion_gui.engine.search.loop import run_search
    from fusion_gui.engine.search.objectives import Objectives

    s = settings(demo, args)
    out = Path(tempfile.mkdtemp(prefix="search-bench-"))
    began = time.perf_counter()
    result = drain(run_search(s, out / "search"))
    wall = time.perf_counter() - began
    best = result.best[0]
    merger = CandidateMerger(list(s.models), s.base, "cpu")
    try:
        dims = dimensions(s, merger.n_layers)
        default = recipe_dict(s, dims, {d.name: 0.8 for d in dims}, merger.n_layers)
        model, tokenizer = merger.load(default)
        objectives = Objectives(s, out / "data")
        default_held = objectives.score(model, tokenizer, "held_out")
        default_search = objectives.score(model, tokenizer, "search")
    finally:
        merger.close()
    mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
    say(f"quality: {result.trials} trials in {wall:.0f} s wall ({result.stopped.message})")
    say(f"  search examples {s.examples} per skill, held-out problems {s.held_out} per skill "
        f"(never seen by the search)")
    say(f"  best trial {best.number}: {_fmt(best.params)}")
    say(f"  {'':28s}{'count':>8s}{'reverse':>9s}{'mean':>8s}")
    for name, scores in (("search best, search examples", best.search), ("search best, held out", best.held_out),
                         ("default 0.8, search examples", default_search), ("default 0.8, held out", default_held)):
        say(f"  {name:28s}{scores['count']:8.3f}{scores['reverse']:9.3f}{mean(scores):8.3f}")
    verdict = "better" if mean(best.held_out) > mean(default_held) else "not better"
    say(f"  held-out mean: search {mean(best.held_out):.3f} vs default {mean(default_held):.3f}: {verdict}")
    shutil.rmtree(out, ignore_errors=True)


def speed(demo, args, say) -> None:
    from fusion_gui.engine.evaluate.scoring import load_causal_lm
    from fusion_gui.engine.merge import MergeOptions, merge
    from fusion_gui.engine.merge.recipe import recipe_from_dict
    from fusion_gui.engine.search.candidates import CandidateMerger
    from fusion_gui.engine.search.genome import dimensions, recipe_dict
    from fusion_gui.engine.search.objectives import Objectives

    s = settings(demo, args, examples=args.speed_examples)
    tmp = Path(tempfile.mkdtemp(prefix="search-speed-"))
    objectives = Objectives(s, tmp / "data")
    merger = CandidateMerger(list(s.models), s.base, "cpu")
    dims = dimensions(s, merger.n_layers)
    points = [{d.name: 0.3 + 0.1 * ((k + i) % 12) for i, d in enumerate(dims)} for k in range(100)]
    rates = {"memory": [], "disk": []}  # whole trials (candidate + evaluation) per second
    making = {"memory": [], "disk": []}  # candidates per second, the evaluation left out
    scoring = []  # seconds of one trial's evaluation, both ways
    k = 0

    def candidate(way: str, data: dict):
        if way == "memory":
            return merger.load(data)
        folder = tmp / f"candidate-{k}"
        drain(merge(recipe_from_dict(data), folder, MergeOptions(device="cpu", smoke=False)))
        loaded = load_causal_lm(folder, "cpu")
        shutil.rmtree(folder)
        return loaded

    try:
        for way in ("memory", "disk"):  # warm-up: first loads, imports, allocator growth
            objectives.score(*candidate(way, recipe_dict(s, dims, points[0], merger.n_layers)), "search")
        for r in range(args.rounds):
            for way in ("memory", "disk") if r % 2 == 0 else ("disk", "memory"):
                began, made = time.perf_counter(), 0.0
                for _ in range(args.round_trials):
                    data = recipe_dict(s, dims, points[k % len(points)], merger.n_layers)
                    k += 1
                    t0 = time.perf_counter()
                    model, tokenizer = candidate(way, data)
                    made += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    objectives.score(model, tokenizer, "search")
                    scoring.append(time.perf_counter() - t0)
                rates[way].append(args.round_trials / (time.perf_counter() - began))
                making[way].append(args.round_trials / made)
                say(f"speed: round {r + 1} {way:6s} {rates[way][-1]:.2f} trials/s, "
                    f"{making[way][-1]:.1f} candidates/s without the evaluation")
    finally:
        merger.close()
        shutil.rmtree(tmp, ignore_errors=True)
    mem, disk = statistics.median(rates["memory"]), statistics.median(rates["disk"])
    say(f"speed: trials (candidate + evaluation of {s.examples} problems per skill): median {mem:.2f}/s in memory, "
        f"{disk:.2f}/s written and loaded: {mem / disk:.1f}x")
    say(f"speed: evaluation alone ({s.examples} problems per skill): median {statistics.median(scoring) * 1000:.0f} ms "
        f"a trial")
    mem, disk = statistics.median(making["memory"]), statistics.median(making["disk"])
    say(f"speed: candidates alone (merge, then a model to evaluate): median {mem:.1f}/s in memory, "
        f"{disk:.1f}/s written and loaded: {mem / disk:.1f}x")


def memory_child(kind: str, demo_dir: str, args) -> None:
    """Run in a fresh process: print the job's own peak RSS growth as JSON."""
    import torch

    torch.set_num_threads(1)
    from fusion_gui.engine.evaluate.scoring import load_causal_lm
    from fusion_gui.engine.merge import MergeOptions, merge
    from fusion_gui.engine.merge.memory import JobMemory
    from fusion_gui.engine.merge.recipe import recipe_from_dict
    from fusion_gui.engine.search.loop import run_search
    from fusion_gui.engine.search.objectives import Objectives

    demo = demo_models(Path(demo_dir))
    s = settings(demo, args, trials=args.memory_trials, seconds=None)
    tmp = Path(tempfile.mkdtemp(prefix="search-mem-"))
    import transformers  # noqa: F401  (imported before measuring, in both kinds)

    memory = JobMemory().start()
    if kind == "search":
        drain(run_search(s, tmp / "search"))
    else:
        data = {"merge_method": "task_arithmetic", "base_model": str(demo.base), "dtype": "float32",
                "models": [{"model": str(m), "parameters": {"weight": 0.8}} for m in (demo.count, demo.reverse)]}
        drain(merge(recipe_from_dict(data), tmp / "merged", MergeOptions(device="cpu", smoke=False)))
        model, tokenizer = load_causal_lm(tmp / "merged", "cpu")
        Objectives(s, tmp / "data").score(model, tokenizer, "search")
    peak = memory.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"peak": peak}))


def peak_memory(demo_dir: Path, args, say) -> None:
    peaks = {}
    for kind in ("search", "merge+eval"):
        cmd = [sys.executable, __file__, "--child", kind, "--demo-dir", str(demo_dir),
               "--memory-trials", str(args.memory_trials), "--examples", str(args.examples)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
        peaks[kind] = json.loads(out.stdout.strip().splitlines()[-1])["peak"]
    say(f"memory: peak RSS growth of a {args.memory_trials}-trial search {peaks['search'] / 2**20:.0f} MiB, "
        f"of one merge to disk + load + evaluation {peaks['merge+eval'] / 2**20:.0f} MiB "
        f"(ratio {peaks['search'] / max(1, peaks['merge+eval']):.2f})")


def _fmt(values: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in values.items())


def machine() -> list[str]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    import torch

    return [f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit.stdout.strip()}",
            f"machine: {' '.join(platform.uname())}, nproc {os.cpu_count()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch thread(s)"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--examples", type=int, default=150, help="search problems per skill")
    p.add_argument("--held-out", type=int, default=200, help="held-out problems per skill")
    p.add_argument("--speed-examples", type=int, default=20, help="problems per skill a trial scores in part 2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--round-trials", type=int, default=4)
    p.add_argument("--memory-trials", type=int, default=10)
    p.add_argument("--demo-dir", default=str(WORK / "demo-models"))
    p.add_argument("--parts", default="quality,speed,memory")
    p.add_argument("--out", help="also write the report to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return memory_child(args.child, args.demo_dir, args)
    import torch

    torch.set_num_threads(1)  # tiny models on a shared 2-core machine: one thread is fastest (see demo.py)
    from transformers.utils import logging

    logging.disable_progress_bar()
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    began = time.perf_counter()
    for line in machine():
        say(line)
    say(f"command: python benchmarks/bench_search.py {' '.join(sys.argv[1:])}")
    say(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    demo = demo_models(Path(args.demo_dir))
    parts = args.parts.split(",")
    if "quality" in parts:
        quality(demo, args, say)
    if "speed" in parts:
        speed(demo, args, say)
    if "memory" in parts:
        peak_memory(Path(args.demo_dir), args, say)
    say(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"benchmark wall time {time.perf_counter() - began:.0f} s")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
