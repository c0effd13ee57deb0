"""The one printer: draws an engine job's events on stderr, dispatching on the event's type.

On a terminal a tqdm bar; otherwise (a log file, a pipe, CI) a plain line at each quarter of the work,
because a bar redrawn into a file repeats its whole line at every update."""

from __future__ import annotations

import functools
import sys

from fusion_gui.engine.hub.events import DownloadProgress, UploadProgress
from fusion_gui.events import EvalStep, Log, Progress, StepProgress, TrainStep
from fusion_gui.formatting import format_bytes

QUARTERS = 4  # plain progress lines per counter when stderr is not a terminal


class Printer:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled  # progress drawn at all (warnings are shown regardless)
        self.tty = sys.stderr.isatty()
        self.bar = None  # the tqdm bar on a terminal
        self.key = None  # what the current counter counts: a stage name, "progress", "distill"
        self.shown = 0  # quarters already printed as plain lines for this counter

    @functools.singledispatchmethod
    def show(self, event) -> None:
        """Events the command line does not draw: per-tensor metrics, the plan summary, LoRA errors."""

    @show.register
    def _(self, event: Log) -> None:
        if event.level == "warning":
            self.say("warning: " + event.message)
        elif self.enabled:
            self.say(event.message)

    @show.register
    def _(self, event: Progress) -> None:  # a merge, a diff or a LoRA extraction, by bytes
        tensors = f"{event.tensors_done}/{event.tensors_total} tensors"
        self.count("progress", event.bytes_done, event.bytes_total, postfix=tensors, in_bytes=True)

    @show.register
    def _(self, event: StepProgress) -> None:  # a stage of steps: a Fisher, a demo's training, a perplexity
        self.count(event.stage, event.done, event.total, leave=False,
                   postfix="" if event.loss is None else f"loss {event.loss:.3f}")

    @show.register
    def _(self, event: TrainStep) -> None:
        post = f"loss={event.losses.get('total', float('nan')):.4g} lr={event.lr:.2e}"
        if event.taid_t is not None:
            post += f" t={event.taid_t:.3f}"
        self.count("distill", event.step, event.total_steps, postfix=post, first=event.step - 1)

    @show.register
    def _(self, event: DownloadProgress) -> None:  # a model fetched from the Hub, by bytes
        self.count(f"download {event.repo_id}", event.done, event.total, in_bytes=True,
                   postfix=f"{event.files_done}/{event.files_total} files")

    @show.register
    def _(self, event: UploadProgress) -> None:  # an output published to the Hub, by bytes
        self.count(f"upload {event.repo_id}", event.done, event.total, in_bytes=True,
                   postfix=f"{event.files_done}/{event.files_total} files")

    @show.register
    def _(self, event: EvalStep) -> None:
        if self.enabled:
            self.say(f"eval @ step {event.step}: " + " ".join(f"{k}={v:.4g}" for k, v in event.losses.items()))

    def say(self, text: str) -> None:
        """A line on stderr, above the bar when one is drawn."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def count(self, key: str, done: int, total: int, postfix: str = "", in_bytes: bool = False,
              leave: bool = True, first: int = 0) -> None:
        if not self.enabled:
            return
        if key != self.key:
            self.close()
            self.key = key
            if self.tty:
                self.bar = _bar(key, total, in_bytes, leave, first)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=False)
            return
        quarter = QUARTERS * done // total if total > 0 else QUARTERS
        if quarter > self.shown:
            self.shown = quarter
            amount = f"{format_bytes(done, 2)} of {format_bytes(total, 2)}" if in_bytes else f"{done}/{total}"
            print(f"{key}: {100 * done // max(total, 1)}% ({amount}{', ' + postfix if postfix else ''})",
                  file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.key, self.shown = None, None, 0


def _bar(key: str, total: int, in_bytes: bool, leave: bool, first: int):
    from tqdm import tqdm

    if in_bytes:
        return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1000, file=sys.stderr, dynamic_ncols=True,
                    smoothing=0.1, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")
    return tqdm(total=total, initial=first, desc=key, file=sys.stderr, leave=leave, dynamic_ncols=True,
                unit="step" if key == "distill" else "it")
