"""The first drill-down shown: how long the GUI thread is held while the dialog is made and a result
drawn (issue 17's follow-up). A real drill-down result (one 2816 x 1024 tensor, 6 models against a
base, computed first by the engine: a 256 x 256 image per model) is drawn into a fresh dialog per round,
in interleaved rounds of two kinds:

  at once - the dialog's pyqtgraph plots built in one go when it is made (as before: finish_drawing()
            right after the constructor), then the result drawn a plot per event-loop turn;
  staged  - the plots built one per event-loop turn (the dialog as it is now), then the result drawn.

A 5 ms QTimer heartbeat runs on the GUI thread (bench_gui_latency.py's method): how late each tick
fires is how long the window could not repaint or take a click. Each step (the constructor, each
build or draw stage) is also timed on its own. A warm-up dialog is made and drawn first so that
pyqtgraph's one-time costs (colour maps, fonts) fall on neither kind; the app has paid those by the
time a drill-down opens (its other plots use them).

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_drill_down_first.py [--rounds 3] [--out FILE]

Goal: no step over ~50 ms, no heartbeat tick over 100 ms late on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from bench_gui_latency import Heartbeat, spin  # noqa: E402

W = "model.layers.0.mlp.up_proj.weight"


def drill_down_result(folder: Path):
    import torch
    from safetensors.torch import save_file

    from fusion_gui.engine.inspect.tensor import drill_down

    g = torch.Generator().manual_seed(0)
    base = torch.randn(2816, 1024, generator=g)
    paths = []
    for k in range(7):
        path = folder / f"m{k}.safetensors"
        save_file({W: base + (0 if k == 0 else 0.01 * torch.randn(2816, 1024, generator=g))}, str(path))
        paths.append(str(path))
    gen = drill_down(W, paths[1:], paths[0], density=0.5)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def one_round(parent, result, heartbeat: Heartbeat, phase: str, at_once: bool) -> list[tuple[str, float]]:
    """Make a dialog, show it, draw `result`; the steps' (name, ms)."""
    from fusion_gui.ui.dialogs.drill_down_dialog import DrillDownDialog

    steps = []
    heartbeat.start(phase)
    began = time.perf_counter()
    dialog = DrillDownDialog(parent)
    if at_once:
        dialog.plots.finish_drawing()
    steps.append(("constructor" + (" + all plots" if at_once else ""), (time.perf_counter() - began) * 1000))
    plots = dialog.plots
    run_stage = plots._run_stage

    def timed_stage() -> None:
        name = (plots._builds or plots._draws)[0].__name__
        t = time.perf_counter()
        run_stage()
        steps.append((name, (time.perf_counter() - t) * 1000))

    plots._run_stage = timed_stage
    dialog.show()
    spin(seconds=0.15)  # the engine's job runs meanwhile in the app: this is its shortest (a cached result)
    dialog._on_finished(result)
    spin(until=lambda: not plots.pending)
    spin(seconds=0.3)
    heartbeat.stop()
    dialog.close()
    dialog.deleteLater()
    spin(seconds=0.2)
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", help="append the report to this file")
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication, QWidget

    from bench_gui_latency import header

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        result = drill_down_result(Path(tmp))
    lines = header(argparse.Namespace(layers=0, hidden=0))[:-1]
    lines.append(f"result: {result.name} {list(result.shape)}, {len(result.changes)} models, images "
                 f"{result.changes[0].image.shape}, spectrum of {len(result.changes[0].spectrum)}")
    parent = QWidget()
    parent.resize(1280, 720)
    parent.show()
    heartbeat = Heartbeat()
    heartbeat.start("idle (the machine)")
    spin(seconds=2.0)
    heartbeat.stop()
    one_round(parent, result, heartbeat, "warm-up", at_once=True)
    longest: dict[str, list[float]] = {"at once": [], "staged": []}
    for r in range(args.rounds):
        for kind in ("at once", "staged"):
            steps = one_round(parent, result, heartbeat, f"{kind} {r + 1}", at_once=kind == "at once")
            name, ms = max(steps, key=lambda s: s[1])
            longest[kind].append(ms)
            lines.append(f"round {r + 1} {kind}: longest step {name} {ms:.0f} ms; steps "
                         + ", ".join(f"{n} {m:.0f}" for n, m in steps))
    lines.append("")
    lines.append(f"{'phase':22s} {'ticks':>6s} {'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s}")
    for phase in heartbeat.ticks:
        late = heartbeat.lateness_ms(phase)
        if len(late):
            lines.append(f"{phase:22s} {len(late):6d} {np.percentile(late, 50):7.1f} "
                         f"{np.percentile(late, 99):7.1f} {late.max():7.1f}")
    lines.append("median longest step: at once %.0f ms, staged %.0f ms" % (
        np.median(longest["at once"]), np.median(longest["staged"])))
    lines.append("load average at end " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    heartbeat.close()
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n\n")
    app.quit()


if __name__ == "__main__":
    main()
