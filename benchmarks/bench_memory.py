"""The dry run's memory estimate beside the measured peak, for linear, ties and dare_ties.

Builds (or reuses, under .bench/) a bf16 base and three fine-tunes shaped like bench_merge.py's, of
about 0.3 GB each, then for each method: the dry run's estimate (the merge's own memory), and a merge
in a fresh process that reports the peak it measured for itself (resident memory above its level at
the start) and the process's peak RSS (getrusage), Python and torch included. The ratio estimate /
measured says how honest the estimate is: at or a little above 1 is what it should be.

    python benchmarks/bench_memory.py [--layers 5] [--hidden 1024] [--methods linear,ties,dare_ties]
        [--mergekit PATH/TO/python-with-mergekit]   # also the peak RSS of mergekit on the same recipes
    python benchmarks/bench_memory.py --scratch all   # each method's scratch: measured beside declared
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_merge import MERGEKIT, WORK, build_checkpoints, measure, recipe_for  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# A merge in a fresh interpreter: the RSS once the engine is imported (Python and torch), what the
# merge reports as its own peak, and the process's peak RSS.
JOB = textwrap.dedent("""
    import json, resource, sys, time
    sys.path.insert(0, sys.argv[4])
    import psutil, yaml
    from fusion_gui.engine.merge import merge
    from fusion_gui.engine.merge.plan import MergeOptions
    from fusion_gui.engine.merge.recipe import recipe_from_dict
    budget = int(sys.argv[3]) or None
    recipe = recipe_from_dict(yaml.safe_load(open(sys.argv[1])))
    runtime = psutil.Process().memory_info().rss
    start = time.perf_counter()
    gen = merge(recipe, sys.argv[2], MergeOptions(device="cpu", force=True, memory_budget=budget))
    try:
        while True:
            event = next(gen)
            if type(event).__name__ == "PlanSummary":
                estimate = event.estimated_peak_bytes
    except StopIteration as stop:
        result = stop.value
    print("@@" + json.dumps({"runtime": runtime, "job_peak": result.peak_bytes, "estimate": estimate,
                             "seconds": time.perf_counter() - start,
                             "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
""")


# One method on one tensor in a fresh interpreter: the growth of RSS while it runs, per element,
# beside the scratch the method declares (MergeMethod.scratch), with one model's work at a time.
SCRATCH = textwrap.dedent("""
    import json, sys, threading
    sys.path.insert(0, sys.argv[4])
    import psutil, torch
    from fusion_gui.engine.methods import get_method
    from fusion_gui.engine.methods.base import side_by_side
    method, n, dtype = get_method(sys.argv[1]), int(sys.argv[2]), getattr(torch, sys.argv[3])
    numel = 1 << 23
    g = torch.Generator().manual_seed(0)
    # bf16 values even in float32: 16-bit models' changes tie, which makes TIES sort
    tensors = [torch.randn(4096, numel // 4096, generator=g, dtype=torch.bfloat16).mul_(0.002).to(dtype)
               for _ in range(n)]
    base = 0 if method.base != "none" else None
    value = lambda p: 0.5 if p.default is None else p.default
    params = {p.name: value(p) for p in method.global_params}
    per_model = [{p.name: 0.5 if p.name == "density" else value(p) for p in method.model_params
                  if k != base or p.applies_to_base} for k in range(n)]
    generator = torch.Generator().manual_seed(1) if method.random else None
    process, done, peak = psutil.Process(), threading.Event(), [0]
    def sample():
        while not done.wait(0.001):
            peak[0] = max(peak[0], process.memory_info().rss)
    start = peak[0] = process.memory_info().rss
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    with torch.no_grad(), side_by_side(1):
        result = method.fn(tensors, base, params, per_model, generator)
    done.set()
    thread.join()
    print("@@" + json.dumps({"measured": (peak[0] - start) / numel,
                             "declared": method.scratch(n, tensors[0].element_size())}))
""")


def scratch_table(methods: list[str]) -> None:
    from fusion_gui.engine.methods import get_method

    print(f"{'method':<18}{'inputs':>7}{'dtype':>10}{'measured':>10}{'declared':>10}  bytes per element")
    for name in methods:
        method = get_method(name)
        for n, dtype in ((2, "bfloat16"), (5, "bfloat16"), (5, "float32")):
            n = max(method.min_models, min(n, method.max_models or n))
            run = subprocess.run([sys.executable, "-c", SCRATCH, name, str(n), dtype, str(ROOT)],
                                 capture_output=True, text=True)
            if run.returncode:
                print(f"{name:<18}{n:>7}{dtype:>10}  failed: {run.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads([line for line in run.stdout.splitlines() if line.startswith("@@")][-1][2:])
            print(f"{name:<18}{n:>7}{dtype:>10}{r['measured']:>10.1f}{r['declared']:>10.1f}", flush=True)


def run_job(recipe: Path, out: Path, budget: int) -> dict:
    run = subprocess.run([sys.executable, "-c", JOB, str(recipe), str(out), str(budget), str(ROOT)],
                         capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"benchmark job failed:\n{run.stderr[-3000:]}")
    return json.loads([line for line in run.stdout.splitlines() if line.startswith("@@")][-1][2:])


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--methods", default="linear,ties,dare_ties")
    ap.add_argument("--mergekit", default=None, help="python of a venv with mergekit 0.1.5, to compare its peak")
    ap.add_argument("--scratch", default=None, help="instead: each of these methods' measured and declared "
                    "scratch on one tensor (comma-separated; 'all' for every method but fisher)")
    args = ap.parse_args()
    if args.scratch:
        sys.path.insert(0, str(ROOT))
        from fusion_gui.engine.methods.base import registry
        import fusion_gui.engine.methods  # noqa: F401  (registers them)

        names = sorted(set(registry()) - {"fisher"}) if args.scratch == "all" else args.scratch.split(",")
        return scratch_table(names)
    import psutil
    import torch

    paths = build_checkpoints(args.layers, args.hidden, args.vocab, count=4)
    size = sum(f.stat().st_size for f in paths[0].glob("*.safetensors"))
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit()}, "
          f"{platform.machine()} {psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 1e9:.0f} GB RAM, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"inputs: 4 x {size / 1e9:.2f} GB bf16 ({args.layers} layers, hidden {args.hidden}, vocab {args.vocab})")
    out = WORK / "out-memory"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    jobs = [(m, 0) for m in args.methods.split(",")]
    if "ties" in args.methods.split(","):
        jobs.append(("ties", 1 << 40))  # every sort side by side: the behaviour before the memory budget
    print(f"{'job':<24}{'estimate':>10}{'job peak':>10}{'est/peak':>10}{'runtime':>9}{'process peak':>14}"
          f"{'seconds':>9}")
    for method, budget in jobs:
        recipe = out / f"{method}.yml"
        recipe.write_text(yaml.safe_dump(recipe_for(method, paths)))
        r = run_job(recipe, out / method, budget)
        shutil.rmtree(out / method, ignore_errors=True)
        name = method + (" (no budget)" if budget else "")
        print(f"{name:<24}{r['estimate'] / 1e9:>8.2f}GB{r['job_peak'] / 1e9:>8.2f}GB"
              f"{r['estimate'] / max(1, r['job_peak']):>10.2f}{r['runtime'] / 1e9:>7.2f}GB"
              f"{r['peak'] / 1e9:>12.2f}GB{r['seconds']:>9.1f}", flush=True)
        if args.mergekit and not budget:
            seconds, peak = measure(args.mergekit, MERGEKIT, str(recipe), str(out / f"mk-{method}"))
            shutil.rmtree(out / f"mk-{method}", ignore_errors=True)
            print(f"{'  mergekit ' + method:<24}{'':>10}{'':>10}{'':>10}{'':>9}{peak / 1e9:>12.2f}GB{seconds:>9.1f}")
    print("estimate: the dry run's, the merge's own memory; job peak: what the merge measured for itself (RSS\n"
          "above its start); runtime: the process's RSS with Python, torch and the engine imported; process\n"
          "peak: getrusage's peak RSS of the whole process.")


if __name__ == "__main__":
    main()
