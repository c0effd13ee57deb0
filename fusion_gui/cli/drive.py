"""The one drive loop: run an engine job to its result, draw its events, turn its outcome into an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator

from fusion_gui.cli.printer import Printer
from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import Cancelled, InputError

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_CANCELLED = 0, 1, 2, 130


def drive(start: Callable[[CancelToken], Generator], progress: bool = True,
          describe: Callable[[object], str | None] | None = None):
    """Run `start(cancel)`'s generator to its return value, drawing its events (progress bars only when
    `progress`; warnings always). `describe` may turn an event into one plain line (a subcommand's own
    events); the printer draws the rest. Ctrl-C sets the token (threads the job started stop too) and
    closes the generator now, so its cleanup removes any partial output before the program exits."""
    cancel = CancelToken()
    gen = start(cancel)
    printer = Printer(enabled=progress)
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            line = describe(event) if describe is not None else None
            if line:
                printer.say(line)
            else:
                printer.show(event)
    except KeyboardInterrupt:
        cancel.cancel()
        gen.close()
        raise Cancelled("Cancelled by the user.") from None
    finally:
        printer.close()


def guarded(action: Callable[[], int]) -> int:
    """The top of the program: one sentence on stderr for whatever went wrong, and its exit code."""
    try:
        return action()
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except (Cancelled, KeyboardInterrupt):
        print("cancelled; nothing was written.", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as err:  # noqa: BLE001 - report, do not crash with a traceback
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR


def quiet_transformers() -> None:
    """Our own progress is enough: no "Loading weights" bar from transformers for every model it loads
    (the evaluation, the demo, and the smoke check after a merge or a distillation)."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def smoke_line(verdict) -> str | None:
    """The smoke check's verdict in one line (with its reasons), for the end of a merge or a distillation."""
    if verdict is None:
        return None
    reasons = "; ".join(verdict.reasons)
    return f"Smoke check: {verdict.verdict}" + (f": {reasons}" if reasons else ".")
