"""The command line's one drive loop and one printer, without models: events in, lines and exit codes out."""

from __future__ import annotations

import pytest

from fusion_gui.cli.drive import EXIT_CANCELLED, EXIT_ERROR, EXIT_INPUT, EXIT_OK, drive, guarded
from fusion_gui.cli.printer import Printer
from fusion_gui.engine.errors import Cancelled, InputError
from fusion_gui.events import EvalStep, Log, Progress, StepProgress, TrainStep


@pytest.fixture
def stderr(capsys):
    """What the code wrote to stderr, which pytest captures into a file, not a terminal: where a redrawn bar
    used to repeat its whole line at every update."""

    class Err:
        def getvalue(self) -> str:
            return capsys.readouterr().err

    return Err()


def test_off_a_terminal_progress_is_a_few_plain_lines_not_one_per_tensor(stderr):
    printer = Printer()
    for i in range(1, 201):
        printer.show(Progress(i, 200, 1000 * i, 200_000, 0.1 * i))
    printer.close()
    text = stderr.getvalue()
    lines = text.splitlines()
    assert len(lines) == 4 and "\r" not in text
    assert lines[-1] == "progress: 100% (200.00 KB of 200.00 KB, 200/200 tensors)"


def test_each_stage_of_steps_gets_its_own_lines_with_the_loss(stderr):
    printer = Printer()
    for stage in ("pretrain base", "fine-tune count"):
        for done in range(1, 11):
            printer.show(StepProgress(stage, done, 10, 0.0, loss=1.0 / done))
    printer.close()
    lines = stderr.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["pretrain base"] * 4 + ["fine-tune count"] * 4
    assert lines[-1] == "fine-tune count: 100% (10/10, loss 0.100)"


def test_training_steps_and_evals(stderr):
    printer = Printer()
    for step in range(1, 5):
        printer.show(TrainStep(step, 4, 1.0, {"total": 2.0 / step}, 1e-3, 0.0))
    printer.show(EvalStep(4, {"kl_teacher": 0.25}))
    printer.close()
    lines = stderr.getvalue().splitlines()
    assert lines[0].startswith("distill: 25% (1/4, loss=2 lr=1.00e-03")
    assert lines[-1] == "eval @ step 4: kl_teacher=0.25"


def test_without_progress_only_warnings_are_shown_and_other_events_are_ignored(stderr):
    printer = Printer(enabled=False)
    printer.show(Log("Merging 3 models."))
    printer.show(Progress(1, 1, 10, 10, 0.0))
    printer.show(object())  # an event the command line does not draw
    printer.show(Log("The text is short.", level="warning"))
    assert stderr.getvalue() == "warning: The text is short.\n"


def test_ctrl_c_fires_the_token_closes_the_job_and_exits_130(stderr):
    seen = {}

    def job(cancel):
        seen["cancel"] = cancel
        try:
            yield Log("started")
            raise KeyboardInterrupt  # as if Ctrl-C arrived while the job computed
        finally:
            seen["cleaned up"] = True

    def action():
        drive(job)
        return EXIT_OK

    assert guarded(action) == EXIT_CANCELLED
    assert seen["cancel"].cancelled and seen["cleaned up"]
    assert stderr.getvalue().splitlines()[-1] == "cancelled; nothing was written."


def test_ctrl_c_between_events_closes_the_suspended_generator(stderr, monkeypatch):
    closed = []

    def job(cancel):
        try:
            yield Log("one")
            yield Log("two")
        finally:
            closed.append(cancel.cancelled)

    def interrupt(self, event):
        raise KeyboardInterrupt

    monkeypatch.setattr(Printer, "show", interrupt)
    with pytest.raises(Cancelled):
        drive(job)
    assert closed == [True]


def test_the_job_result_comes_back_and_errors_map_to_exit_codes(stderr):
    def job(cancel):
        yield Log("working")
        return 42

    assert drive(job) == 42

    def fails(error):
        def action():
            raise error
        return action

    assert guarded(fails(InputError("Recipe key 'modles' is unknown."))) == EXIT_INPUT
    assert guarded(fails(RuntimeError("disk on fire"))) == EXIT_ERROR
    assert stderr.getvalue().splitlines()[-2:] == ["error: Recipe key 'modles' is unknown.", "error: disk on fire"]
