"""`fusion-gui eval MODEL... --task ...`: task files (multiple choice, generation, perplexity), lm-eval
tasks, the demo skills, perplexity on a text file and side-by-side completions. Scores of an unchanged
model on an unchanged task come from the history; every evaluation is recorded there."""

from __future__ import annotations

import time

from fusion_gui.cli.drive import EXIT_OK, drive, quiet_transformers
from fusion_gui.cli.recording import open_history
from fusion_gui.engine.errors import Cancelled

DEMO_SKILLS = ("count", "reverse")


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="score models on task files, lm-eval tasks, demo skills or a text")
    e.add_argument("models", nargs="+", metavar="MODEL", help="Hugging Face folders (or hub cache ids)")
    e.add_argument("--task", action="append", default=[], metavar="TASK",
                   help="FILE.jsonl (multiple choice or generation), a text file (perplexity), lm-eval:NAME, "
                        "or a demo skill: count, reverse (repeat for more)")
    e.add_argument("--text", metavar="FILE", help="perplexity on this text file")
    e.add_argument("--prompt", help="show each model's greedy and sampled completion (at most three models)")
    e.add_argument("--chat-template", action="store_true", help="wrap each question in the model's chat template")
    e.add_argument("--regex", help="generation tasks: exact match on this pattern's first group")
    e.add_argument("--max-new-tokens", type=int, default=64, help="generation tasks: tokens to generate")
    e.add_argument("--limit", type=int, default=None, help="score only the first N examples of each task")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--include-path", metavar="DIR", help="a folder of lm-eval task YAMLs (local tasks)")
    e.add_argument("--allow-download", action="store_true", help="lm-eval tasks may download their datasets")
    e.add_argument("--fresh", action="store_true", help="score again even when the history has the scores")
    e.add_argument("-n", type=int, default=60, help="held-out problems per demo skill (default 60)")
    e.add_argument("--seed", type=int, default=0, help="seed for the sampled completion")
    e.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    e.add_argument("--csv", metavar="FILE", help="also write the table to a CSV file")
    e.add_argument("--write-card", action="store_true",
                   help="add the task scores to each model folder's README.md (the Hub's model-index)")


def run(args) -> int:
    from fusion_gui.engine.errors import InputError
    from fusion_gui.events import EvalResult

    skills = tuple(t for t in args.task if t in DEMO_SKILLS)
    specs = [t for t in args.task if t not in DEMO_SKILLS]
    if not (args.text or args.task or args.prompt):
        raise InputError("Say what to measure: --task FILE|lm-eval:NAME|count|reverse, --text FILE or --prompt TEXT.")
    if args.prompt is not None and len(args.models) > 3:
        raise InputError("--prompt compares at most three models side by side.")
    tasks = _tasks(specs, args)  # every task file checked before any model loads
    quiet_transformers()
    from fusion_gui.session.evaluation import EvalOptions

    from fusion_gui.engine.merge.memory import JobMemory

    history, began, status = open_history(), time.perf_counter(), "failed"
    memory = JobMemory().start()  # the evaluation's own peak, as a merge reports its own
    options = EvalOptions(device=args.device, batch_size=args.batch_size, allow_download=args.allow_download,
                          use_cache=not args.fresh)
    rows, generations = [], []
    try:
        if skills or args.text or args.prompt:
            from fusion_gui.engine.evaluate.scoring import evaluate

            demo = drive(lambda cancel: evaluate(args.models, text_file=args.text, tasks=skills, prompt=args.prompt,
                                                 n=args.n, device=args.device, seed=args.seed, cancel=cancel))
            rows, generations = list(demo.rows), list(demo.generations)
        if tasks:
            from fusion_gui.session.evaluation import evaluate_models

            result = drive(lambda cancel: evaluate_models(args.models, tasks, history, options, cancel))
            rows += list(result.rows)
        status = "done"
    except (Cancelled, KeyboardInterrupt):
        status = "cancelled"
        raise
    finally:
        if history is not None:
            from fusion_gui.session.run_records import record_eval

            names = list(skills) + ([args.text] if args.text else []) + [_name(t) for t in tasks]
            record_eval(history, args.models, names, rows, status, time.perf_counter() - began,
                        memory.stop(), hashes=options.hashes)
            history.close()
    report(EvalResult(tuple(rows), tuple(generations), time.perf_counter() - began), args.csv)
    if args.write_card:
        _write_cards(args.models, rows)
    return EXIT_OK


def _write_cards(models: list[str], rows) -> None:
    """Each local model folder's README.md gets its task scores ("<task>/<metric>" rows only)."""
    from pathlib import Path

    from fusion_gui.engine.evaluate.model_card import add_model_index, card_scores
    from fusion_gui.engine.evaluate.scoring import model_labels

    for model, label in zip(models, model_labels(models)):
        mine = [r for r in rows if r.model == label and "/" in r.metric]
        if mine and Path(model).is_dir():
            add_model_index(Path(model) / "README.md", Path(model).name, card_scores(mine))
            print(f"Added {len(mine)} scores to {Path(model) / 'README.md'}.")


def _tasks(specs: list[str], args):
    from fusion_gui.engine.evaluate.task_files import TaskSettings
    from fusion_gui.session.evaluation import parse_task

    settings = TaskSettings(regex=args.regex, max_new_tokens=args.max_new_tokens, chat_template=args.chat_template,
                            limit=args.limit)
    return [parse_task(s, settings, args.include_path) for s in specs]


def _name(task) -> str:
    from fusion_gui.session.evaluation import HarnessTask

    return f"lm-eval:{task.name}" if isinstance(task, HarnessTask) else str(task.path)


def report(result, csv_path: str | None) -> None:
    from fusion_gui.engine.evaluate.report import format_generations, format_table, write_csv

    if result.rows:
        print(format_table(result.rows))
    if result.generations:
        print(format_generations(result.generations))
    if csv_path:
        write_csv(result.rows, csv_path)
        print(f"Wrote {csv_path}.")
