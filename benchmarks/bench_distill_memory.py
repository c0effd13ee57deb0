"""Peak memory of a distillation with and without the chunked loss, at a 128k-token vocabulary.

Tiny teacher and student (2 layers, width 64) with 131072 output rows each, so the logits dominate:
a few steps of `distill()` each in a fresh process, peak growth of resident memory measured by the
merge's JobMemory (RSS sampled every 5 ms), beside the pre-flight's estimate for the same config.

    python benchmarks/bench_distill_memory.py [--out benchmarks/results/distill_memory.txt]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import report_header, write_report  # noqa: E402
VOCAB = 131072
BATCH, SEQ, STEPS = 4, 128, 3


def _config(root: Path, chunk: int):
    from fusion_gui.engine.distill import config_from_dict

    return config_from_dict({"teacher": str(root / "teacher"), "student": str(root / "student"),
                             "data": str(root / "corpus.txt"), "losses": {"forward_kl": 1.0},
                             "training": {"max_steps": STEPS, "batch_size": BATCH, "seq_length": SEQ,
                                          "device": "cpu", "loss_chunk": chunk, "eval_every": 0}})


def one(root: Path, chunk: int) -> None:
    """In a fresh process: run the distillation, print peak growth and the estimate as JSON."""
    import torch

    from fusion_gui.engine.distill import distill
    from fusion_gui.engine.distill.preflight import estimate_memory
    from fusion_gui.engine.merge.memory import JobMemory

    torch.set_num_threads(1)
    config = _config(root, chunk)
    memory = JobMemory().start()
    started = time.monotonic()
    gen = distill(config, root / f"out-{chunk}", smoke=False)
    try:
        while True:
            next(gen)
    except StopIteration:
        pass
    seconds = time.monotonic() - started
    peak = memory.stop()
    estimate = estimate_memory(config, VOCAB, False)
    print(json.dumps({"peak": peak, "estimate": estimate.total, "logits_estimate": estimate.logits,
                      "seconds": seconds}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="benchmarks/results/distill_memory.txt")
    p.add_argument("--one", nargs=2, metavar=("ROOT", "CHUNK"))
    args = p.parse_args()
    if args.one:
        one(Path(args.one[0]), int(args.one[1]))
        return
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config, write_tiny_tokenizer

    started = time.monotonic()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, seed in (("teacher", 0), ("student", 1)):
            save_model(build_model(tiny_config("llama", layers=2, hidden=64, vocab=VOCAB), seed=seed), root / name,
                       max_shard_size="2GB", tokenizer=False)
            write_tiny_tokenizer(root / name, 256)
        (root / "corpus.txt").write_text("\n".join(f"line {i}: the quick brown fox jumps over the lazy dog."
                                                   for i in range(200)))
        for chunk in (0, 128, 32):
            out = subprocess.run([sys.executable, __file__, "--one", str(root), str(chunk)], capture_output=True,
                                 text=True, env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])})
            if out.returncode:
                raise SystemExit(out.stderr[-3000:])
            results[chunk] = json.loads(out.stdout.strip().splitlines()[-1])
    mb = 1 << 20
    full = results[0]["peak"]
    lines = [*report_header("bench_distill_memory.py"),
             f"# tiny llama teacher and student (2 layers, width 64), {VOCAB} output rows, batch {BATCH} x {SEQ} "
             f"tokens, forward KL, {STEPS} steps; peak growth of RSS over the whole job (loading included)",
             "",
             "| loss_chunk (positions) | measured peak | estimated peak | estimated logits | peak vs full logits |",
             "|---|---|---|---|---|"]
    for chunk, r in results.items():
        lines.append(f"| {chunk or 'off (full logits)'} | {r['peak'] / mb:.0f} MiB | {r['estimate'] / mb:.0f} MiB | "
                     f"{r['logits_estimate'] / mb:.0f} MiB | {r['peak'] / full:.2f}x |")
    lines += ["", f"# benchmark wall time {time.monotonic() - started:.0f} s"]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
