"""Refresh the README's pictures from real runs of the app (offscreen): the demo merge and its scores,
a comparison, a LoRA extraction, and a distillation whose loss falls.

    python docs/make_screenshots.py [--out docs/screenshots] [--size 1280x800]

Everything runs in the user data folder (the demo models are built there once, as "Try the demo"
does; the runs go to its screenshot-runs/ folder, replaced each time), so the paths in the pictures
are the ones a user sees. Settings are kept in a throwaway folder. Takes a few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import atexit
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if "FUSION_GUI_CONFIG_DIR" not in os.environ:  # the user's own settings stay as they are
    os.environ["FUSION_GUI_CONFIG_DIR"] = tempfile.mkdtemp(prefix="fusion-gui-screenshot-settings-")
    atexit.register(shutil.rmtree, os.environ["FUSION_GUI_CONFIG_DIR"], True)

DISTILL_STEPS = 200
# the demo models saw one problem at a time from its first character: problems of five characters
# ("12345>23456" and its end-of-text token) fill a block of 12 exactly, so every block is one problem
# as the teacher knows them, and its held-out perplexity means something
PROBLEM_CHARS = 5
DISTILL_BLOCK = 2 * PROBLEM_CHARS + 2


def wait_for(signal, what: str, timeout_s: float = 900.0):
    """Run the event loop until `signal` fires; its arguments."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop, got = QEventLoop(), []
    signal.connect(lambda *args: (got.append(args), loop.quit()))
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    if not got:
        raise SystemExit(f"Timed out waiting for {what}.")
    return got[0]


def settle(ms: int = 300) -> None:
    """Let layouts and throttled plots catch up before a picture."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def run(worker, what: str):
    """Wait for a JobWorker; stop with its error if it failed."""
    if worker is None:
        raise SystemExit(f"{what} did not start.")
    errors = []
    worker.failed.connect(lambda summary, details: errors.append(summary))
    if worker.running:
        wait_for(worker.done, what)
    if errors:
        raise SystemExit(f"{what} failed: {errors[0]}")


def save(widget, out: Path, name: str) -> None:
    settle()
    path = out / name
    if not widget.grab().save(str(path)):
        raise SystemExit(f"Could not write {path}.")
    print(f"wrote {path}")


def training_text(path: Path, lines: int = 4000) -> Path:
    """The demo's own kind of text: skill problems of PROBLEM_CHARS with their answers, one a line."""
    from fusion_gui.engine.evaluate.demo import SKILLS, skill_examples

    rows = [p + a for skill in SKILLS for p, a in skill_examples(skill, "train", lines)
            if len(a) == PROBLEM_CHARS][:lines]
    random.Random(0).shuffle(rows)  # both skills in the held-out share too
    path.write_text("\n".join(rows) + "\n")
    return path


def small_student(teacher: Path, out: Path) -> Path:
    """A fresh student half the teacher's width and one layer deep, with the teacher's tokenizer."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(teacher)
    config.num_hidden_layers, config.hidden_size = 1, config.hidden_size // 2
    config.intermediate_size = max(8, config.intermediate_size // 2)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(teacher).save_pretrained(out)
    return out


def loss_falls(losses: list[float]) -> tuple[float, float]:
    """The mean total training loss over the first and the last tenth of the run."""
    if not losses:
        raise SystemExit("The distillation reported no training loss.")
    tenth = max(1, len(losses) // 10)
    return sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--size", default="1280x800")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)

    from fusion_gui.engine.evaluate.demo import data_root
    from fusion_gui.ui.app import create_app
    from fusion_gui.ui.main_window import MainWindow

    runs = data_root() / "screenshot-runs"
    shutil.rmtree(runs, ignore_errors=True)  # this script's own folder: a fresh set of runs
    runs.mkdir(parents=True)
    create_app([])
    window = MainWindow()
    window.resize(width, height)
    window.show()
    started = time.perf_counter()

    # the demo, as "Try the demo" builds and loads it; merged into a new folder
    panel = window.start_panel
    panel.start_demo()
    ready = wait_for(panel.demo_ready, "the demo models")[0]
    base, count, reverse = (str(p) for p in ready)
    # "Try the demo" goes on by itself: a merge into a new folder of the user data folder, then its scores
    run(window.run_panel.worker, "The demo merge")
    merged = Path(window.run_panel.last_result.out_dir)
    window.tabs.setCurrentIndex(0)
    save(window, args.out, "main_window.png")
    settle(3000)  # the story shows the plots a moment, then scores the merge and its inputs
    run(window.eval_panel.worker, "The demo's scoring")

    # its scores and completions beside its inputs'
    evaluate = window.eval_panel
    from fusion_gui.engine.evaluate.demo import skill_examples

    prompt = skill_examples("reverse", "eval", 1)[0][0]  # the first held-out problem, not a chosen one
    evaluate.prompt_edit.setText(prompt)
    window.tabs.setCurrentWidget(evaluate)
    evaluate_worker = evaluate.start()
    run(evaluate_worker, "The evaluation")
    save(window, args.out, "evaluate.png")

    # the two fine-tunes compared against their base
    compare = window.compare_panel
    window.tabs.setCurrentWidget(compare)
    compare.set_models(count, reverse, base)
    run(compare.start_compare(), "The comparison")
    save(window, args.out, "compare.png")

    # a LoRA from one fine-tune
    dialog = window.open_extract_lora()
    dialog.resize(960, 640)
    dialog.set_inputs(count, base, str(runs / "count-lora-r8"))
    dialog.rank.setValue(8)
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    run(dialog.start(), "The LoRA extraction")
    save(dialog, args.out, "extract-lora.png")
    dialog.close()

    # a distillation that learns: the demo merge teaches a smaller fresh student
    distill = window.distill_panel
    window.tabs.setCurrentWidget(distill)
    teacher = merged
    student = small_student(teacher, runs / "student-init")
    distill.set_inputs(teacher=str(teacher), student=str(student),
                       data=str(training_text(runs / "demo-text.txt")), output=str(runs / "distilled"))
    distill.max_steps.setValue(DISTILL_STEPS)
    distill.batch_size.setValue(32)
    distill.seq_length.setValue(DISTILL_BLOCK)
    distill.learning_rate.setValue(3e-3)
    distill.warmup_steps.setValue(10)
    distill.eval_every.setValue(25)
    distill.device.setCurrentText("cpu")
    from fusion_gui.events import TrainStep

    losses: list[float] = []
    distill.runner.started.connect(lambda worker: worker.event.connect(
        lambda event: losses.append(event.losses["total"]) if isinstance(event, TrainStep) else None))
    run(distill.start(), "The distillation")
    first, last = loss_falls(losses)
    print(f"distillation: mean total loss {first:.3f} over the first tenth, {last:.3f} over the last")
    if not last < 0.7 * first:
        raise SystemExit("The distillation did not learn enough for a picture; raise DISTILL_STEPS.")
    save(window, args.out, "distill.png")

    print(f"done in {time.perf_counter() - started:.0f} s")
    window.job_list.stop_all()
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
