"""Multiple-choice scoring speed: ours (engine/evaluate/tasks.py) against lm-evaluation-harness's own
HFLM, on the same local task and the same loaded model, in one run.

    python benchmarks/bench_mc_scoring.py [--examples 64] [--rounds 3] [--layers 4] [--hidden 256]
        [--vocab 16384] [--batch-size 16] [--device auto]

Rounds alternate (ours, lm-eval's loglikelihood, lm-eval's simple_evaluate, ...); each prints
examples per second, and the medians and their ratios come last. Both score the same requests, so
the accuracies must agree: the script checks that too.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"
sys.path.insert(0, str(ROOT))


def build(layers: int, hidden: int, vocab: int) -> Path:
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config

    path = WORK / f"mc-l{layers}-h{hidden}-v{vocab}"
    if not (path / "config.json").exists():
        save_model(build_model(tiny_config("llama", layers=layers, hidden=hidden, vocab=vocab), seed=0), path,
                   max_shard_size="500MB")
    return path


def write_task(folder: Path, examples: int) -> tuple[Path, Path]:
    words = "red green blue stone river bread apple fish light water town road cloud hill".split()
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "bench_mc.jsonl"
    with open(data, "w") as f:
        for _ in range(examples):
            story = " ".join(rng.choice(words) for _ in range(rng.randint(10, 30)))
            choices = [" ".join(rng.sample(words, rng.randint(1, 4))) for _ in range(4)]
            f.write(json.dumps({"query": f"{story}\nQuestion: what comes next?\nAnswer:", "choices": choices,
                                "answer": rng.randrange(4)}) + "\n")
    (folder / "bench_mc.yaml").write_text(
        f"task: bench_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{query}}\"\ndoc_to_choice: choices\n"
        "doc_to_target: answer\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    return data, folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch's default)")
    args = parser.parse_args()

    import logging

    import torch
    from lm_eval import simple_evaluate
    from lm_eval.api.instance import Instance
    from lm_eval.tasks import TaskManager

    from fusion_gui.engine.evaluate.harness import _cancellable_lm
    from fusion_gui.engine.evaluate.loglikelihood import encode_pair
    from fusion_gui.engine.evaluate.scoring import load_causal_lm
    from fusion_gui.engine.evaluate.task_files import read_examples
    from fusion_gui.engine.evaluate.tasks import load_task, run_task

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_path = build(args.layers, args.hidden, args.vocab)
    data, folder = write_task(WORK / "mc-task", args.examples)
    model, tokenizer = load_causal_lm(model_path, args.device)
    task = load_task(data)
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    lm = _cancellable_lm(model, tokenizer, args.batch_size, None)
    requests = [Instance("loglikelihood", {}, (e.query, " " + c), i)
                for i, e in enumerate(read_examples(task)) for c in e.choices]

    def ours():
        gen = run_task(model, tokenizer, task, label="m", batch_size=args.batch_size)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            return {r.metric.split("/")[1]: r.value for r in stop.value}

    def theirs_loglikelihood():
        lm.loglikelihood(requests, disable_tqdm=True)

    def theirs_evaluate():
        out = simple_evaluate(model=lm, tasks=["bench_mc"], task_manager=manager, log_samples=False,
                              bootstrap_iters=0)
        metrics = out["results"]["bench_mc"]
        return {"acc": metrics["acc,none"], "acc_norm": metrics["acc_norm,none"]}

    jobs = {"ours": ours, "lm-eval loglikelihood": theirs_loglikelihood, "lm-eval simple_evaluate": theirs_evaluate}
    speeds = {name: [] for name in jobs}
    answers = {}
    ours(), theirs_loglikelihood()  # warm-up: first calls pay for allocations and lazy imports
    for round_ in range(args.rounds):
        for name, job in jobs.items():
            start = time.perf_counter()
            result = job()
            seconds = time.perf_counter() - start
            speeds[name].append(args.examples / seconds)
            if result:
                answers[name] = result
            print(f"round {round_ + 1}  {name:<24} {args.examples / seconds:8.1f} examples/s", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    device = next(model.parameters()).device
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  commit {commit.stdout.strip()}  "
          f"{platform.machine()} {platform.processor() or platform.platform()}  device {device}  "
          f"torch threads {torch.get_num_threads()}")
    print(f"model: llama {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}; {args.examples} examples "
          f"x 4 choices; batch size {args.batch_size}; {args.rounds} rounds")
    median = {name: statistics.median(v) for name, v in speeds.items()}
    for name, value in median.items():
        print(f"median  {name:<24} {value:8.1f} examples/s   ours / this = {median['ours'] / value:.2f}")
    print(f"scores agree: {answers['ours'] == answers['lm-eval simple_evaluate']}  "
          f"(ours {answers['ours']}, lm-eval {answers['lm-eval simple_evaluate']})")


if __name__ == "__main__":
    main()
