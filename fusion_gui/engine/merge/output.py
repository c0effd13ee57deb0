"""Everything in an output folder besides the weights: config, generation config, tokenizer
files, the model card and the recipe; plus the atomic temp-folder-then-rename protocol."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import torch

from fusion_gui import __version__
from fusion_gui.engine.errors import OutputError
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.merge.recipe import Recipe, dump_recipe
from fusion_gui.engine.merge.model_tokenizer import VOCAB_KEYS

RECIPE_FILE = "mergekit_config.yml"  # mergekit's name, so tools that look for it find it
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json", "merges.txt",
    "vocab.txt", "chat_template.jinja", "chat_template.json",
)
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


def temp_dir_for(out_dir: Path) -> Path:
    """A fresh hidden folder beside OUT_DIR, on the same file system so the rename is atomic."""
    return out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"


def publish(temp: Path, out_dir: Path, force: bool) -> None:
    """Rename the finished temp folder to OUT_DIR; with force, replace what was there."""
    old = None
    if out_dir.exists():
        if not force:
            raise OutputError(f"Output folder '{out_dir}' appeared while merging; the result is kept in '{temp}'.")
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out_dir, old)
    os.rename(temp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_config(reader: ModelReader, out: Path, out_dtype: torch.dtype | None, layers: int,
                 vocab_size: int | None = None) -> None:
    """The donor's config with the output's dtype, layer count and (after a tokenizer merge) vocabulary size."""
    if reader.config is None:
        return
    config = dict(reader.config)
    if vocab_size is not None:  # the key the donor uses, as mergekit's _update_config_vocab sets it
        key = next((k for k in VOCAB_KEYS if isinstance(config.get(k), int)), "vocab_size")
        config[key] = vocab_size
    if out_dtype is not None:
        name = str(out_dtype).replace("torch.", "")
        keys = [k for k in ("dtype", "torch_dtype") if k in config] or ["torch_dtype"]
        for key in keys:
            config[key] = name
    for key in _LAYER_KEYS:
        if isinstance(config.get(key), int) and config[key] != layers and layers > 0:
            config[key] = layers
            if "layer_types" in config and isinstance(config["layer_types"], list):
                config["layer_types"] = (config["layer_types"] * layers)[:layers]
            break
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def copy_side_files(config_reader: ModelReader, tokenizer_reader: ModelReader | None, out: Path) -> list[str]:
    """generation_config.json from the config donor, tokenizer files from the tokenizer source (if any)."""
    copied = []
    for reader, names in ((config_reader, ("generation_config.json",)), (tokenizer_reader, TOKENIZER_FILES)):
        folder = reader.path if reader is not None and reader.path.is_dir() else None
        if folder is None:
            continue
        for name in names:
            if (folder / name).is_file():
                shutil.copy2(folder / name, out / name)
                copied.append(name)
    return copied


def write_model_card(out: Path, recipe: Recipe, labels: dict[str, str], method_pretty: str,
                     reference: str, base_label: str | None) -> None:
    models = [labels.get(m, m) for m in recipe.referenced_models()]
    front = ["---", "base_model:"] + [f"- {m}" for m in models] + [
        "library_name: transformers", "tags:", "- merge", "- fusion-gui", f"- {recipe.merge_method}", "---"]
    lines = front + [
        "", f"# {recipe.name or out.name}", "",
        f"This model is a merge of {len(models)} models made with fusion_gui {__version__}, using the "
        f"**{method_pretty}** method" + (f" ([paper]({reference}))." if reference else "."), "",
        "## Models", "",
    ]
    for m in models:
        lines.append(f"- {m}" + (" (base)" if m == base_label else ""))
    lines += ["", "## Recipe", "",
              f"Reproduce it with `fusion-gui merge {RECIPE_FILE} OUT_DIR` (the same YAML runs in mergekit).", "",
              "```yaml", dump_recipe(recipe).rstrip(), "```", ""]
    (out / "README.md").write_text("\n".join(lines))
    (out / RECIPE_FILE).write_text(dump_recipe(recipe))
