"""Tokenizer merges side by side with mergekit: the same recipes, run by fusion_gui and by
`mergekit-yaml`, on the tiny models of tests/fixtures/tiny_models.build_vocab_family.

Compares, per recipe: the output vocabulary (as a set of tokens), config vocab_size, every
non-vocabulary tensor, and every vocabulary tensor row by row, matched by token string. Token ids
may differ: mergekit keeps referenced models in a set, so which model's tokenizer a union starts from
(with no base_model) and the order of the tokens it adds change from run to run, while fusion_gui
follows the recipe's order. Rows must not differ. Padding rows are compared too. Needs a mergekit
0.1.5 install; not part of the test suite (last run: all 6 recipes the same, max |diff| 9.3e-10).

    python benchmarks/check_tokenizer_parity.py [--mergekit /tmp/mkvenv/bin/mergekit-yaml] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fusion_gui.engine.merge import merge  # noqa: E402
from fusion_gui.engine.merge.recipe import load_recipe  # noqa: E402
from tests.fixtures.tiny_models import build_vocab_family  # noqa: E402

VOCAB_TENSORS = ("model.embed_tokens.weight", "lm_head.weight")


def recipes(m: dict[str, Path]) -> dict[str, str]:
    base, a, b = m["base"], m["a"], m["b"]
    linear = "merge_method: linear\ndtype: float32\n"
    return {
        "union, linear a+b": linear + f"""models:
  - {{model: {a}, parameters: {{weight: 0.5}}}}
  - {{model: {b}, parameters: {{weight: 0.5}}}}
tokenizer_source: union
""",
        "union, linear base+a+b with base_model": linear + f"""base_model: {base}
models:
  - {{model: {base}, parameters: {{weight: 0.2}}}}
  - {{model: {a}, parameters: {{weight: 0.3}}}}
  - {{model: {b}, parameters: {{weight: 0.5}}}}
tokenizer_source: union
""",
        "base, linear base+b (b permuted and padded)": linear + f"""base_model: {base}
models:
  - {{model: {base}, parameters: {{weight: 0.5}}}}
  - {{model: {b}, parameters: {{weight: 0.5}}}}
tokenizer_source: base
""",
        "model b as source, linear a+b": linear + f"""models:
  - {{model: {a}, parameters: {{weight: 0.4}}}}
  - {{model: {b}, parameters: {{weight: 0.6}}}}
tokenizer_source: {b}
""",
        "tokenizer block: union, tokens, pad_to_multiple_of": linear + f"""base_model: {base}
models:
  - {{model: {base}, parameters: {{weight: 0.2}}}}
  - {{model: {a}, parameters: {{weight: 0.3}}}}
  - {{model: {b}, parameters: {{weight: 0.5}}}}
tokenizer:
  source: union
  pad_to_multiple_of: 16
  tokens:
    <a_only>: {{source: {{kind: zero}}}}
    <ab>: {{source: {a}, force: true}}
    <new>: {{source: {{kind: model_token, model: {b}, token: q}}}}
    c: {{source: {{kind: model_token, model: {a}, token_id: 5}}, force: true}}
""",
        "union, task_arithmetic": f"""merge_method: task_arithmetic
dtype: float32
base_model: {base}
models:
  - {{model: {a}, parameters: {{weight: 0.7}}}}
  - {{model: {b}, parameters: {{weight: 0.4}}}}
tokenizer_source: union
""",
    }


def run_ours(text: str, out: Path) -> None:
    job = merge(load_recipe(text), out)
    try:
        while True:
            next(job)
    except StopIteration:
        pass


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(file))
    return out


def compare(ours: Path, theirs: Path) -> list[str]:
    from transformers import AutoTokenizer

    problems = []
    vocab_ours = AutoTokenizer.from_pretrained(ours, local_files_only=True).get_vocab()
    vocab_theirs = AutoTokenizer.from_pretrained(theirs, local_files_only=True).get_vocab()
    if set(vocab_ours) != set(vocab_theirs):
        problems.append(f"vocabularies differ: only ours {sorted(set(vocab_ours) - set(vocab_theirs))}, "
                        f"only mergekit's {sorted(set(vocab_theirs) - set(vocab_ours))}")
        return problems
    moved = sorted(t for t in vocab_ours if vocab_ours[t] != vocab_theirs[t])
    size_ours = json.loads((ours / "config.json").read_text())["vocab_size"]
    size_theirs = json.loads((theirs / "config.json").read_text())["vocab_size"]
    if size_ours != size_theirs:
        problems.append(f"config vocab_size {size_ours} vs {size_theirs}")
    a, b = tensors(ours), tensors(theirs)
    if set(a) != set(b):
        problems.append(f"tensor names differ: {sorted(set(a) ^ set(b))}")
    worst = 0.0
    for name in sorted(set(a) & set(b)):
        x, y = a[name].float(), b[name].float()
        if name in VOCAB_TENSORS:
            if x.shape != y.shape:
                problems.append(f"{name}: shape {list(x.shape)} vs {list(y.shape)}")
                continue
            order = [vocab_theirs[t] for t in sorted(vocab_ours, key=vocab_ours.get)]
            n = len(vocab_ours)
            y = torch.cat([y[order], y[n:]])  # mergekit's rows in our token order, padding after
        if x.shape != y.shape:
            problems.append(f"{name}: shape {list(x.shape)} vs {list(y.shape)}")
            continue
        diff = (x - y).abs().max().item() if x.numel() else 0.0
        worst = max(worst, diff)
        if diff > 1e-5:
            problems.append(f"{name}: max |diff| {diff:.3g}")
    print(f"    max |diff| over all tensors {worst:.3g}; {len(moved)} token ids differ "
          f"(rows matched by token){': ' + ', '.join(moved[:8]) if moved else ''}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mergekit", default="/tmp/mkvenv/bin/mergekit-yaml")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="tokenizer-parity-"))
    work.mkdir(parents=True, exist_ok=True)
    models = build_vocab_family(work / "models")
    failures = 0
    for i, (title, text) in enumerate(recipes(models).items()):
        print(f"[{i}] {title}")
        case = work / f"case{i}"
        shutil.rmtree(case, ignore_errors=True)
        case.mkdir()
        (case / "recipe.yml").write_text(text)
        run_ours(text, case / "ours")
        done = subprocess.run([args.mergekit, str(case / "recipe.yml"), str(case / "mergekit"), "--quiet"],
                              capture_output=True, text=True)
        if done.returncode:
            print(f"    mergekit failed: {done.stderr.strip().splitlines()[-1:]}")
            failures += 1
            continue
        problems = compare(case / "ours", case / "mergekit")
        for p in problems:
            print(f"    MISMATCH {p}")
        print("    same" if not problems else "    DIFFERENT")
        failures += bool(problems)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{failures} of {i + 1} recipes differ from mergekit")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
