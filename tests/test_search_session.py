"""The Search tab's Qt-free session: the Pareto front, and trials arriving from events and from the storage."""

from __future__ import annotations

from fusion_gui.session.search import SearchSession, TrialRow, pareto_front


def test_pareto_front_keeps_only_unbeaten_trials():
    points = [(0, (0.9, 0.1)), (1, (0.5, 0.5)), (2, (0.4, 0.4)), (3, (0.1, 0.9)), (4, (0.5, 0.5))]
    assert sorted(pareto_front(points, (True, True))) == [0, 1, 3, 4]
    assert sorted(pareto_front(points, (True, False))) == [0]  # lower second objective is better


def test_session_keeps_a_finished_trial_over_a_late_running_copy():
    session = SearchSession()
    session.add_trials([TrialRow(1, {"w": 0.5}, (0.7,), state="complete")])
    assert session.add_trials([TrialRow(1, {"w": 0.5}, (), state="running")]) == []
    assert session.trials[1].scores == (0.7,)


def test_polling_the_storage_re_emits_nothing_already_shown():
    session = SearchSession()
    from_event = TrialRow(2, {"w": 0.5}, (0.7,), held_out=(0.6,), seconds=1.25)
    from_storage = TrialRow(2, {"w": 0.5}, (0.7,), seconds=1.3, worker="host:1")
    assert session.add_trials([from_event]) == [from_event]
    assert session.add_trials([from_storage])[0].worker == "host:1"  # what the event lacked
    assert session.trials[2].held_out == (0.6,) and session.trials[2].seconds == 1.25
    assert session.add_trials([from_storage]) == []


def test_best_so_far_follows_each_objective_s_direction():
    session = SearchSession()
    session.replace_settings({"objectives": [{"task": "perplexity", "file": "t.txt"}, "count"]})
    assert session.objectives == ["perplexity", "count"] and session.maximize == (False, True)
    session.add_trials([TrialRow(n, {"w": n}, (p, c)) for n, (p, c) in enumerate([(9.0, 0.1), (7.0, 0.0), (8.0, 0.4)])])
    assert session.best_so_far(0) == [(0, 9.0), (1, 7.0), (2, 7.0)]
    assert session.best_so_far(1) == [(0, 0.1), (1, 0.1), (2, 0.4)]
    assert session.best().number == 1 and session.front() == [1, 2]


def test_copying_an_empty_merge_says_what_is_missing():
    import pytest

    from fusion_gui.engine.errors import InputError
    from fusion_gui.session.merge import MergeSession

    session = SearchSession()
    with pytest.raises(InputError, match="no models"):
        session.copy_from_merge(MergeSession())
    assert session.settings["method"] == ""



def test_layer_group_parameters_become_curves():
    from fusion_gui.session.search import param_curves

    params = {"weight/count/g1": 0.4, "weight/count/g0": 0.2, "weight/reverse/g0": 0.9, "lambda": 1.1}
    assert param_curves(params) == {"lambda": [1.1], "weight/count": [0.2, 0.4], "weight/reverse": [0.9]}
