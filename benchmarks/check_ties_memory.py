"""TIES peak memory with the plan's sort budget against every sort side by side, in the same run, and
the dry run's estimate against the measured peak.

Builds four small float32 checkpoints (base + 3) whose tensors are all the same size (2048 x 2048), the
case where the budget (one sort of the largest tensor) allows one sort at a time; each merge runs in a
fresh process so ru_maxrss is its own.

    python benchmarks/check_ties_memory.py [--size 2048] [--tensors 4] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import textwrap
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent("""
    import json, resource, sys
    from fusion_gui.engine.merge import MergeOptions, merge, plan_merge
    from fusion_gui.engine.merge import run
    from fusion_gui.engine.merge.recipe import load_recipe
    from fusion_gui.engine.methods.base import SORT_BUDGET

    recipe, out, unbudgeted = load_recipe(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
    plan_merge_of_run = run.plan_merge

    def planned(*args, **kwargs):
        plan = plan_merge_of_run(*args, **kwargs)
        if unbudgeted:  # the old behaviour: every model's sort at once
            for task in plan.tasks:
                if task.floating:
                    task.params[SORT_BUDGET] = 1 << 60
        planned.estimate = plan.summary.estimated_peak_bytes
        return plan

    run.plan_merge = planned
    for _ in merge(recipe, out, MergeOptions(device="cpu")):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    print(json.dumps({"peak": peak, "estimate": planned.estimate}))
""")


def build(root: Path, size: int, tensors: int) -> Path:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    base = {f"model.layers.{i}.mlp.weight": torch.randn(size, size, generator=g) for i in range(tensors)}
    for k, name in enumerate(["base", "a", "b", "c"]):
        (root / name).mkdir(parents=True, exist_ok=True)
        weights = base if k == 0 else {n: v + 0.01 * torch.randn(v.shape, generator=g) for n, v in base.items()}
        save_file(weights, str(root / name / "model.safetensors"))
    recipe = {"merge_method": "ties", "base_model": str(root / "base"), "models": [
        {"model": str(root / n), "parameters": {"weight": 0.5, "density": 0.5}} for n in "abc"]}
    (root / "r.yml").write_text(json.dumps(recipe))  # JSON is YAML
    return root / "r.yml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--tensors", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}, {platform.machine()} "
          f"{platform.system()}, Python {platform.python_version()}")
    print(f"# ties, 4 float32 inputs of {args.tensors} tensors of {args.size}x{args.size}")
    with tempfile.TemporaryDirectory(prefix="ties-memory-") as tmp:
        recipe = build(Path(tmp), args.size, args.tensors)
        for i in range(args.repeat):
            row = {}
            for label, flag in (("budget", "0"), ("all side by side", "1")):
                out = Path(tmp) / f"out-{i}-{flag}"
                done = subprocess.run([sys.executable, "-c", CHILD, str(recipe), str(out), flag], cwd=ROOT,
                                      capture_output=True, text=True, check=True)
                row[label] = json.loads(done.stdout.strip().splitlines()[-1])
            b, a = row["budget"], row["all side by side"]
            print(f"run {i + 1}: peak with budget {b['peak'] / 1e6:.0f} MB (estimate {b['estimate'] / 1e6:.0f} MB), "
                  f"all side by side {a['peak'] / 1e6:.0f} MB; ratio {b['peak'] / a['peak']:.2f}")


if __name__ == "__main__":
    main()
