"""`fusion-gui --selftest`: build tiny models, merge them headless, load the result with transformers."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from fusion_gui.cli.drive import EXIT_ERROR, EXIT_OK, drive


def run(args) -> int:
    import torch
    from transformers import AutoModelForCausalLM

    from fusion_gui.engine.merge import MergeOptions, merge
    from fusion_gui.engine.merge.recipe import recipe_from_dict
    from fusion_gui.engine.synthetic_models import build_family

    with tempfile.TemporaryDirectory(prefix="fusion-selftest-") as tmp:
        paths = build_family(Path(tmp), "llama", n_finetunes=2)
        recipe = recipe_from_dict({"merge_method": "ties", "base_model": str(paths[0]), "models": [
            {"model": str(p), "parameters": {"weight": 0.5, "density": 0.7}} for p in paths[1:]]})
        result = drive(lambda cancel: merge(recipe, Path(tmp) / "merged", MergeOptions(device="cpu"),
                                            cancel=cancel), progress=False)
        model = AutoModelForCausalLM.from_pretrained(result.out_dir)
        logits = model(torch.tensor([[1, 2, 3, 4]])).logits
        if not torch.isfinite(logits).all():
            print("selftest FAILED: the merged model gives non-finite logits", file=sys.stderr)
            return EXIT_ERROR
    print(f"selftest ok: merged {result.tensors} tensors and loaded the result with transformers.")
    return EXIT_OK
