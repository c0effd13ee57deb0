"""The model card a published output gets: its README's front matter completed with what the Hub reads
(base_model and base_model_relation, license, tags), through huggingface_hub's ModelCard. Evaluation
scores already in the card (a `model-index` written by evaluate/model_card.py) are kept as they are."""

from __future__ import annotations

import json
from pathlib import Path

from fusion_gui.engine.merge.output import RECIPE_FILE, hub_repo_id
from fusion_gui.engine.parse_text import load_yaml

DISTILL_CONFIG = "distill_config.yml"  # engine/distill/trainer.py's CONFIG_FILE


def output_kind(folder: Path) -> str:
    """'adapter' (a LoRA extraction), 'merge', 'distillation' or 'model' (anything else)."""
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    if (folder / RECIPE_FILE).is_file():
        return "merge"
    if (folder / DISTILL_CONFIG).is_file():
        return "distillation"
    return "model"


def _yaml(path: Path) -> dict:
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), str(path))
    except Exception:  # noqa: BLE001 - a card is completed from what can be read
        return {}
    return data if isinstance(data, dict) else {}


def _lineage(folder: Path, kind: str) -> tuple[list[str], str | None, dict]:
    """(base_model repo ids, base_model_relation, other front-matter keys) for this kind of output."""
    if kind == "merge":
        from fusion_gui.engine.merge.recipe import load_recipe

        try:
            models = load_recipe(folder / RECIPE_FILE).referenced_models()
        except Exception:  # noqa: BLE001 - a hand-edited recipe: no lineage rather than no upload
            models = []
        return [r for r in dict.fromkeys(hub_repo_id(m) for m in models) if r], "merge", {}
    if kind == "distillation":
        config = _yaml(folder / DISTILL_CONFIG)
        student, teacher = (hub_repo_id(str(config.get(k, ""))) for k in ("student", "teacher"))
        return ([student] if student else []), "finetune", ({"teacher_model": teacher} if teacher else {})
    if kind == "adapter":
        try:
            base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get(
                "base_model_name_or_path")
        except ValueError:
            base = None
        repo = hub_repo_id(str(base)) if base else None
        return ([repo] if repo else []), "adapter", {"library_name": "peft"}
    return [], None, {}


_TAGS = {"merge": ["merge", "fusion-gui"], "distillation": ["distillation", "fusion-gui"],
         "adapter": ["lora", "peft", "fusion-gui"], "model": ["fusion-gui"]}


def completed_card(folder: str | Path, license: str | None = None) -> str:
    """The README.md text to publish for the output in `folder` (the folder itself is not changed)."""
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    readme = folder / "README.md"
    kind = output_kind(folder)
    if readme.is_file():
        card = ModelCard(readme.read_text(encoding="utf-8"), ignore_metadata_errors=True)
    else:
        card = ModelCard(f"---\n---\n\n# {folder.name}\n\nPublished with fusion_gui.\n")
    data: ModelCardData = card.data
    bases, relation, extra = _lineage(folder, kind)
    if bases:
        data.base_model = bases if len(bases) > 1 or kind == "merge" else bases[0]
    if relation and bases:
        data.base_model_relation = relation
    for key, value in extra.items():
        if getattr(data, key, None) in (None, "transformers") or key == "teacher_model":
            setattr(data, key, value)
    if license:
        data.license = license
    data.tags = list(dict.fromkeys(list(data.tags or []) + _TAGS[kind]))
    if not getattr(data, "library_name", None):
        data.library_name = "transformers"
    return str(card)
