"""`fusion-gui diff MODEL_A MODEL_B [--base B]`: per-layer change of two models, as a table, JSON or CSV."""

from __future__ import annotations

import csv
import json
import math

from fusion_gui.cli.drive import EXIT_OK, drive
from fusion_gui.cli.hub_models import add_download_flag, fetch_missing
from fusion_gui.events import DiffResult, LayerMetrics


def add_parser(sub) -> None:
    d = sub.add_parser("diff", help="compare two models layer by layer (optionally against a base)")
    d.add_argument("model_a")
    d.add_argument("model_b")
    d.add_argument("--base", default=None, help="measure both models' changes from this base")
    d.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    add_download_flag(d)
    g = d.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="print every tensor's and layer's metrics as JSON")
    g.add_argument("--csv", metavar="FILE", help="write per-tensor metrics to a CSV file")


def run(args) -> int:
    from fusion_gui.engine.inspect.diff import diff

    fetch_missing([args.model_a, args.model_b, args.base], args.allow_download, progress=not args.json,
                  base=args.base)
    result = drive(lambda cancel: diff(args.model_a, args.model_b, base=args.base, device=args.device,
                                       cancel=cancel), progress=not args.json)
    if args.json:
        print(as_json(result))
        return EXIT_OK
    print(as_table(result))
    if args.csv:
        write_csv(result, args.csv)
        print(f"Per-tensor metrics written to {args.csv}.")
    return EXIT_OK


def _number(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _clean(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def write_csv(result: DiffResult, path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tensor", "layer", "kind", "numel"] + [f"change:{m}" for m in result.tensors[0].models]
                   + ["cosine", "sign_conflict"] if result.tensors else ["tensor"])
        for t in result.tensors:
            w.writerow([t.name, "" if t.layer is None else t.layer, t.kind, t.numel]
                       + [f"{v:.8g}" for v in t.input_change]
                       + ["" if t.cosine is None else f"{t.cosine:.8g}",
                          "" if t.sign_conflict is None else f"{t.sign_conflict:.8g}"])


def as_json(result: DiffResult) -> str:
    return json.dumps({
        "models": list(result.models), "base_model": result.base_model,
        "layers": [{"layer": m.layer, "change": [float(v) for v in m.input_change],
                    "cosine": _clean(m.cosine), "sign_conflict": _clean(m.sign_conflict)} for m in result.layers],
        "tensors": [{"name": t.name, "layer": t.layer, "kind": t.kind, "numel": t.numel,
                     "change": [float(v) for v in t.input_change], "cosine": _clean(t.cosine),
                     "sign_conflict": _clean(t.sign_conflict)} for t in result.tensors],
    }, indent=2)


def _layer_row(m: LayerMetrics) -> list[str]:
    return (["-" if m.layer is None else str(m.layer)] + [_number(v) for v in m.input_change]
            + [_number(m.cosine), _number(m.sign_conflict)])


def as_table(result: DiffResult) -> str:
    against = f"base {result.base_model}" if result.base_model else result.models[0]
    models = result.models if result.base_model else result.models[1:]
    header = ["layer"] + [f"change {m}" for m in models] + ["cosine", "sign conflict"]
    rows = [header] + [_layer_row(m) for m in result.layers]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    table = "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)
    return f"Relative change ||model - ref|| / ||ref|| per layer, against {against}.\n" + table
