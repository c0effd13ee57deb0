"""`fusion-gui eval` and `fusion-gui demo`: score models and show what a merge of the demo models keeps."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from fusion_gui.events import EvalResult, EvalRow, Generation, Log, StepProgress

# the demo merge: task arithmetic adds both fine-tunes' changes to the base (weights measured best)
DEMO_MERGE = {"merge_method": "task_arithmetic", "weight": 0.8}


def demo_recipe(base: str | Path, fine_tunes: list[str | Path]):
    """The recipe the demo merges with (the app loads it too, so the demo is one click from Run)."""
    from fusion_gui.engine.merge.recipe import recipe_from_dict

    return recipe_from_dict({
        "merge_method": DEMO_MERGE["merge_method"], "base_model": str(base), "dtype": "float32",
        "models": [{"model": str(p), "parameters": {"weight": DEMO_MERGE["weight"]}} for p in fine_tunes]})


def add_eval_parser(sub) -> None:
    e = sub.add_parser("eval", help="perplexity, demo skill scores and side-by-side generation")
    e.add_argument("models", nargs="+", metavar="MODEL", help="Hugging Face folders (or hub cache ids)")
    e.add_argument("--text", metavar="FILE", help="perplexity on this text file")
    e.add_argument("--task", action="append", default=[], metavar="NAME",
                   help="a demo skill to score: count, reverse (repeat for both)")
    e.add_argument("--prompt", help="show each model's greedy and sampled completion (at most three models)")
    e.add_argument("-n", type=int, default=60, help="held-out problems per task (default 60)")
    e.add_argument("--seed", type=int, default=0, help="seed for the sampled completion")
    e.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    e.add_argument("--csv", metavar="FILE", help="also write the table to a CSV file")


class _StepPrinter:
    """One tqdm bar per stage of StepProgress; log lines to stderr."""

    def __init__(self):
        self.bar, self.stage = None, None

    def show(self, event) -> None:
        if isinstance(event, Log):
            self._close()
            print(event.message, file=sys.stderr)
        elif isinstance(event, StepProgress):
            if event.stage != self.stage:
                from tqdm import tqdm

                self._close()
                self.bar = tqdm(total=event.total, desc=event.stage, file=sys.stderr, leave=False)
                self.stage = event.stage
            self.bar.update(event.done - self.bar.n)
            if event.loss is not None:
                self.bar.set_postfix_str(f"loss {event.loss:.3f}", refresh=False)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.stage = None, None


def drive(gen):
    from transformers.utils import logging

    logging.disable_progress_bar()  # our own bar is enough; no per-load "Loading weights" bars
    printer = _StepPrinter()
    try:
        while True:
            try:
                printer.show(next(gen))
            except StopIteration as stop:
                return stop.value
    except KeyboardInterrupt:
        gen.close()
        raise
    finally:
        printer._close()


def table(rows: tuple[EvalRow, ...]) -> tuple[list[str], list[str], dict[tuple[str, str], EvalRow]]:
    """(models, metrics, cells) in first-seen order: the models x metrics grid the CLI and app show."""
    models = list(dict.fromkeys(r.model for r in rows))
    metrics = list(dict.fromkeys(r.metric for r in rows))
    return models, metrics, {(r.model, r.metric): r for r in rows}


def format_value(row: EvalRow | None) -> str:
    if row is None:
        return "-"
    return f"{row.value:.2f}" if row.metric == "perplexity" else f"{100 * row.value:.0f}%"


def format_table(rows: tuple[EvalRow, ...]) -> str:
    models, metrics, cells = table(rows)
    header = ["model"] + [m if m == "perplexity" else f"{m} (exact match)" for m in metrics]
    body = [[m] + [format_value(cells.get((m, k))) for k in metrics] for m in models]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + body]
    return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])


def write_csv(rows: tuple[EvalRow, ...], path: str | Path) -> None:
    """One line per model, one column per metric (raw values: accuracy 0..1), plus the counts."""
    models, metrics, cells = table(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["model"] + metrics + [f"{m}_n" for m in metrics])
        for m in models:
            got = [cells.get((m, k)) for k in metrics]
            w.writerow([m] + ["" if r is None else repr(r.value) for r in got]
                       + ["" if r is None else r.n for r in got])


def format_generations(gens: tuple[Generation, ...]) -> str:
    lines = []
    for g in gens:
        lines.append(f"[{g.model}, {g.mode}] {g.prompt}{g.text}")
    return "\n".join(lines)


def run_eval(args) -> int:
    from fusion_gui.engine.errors import InputError
    from fusion_gui.engine.evaluate.scoring import evaluate

    if not (args.text or args.task or args.prompt):
        raise InputError("Say what to measure: --text FILE, --task NAME or --prompt TEXT.")
    if args.prompt is not None and len(args.models) > 3:
        raise InputError("--prompt compares at most three models side by side.")
    result: EvalResult = drive(evaluate(args.models, text_file=args.text, tasks=tuple(args.task),
                                        prompt=args.prompt, n=args.n, device=args.device, seed=args.seed))
    _report(result, args.csv)
    return 0


def _report(result: EvalResult, csv_path: str | None) -> None:
    if result.rows:
        print(format_table(result.rows))
    if result.generations:
        print(format_generations(result.generations))
    if csv_path:
        write_csv(result.rows, csv_path)
        print(f"Wrote {csv_path}.")


def run_demo(args) -> int:
    """Build (or reuse) the demo models, merge the two fine-tunes, score all four on both skills."""
    from fusion_gui.engine.evaluate.demo import SKILLS, build_demo, data_root
    from fusion_gui.engine.evaluate.scoring import evaluate
    from fusion_gui.engine.merge import MergeOptions, merge
    from fusion_gui.engine.merge.recipe import dump_recipe

    demo = drive(build_demo())
    recipe = demo_recipe(demo.base, [demo.count, demo.reverse])
    print("Recipe:\n" + "\n".join("  " + line for line in dump_recipe(recipe).splitlines()))
    out = data_root() / "demo-merge"
    merged = drive(merge(recipe, out, MergeOptions(device="cpu", force=True)))
    print(f"Merged into {merged.out_dir} in {merged.seconds:.1f} s.")
    result = drive(evaluate([*demo.paths, out], tasks=SKILLS))
    _report(result, getattr(args, "csv", None))
    return 0
