"""The Distill view's teacher options (pytest-qt, offscreen): capture a cache and train from it, live
on-policy samples coloured by the teacher, and the vocabulary overlap shown before training."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from fusion_gui.engine.distill.teacher_events import StudentSample  # noqa: E402
from ui_helpers import JOB_TIMEOUT_MS, error_dialogs, no_leaked_windows  # noqa: E402,F401
from fixtures.word_corpus import teacher_and_student  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return teacher_and_student(tmp_path_factory.mktemp("ui-teacher"), lines=60, student_hidden=16)


def _panel(qtbot, tiny, out):
    from fusion_gui.ui.panels.distill_panel import DistillPanel

    panel = DistillPanel()
    qtbot.addWidget(panel)
    panel.set_inputs(str(tiny / "teacher"), str(tiny / "student"), str(tiny / "corpus.txt"), str(out))
    panel.max_steps.setValue(3)
    panel.batch_size.setValue(4)
    panel.seq_length.setValue(16)
    panel.device.setCurrentText("cpu")
    return panel


def test_samples_are_coloured_by_the_teachers_log_probability(qtbot):
    from fusion_gui.ui.widgets.student_samples import KEPT, StudentSamplesView, token_colour

    view = StudentSamplesView()
    qtbot.addWidget(view)
    assert token_colour(0.0) != token_colour(-8.0) and token_colour(-20.0) == token_colour(-8.0)
    for step in range(1, KEPT + 3):
        view.add_sample(StudentSample(step, "the cat", (" sat", "<b>"), (-0.1, -9.0)))
    html = view.toHtml()
    assert len(view.samples) == KEPT and view.samples[0].step == 3
    assert "&lt;b&gt;" in html and "sat" in html  # tokens escaped, not read as markup
    assert token_colour(-0.1)[1:] in html.lower() and token_colour(-9.0)[1:] in html.lower()


def test_capture_then_train_from_the_cache_in_the_view(qtbot, tiny, tmp_path, no_leaked_windows,  # noqa: F811
                                                       error_dialogs):  # noqa: F811
    panel = _panel(qtbot, tiny, tmp_path / "out")
    box = panel.teacher_box
    box.cache_row.setText(str(tmp_path / "cache"))
    box.top_k.setValue(8)
    assert panel.state.config["teacher_cache"] == str(tmp_path / "cache")
    worker = box.capture()
    assert worker is not None, error_dialogs
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    assert not error_dialogs and (tmp_path / "cache" / "teacher_cache.json").is_file()
    assert "Captured" in box.capture_status.text()
    worker = panel.start()
    assert worker is not None, error_dialogs
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    assert not error_dialogs and panel.last_result is not None and panel.last_result.steps == 3


def test_on_policy_samples_reach_the_view(qtbot, tiny, tmp_path, no_leaked_windows, error_dialogs):  # noqa: F811
    panel = _panel(qtbot, tiny, tmp_path / "out")
    panel.loss_rows["forward_kl"].check.setChecked(True)
    panel.teacher_box.lmbda.setValue(1.0)
    panel.teacher_box.max_new_tokens.setValue(4)
    assert panel.state.config["on_policy"]["lmbda"] == 1.0
    worker = panel.start()
    assert worker is not None, error_dialogs
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    assert not error_dialogs and panel.samples_view.samples and panel.samples_view.samples[0].step == 1
    assert len(panel.samples_view.samples[0].tokens) > 0


def test_vocabulary_overlap_is_shown_before_training(qtbot, tiny, tmp_path, no_leaked_windows):  # noqa: F811
    panel = _panel(qtbot, tiny, tmp_path / "out")
    box = panel.teacher_box
    box.compare_vocabularies()
    qtbot.waitUntil(lambda: box.last_overlap is not None, timeout=JOB_TIMEOUT_MS)
    assert box.vocab_label.text().startswith("One vocabulary (128 tokens)")
    assert box.dialog is None  # nothing differs: no list of tokens to show
