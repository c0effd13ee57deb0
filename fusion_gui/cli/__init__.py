"""`fusion-gui`: no subcommand opens the app; subcommands run the engine headless.

One module per subcommand (`add_parser(sub)` and `run(args) -> exit code`); `drive.py` runs an engine job
and maps its outcome to the exit code; `printer.py` draws the job's events.
Exit codes: 0 done, 2 bad input (the message names the file, tensor or key), 130 cancelled, 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fusion_gui.cli.drive import EXIT_OK, guarded

# subcommand -> module in this package, in the order `--help` lists them
COMMANDS = {"merge": "merge", "diff": "diff", "methods": "methods", "demo": "demo", "eval": "eval",
            "distill": "distill", "capture-teacher": "capture_teacher", "extract-lora": "extract_lora",
            "history": "history", "inspect": "inspect", "push": "push", "search": "search"}


def _module(name: str):
    return importlib.import_module(f"fusion_gui.cli.{name}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fusion-gui", description="Merge and distill Hugging Face models.")
    p.add_argument("--selftest", action="store_true", help="build tiny models, merge them headless, load the result")
    p.add_argument("--version", action="store_true", help="print the version")
    sub = p.add_subparsers(dest="command")
    for module in COMMANDS.values():
        _module(module).add_parser(sub)
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
        return guarded(lambda: _module("selftest").run(args))
    if args.command is None:
        from fusion_gui.ui.app import run_gui

        return run_gui(argv)
    return guarded(lambda: _module(COMMANDS[args.command]).run(args))
