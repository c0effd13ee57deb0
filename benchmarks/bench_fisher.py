"""Peak memory of the layer-streamed Fisher estimate against the textbook one (whole model loaded,
per-block loss.backward()), each in a fresh process, on the same float32 Llama-shaped checkpoint.

    python benchmarks/bench_fisher.py [--layers 24] [--hidden 512] [--vocab 4096] [--samples 16]
        [--seq-length 128]

Prints, per method: wall time, peak RSS, the RSS after imports (the same for both: torch and
transformers), and the estimate's own part (peak minus that); then the ratio of the own parts, and
the Fisher's squared norm from both as a check that they computed the same thing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"


def peak_rss() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def build(layers: int, hidden: int, vocab: int) -> Path:
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config

    path = WORK / f"fisher-l{layers}-h{hidden}-v{vocab}"
    if not (path / "config.json").exists():
        print(f"building {path.name} ...", flush=True)
        save_model(build_model(tiny_config("llama", layers=layers, hidden=hidden, vocab=vocab), seed=0),
                   path, max_shard_size="200MB")
    return path


def child(mode: str, model: str, samples: int, seq_length: int, vocab: int) -> dict:
    import accelerate  # noqa: F401  (both import the same modules before the baseline)
    import psutil
    import torch
    import transformers
    from transformers.models.llama import modeling_llama  # noqa: F401

    from fusion_gui.engine.methods import fisher_prepare as fisher

    blocks = torch.randint(0, vocab, (samples, seq_length), generator=torch.Generator().manual_seed(0))
    baseline = psutil.Process().memory_info().rss
    start = time.perf_counter()
    if mode == "streamed":
        from fusion_gui.engine.io.opener import open_model

        os.environ["FUSION_GUI_CACHE"] = tempfile.mkdtemp(prefix="bench-fisher-")
        with open_model(model) as reader:
            job = fisher.estimate_to_cache(reader, blocks, torch.device("cpu"))
            try:
                while True:
                    next(job)
            except StopIteration as stop:
                folder = stop.value
        squares = (float(json.loads((folder / "fisher.json").read_text())["norm"])) ** 2
    else:
        model_ = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        totals = {n: torch.zeros_like(p) for n, p in model_.named_parameters()}
        for s in range(samples):
            model_.zero_grad()
            model_(input_ids=blocks[s:s + 1], labels=blocks[s:s + 1]).loss.backward()
            for n, p in model_.named_parameters():
                totals[n] += p.grad.square()
        squares = sum(float((t / samples).double().square().sum()) for t in totals.values())
    return {"mode": mode, "seconds": time.perf_counter() - start, "peak": peak_rss(), "baseline": baseline,
            "squares": squares}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--child", choices=["streamed", "whole"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.samples, args.seq_length, args.vocab)))
        return
    model = build(args.layers, args.hidden, args.vocab)
    params = sum(f.stat().st_size for f in model.glob("*.safetensors")) / 4
    print(f"model: {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}: {params / 1e6:.1f}M "
          f"float32 parameters; {args.samples} blocks of {args.seq_length} tokens")
    results = {}
    for mode in ("streamed", "whole"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--model", str(model),
                              "--samples", str(args.samples), "--seq-length", str(args.seq_length),
                              "--vocab", str(args.vocab)],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        r = results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{mode:>9}: {r['seconds']:6.1f} s, peak RSS {r['peak'] / 1e6:7.0f} MB, after imports "
              f"{r['baseline'] / 1e6:5.0f} MB, estimate's own {(r['peak'] - r['baseline']) / 1e6:6.0f} MB")
    own = {m: r["peak"] - r["baseline"] for m, r in results.items()}
    print(f"own memory, whole / streamed: {own['whole'] / own['streamed']:.1f}x; "
          f"peak RSS ratio {results['whole']['peak'] / results['streamed']['peak']:.2f}x")
    print(f"squared Fisher norm: streamed {results['streamed']['squares']:.6e}, "
          f"whole {results['whole']['squares']:.6e}")


if __name__ == "__main__":
    main()
