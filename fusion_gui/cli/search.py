"""`fusion-gui search SEARCH.yml OUT_DIR`: tune a merge's parameters against evaluation tasks, every candidate
merged in memory; the best recipe is written to OUT_DIR (and, with --merge, the best model through the normal
merge). `--resume` continues a paused, cancelled or killed search; `--worker` joins a running one (same storage)."""

from __future__ import annotations

from dataclasses import replace

from fusion_gui.cli.drive import EXIT_OK, drive, quiet_transformers
from fusion_gui.engine.errors import Cancelled, InputError

BEST_MODEL = "best-model"


def add_parser(sub) -> None:
    s = sub.add_parser("search", help="search merge parameters (grid, CMA-ES, NSGA-II) against evaluation tasks")
    s.add_argument("settings", metavar="SEARCH.yml", help="search settings file (the app writes the same)")
    s.add_argument("out_dir", nargs="?", metavar="OUT_DIR",
                   help="output folder: the study (search.sqlite), best recipe, trials CSV")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--resume", action="store_true", help="continue the search stored in OUT_DIR (or its storage)")
    how.add_argument("--worker", action="store_true",
                     help="join a running search through its storage and run trials for it")
    s.add_argument("--merge", action="store_true", help=f"also write the best model to OUT_DIR/{BEST_MODEL}")
    s.add_argument("--trials", type=int, help="trial budget (overrides the settings file)")
    s.add_argument("--seconds", type=float, help="time budget in seconds (overrides the settings file)")
    s.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="overrides the settings file")
    s.add_argument("--no-history", action="store_true", help="do not record the search in the history")


def run(args) -> int:
    from fusion_gui.engine.search.loop import run_search
    from fusion_gui.engine.search.settings import load_settings

    settings = load_settings(args.settings)
    overrides = {k: getattr(args, k) for k in ("trials", "seconds", "device") if getattr(args, k) is not None}
    settings = replace(settings, **overrides)
    if args.out_dir is None and not (args.worker and settings.storage):
        raise InputError("Give an output folder (a worker may instead name the storage in the settings file).")
    if args.merge and args.worker:
        raise InputError("A worker only runs trials; --merge belongs to the process that started the search.")
    quiet_transformers()
    mode = "worker" if args.worker else "resume" if args.resume else "new"
    result = _recorded(settings, mode, args, lambda cancel: run_search(settings, args.out_dir, cancel, mode=mode))
    print(f"{result.stopped.message} {result.trials} complete trials in {result.seconds:.1f} s.")
    for best in result.best[:1]:
        both = ", ".join(f"{k} {v:.3f} search / {best.held_out[k]:.3f} held out" for k, v in best.search.items())
        print(f"Best: trial {best.number}: {both}.")
    if result.recipe_file:
        print(f"Best recipe: {result.recipe_file}")
    if result.trials_csv:
        print(f"All trials: {result.trials_csv}")
    if args.merge and result.recipe_file:
        _merge_best(result)
    return EXIT_OK


def _recorded(settings, mode: str, args, start):
    """Run the search; the process that owns it (not a worker) records it in the history, whatever its outcome."""
    import time

    from fusion_gui.cli.recording import open_history

    history = None if args.no_history or mode == "worker" else open_history()
    began, status, result = time.perf_counter(), "failed", None
    try:
        result = drive(start, describe=describe)  # Ctrl-C marks the running trial failed: --resume goes on
        status = {"cancelled": "cancelled", "paused": "cancelled", "failures": "failed"}.get(result.stopped.reason,
                                                                                              "done")
        return result
    except (Cancelled, KeyboardInterrupt):
        status = "cancelled"
        raise
    finally:
        if history is not None:
            from fusion_gui.session.search_record import record_search

            record_search(history, settings, result, status, time.perf_counter() - began)


def _merge_best(result) -> None:
    from pathlib import Path

    from fusion_gui.engine.merge import MergeOptions, merge
    from fusion_gui.engine.merge.recipe import load_recipe

    out = Path(result.out_dir) / BEST_MODEL
    merged = drive(lambda cancel: merge(load_recipe(result.recipe_file), out, MergeOptions(), cancel=cancel))
    print(f"Wrote the best model: {merged.out_dir}")


def describe(event) -> str | None:
    """One line per search event, or None for events the printer draws."""
    from fusion_gui.engine.search import events as e

    if isinstance(event, e.TrialFinished):
        if event.state != "complete":
            return f"trial {event.number}: failed: {event.error}"
        return f"trial {event.number}: {_numbers(event.scores)} ({_numbers(event.params)}) {event.seconds:.1f} s"
    if isinstance(event, e.BestSoFar):
        return f"best so far: trial {event.number}: {_numbers(event.scores)}"
    if isinstance(event, e.ParetoFront):
        return f"Pareto front: trials {', '.join(map(str, event.numbers))}"
    if isinstance(event, e.HeldOutScore):
        return f"held out: trial {event.number}: {_numbers(event.held_out)} (search: {_numbers(event.search)})"
    if isinstance(event, e.SearchStopped):
        return f"stopped: {event.message}"
    if isinstance(event, e.TrialStarted):
        return ""  # a line per finished trial is enough
    return None


def _numbers(values: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in values.items())
