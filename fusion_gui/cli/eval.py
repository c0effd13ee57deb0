"""`fusion-gui eval MODEL...`: perplexity, demo skill scores and side-by-side completions."""

from __future__ import annotations

from fusion_gui.cli.drive import EXIT_OK, drive


def add_parser(sub) -> None:
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


def run(args) -> int:
    from fusion_gui.engine.errors import InputError
    from fusion_gui.engine.evaluate.scoring import evaluate

    if not (args.text or args.task or args.prompt):
        raise InputError("Say what to measure: --text FILE, --task NAME or --prompt TEXT.")
    if args.prompt is not None and len(args.models) > 3:
        raise InputError("--prompt compares at most three models side by side.")
    quiet_transformers()
    result = drive(lambda cancel: evaluate(args.models, text_file=args.text, tasks=tuple(args.task),
                                           prompt=args.prompt, n=args.n, device=args.device, seed=args.seed,
                                           cancel=cancel))
    report(result, args.csv)
    return EXIT_OK


def quiet_transformers() -> None:
    """Our own progress is enough: no "Loading weights" bar from transformers for every model it loads."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def report(result, csv_path: str | None) -> None:
    from fusion_gui.engine.evaluate.report import format_generations, format_table, write_csv

    if result.rows:
        print(format_table(result.rows))
    if result.generations:
        print(format_generations(result.generations))
    if csv_path:
        write_csv(result.rows, csv_path)
        print(f"Wrote {csv_path}.")
