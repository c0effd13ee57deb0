"""`fusion-gui`: no subcommand opens the app; subcommands run the engine headless.

Exit codes: 0 done, 2 bad input (the message names the file, tensor or key), 130 cancelled,
1 anything else.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_CANCELLED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fusion-gui", description="Merge and distill Hugging Face models.")
    p.add_argument("--selftest", action="store_true", help="build tiny models, merge them headless, load the result")
    p.add_argument("--version", action="store_true", help="print the version")
    sub = p.add_subparsers(dest="command")
    m = sub.add_parser("merge", help="merge models as a mergekit-style YAML recipe says")
    m.add_argument("config", help="recipe YAML file")
    m.add_argument("out_dir", help="output folder (must not exist, unless --force)")
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    m.add_argument("--out-shard-size", default="5GB", help="largest output shard, e.g. 5GB, 500MB (default 5GB)")
    m.add_argument("--seed", type=int, default=None, help="seed for random methods (overrides random_seed)")
    m.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    m.add_argument("--dry-run", action="store_true", help="check everything and print the plan; write nothing")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    d = sub.add_parser("diff", help="compare two models layer by layer (optionally against a base)")
    d.add_argument("model_a")
    d.add_argument("model_b")
    d.add_argument("--base", default=None, help="measure both models' changes from this base")
    d.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    g = d.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="print every tensor's and layer's metrics as JSON")
    g.add_argument("--csv", metavar="FILE", help="write per-tensor metrics to a CSV file")
    sub.add_parser("methods", help="list merge methods and their parameters")
    sub.add_parser("demo", help="build the demo models (or reuse them), merge them and score the merge")
    from fusion_gui.cli_eval import add_eval_parser

    add_eval_parser(sub)
    from fusion_gui.cli_distill import add_parser as add_distill_parser

    add_distill_parser(sub)
    from fusion_gui.cli_lora import add_parser as add_lora_parser

    add_lora_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].lower().endswith((".yml", ".yaml")):  # `fusion-gui recipe.yml`: open it in the app
        from fusion_gui.ui.app import run_gui

        return run_gui(argv)
    args = _parser().parse_args(argv)
    if args.version:
        from fusion_gui import __version__

        print(__version__)
        return EXIT_OK
    if args.selftest:
        return _guarded(_selftest)
    if args.command is None:
        from fusion_gui.ui.app import run_gui

        return run_gui(argv)
    return _guarded(lambda: _COMMANDS[args.command](args))


def _guarded(action) -> int:
    from fusion_gui.engine.errors import Cancelled, InputError

    try:
        return action()
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except (Cancelled, KeyboardInterrupt):
        print("cancelled; nothing was written.", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as err:  # noqa: BLE001 - the top of the program: report, do not crash
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR


def _drive(gen, progress: bool):
    """Run an engine generator to completion, drawing a progress bar from its events."""
    from fusion_gui.cli_progress import ProgressPrinter

    printer = ProgressPrinter(enabled=progress)
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            printer.show(event)
    except KeyboardInterrupt:
        gen.close()  # runs the job's cleanup now, not at garbage collection
        raise
    finally:
        printer.close()


def _merge(args) -> int:
    from fusion_gui.cli_progress import describe_plan, human_bytes
    from fusion_gui.engine.merge import MergeOptions, merge, plan_merge
    from fusion_gui.engine.merge.recipe import load_recipe

    recipe = load_recipe(args.config)
    options = MergeOptions(device=args.device, out_shard_size=args.out_shard_size, seed=args.seed,
                           force=args.force)
    if args.dry_run:
        plan = plan_merge(recipe, args.out_dir, options)
        try:
            print(describe_plan(plan))
        finally:
            plan.close()
        return EXIT_OK
    result = _drive(merge(recipe, args.out_dir, options), progress=not args.no_progress)
    print(f"Wrote {result.out_dir}: {result.tensors} tensors, {human_bytes(result.bytes_written)} in "
          f"{result.shards} shard(s), {result.seconds:.1f} s, peak memory {human_bytes(result.peak_bytes)} (this merge's own).")
    return EXIT_OK


def _diff(args) -> int:
    from fusion_gui.cli_progress import diff_report
    from fusion_gui.engine.inspect.diff import diff

    result = _drive(diff(args.model_a, args.model_b, base=args.base, device=args.device),
                    progress=not args.json)
    print(diff_report(result, as_json=args.json, csv_path=args.csv))
    return EXIT_OK


def _methods(args) -> int:
    from fusion_gui.cli_progress import describe_methods

    print(describe_methods())
    return EXIT_OK


def _demo(args) -> int:
    from fusion_gui.cli_eval import run_demo

    return run_demo(args)


def _eval(args) -> int:
    from fusion_gui.cli_eval import run_eval

    return run_eval(args)


def _selftest() -> int:
    import torch
    from transformers import AutoModelForCausalLM

    from fusion_gui.engine.merge import MergeOptions, merge
    from fusion_gui.engine.merge.recipe import recipe_from_dict
    from fusion_gui.engine.synthetic_models import build_family

    with tempfile.TemporaryDirectory(prefix="fusion-selftest-") as tmp:
        paths = build_family(Path(tmp), "llama", n_finetunes=2)
        recipe = recipe_from_dict({"merge_method": "ties", "base_model": str(paths[0]), "models": [
            {"model": str(p), "parameters": {"weight": 0.5, "density": 0.7}} for p in paths[1:]]})
        result = _drive(merge(recipe, Path(tmp) / "merged", MergeOptions(device="cpu")), progress=False)
        model = AutoModelForCausalLM.from_pretrained(result.out_dir)
        logits = model(torch.tensor([[1, 2, 3, 4]])).logits
        if not torch.isfinite(logits).all():
            print("selftest FAILED: the merged model gives non-finite logits", file=sys.stderr)
            return EXIT_ERROR
    print(f"selftest ok: merged {result.tensors} tensors and loaded the result with transformers.")
    return EXIT_OK


def _distill(args) -> int:
    from fusion_gui.cli_distill import run

    return run(args)


def _extract_lora(args) -> int:
    from fusion_gui.cli_lora import run

    return run(args)


_COMMANDS = {"merge": _merge, "diff": _diff, "methods": _methods, "demo": _demo, "eval": _eval, "distill": _distill,
             "extract-lora": _extract_lora}
