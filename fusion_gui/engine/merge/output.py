"""Everything in an output folder besides the weights: config, generation config, tokenizer
files, the model card and the recipe. (The temp-folder-then-rename protocol is engine/io/partial.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from fusion_gui import __version__
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.io.resolve import is_local_path, split_revision
from fusion_gui.engine.merge.recipe import Recipe, dump_recipe
from fusion_gui.engine.merge.model_tokenizer import VOCAB_KEYS

RECIPE_FILE = "mergekit_config.yml"  # mergekit's name, so tools that look for it find it
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json", "merges.txt",
    "vocab.txt", "chat_template.jinja", "chat_template.json",
)
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


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


def hub_repo_id(ref: str) -> str | None:
    """The Hub repo id a recipe's model reference names ('org/name@rev' -> 'org/name'); None for a local path."""
    if is_local_path(ref):
        return None
    repo = split_revision(str(ref).strip())[0]
    return repo if repo and not repo.startswith((".", "/", "~")) and "\\" not in repo and repo.count("/") <= 1 else None


def write_model_card(out: Path, recipe: Recipe, folder: str, method_pretty: str, reference: str,
                     loader: str = "AutoModelForCausalLM", tokenizer: bool = True) -> None:
    """README.md (Hub front matter, what was merged, how to load it, the recipe) and the recipe file.

    `out` may be the temporary folder: `folder` is the name the output is published under (the title,
    unless the recipe has a `name`). Only Hub repo ids go in `base_model` (the Hub resolves them);
    local folders are listed in the body as the recipe names them."""
    title = str(recipe.name or folder)
    models = recipe.referenced_models()
    repos = [r for r in dict.fromkeys(hub_repo_id(m) for m in models) if r]
    front = ["---"] + (["base_model:"] + [f"- {r}" for r in repos] if repos else []) + [
        "library_name: transformers", "tags:", "- merge", "- fusion-gui", f"- {recipe.merge_method}", "---"]
    lines = front + [
        "", f"# {title}", "",
        f"This model is a merge of {len(models)} models made with fusion_gui {__version__}, using the "
        f"**{method_pretty}** method" + (f" ([paper]({reference}))." if reference else "."), "",
        "## Models", "",
    ]
    for m in models:
        lines.append(f"- {m}" + (" (base)" if m == recipe.base_model else ""))
    load = [f"from transformers import {loader}" + (", AutoTokenizer" if tokenizer else ""), "",
            f"model = {loader}.from_pretrained({json.dumps(folder)})  # this folder, or its Hub repo id"]
    if tokenizer:
        load.append(f"tokenizer = AutoTokenizer.from_pretrained({json.dumps(folder)})")
    lines += ["", "## Use it", "", "```python", *load, "```", "",
              "## Recipe", "",
              f"Reproduce it with `fusion-gui merge {RECIPE_FILE} OUT_DIR` (the same YAML runs in mergekit).", "",
              "```yaml", dump_recipe(recipe).rstrip(), "```", ""]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
    (out / RECIPE_FILE).write_text(dump_recipe(recipe), encoding="utf-8")


def loader_class(config: dict | None) -> str:
    """The transformers Auto class the card's snippet loads the output with."""
    archs = (config or {}).get("architectures") or []
    return "AutoModelForCausalLM" if any(str(a).endswith("ForCausalLM") for a in archs) else "AutoModel"


def refuse_input_overlap(out_dir: Path, inputs: dict[str, Path]) -> None:
    """InputError when OUT_DIR is an input (model folder or file), contains one, or lies inside one:
    publishing there (with force) would destroy that input."""
    out = Path(out_dir).expanduser().resolve()
    for label, path in inputs.items():
        path = Path(path).expanduser().resolve()
        if out == path:
            problem = "is"
        elif path.is_relative_to(out):
            problem = "contains"
        elif out.is_relative_to(path):
            problem = "lies inside"
        else:
            continue
        raise InputError(f"The output folder '{out_dir}' {problem} the input '{label}' ({path}); "
                         f"writing there would destroy it, so choose another output folder.")
