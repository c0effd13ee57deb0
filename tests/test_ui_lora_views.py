"""Extract LoRA as a user meets it: the rank that keeps 90% of the change, an adapter offered to the merge
only when it fits the merge's base, and two models called "base" told apart in the Models table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
import torch  # noqa: E402

from fusion_gui.engine.io.opener import open_model  # noqa: E402
from fusion_gui.engine.lora import extract_lora, rank_for_energy  # noqa: E402
from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config  # noqa: E402
from helpers import drain  # noqa: E402
from test_ui_lora import extract_in_dialog  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, close_questions, config_dir, error_dialogs, no_leaked_windows, window,
)


def test_the_rank_for_90_percent_counts_the_energy_of_every_module():
    # energies 9+4+1 = 14 and 16: 90% of 30 is 27; rank 1 keeps 9+16, rank 2 keeps 13+16
    spectra = [(torch.tensor([3.0, 2.0, 1.0]), 14.0), (torch.tensor([4.0]), 16.0)]
    assert rank_for_energy(spectra) == 2
    assert rank_for_energy(spectra, fraction=0.8) == 1
    # only the largest value known (a randomized SVD) and it holds too little: no rank can be named
    assert rank_for_energy([(torch.tensor([1.0]), 10.0)]) is None


def test_the_engine_names_the_smallest_rank_keeping_90_percent(llama_family, tmp_path):
    base, ft1, _ = llama_family
    result, _ = drain(extract_lora(str(ft1), str(base), tmp_path / "a", 2, device="cpu"))
    ft, bm = open_model(str(ft1)), open_model(str(base))
    curves, total = [], 0.0
    for module in result.modules:  # every module's full spectrum, computed here independently
        delta = ft.get(module.name).float() - bm.get(module.name).float()
        energy = (torch.linalg.svdvals(delta).double() ** 2).cumsum(0)
        curves.append(energy)
        total += float(energy[-1])
    ft.close(), bm.close()

    def kept(rank):
        return sum(float(c[min(rank, len(c)) - 1]) for c in curves) / total

    suggested = result.rank_for_90
    assert suggested is not None and suggested > 2
    assert kept(suggested) >= 0.9 > kept(suggested - 1)


def test_a_rank_far_too_low_is_named_with_the_rank_to_use(window, qtbot, llama_family, tmp_path):
    base, ft1, _ = llama_family
    dialog = window.open_extract_lora()
    extract_in_dialog(qtbot, dialog, ft1, base, tmp_path / "adapter", rank=2)
    result = dialog.result
    assert result is not None, (dialog.error_label.text(), dialog.error_label.toolTip())
    assert result.mean_rel_error > 0.9  # the case the user met: 0.94 at a low rank
    assert dialog.rank_warning.isVisible()
    text = dialog.rank_warning.text()
    assert "far too low" in text and f"Rank {result.rank_for_90} would keep 90%" in text
    dialog.close()


def test_the_adapter_is_offered_only_when_it_fits_the_merges_base(window, qtbot, llama_family, tmp_path):
    base, ft1, _ = llama_family
    small = save_model(build_model(tiny_config("llama", layers=2), seed=0), tmp_path / "small" / "model")
    window.models_panel.add_models([str(small)])  # the merge's base: another architecture's size
    dialog = window.open_extract_lora()
    extract_in_dialog(qtbot, dialog, ft1, base, tmp_path / "adapter", rank=8)
    qtbot.waitUntil(lambda: dialog.fit_label.isVisible() or dialog.add_button.isEnabled(), timeout=JOB_TIMEOUT_MS)
    assert not dialog.add_button.isEnabled()  # never added first and flagged after
    assert "does not fit" in dialog.fit_label.text() and "tensors the base lacks" in dialog.fit_label.text()
    dialog.add_button.click()
    assert str(tmp_path / "adapter") not in window.document.state.model_refs()

    window.models_panel.remove_model(str(small))
    window.models_panel.add_models([str(base)])  # now the merge's base is the adapter's own
    dialog.hide()
    dialog.show()  # shown again: checked again against the merge as it is now
    qtbot.waitUntil(dialog.add_button.isEnabled, timeout=JOB_TIMEOUT_MS)
    assert dialog.fit_label.isHidden()
    dialog.add_button.click()
    assert str(tmp_path / "adapter") in window.document.state.model_refs()
    assert window.models_panel.problems() == {}
    dialog.close()


def test_two_models_called_base_are_told_apart(window, llama_family, tmp_path):
    base, ft1, _ = llama_family
    mine = tmp_path / "mine" / "base"
    shutil.copytree(base, mine)  # the same name in another folder
    drain(extract_lora(str(ft1), str(mine), tmp_path / "adapter", 4, device="cpu"))
    other = tmp_path / "theirs" / "base"
    shutil.copytree(base, other)
    window.models_panel.add_models([str(other), str(tmp_path / "adapter")])
    refs = window.document.state.refs_base_first()
    table = window.models_panel.table
    names = {ref: table.item(row, 1).text() for row, ref in enumerate(refs)}
    assert names[str(other)] == "theirs/base"
    adapter_row = refs.index(str(tmp_path / "adapter"))
    assert table.item(adapter_row, 2).text() == "LoRA adapter r=4 on mine/base"
    assert Path(mine).name == Path(other).name == "base"
