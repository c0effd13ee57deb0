"""`fusion-gui inspect MODEL... [--base M] [--tensor NAME] [--density D] [--spectral] [--json]`.

With --spectral: the power-law alpha (WeightWatcher's fit) of every weight matrix of each MODEL, and
its mean per layer (give the base, the inputs and a merge's output to see a merge before and after).

With --tensor: the drill-down numbers of that tensor (each model's change from the base: relative size,
spectrum, effective rank, LoRA ranks for 90/99% of the energy, what TIES/DARE/breadcrumbs keep, sign
agreement). Without: the cosine matrix and sign-conflict table of the models' changes, and their
clustering order. Two models of different depths without a base are matched by relative depth.
Without --base the first MODEL is the base.
"""

from __future__ import annotations

import json

import numpy as np

from fusion_gui.cli.drive import EXIT_OK, drive
from fusion_gui.engine.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="look inside models: one tensor in depth, or how N fine-tunes relate")
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--base", default=None, help="measure every model's change from this base "
                                                "(default: the first MODEL)")
    p.add_argument("--tensor", default=None, help="drill down into this tensor")
    p.add_argument("--density", type=float, default=0.5, help="density of the TIES/DARE/breadcrumbs preview")
    p.add_argument("--spectral", action="store_true",
                   help="spectral health: the power-law alpha of each weight matrix of each MODEL")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")


def _split(args) -> tuple[str, list[str]]:
    if args.base:
        return args.base, list(args.models)
    if len(args.models) < 2:
        raise InputError("Inspecting needs a base and at least one model: give --base or two MODELs.")
    return args.models[0], list(args.models[1:])


def _layer_counts(refs: list[str]) -> list[int]:
    from fusion_gui.engine.inspect.opening import opened
    from fusion_gui.engine.naming import count_layers

    with opened(refs) as readers:
        return [count_layers(r.tensors) for r in readers]


def run(args) -> int:
    if not 0 <= args.density <= 1:
        raise InputError(f"--density must be between 0 and 1, not {args.density}.")
    if args.spectral:
        from fusion_gui.engine.inspect.spectral import spectral

        models = ([args.base] if args.base else []) + list(args.models)
        result = drive(lambda cancel: spectral(models, [args.tensor] if args.tensor else None, cancel=cancel),
                       progress=not args.json)
        print(json.dumps(spectral_json(result), indent=2) if args.json else spectral_table(result))
        return EXIT_OK
    if args.tensor:
        from fusion_gui.engine.inspect.tensor import drill_down

        base, models = _split(args)
        result = drive(lambda cancel: drill_down(args.tensor, models, base, density=args.density, cancel=cancel),
                       progress=not args.json)
        print(json.dumps(drill_down_json(result), indent=2) if args.json else drill_down_table(result))
        return EXIT_OK
    if args.base is None and len(args.models) == 2 and len(set(_layer_counts(args.models))) == 2:
        from fusion_gui.engine.inspect.depth import depth_match

        result = drive(lambda cancel: depth_match(*args.models, cancel=cancel), progress=not args.json)
        print(json.dumps(depth_json(result), indent=2) if args.json else depth_table(result))
        return EXIT_OK
    from fusion_gui.engine.inspect.similarity import similarity

    base, models = _split(args)
    result = drive(lambda cancel: similarity(models, base, cancel=cancel), progress=not args.json)
    print(json.dumps(similarity_json(result), indent=2) if args.json else similarity_table(result))
    return EXIT_OK


def _floats(a) -> list:
    """JSON numbers: NaN becomes null."""
    return [None if np.isnan(v) else float(v) for v in np.asarray(a, dtype=float).reshape(-1)]


def _matrix(a: np.ndarray) -> list:
    return [_floats(row) for row in a]


def drill_down_json(r) -> dict:
    return {
        "tensor": r.name, "shape": list(r.shape), "base_model": r.base_model, "density": r.density,
        "svd": r.svd, "sign_agreement": r.sign_agreement, "bin_edges": _floats(r.bin_edges),
        "image_block": list(r.block),
        "models": [{"model": c.model, "relative_change": c.relative_change, "effective_rank": c.effective_rank,
                    "rank_90": c.rank_90, "rank_99": c.rank_99, "kept": c.kept,
                    "histogram": [int(x) for x in c.counts], "singular_values": _floats(c.spectrum)}
                   for c in r.changes],
    }


def drill_down_table(r) -> str:
    lines = [f"{r.name} {list(r.shape)}: change from base {r.base_model}; spectrum {r.svd}."]
    header = ["model", "rel. change", "eff. rank", "rank 90%", "rank 99%"] + [f"{m} keeps" for m in r.changes[0].kept]
    rows = [header]
    for c in r.changes:
        rows.append([c.model, f"{c.relative_change:.4g}", f"{c.effective_rank:.1f}",
                     "-" if c.rank_90 is None else str(c.rank_90), "-" if c.rank_99 is None else str(c.rank_99)]
                    + [f"{v:.1%}" for v in c.kept.values()])
    lines.append(_table(rows))
    if r.sign_agreement is not None:
        lines.append(f"Sign agreement across the models: {r.sign_agreement:.1%} of elements.")
    lines.append(f"Masks previewed at density {r.density:g}; '-' rank: more than the randomized SVD found.")
    return "\n".join(lines)


def similarity_json(r) -> dict:
    def group(g) -> dict:
        return {"group": g.group, "tensors": g.tensors, "cosine": _matrix(g.cosine),
                "sign_conflict": _matrix(g.sign_conflict), "change_norm": _floats(g.change_norm)}

    return {"models": list(r.models), "base_model": r.base_model, "whole": group(r.whole),
            "groups": [group(g) for g in r.groups], "order": list(r.order),
            "linkage": None if r.linkage is None else _matrix(r.linkage), "clustering_note": r.clustering_note}


def similarity_table(r) -> str:
    names = [f"[{i}]" for i in range(len(r.models))]
    legend = "  ".join(f"{n} {m}" for n, m in zip(names, r.models))
    parts = [f"Changes from base {r.base_model}: {legend}"]
    for title, matrix, fmt in (("Cosine of the changes", r.whole.cosine, "{:.3f}"),
                               ("Sign conflicts (of elements both changed)", r.whole.sign_conflict, "{:.1%}")):
        rows = [[""] + names] + [[names[i]] + [fmt.format(v) for v in matrix[i]] for i in range(len(names))]
        parts += [title + ":", _table(rows)]
    if r.linkage is not None:
        parts.append("Alike models sit together in this order: " + ", ".join(r.models[i] for i in r.order))
    elif r.clustering_note:
        parts.append(r.clustering_note)
    return "\n".join(parts)


def depth_json(r) -> dict:
    return {"model_a": r.model_a, "model_b": r.model_b, "layers_a": r.layers_a, "layers_b": r.layers_b,
            "mapping": list(r.mapping), "cosine": _floats(r.cosine), "relative_diff": _floats(r.relative_diff)}


def depth_table(r) -> str:
    rows = [[f"layer of {r.model_a}", f"layer of {r.model_b}", "cosine", "||B - A|| / ||A||"]]
    rows += [[str(i), str(j), f"{c:.4f}", f"{d:.4g}"]
             for i, (j, c, d) in enumerate(zip(r.mapping, r.cosine, r.relative_diff))]
    return (f"{r.model_a} has {r.layers_a} layers, {r.model_b} {r.layers_b}: matched by relative depth.\n"
            + _table(rows))


def spectral_json(r) -> dict:
    return {"models": list(r.models),
            "tensors": [{"model": t.model, "tensor": t.name, "layer": t.layer, "kind": t.kind,
                         "shape": list(t.shape), "alpha": _floats([t.alpha])[0],
                         "ks_distance": _floats([t.ks_distance])[0], "eigenvalues": t.evals, "note": t.note}
                        for t in r.tensors],
            "layers": {m: {str(k): v for k, v in r.layer_alphas(m).items()} for m in r.models}}


def spectral_table(r) -> str:
    per_layer = {m: r.layer_alphas(m) for m in r.models}
    layers = sorted({k for v in per_layer.values() for k in v})
    rows = [["layer"] + list(r.models)]
    rows += [[str(k)] + [f"{per_layer[m][k]:.2f}" if k in per_layer[m] else "-" for m in r.models] for k in layers]
    return ("Mean power-law alpha of each layer's weight matrices (WeightWatcher's fit; about 2 to 6 is "
            "well trained, above 6 under-trained):\n" + _table(rows))


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)
