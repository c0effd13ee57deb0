"""Event-loop latency of the real main window while it runs a merge of about 1 GB of weights.

A 10 ms QTimer heartbeat runs on the GUI thread during the merge; how late each tick fires is
the time the window could not respond. Uses the checkpoints of bench_merge.py (built if needed).

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui_latency.py [--method ties] [--layers 24]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("FUSION_GUI_CONFIG_DIR", str(Path(__file__).resolve().parent.parent / ".bench" / "config"))

from bench_merge import WORK, build_checkpoints  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="ties")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=1024)
    args = ap.parse_args()
    paths = build_checkpoints(args.layers, args.hidden, 32000)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from fusion_gui.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    out = WORK / "gui-out"
    shutil.rmtree(out, ignore_errors=True)
    window.strategy_panel.set_method(args.method)
    window.models_panel.add_models([str(p) for p in paths])
    window.run_panel.set_output_dir(str(out))
    checking = window.run_panel.preflight()  # on its worker now: let it answer before the merge starts
    while checking is not None and checking.running:
        app.processEvents()
        time.sleep(0.001)

    ticks: list[float] = []
    timer = QTimer(interval=10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    start = time.perf_counter()
    worker = window.run_panel.start_merge()
    finished = []
    worker.done.connect(lambda: finished.append(True))
    while not finished:
        app.processEvents()
        time.sleep(0.001)
    seconds = time.perf_counter() - start
    timer.stop()
    late = np.maximum(np.diff(np.asarray(ticks)) * 1000 - 10, 0)
    size = sum(f.stat().st_size for f in out.glob("*.safetensors")) / 1e9 if out.exists() else 0
    print(f"{args.method} merge of 3 x {sum(f.stat().st_size for f in paths[0].glob('*.safetensors')) / 1e9:.2f} GB "
          f"-> {size:.2f} GB in {seconds:.1f} s; heartbeat: {len(late)} ticks, "
          f"p50 {np.percentile(late, 50):.1f} ms, p99 {np.percentile(late, 99):.1f} ms, max {late.max():.1f} ms late")
    window.close()
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
