"""`fusion-gui history [list|show ID|export FILE]`: the runs recorded in the history, newest first
or best first by a score."""

from __future__ import annotations

import json
import time

from fusion_gui.cli.drive import EXIT_OK


def add_parser(sub) -> None:
    h = sub.add_parser("history", help="list, show or export the recorded merges, distillations and evaluations")
    h.add_argument("action", nargs="?", default="list", choices=["list", "show", "export"])
    h.add_argument("target", nargs="?", help="show: a run's id; export: FILE.csv or FILE.json")
    h.add_argument("--kind", choices=["merge", "distill", "eval", "search"], help="only runs of this kind")
    h.add_argument("--sort", metavar="SCORE", help="best first by a score, e.g. arc_easy/acc_norm or acc")
    h.add_argument("--search", metavar="TEXT", help="runs whose title, recipe, output or inputs contain TEXT")
    h.add_argument("--limit", type=int, default=None, help="at most N runs")


def run(args) -> int:
    from fusion_gui.engine.errors import InputError
    from fusion_gui.session.history import History

    history = History()
    if history.notice:
        import sys

        print(f"warning: {history.notice}", file=sys.stderr)
    try:
        if args.action == "show":
            if not (args.target or "").isdigit():
                raise InputError("Say which run to show: fusion-gui history show ID (the ids are in the list).")
            try:
                print(describe(history.get(int(args.target))))
            except KeyError as err:
                raise InputError(err.args[0]) from None
            return EXIT_OK
        runs = history.runs(kind=args.kind, search=args.search, sort_by=args.sort, limit=args.limit)
        if args.action == "export":
            from fusion_gui.session.history_export import export_runs

            if not args.target or not args.target.lower().endswith((".csv", ".json")):
                raise InputError("Say where to export: fusion-gui history export FILE.csv (or FILE.json).")
            print(f"Wrote {len(runs)} runs to {export_runs(runs, args.target)}.")
            return EXIT_OK
        print(listing(runs, args.sort))
        return EXIT_OK
    finally:
        history.close()


def listing(runs, sort: str | None) -> str:
    if not runs:
        return "No runs recorded yet."
    lines = [f"{'id':>4}  {'when':<16}  {'kind':<7}  {'status':<9}  {'verdict':<10}  "
             + (f"{sort:<12}  " if sort else "") + "title"]
    for r in runs:
        best = _best(r, sort) if sort else None
        lines.append(f"{r.id:>4}  {time.strftime('%Y-%m-%d %H:%M', time.localtime(r.started)):<16}  {r.kind:<7}  "
                     f"{r.status:<9}  {r.verdict or '-':<10}  "
                     + (f"{'-' if best is None else f'{best:.4g}':<12}  " if sort else "") + r.title)
    return "\n".join(lines)


def _best(run, sort: str):
    task, _, metric = sort.rpartition("/")
    values = [s.value for s in run.scores if s.metric == metric and (not task or s.task == task)]
    return max(values, default=None)


def describe(run) -> str:
    lines = [f"run {run.id}: {run.kind}, {run.status}, {time.strftime('%Y-%m-%d %H:%M', time.localtime(run.started))}",
             f"  title:    {run.title}", f"  output:   {run.output or '-'}",
             f"  seconds:  {'-' if run.seconds is None else f'{run.seconds:.1f}'}",
             f"  peak:     {'-' if run.peak_bytes is None else f'{run.peak_bytes / 1e9:.2f} GB'}",
             f"  verdict:  {run.verdict or '-'}"]
    lines += [f"  {i.role}: {i.path} (sha256 {i.content_hash[:16] or '-'})" for i in run.inputs]
    lines += [f"  score: {s.model} {s.task}/{s.metric} = {s.value:.4g} (n={s.n})" for s in run.scores]
    smoke = run.details.get("smoke")
    if smoke:
        lines += [f"  smoke {c['name']}: {c['status']}. {c['detail']}" for c in smoke["checks"]]
    if run.recipe:
        lines += ["  recipe:"] + [f"    {line}" for line in run.recipe.splitlines()]
    if run.details.get("layer_metrics"):
        lines.append(f"  per-layer metrics: {len(run.details['layer_metrics'])} layers (export to JSON to see them)")
    return "\n".join(lines)
