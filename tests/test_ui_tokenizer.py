"""The Tokenizer group: the choice round-trips with the recipe; vocabularies compared on a worker."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from fusion_gui.engine.merge.recipe import load_recipe  # noqa: E402
from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config, write_tiny_tokenizer  # noqa: E402
from fusion_gui.ui.dialogs.vocab_dialog import MAX_SHOWN, VocabDialog  # noqa: E402
from fusion_gui.session.merge_state import MergeState  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, close_questions, config_dir, error_dialogs, no_leaked_windows, preflight, save_screenshot,
    window,
)

pytestmark = pytest.mark.gui

BASE_VOCAB = 256
CHAT_TOKENS = ["<|im_start|>", "<|im_end|>"]
TOOL_TOKENS = ["<|im_start|>", "<tool>", "\n\n"]


def _model_with_tokens(path, added: list[str], seed: int):
    """A tiny Llama whose tokenizer has `added` tokens after the 256 base ones; its embedding is
    resized to them and padded to a multiple of 8 rows, as fine-tuning scripts do."""
    from transformers import AutoTokenizer

    model = build_model(tiny_config("llama", layers=2, hidden=32, vocab=BASE_VOCAB), seed=seed)
    write_tiny_tokenizer(path, BASE_VOCAB)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.add_tokens(added)
    tokenizer.save_pretrained(path)
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=8, mean_resizing=False)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def vocab_pair(tmp_path_factory):
    """[chat, tool]: 258 and 259 tokens, both 264 embedding rows; '<|im_start|>' is in both."""
    root = tmp_path_factory.mktemp("vocab")
    return [str(_model_with_tokens(root / "chat", CHAT_TOKENS, 0)),
            str(_model_with_tokens(root / "tool", TOOL_TOKENS, 1))]


def wait_for_comparison(qtbot, panel) -> None:
    qtbot.waitUntil(lambda: panel.worker is not None and not panel.worker.running, timeout=JOB_TIMEOUT_MS)


def test_choosing_union_writes_the_recipe(window):
    panel = window.tokenizer_panel
    combo = panel.source_combo
    assert combo.currentData() is None and not panel.pad_box.isEnabled()
    combo.setCurrentIndex(combo.findData("union"))
    assert window.document.recipe().tokenizer_source == "union"
    assert "tokenizer_source: union" in window.recipe_panel.text()
    assert panel.explanation.text().startswith("Every token of every model")

    panel.pad_box.setValue(64)  # padding needs mergekit's tokenizer block instead
    recipe = window.document.recipe()
    assert recipe.tokenizer_source is None
    assert recipe.tokenizer == {"source": "union", "pad_to_multiple_of": 64}
    assert "pad_to_multiple_of: 64" in window.recipe_panel.text()

    combo.setCurrentIndex(combo.findData(None))  # back to the default: nothing in the recipe
    recipe = window.document.recipe()
    assert recipe.tokenizer_source is None and recipe.tokenizer is None
    assert "tokenizer" not in window.recipe_panel.text()
    assert not panel.pad_box.isEnabled()


def test_a_recipe_with_a_tokenizer_block_sets_the_form(window, tmp_path):
    path = tmp_path / "recipe.yml"
    path.write_text("merge_method: linear\nmodels: [/m/chat, /m/tool]\n"
                    "tokenizer:\n  source: /m/tool\n  pad_to_multiple_of: 64\n"
                    "  tokens:\n    <tool>: {source: /m/tool}\n")
    assert window.open_recipe(path)
    panel = window.tokenizer_panel
    assert panel.source_combo.currentData() == "/m/tool"
    assert panel.source_combo.currentText() == "Vocabulary of tool"
    assert panel.pad_box.value() == 64 and panel.pad_box.isEnabled()

    panel.pad_box.setValue(0)  # the per-token rules stay, so the block stays
    assert window.document.recipe().tokenizer == {"source": "/m/tool", "tokens": {"<tool>": {"source": "/m/tool"}}}
    panel.source_combo.setCurrentIndex(panel.source_combo.findData("base"))
    assert window.document.recipe().tokenizer["source"] == "base"

    path.write_text("merge_method: linear\nmodels: [/m/chat, /m/tool]\ntokenizer_source: /m/chat\n")
    assert window.open_recipe(path)
    assert panel.source_combo.currentData() == "/m/chat" and panel.pad_box.value() == 0


@pytest.mark.parametrize("text, choice", [
    ("merge_method: linear\nmodels: [a, b]\n", (None, 0)),
    ("merge_method: linear\nmodels: [a, b]\ntokenizer_source: base\n", ("base", 0)),
    ("merge_method: linear\nmodels: [a, b]\ntokenizer: {pad_to_multiple_of: 32}\n", ("union", 32)),
])
def test_state_reads_either_spelling(text, choice):
    state = MergeState.from_recipe(load_recipe(text))
    assert state.tokenizer_choice() == choice
    state.set_tokenizer(*state.tokenizer_choice())
    assert state.tokenizer_choice() == choice


@pytest.mark.screenshot
def test_union_compares_the_vocabularies(window, qtbot, vocab_pair):
    chat, tool = vocab_pair
    panel = window.tokenizer_panel
    window.models_panel.add_models([chat, tool])
    assert panel.worker is None  # the default choice needs no comparison
    assert panel.compare_button.isVisibleTo(window)

    panel.source_combo.setCurrentIndex(panel.source_combo.findData("union"))
    assert panel.worker in window.job_list.workers()
    wait_for_comparison(qtbot, panel)
    assert panel.error is None
    comparison = panel.comparison
    assert [(m.label, m.tokenizer_size, m.embedding_rows, m.only_here) for m in comparison.models] == [
        ("chat", 258, 264, 1), ("tool", 259, 264, 2)]
    assert (comparison.union_size, comparison.common_size) == (260, 257)

    table = panel.table
    assert table.isVisibleTo(window) and table.rowCount() == 2
    assert [table.item(1, c).text() for c in range(4)] == ["tool", "259", "264", "2"]
    assert table.item(0, 0).text() == "chat  (base)"
    assert "Union: 260 tokens" in panel.totals_label.text()
    assert "merged model: 260 tokens" in panel.totals_label.text()
    assert panel.tokens_button.text().startswith("3 tokens")

    dialog = panel.show_tokens()
    qtbot.addWidget(dialog)
    assert set(dialog.shown_tokens()) == {"<|im_end|>", "<tool>", "\n\n"}
    row = dialog.shown_tokens().index("\n\n")
    assert dialog.model.index(row, 0).data() == repr("\n\n")  # whitespace shows
    assert [dialog.model.index(row, c).data() for c in (1, 2)] == ["✗", "✓"]
    dialog.filter_edit.setText("im_")
    assert dialog.shown_tokens() == ["<|im_end|>"]
    assert dialog.count_label.text() == "1 matching token."
    save_screenshot(window, "tokenizer-union.png")
    dialog.close()

    panel.pad_box.setValue(64)
    assert "260 tokens, 320 embedding rows" in panel.totals_label.text()
    panel.source_combo.setCurrentIndex(panel.source_combo.findData(tool))
    assert "merged model: 259 tokens" in panel.totals_label.text()
    assert panel.worker is not None and not panel.worker.running  # same models: no second read


def test_a_long_list_shows_the_first_rows(qtbot, no_leaked_windows):
    from fusion_gui.engine.merge.vocab_compare import VocabComparison, VocabInfo

    tokens = tuple((f"t{i}", (True, False)) for i in range(MAX_SHOWN + 500))
    comparison = VocabComparison((VocabInfo("a", 10, 10, len(tokens)), VocabInfo("b", 5, 5, 0)),
                                 10, 5, tokens)
    dialog = VocabDialog(comparison)
    qtbot.addWidget(dialog)
    assert dialog.model.rowCount() == MAX_SHOWN
    assert "and 500 more" in dialog.count_label.text()


def test_a_model_without_tokenizer_is_one_sentence(window, qtbot, vocab_pair, tmp_path, error_dialogs):
    bare = tmp_path / "bare"
    save_model(build_model(tiny_config("llama", layers=2, hidden=32, vocab=264), seed=3), bare, tokenizer=False)
    panel = window.tokenizer_panel
    window.models_panel.add_models([vocab_pair[0], str(bare)])
    panel.source_combo.setCurrentIndex(panel.source_combo.findData("union"))
    wait_for_comparison(qtbot, panel)
    text = panel.status_label.text()
    assert panel.status_label.isVisibleTo(window) and "bare" in text and "tokenizer" in text
    assert "\n" not in text  # one line in the group
    assert not panel.table.isVisibleTo(window)
    assert error_dialogs == []  # in the group, not a dialog in the way
    assert panel.compare_button.isVisibleTo(window) and panel.compare_button.text() == "Compare again"

    window.models_panel.remove_model(str(bare))  # the app goes on: drop it, add a good one
    window.models_panel.add_models([vocab_pair[1]])
    wait_for_comparison(qtbot, panel)
    assert panel.error is None and panel.table.rowCount() == 2


def test_embedding_rows_that_differ_are_flagged_only_without_a_tokenizer_merge(window, tmp_path):
    """Models of different vocabulary sizes are what a union merge is for: the Models table flags
    them while the tokenizer is copied, and clears the flag once a tokenizer source is chosen."""
    from fixtures.tiny_models import build_vocab_family

    family = build_vocab_family(tmp_path)
    window.models_panel.add_models([str(family["base"]), str(family["a"])])
    window.models_panel.set_base(str(family["base"]))
    problems = window.models_panel.problems()
    assert list(problems) == [str(family["a"])] and "is 33x48, the base's is 31x48" in problems[str(family["a"])]
    combo = window.tokenizer_panel.source_combo
    combo.setCurrentIndex(combo.findData("union"))
    assert window.models_panel.problems() == {}


def test_chat_template_choice_round_trips_with_the_recipe(window, tmp_path):
    combo = window.tokenizer_panel.template_combo
    assert combo.currentData() is None and window.document.recipe().chat_template is None
    combo.setCurrentIndex(combo.findData("chatml"))
    assert window.document.recipe().chat_template == "chatml"
    assert "chat_template: chatml" in window.recipe_panel.text()

    written = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    recipe = tmp_path / "r.yml"
    recipe.write_text(f"merge_method: linear\nmodels: [{{model: a}}, {{model: b}}]\nchat_template: \"{written}\"\n")
    assert window.open_recipe(recipe)
    assert combo.currentText() == "Written in the recipe" and combo.currentData() == written
    combo.setCurrentIndex(combo.findData("auto"))
    assert window.document.recipe().chat_template == "auto"


def test_a_union_merge_runs_from_the_window(window, qtbot, tmp_path, error_dialogs):
    """Models of different vocabularies, union chosen in the Tokenizer group, Run: the output has
    every model's tokens, an embedding row for each, and the chat template picked in the group."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fixtures.tiny_models import build_vocab_family
    from ui_helpers import run_merge

    family = build_vocab_family(tmp_path / "models")
    window.models_panel.add_models([str(family[k]) for k in ("base", "a", "b")])
    window.models_panel.set_base(str(family["base"]))
    window.strategy_panel.set_method("task_arithmetic")
    panel = window.tokenizer_panel
    panel.source_combo.setCurrentIndex(panel.source_combo.findData("union"))
    panel.template_combo.setCurrentIndex(panel.template_combo.findData("chatml"))
    assert window.models_panel.problems() == {}
    assert preflight(qtbot, window) is not None, window.run_panel.preflight_label.text()
    assert "tokenizer: union, 34 tokens" in window.run_panel.preflight_label.text()

    run_merge(qtbot, window, tmp_path / "merged")
    assert error_dialogs == [] and window.run_panel.last_result is not None
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert len(tokenizer) == 34 and model.get_input_embeddings().weight.shape[0] == 34
    text = "<a_only><b_only><ab>"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert "<|im_start|>" in tokenizer.chat_template
