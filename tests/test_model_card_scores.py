"""Scores go into the model card's front matter in the Hub's model-index format; the rest stays."""

from __future__ import annotations

import yaml

from fusion_gui.engine.evaluate.model_card import CardScore, add_model_index, add_smoke_section
from fusion_gui.events import SmokeCheck, SmokeVerdict


def _front(path):
    return yaml.safe_load(path.read_text().split("---")[1])


def test_model_index_is_added_and_updated_without_losing_the_card(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("---\nbase_model:\n- a\n- b\ntags:\n- merge\n---\n\n# my-merge\n\nBody text.\n")
    add_model_index(readme, "my-merge", [CardScore("arc_easy", "acc", 0.5), CardScore("arc_easy", "acc_norm", 0.6)])
    add_model_index(readme, "my-merge", [CardScore("arc_easy", "acc", 0.55), CardScore("mine", "exact_match", 1.0)])
    front = _front(readme)
    assert front["base_model"] == ["a", "b"] and front["tags"] == ["merge"]
    entry = front["model-index"][0]
    assert entry["name"] == "my-merge"
    found = {(r["dataset"]["name"], m["type"]): m["value"] for r in entry["results"] for m in r["metrics"]}
    assert found == {("arc_easy", "acc"): 0.55, ("arc_easy", "acc_norm"): 0.6, ("mine", "exact_match"): 1.0}
    assert all(r["task"]["type"] == "text-generation" for r in entry["results"])
    assert "Body text." in readme.read_text()


def test_smoke_section_is_replaced_not_repeated(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("---\ntags: [merge]\n---\n\n# m\n\n## Recipe\n\nyaml\n")
    check = SmokeCheck("finite", "broken", "NaN in x.")
    add_smoke_section(readme, SmokeVerdict("broken", ("NaN in x.",), (check,)))
    add_smoke_section(readme, SmokeVerdict("ok", (), (SmokeCheck("finite", "ok", "All finite."),)))
    text = readme.read_text()
    assert text.count("## Smoke check") == 1 and "Verdict: **ok**" in text and "## Recipe" in text
