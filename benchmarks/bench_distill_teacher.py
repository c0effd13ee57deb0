"""The offline teacher and on-policy distillation, in one run: tokens per second training from a teacher
cache against the live teacher, and on-policy (lmbda 0.5) against TRL's GKDTrainer.

Same tiny teacher, student, corpus and packing as bench_distill_trl.py; one CPU thread, forward KL, the
same steps, batch and cosine schedule for every row. Tokens per second count the block tokens of the
steps between the first and the last step's end (loading, capture and saving excluded; the capture is
timed on its own row). Rows alternate over the repeats; medians are reported.

    python benchmarks/bench_distill_teacher.py [--steps 30] [--repeats 2] [--top-k 64]
        [--out benchmarks/results/distill_teacher.txt]

Needs the `bench` extra (trl) for the TRL row. Writes the table with date, commit and machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import report_header, write_report  # noqa: E402
from bench_distill_trl import corpus, heldout_perplexity, make_models, train_gkd  # noqa: E402
from fusion_gui.engine.distill import config_from_dict, distill  # noqa: E402
from fusion_gui.engine.distill.data import load_blocks  # noqa: E402
from fusion_gui.engine.distill.teacher_capture import capture_teacher  # noqa: E402
from fusion_gui.events import TrainStep  # noqa: E402


def _config(teacher, student, data, args, **extra):
    return config_from_dict({"teacher": str(teacher), "student": str(student), "data": str(data),
                             "losses": {"forward_kl": 1.0}, "training": {
                                 "max_steps": args.steps, "batch_size": args.batch, "seq_length": args.seq,
                                 "learning_rate": args.lr, "lr_schedule": "cosine", "eval_every": 0, "seed": 0,
                                 "device": "cpu"}} | extra)


def run_ours(config, out: Path, args) -> float:
    times = []
    gen = distill(config, out, smoke=False)
    try:
        while True:
            if isinstance(next(gen), TrainStep):
                times.append(time.monotonic())
    except StopIteration:
        pass
    return (len(times) - 1) * args.batch * args.seq / (times[-1] - times[0])


def run_trl_on_policy(teacher, student, train, out: Path, args):
    times, model = train_gkd(teacher, student, train, out, args, lmbda=0.5, new_tokens=args.new_tokens)
    wall = [t for t, _ in times]
    return (len(wall) - 1) * args.batch * args.seq / (wall[-1] - wall[0]), model


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--top-k", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-trl", action="store_true")
    p.add_argument("--out", default="benchmarks/results/distill_teacher.txt")
    args = p.parse_args()
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    started = time.monotonic()
    names = ["live teacher", f"teacher cache (top {args.top_k})", "on-policy lmbda 0.5 (ours)"]
    names += [] if args.no_trl else ["on-policy lmbda 0.5 (TRL GKDTrainer)"]
    rows: dict[str, list] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "corpus.txt"
        data.write_text(corpus(3000))
        teacher, student = make_models(root, data, args.seq)
        train, held = load_blocks(data, "text", AutoTokenizer.from_pretrained(student), args.seq, 0.1, 0)
        began = time.monotonic()
        gen = capture_teacher(_config(teacher, student, data, args), root / "cache", args.top_k)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            capture = stop.value
        capture_s = time.monotonic() - began
        on_policy = {"lmbda": 0.5, "max_new_tokens": args.new_tokens, "temperature": 1.0, "samples_every": 0}
        configs = {names[0]: _config(teacher, student, data, args),
                   names[1]: _config(teacher, student, data, args, teacher_cache=str(root / "cache")),
                   names[2]: _config(teacher, student, data, args, on_policy=on_policy)}
        for r in range(args.repeats):
            for name, config in configs.items():
                out = root / f"run{r}-{len(rows[name])}-{names.index(name)}"
                speed = run_ours(config, out, args)
                rows[name].append((speed, heldout_perplexity(AutoModelForCausalLM.from_pretrained(out), held)))
            if not args.no_trl:
                speed, model = run_trl_on_policy(teacher, student, train, root / f"trl{r}", args)
                rows[names[3]].append((speed, heldout_perplexity(model, held)))
        t_ppl = heldout_perplexity(AutoModelForCausalLM.from_pretrained(teacher), held)
    med = {k: (statistics.median(s for s, _ in v), statistics.median(q for _, q in v)) for k, v in rows.items()}
    base = med[names[0]][0]
    lines = [
        *report_header("bench_distill_teacher.py"),
        f"# {args.steps} steps, batch {args.batch} x {args.seq} tokens, lr {args.lr} cosine, forward KL; "
        f"{len(train)} train / {len(held)} held-out blocks; median of {args.repeats} alternating repeats; "
        f"on-policy: {args.new_tokens} new tokens after a {args.seq - args.new_tokens}-token prompt, T 1",
        f"# capture: {capture.blocks} blocks, top {capture.top_k}, {capture.bytes_written / 1e6:.1f} MB "
        f"in {capture_s:.1f} s; held-out perplexity of the teacher {t_ppl:.3f}",
        "",
        "| run | tokens/s | vs live teacher | held-out perplexity |",
        "|---|---|---|---|",
        *(f"| {n} | {med[n][0]:.0f} | {med[n][0] / base:.2f}x | {med[n][1]:.3f} |" for n in names),
        "",
        f"all runs: {[f'{k}: {s:.0f} tok/s ppl {q:.3f}' for k in rows for s, q in rows[k]]}",
        f"# benchmark wall time {time.monotonic() - started:.0f} s",
    ]
    if not args.no_trl:
        lines.insert(-2, f"on-policy ours / TRL: speed {med[names[2]][0] / med[names[3]][0]:.2f}x, "
                         f"perplexity {med[names[2]][1] / med[names[3]][1]:.3f}")
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
