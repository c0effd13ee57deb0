"""Merge speed and peak memory against an I/O floor measured in the same run.

Builds (or reuses, under .bench/) three bf16 Llama-shaped checkpoints of about 1 GB each, then
runs linear, ties and dare_ties through `fusion-gui merge`, each in a fresh process, and prints
wall time, peak RSS and the ratio to the floor: a process that reads every input tensor and writes
one output of the same size with safetensors, no math.

    python benchmarks/bench_merge.py [--layers 24] [--hidden 1024] [--methods linear,ties,dare_ties] [--repeat 3]
        [--mergekit PATH/TO/mergekit-yaml]   # also run mergekit on the same recipes and compare tensors
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"


def layer_shapes(hidden: int, inter: int) -> dict[str, tuple[int, ...]]:
    return {
        "input_layernorm.weight": (hidden,), "post_attention_layernorm.weight": (hidden,),
        "self_attn.q_proj.weight": (hidden, hidden), "self_attn.k_proj.weight": (hidden, hidden),
        "self_attn.v_proj.weight": (hidden, hidden), "self_attn.o_proj.weight": (hidden, hidden),
        "mlp.gate_proj.weight": (inter, hidden), "mlp.up_proj.weight": (inter, hidden),
        "mlp.down_proj.weight": (hidden, inter),
    }


def build_checkpoints(layers: int, hidden: int, vocab: int, count: int = 3) -> list[Path]:
    """A base and count-1 fine-tunes of it."""
    inter = hidden * 4
    tag = f"l{layers}-h{hidden}-v{vocab}"
    paths = [WORK / f"{tag}-{name}" for name in ("base", *(f"ft{k}" for k in range(1, count)))]
    if all((p / "model.safetensors.index.json").exists() for p in paths):
        return paths
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": hidden // 64,
              "num_key_value_heads": hidden // 64, "vocab_size": vocab, "max_position_embeddings": 2048,
              "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    names = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        names.update({f"model.layers.{i}.{k}": v for k, v in layer_shapes(hidden, inter).items()})
    names.update({"model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)})
    for k, path in enumerate(paths):
        print(f"building {path.name} ...", flush=True)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        gen = torch.Generator().manual_seed(0)
        noise = torch.Generator().manual_seed(100 + k)
        shard, shard_bytes, weight_map, shard_no = {}, 0, {}, 1
        def flush():
            nonlocal shard, shard_bytes, shard_no
            fname = f"model-{shard_no:05d}.safetensors"
            save_file(shard, path / fname, metadata={"format": "pt"})
            weight_map.update({n: fname for n in shard})
            shard, shard_bytes, shard_no = {}, 0, shard_no + 1
        for name, shape in names.items():
            t = torch.randn(shape, generator=gen) * 0.02
            if k:  # a fine-tune: the base plus a small seeded change
                t += torch.randn(shape, generator=noise) * 0.002
            shard[name] = t.to(torch.bfloat16)
            shard_bytes += shard[name].numel() * 2
            if shard_bytes > 400e6:
                flush()
        if shard:
            flush()
        total = shard_no - 1
        renamed = {}
        for i in range(1, total + 1):
            new = f"model-{i:05d}-of-{total:05d}.safetensors"
            os.rename(path / f"model-{i:05d}.safetensors", path / new)
            renamed[f"model-{i:05d}.safetensors"] = new
        index = {"metadata": {"total_size": sum(torch.Size(s).numel() * 2 for s in names.values())},
                 "weight_map": {n: renamed[f] for n, f in weight_map.items()}}
        (path / "model.safetensors.index.json").write_text(json.dumps(index))
        (path / "config.json").write_text(json.dumps(config))
    return paths


def recipe_for(method: str, paths: list[Path]) -> dict:
    base, *fts = [str(p) for p in paths]
    if method == "linear":
        return {"merge_method": "linear", "dtype": "bfloat16",
                "models": [{"model": m, "parameters": {"weight": 1.0}} for m in (base, *fts)]}
    params = {"weight": 0.5, "density": 0.5}
    return {"merge_method": method, "base_model": base, "dtype": "bfloat16", "random_seed": 0,
            "models": [{"model": m, "parameters": params} for m in fts]}


# Each measured job runs in a fresh interpreter so that its peak RSS is its own.
_PEAK = "import resource, json; print('@@' + json.dumps({'peak': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))"
FLOOR = textwrap.dedent("""
    import sys
    from safetensors import safe_open
    from safetensors.torch import save_file
    paths, out = sys.argv[1:-1], sys.argv[-1]
    kept = {}
    handles = {}
    import json, os
    for p in paths:
        index = json.load(open(os.path.join(p, "model.safetensors.index.json")))["weight_map"]
        for name, f in index.items():
            key = (p, f)
            if key not in handles:
                handles[key] = safe_open(os.path.join(p, f), "pt")
            t = handles[key].get_tensor(name)
            if p == paths[0]:
                kept[name] = t
    save_file(kept, out, metadata={"format": "pt"})
""") + _PEAK
MERGE = textwrap.dedent("""
    import sys
    from fusion_gui import cli
    code = cli.main(["merge", sys.argv[1], sys.argv[2], "--no-progress", "--force", "--device", sys.argv[3]])
    assert code == 0, code
""") + _PEAK
MERGEKIT = textwrap.dedent("""
    import sys, runpy
    sys.argv = ["mergekit-yaml", sys.argv[1], sys.argv[2], "--allow-crimes", "--lazy-unpickle"]
    try:
        from mergekit.scripts.run_yaml import main
        main()
    except SystemExit as e:
        assert not e.code, e.code
""") + _PEAK


def measure(python: str, script: str, *args: str) -> tuple[float, int]:
    start = time.perf_counter()
    run = subprocess.run([python, "-c", script, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode:
        raise SystemExit(f"benchmark job failed:\n{run.stderr[-3000:]}")
    peak = json.loads([line for line in run.stdout.splitlines() if line.startswith("@@")][-1][2:])["peak"]
    return seconds, peak


def compare_outputs(ours: Path, theirs: Path) -> float:
    """Largest |difference| / bf16 spacing at that magnitude, over every tensor."""
    from fusion_gui.engine.io.opener import open_model

    worst = 0.0
    with open_model(str(ours)) as a, open_model(str(theirs)) as b:
        for name in a.tensors:
            x, y = a.get(name).float(), b.get(name).float()
            ulp = torch.clamp(x.abs(), min=1e-30) * 2 ** -7  # one bf16 rounding step
            worst = max(worst, float(((x - y).abs() / ulp).max()))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--methods", default="linear,ties,dare_ties")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    ap.add_argument("--mergekit", default=None, help="python of a venv with mergekit 0.1.5, to run it side by side")
    args = ap.parse_args()
    paths = build_checkpoints(args.layers, args.hidden, args.vocab)
    size = sum(f.stat().st_size for f in paths[0].glob("*.safetensors"))
    print(f"inputs: 3 x {size / 1e9:.2f} GB bf16 ({args.layers} layers, hidden {args.hidden}); "
          f"torch threads {torch.get_num_threads()}; device {args.device}")
    out = WORK / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # once untimed, so every job below (the floor included) reads inputs from a warm page cache
    measure(sys.executable, FLOOR, *map(str, paths), str(out / "floor.safetensors"))
    methods = args.methods.split(",")
    jobs = {"I/O floor": (sys.executable, FLOOR, *map(str, paths), str(out / "floor.safetensors"))}
    for method in methods:
        recipe = out / f"{method}.yml"
        recipe.write_text(yaml.safe_dump(recipe_for(method, paths)))
        jobs[f"fusion-gui {method}"] = (sys.executable, MERGE, str(recipe), str(out / method), args.device)
        if args.mergekit:
            jobs[f"mergekit {method}"] = (args.mergekit, MERGEKIT, str(recipe), str(out / f"mk-{method}"))
    # Timings on a shared machine drift by tens of percent between minutes: each round runs every job
    # once, in turn, and the medians over rounds are compared, so a slow minute hits all jobs alike.
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in jobs}
    for round_ in range(args.repeat):
        for name, job in jobs.items():
            runs[name].append(measure(*job))
        if args.mergekit:
            for method in methods:
                if method != "dare_ties" and round_ == 0:
                    worst = compare_outputs(out / method, out / f"mk-{method}")
                    print(f"{method}: fusion-gui vs mergekit, max diff {worst:.2f} bf16 steps", flush=True)
        for method in methods:
            shutil.rmtree(out / method, ignore_errors=True)
            shutil.rmtree(out / f"mk-{method}", ignore_errors=True)
    floor_s = statistics.median(s for s, _ in runs["I/O floor"])
    print(f"median of {args.repeat} rounds (each round runs every job once, in turn)")
    print(f"{'job':<22}{'seconds':>9}{'range':>15}{'peak RSS':>11}{'x floor time':>14}")
    for name, results in runs.items():
        seconds = [s for s, _ in results]
        median_s, rss = statistics.median(seconds), max(r for _, r in results)
        spread = f"{min(seconds):.2f}-{max(seconds):.2f}"
        print(f"{name:<22}{median_s:>9.2f}{spread:>15}{rss / 1e9:>9.2f}GB{median_s / floor_s:>14.2f}")

if __name__ == "__main__":
    main()
