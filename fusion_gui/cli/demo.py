"""`fusion-gui demo`: build (or reuse) the demo models, merge the two fine-tunes, score all four."""

from __future__ import annotations

from fusion_gui.cli.drive import EXIT_OK, drive, quiet_transformers
from fusion_gui.cli.eval import report


def add_parser(sub) -> None:
    sub.add_parser("demo", help="build the demo models (or reuse them), merge them and score the merge")


def run(args) -> int:
    from fusion_gui.engine.evaluate.demo import SKILLS, build_demo, data_root
    from fusion_gui.engine.evaluate.demo_merge import demo_recipe
    from fusion_gui.engine.evaluate.scoring import evaluate
    from fusion_gui.engine.merge import MergeOptions, merge
    from fusion_gui.engine.merge.recipe import dump_recipe

    quiet_transformers()
    demo = drive(lambda cancel: build_demo(cancel=cancel))
    recipe = demo_recipe(demo.base, [demo.count, demo.reverse])
    print("Recipe:\n" + "\n".join("  " + line for line in dump_recipe(recipe).splitlines()))
    out = data_root() / "demo-merge"
    merged = drive(lambda cancel: merge(recipe, out, MergeOptions(device="cpu", force=True), cancel=cancel))
    print(f"Merged into {merged.out_dir} in {merged.seconds:.1f} s.")
    result = drive(lambda cancel: evaluate([*demo.paths, out], tasks=SKILLS, cancel=cancel))
    report(result, None)
    return EXIT_OK
