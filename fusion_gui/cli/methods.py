"""`fusion-gui methods`: every merge method with its parameters, ranges and paper."""

from __future__ import annotations

from fusion_gui.cli.drive import EXIT_OK

_BASE = {"required": "needs a base model", "optional": "base model optional", "none": "no base model"}


def add_parser(sub) -> None:
    sub.add_parser("methods", help="list merge methods and their parameters")


def run(args) -> int:
    print(describe_methods())
    return EXIT_OK


def _bound(x, missing: str) -> str:
    return missing if x is None else f"{x:.4g}"


def describe_methods() -> str:
    from fusion_gui.engine.methods import registry

    out = []
    for m in registry().values():
        count = f"{m.min_models}+" if m.max_models is None else (
            str(m.min_models) if m.min_models == m.max_models else f"{m.min_models}-{m.max_models}")
        seeded = "; random (seeded by random_seed / --seed)" if m.random else ""
        out.append(f"{m.name} — {m.pretty_name}: {m.description}")
        out.append(f"    {_BASE[m.base]}; {count} model{'' if count == '1' else 's'}{seeded}")
        if m.reference:
            out.append(f"    paper: {m.reference}")
        for p in m.params:
            scope = "per model" if p.scope == "model" else "global"
            if not p.per_tensor:
                scope += ", one value for the merge"
            default = "required" if p.required else f"default {p.default}"
            rng = ""
            if p.minimum is not None or p.maximum is not None:
                rng = f", range [{_bound(p.minimum, '-inf')}, {_bound(p.maximum, 'inf')}]"
            out.append(f"    - {p.name} ({p.type.__name__}, {scope}, {default}{rng}): {p.help}")
        out.append("")
    return "\n".join(out).rstrip()
