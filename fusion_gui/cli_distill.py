"""`fusion-gui distill CONFIG.yml OUT_DIR`: run a distillation headless with a step progress bar."""

from __future__ import annotations

import math
import os
import sys

from fusion_gui.events import EvalStep, Log, TrainStep


def add_parser(sub) -> None:
    d = sub.add_parser("distill", help="distill a teacher into a student as a YAML config says")
    d.add_argument("config", help="distillation config YAML (teacher, student, data, losses, training)")
    d.add_argument("out_dir", help="output folder for the student (must not exist, unless --force)")
    d.add_argument("--resume-from", metavar="CHECKPOINT", default=None,
                   help="continue from a checkpoint-N folder (overrides training.resume_from)")
    d.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fmt_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in losses.items())


class StepPrinter:
    """A tqdm bar over training steps (total loss, lr and TAID's t in the postfix); eval lines above it."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.bar = enabled, None

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def show(self, event) -> None:
        if isinstance(event, Log):
            if self.enabled or event.level == "warning":
                self._write(("warning: " if event.level == "warning" else "") + event.message)
        elif isinstance(event, TrainStep) and self.enabled:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=event.total_steps, initial=event.step - 1, unit="step", file=sys.stderr,
                                dynamic_ncols=True, desc="distill")
            self.bar.update(event.step - self.bar.n)
            post = f"loss={event.losses.get('total', float('nan')):.4g} lr={event.lr:.2e}"
            if event.taid_t is not None:
                post += f" t={event.taid_t:.3f}"
            self.bar.set_postfix_str(post, refresh=False)
        elif isinstance(event, EvalStep) and self.enabled:
            self._write(f"eval @ step {event.step}: {_fmt_losses(event.losses)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args) -> int:
    import dataclasses

    from fusion_gui.engine.distill import distill, load_config

    config = load_config(args.config)
    if args.resume_from:
        config = dataclasses.replace(config, training=dataclasses.replace(config.training,
                                                                          resume_from=args.resume_from))
    main_rank = os.environ.get("RANK", "0") == "0"  # under accelerate launch / torchrun: rank 0 reports
    printer = StepPrinter(enabled=not args.no_progress and main_rank)
    gen = distill(config, args.out_dir, force=args.force)
    try:
        while True:
            try:
                printer.show(next(gen))
            except StopIteration as stop:
                result = stop.value
                break
    except KeyboardInterrupt:
        gen.close()  # stops training at the next step and removes the partial output now
        raise
    finally:
        printer.close()
    if not main_rank:
        return 0  # the main process wrote the output and says so
    m = result.final_eval
    summary = f"Wrote {result.out_dir}: {result.steps} steps in {result.seconds:.1f} s"
    if "kl_teacher" in m:
        summary += f"; held-out KL to the teacher {m['kl_teacher']:.4g}"
    if "ce_student" in m and "ce_teacher" in m:
        summary += (f", perplexity student {math.exp(min(50.0, m['ce_student'])):.3f} / "
                    f"teacher {math.exp(min(50.0, m['ce_teacher'])):.3f}")
    print(summary + ".")
    if result.checkpoint_dir:
        print(f"Checkpoints kept in {result.checkpoint_dir}.")
    return 0
