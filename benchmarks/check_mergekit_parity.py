"""fusion_gui against mergekit 0.1.5 on the same recipes: every deterministic method, bf16 and fp32.

Creates its own virtualenv for mergekit (default .bench/mergekit-venv, reused when present): torch 2.13.0
first (any other torch requirement would pull a CUDA build of several GB), then mergekit 0.1.5. Builds a
Llama-shaped base and three seeded fine-tunes (4 layers, hidden 256, grouped-query attention, sharded
safetensors, a tokenizer) in bf16 and fp32, runs every recipe through `mergekit-yaml RECIPE OUT
--copy-tokenizer` and `fusion-gui merge RECIPE OUT --no-smoke` (each engine's command-line entry point,
called once per recipe in one interpreter per engine and dtype), and prints per
recipe and dtype the largest absolute tensor difference and how many tensors were compared. Tensor names
(and dtypes) must match; a missing tensor is a failure. Exits 1 when any recipe differs (the bar is
bit-identical: --tol 0).

Random methods are left out: dare_linear, dare_ties, della, della_linear draw Bernoulli masks, mergekit
from torch's global generator and fusion_gui from a per-tensor seeded one, so their bits differ by
design (both are reproducible by seed). breadcrumbs and breadcrumbs_ties are deterministic (a sort) and
are compared. arcee_fusion samples its quantiles only above 10**6 elements; every tensor here is smaller.

    python benchmarks/check_mergekit_parity.py [--venv DIR] [--methods ties,slerp] [--tol 0]
    python benchmarks/check_mergekit_parity.py --ties-memory [--rounds 2]
        # 4 inputs of ~0.3 GB bf16, `ties`: peak RSS of mergekit-yaml and fusion-gui merge, fresh
        # processes, rounds interleaved, medians; with fusion-gui's dry-run estimate beside them
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from safetensors import safe_open

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "parity"
TORCH, MERGEKIT = "torch==2.13.0", "mergekit==0.1.5"
# mergekit 0.1.5's requirements less torch, for the --no-deps fallback
MERGEKIT_DEPS = ["tqdm>=4.67.1,<5", "click>=8.2.1,<9", "safetensors>=0.5.2,<1", "accelerate>=1.6.0,<2",
                 "pydantic>=2.10.6,<3", "immutables>=0.21,<1", "transformers>=5.0,<6.0", "tokenizers>=0.20.1",
                 "huggingface_hub", "peft>=0.18.0", "typing-extensions", "sentencepiece", "protobuf", "scipy",
                 "datasets"]
RANDOM_METHODS = ("dare_linear", "dare_ties", "della", "della_linear")
FUSION = "import sys; from fusion_gui import cli; sys.exit(cli.main(sys.argv[1:]))"


def log(*parts) -> None:
    print(*parts, flush=True)


# ----------------------------------------------------------------------------- the mergekit virtualenv

def ensure_venv(venv: Path) -> Path:
    """The venv's python with mergekit 0.1.5 beside torch 2.13.0; says how it was installed."""
    py, note = venv / "bin" / "python", venv / "parity-install.txt"
    if (venv / "bin" / "mergekit-yaml").exists() and note.exists():
        log(f"mergekit venv: {venv.relative_to(ROOT) if venv.is_relative_to(ROOT) else venv} (reused; "
            f"{note.read_text().strip()})")
        return py
    log(f"creating mergekit venv in {venv} ...")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, TORCH], check=True)
    how = f"{TORCH} first, then {MERGEKIT} with its dependencies"
    if subprocess.run([*pip, MERGEKIT]).returncode:
        # Its pins conflict: mergekit alone, its dependencies less torch, torch kept as installed.
        how = f"{TORCH} first, then {MERGEKIT} --no-deps and its dependencies less torch"
        subprocess.run([*pip, "--no-deps", MERGEKIT], check=True)
        subprocess.run([*pip, *MERGEKIT_DEPS], check=True)
    got = subprocess.run([str(py), "-c", "import torch; print(torch.__version__)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    if not got.startswith("2.13.0"):
        raise SystemExit(f"the mergekit venv ended up with torch {got}, not 2.13.0")
    note.write_text(how + "\n")
    log(f"installed: {how}")
    return py


def versions(py: Path) -> str:
    code = ("from importlib.metadata import version as v; "
            "print(', '.join(f'{p} {v(p)}' for p in ('mergekit', 'torch', 'transformers', 'safetensors')))")
    return subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def header(py: Path) -> None:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    import transformers

    log(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}")
    log(f"fusion_gui commit: {commit}{' (with uncommitted changes)' if dirty else ''}")
    log(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, python {platform.python_version()}")
    log(f"mergekit side: {versions(py)}")
    log(f"fusion_gui side: torch {torch.__version__}, transformers {transformers.__version__}")


# ----------------------------------------------------------------------------- fixtures and recipes

def build_fixtures(dtype: torch.dtype) -> list[Path]:
    """[base, ft1, ft2, ft3]: Llama, 4 layers, hidden 256, 4 heads / 2 KV heads, vocab 1024, sharded."""
    from fusion_gui.engine.synthetic_models import build_model, perturb, save_model, tiny_config

    root = WORK / ("fixtures-" + str(dtype).removeprefix("torch."))
    paths = [root / name for name in ("base", "ft1", "ft2", "ft3")]
    if all((p / "model.safetensors.index.json").exists() for p in paths):
        return paths
    config = tiny_config("llama", layers=4, hidden=256, vocab=1024)
    for k, path in enumerate(paths):
        shutil.rmtree(path, ignore_errors=True)
        model = build_model(config, seed=0, dtype=dtype)
        if k:
            model = perturb(model, seed=100 + k)
            # perturb() moves the all-ones norm weights by ~2e-5, which bf16 rounds away (its step at 1.0
            # is 2**-7); a real fine-tune moves them, and methods on changes need them to move.
            gen = torch.Generator().manual_seed(200 + k)
            with torch.no_grad():
                for pname, param in model.named_parameters():
                    if param.ndim == 1:
                        param.add_((torch.randn(param.shape, generator=gen) * 0.05).to(param.dtype))
        save_model(model, path, max_shard_size="1MB")
    return paths


def recipes(paths: list[Path], dtype: str) -> dict[str, dict]:
    base, a, b, c = map(str, paths)
    fts = (a, b, c)

    def with_base(method, params=None, per_model=None, models=fts, base_model=base):
        per_model = per_model or [{"weight": w} for w in (0.5, 0.3, 0.4)][: len(models)]
        out = {"merge_method": method, "dtype": dtype, "base_model": base_model,
               "models": [{"model": m, "parameters": p} if p else {"model": m} for m, p in zip(models, per_model)]}
        if params:
            out["parameters"] = params
        return out

    sparse = [{"weight": w, "density": d} for w, d in ((0.5, 0.5), (0.3, 0.7), (0.4, 0.6))]
    crumbs = [{"weight": w, "density": 0.8, "gamma": 0.02} for w in (0.5, 0.3, 0.4)]
    gradient = [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]}, {"value": 0.5}]
    out = {
        "linear": {"merge_method": "linear", "dtype": dtype,
                   "models": [{"model": m, "parameters": {"weight": w}} for m, w in zip((base, *fts), (1, 2, 3, 4))]},
        "task_arithmetic": with_base("task_arithmetic"),
        "ties": with_base("ties", per_model=sparse),
        "ties (normalize: false, int8_mask)": with_base("ties", {"normalize": False, "int8_mask": True},
                                                        per_model=sparse),
        "breadcrumbs": with_base("breadcrumbs", per_model=crumbs),
        "breadcrumbs_ties": with_base("breadcrumbs_ties", per_model=crumbs),
        "slerp (gradient + filters)": with_base("slerp", {"t": gradient}, per_model=[{}, {}], models=(base, a)),
        "slerp, slices": {"merge_method": "slerp", "dtype": dtype, "base_model": base,
                          "parameters": {"t": gradient},
                          "slices": [{"sources": [{"model": base, "layer_range": [0, 4]},
                                                  {"model": a, "layer_range": [0, 4]}]}]},
        "nuslerp, with base": with_base("nuslerp", per_model=[{"weight": 0.6}, {"weight": 0.4}], models=(a, b)),
        "nuslerp, no base, row-wise": {"merge_method": "nuslerp", "dtype": dtype,
                                       "parameters": {"nuslerp_row_wise": True, "nuslerp_flatten": False},
                                       "models": [{"model": a, "parameters": {"weight": 0.7}},
                                                  {"model": b, "parameters": {"weight": 0.3}}]},
        "multislerp": {"merge_method": "multislerp", "dtype": dtype,
                       "models": [{"model": m, "parameters": {"weight": w}} for m, w in zip(fts, (0.5, 0.3, 0.2))]},
        "multislerp, with base": with_base("multislerp"),
        "karcher": {"merge_method": "karcher", "dtype": dtype, "models": [{"model": m} for m in fts]},
        "model_stock": with_base("model_stock", per_model=[{}, {}, {}]),
        "model_stock, filter_wise": with_base("model_stock", {"filter_wise": True}, per_model=[{}, {}, {}]),
        "sce": with_base("sce", {"select_topk": 0.5}, per_model=[{}, {}, {}]),
        "nearswap": with_base("nearswap", {"t": 0.0005}, per_model=[{}], models=(a,)),
        "arcee_fusion": with_base("arcee_fusion", per_model=[{}], models=(a,)),
        "ram": with_base("ram", per_model=[{}, {}, {}]),
        "ramplus_tl": with_base("ramplus_tl", per_model=[{}, {}, {}]),
        "passthrough, layer stack": {"merge_method": "passthrough", "dtype": dtype, "slices": [
            {"sources": [{"model": a, "layer_range": [0, 3]}]},
            {"sources": [{"model": b, "layer_range": [1, 4]}]}]},
    }
    return out


# ----------------------------------------------------------------------------- running and comparing

# One interpreter per engine and dtype runs each recipe through that engine's own command-line entry
# point (mergekit-yaml's click command, fusion-gui's main) in turn: the same code as a fresh
# `mergekit-yaml RECIPE OUT` / `fusion-gui merge RECIPE OUT`, without paying ~15 s of imports per recipe.
MERGEKIT_BATCH = """
import sys, traceback
from mergekit.scripts.run_yaml import main
for recipe, out in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        main.main([recipe, out, "--copy-tokenizer", "--quiet"], standalone_mode=False)
        print("@@ok", out, flush=True)
    except BaseException as e:
        print("@@fail", out, repr(e)[-300:].replace(chr(10), " "), flush=True)
"""
FUSION_BATCH = """
import contextlib, io, sys
from fusion_gui import cli
for recipe, out in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(["merge", recipe, out, "--no-smoke", "--no-progress"])
        why = f"exit {code}: " + " ".join(err.getvalue().split())[-300:]
        print("@@ok" if code == 0 else "@@fail", out, "" if code == 0 else why, flush=True)
    except BaseException as e:
        print("@@fail", out, repr(e)[-300:].replace(chr(10), " "), flush=True)
"""


def run_batch(python: str, script: str, jobs: list[tuple[Path, Path]], env: dict | None = None) -> dict[str, str]:
    """{output folder: "" when the merge succeeded, else why not}."""
    args = []
    for recipe, out in jobs:
        shutil.rmtree(out, ignore_errors=True)
        args += [str(recipe), str(out)]
    run = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    done = {str(out): f"process exit {run.returncode}: {run.stderr.strip()[-300:]}" for _, out in jobs}
    for line in run.stdout.splitlines():
        if line.startswith("@@"):
            status, out, *why = line.split(" ", 2)
            done[out] = "" if status == "@@ok" else (why[0] if why else "failed")
    return done


def run_fusion(recipe: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    shutil.rmtree(out, ignore_errors=True)
    return subprocess.run([sys.executable, "-c", FUSION, "merge", str(recipe), str(out), "--no-smoke",
                           "--no-progress", *extra], capture_output=True, text=True, env=fusion_env(), cwd=ROOT)


def fusion_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}


def tensors(folder: Path) -> dict[str, tuple[Path, str]]:
    found = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(f, "pt") as h:
            found.update({name: (f, h.get_slice(name).get_dtype()) for name in h.keys()})
    return found


def compare(ours: Path, theirs: Path) -> tuple[float, int, int, list[str]]:
    """(largest |difference|, tensors compared, tensors not bit-identical, problems)."""
    a, b = tensors(ours), tensors(theirs)
    problems = [f"only mergekit has {n}" for n in sorted(b.keys() - a.keys())]
    problems += [f"only fusion_gui has {n}" for n in sorted(a.keys() - b.keys())]
    worst, unequal, recast = 0.0, 0, []
    for name in sorted(a.keys() & b.keys()):
        with safe_open(a[name][0], "pt") as fa, safe_open(b[name][0], "pt") as fb:
            x, y = fa.get_tensor(name), fb.get_tensor(name)
        if x.shape != y.shape:
            problems.append(f"{name}: shape {tuple(x.shape)} vs mergekit's {tuple(y.shape)}")
            continue
        if x.dtype != y.dtype:
            # says whether the only difference is the dtype written: mergekit's rounded to ours
            recast.append(float((x.double() - y.to(x.dtype).double()).abs().max()))
        if x.dtype != y.dtype or not torch.equal(x, y):
            unequal += 1
            worst = max(worst, float((x.double() - y.double()).abs().max()))
    if recast:
        kinds = sorted({f"{a[n][1]} vs mergekit's {b[n][1]}" for n in a.keys() & b.keys() if a[n][1] != b[n][1]})
        problems.append(f"{len(recast)} tensors written in another dtype ({', '.join(kinds)}); largest |diff| "
                        f"after rounding mergekit's to fusion_gui's dtype: {max(recast):.3g}")
    return worst, len(a.keys() & b.keys()), unequal, problems


def parity(py: Path, methods: set[str] | None, tol: float) -> int:
    failed = 0
    log(f"\nrandom methods not compared (masks from different random streams by design): {', '.join(RANDOM_METHODS)}")
    log(f"{'recipe':40s} {'dtype':9s} {'tensors':>7s} {'unequal':>7s} {'max |diff|':>11s}  result")
    for dtype in (torch.bfloat16, torch.float32):
        name = str(dtype).removeprefix("torch.")
        paths = build_fixtures(dtype)
        chosen = {label: recipe for label, recipe in recipes(paths, name).items()
                  if not methods or recipe["merge_method"] in methods}
        folders = {}
        for label, recipe in chosen.items():
            folder = WORK / "runs" / name / label.replace(" ", "_").replace(",", "").replace(":", "")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "recipe.yml").write_text(yaml.safe_dump(recipe, sort_keys=False))
            folders[label] = folder
        mk = run_batch(str(py), MERGEKIT_BATCH, [(f / "recipe.yml", f / "mergekit") for f in folders.values()])
        ours = run_batch(sys.executable, FUSION_BATCH, [(f / "recipe.yml", f / "fusion_gui") for f in folders.values()],
                         fusion_env())
        for label, folder in folders.items():
            why_mk, why_ours = mk[str(folder / "mergekit")], ours[str(folder / "fusion_gui")]
            if why_mk or why_ours:
                failed += 1
                log(f"{label:40s} {name:9s} {'':>7s} {'':>7s} {'':>11s}  FAILED")
                for who, why in (("mergekit", why_mk), ("fusion-gui", why_ours)):
                    if why:
                        log(f"    {who}: {why}")
                continue
            worst, count, unequal, problems = compare(folder / "fusion_gui", folder / "mergekit")
            bad = bool(problems) or worst > tol
            failed += bad
            log(f"{label:40s} {name:9s} {count:7d} {unequal:7d} {worst:11.3g}  {'DIFFERS' if bad else 'same'}")
            for line in problems[:5]:
                log(f"    {line}")
    log(f"\n{failed} recipe(s) differ or failed" if failed else "\nevery recipe the same")
    return 1 if failed else 0


# ----------------------------------------------------------------------------- TIES peak memory

def peak_of(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of one fresh child process, from the kernel's rusage of it."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{stderr.decode()[-2000:]}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024


def ties_memory(py: Path, rounds: int) -> int:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_merge import build_checkpoints, recipe_for

    paths = build_checkpoints(layers=5, hidden=1024, vocab=32000, count=4)
    size = sum(f.stat().st_size for f in paths[0].glob("*.safetensors"))
    folder = WORK / "ties-memory"
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "ties.yml"
    recipe.write_text(yaml.safe_dump(recipe_for("ties", paths), sort_keys=False))
    log(f"\nTIES peak memory: {len(paths)} inputs of {size / 1e9:.2f} GB bf16 (5 layers, hidden 1024, vocab 32000), "
        f"weight 0.5, density 0.5; {rounds} rounds, order alternating; peak RSS from wait4 of each fresh process")
    plan = run_fusion(recipe, folder / "dry", "--dry-run")
    estimate = [line.split(":", 1)[1].strip() for line in plan.stdout.splitlines() if "peak memory" in line]
    for f in paths:  # warm the page cache for both engines alike
        for shard in f.glob("*.safetensors"):
            shard.read_bytes()
    env = fusion_env()
    jobs = {
        "mergekit-yaml": lambda: peak_of([str(py.parent / "mergekit-yaml"), str(recipe), str(folder / "mk"),
                                          "--copy-tokenizer", "--quiet"]),
        "fusion-gui merge": lambda: peak_of([sys.executable, "-c", FUSION, "merge", str(recipe),
                                             str(folder / "ours"), "--no-smoke", "--no-progress", "--force"], env),
    }
    runs: dict[str, list[tuple[float, int]]] = {k: [] for k in jobs}
    for r in range(rounds):
        for name in (list(jobs) if r % 2 == 0 else list(jobs)[::-1]):
            shutil.rmtree(folder / "mk", ignore_errors=True)
            runs[name].append(jobs[name]())
            s, p = runs[name][-1]
            log(f"  round {r + 1}: {name:17s} {s:7.2f} s  peak RSS {p / 1e9:.2f} GB")
    med = {k: (statistics.median(s for s, _ in v), statistics.median(p for _, p in v)) for k, v in runs.items()}
    log(f"{'engine':17s} {'wall (median)':>13s} {'peak RSS (median)':>18s}")
    for k, (s, p) in med.items():
        log(f"{k:17s} {s:11.2f} s {p / 1e9:15.2f} GB")
    ratio = med["fusion-gui merge"][1] / med["mergekit-yaml"][1]
    log(f"fusion-gui / mergekit: peak RSS {ratio:.2f}x, wall {med['fusion-gui merge'][0] / med['mergekit-yaml'][0]:.2f}x")
    # The dry run estimates the merge's own memory; the process adds Python, torch and fusion_gui's imports.
    _, imports = peak_of([sys.executable, "-c", "import torch, safetensors; from fusion_gui import cli; "
                          "from fusion_gui.engine import merge"], env)
    log("fusion-gui dry-run estimate: " + ("; ".join(estimate) if estimate else "(no memory line in the plan)")
        + f"; a process that only imports fusion_gui's merge peaks at {imports / 1e9:.2f} GB, so the measured"
        f" merge's own is about {(med['fusion-gui merge'][1] - imports) / 1e9:.2f} GB")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, default=ROOT / ".bench" / "mergekit-venv")
    ap.add_argument("--methods", default=None, help="comma-separated merge_method names (default: all)")
    ap.add_argument("--tol", type=float, default=0.0, help="largest |difference| still called the same")
    ap.add_argument("--ties-memory", action="store_true", help="measure TIES peak memory instead")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    py = ensure_venv(args.venv.resolve())
    header(py)
    if args.ties_memory:
        return ties_memory(py, args.rounds)
    return parity(py, set(args.methods.split(",")) if args.methods else None, args.tol)


if __name__ == "__main__":
    sys.exit(main())
