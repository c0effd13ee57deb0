"""Tiny task files built by the tests: multiple choice and generation JSONL, and an lm-eval task YAML."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ["red", "green", "blue", "stone", "river", "bread", "apple", "fish", "light", "water", "town", "road"]


def write_choice_task(path: Path, n: int = 12, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            choices = rng.sample(WORDS, 4)
            query = f"Question: which word is {choices[1]}?\nAnswer:"
            f.write(json.dumps({"query": query, "choices": choices, "answer": 1}) + "\n")
    return path


def write_generation_task(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in pairs))
    return path


def write_lm_eval_task(folder: Path, data: Path, name: str = "local_mc") -> Path:
    """A custom lm-eval task over a local JSONL (the same fields as our multiple-choice files)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{query}}\"\n"
        "doc_to_choice: choices\ndoc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    return folder
