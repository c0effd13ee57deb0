"""Merge search: tune a merge method's parameters by grid, CMA-ES or NSGA-II against evaluation tasks,
with every candidate merged in memory (no checkpoint written) and scored; only the chosen recipe is written,
through the normal merge. Qt-free; one job per module:

- settings.py: `SearchSettings` (+ `Tuned`, `Objective`), `load_settings(path)`, `save_settings(s, path)`,
  `settings_from_dict`, `dump_settings`, `check_settings` (every check that needs no model). The app writes
  the same YAML file the command line reads.
- events.py: what a search yields: `SearchStarted` (storage URL, dimension and objective names), then
  `TrialStarted`, `TrialFinished`, `BestSoFar`, `ParetoFront`, `HeldOutScore`, `SearchStopped` (reason:
  budget, time, grid done, cancelled, paused, failures), and its return value `SearchResult`. A dimension
  name is "param", "param/model" or "param[/model]/gN" (layer group N): the per-layer curves come from these.
- loop.py: `run_search(settings, out_dir, cancel, *, mode="new"|"resume"|"worker", pause=None)`: the
  generator. `cancel` stops now (the running trial is marked failed); `pause` stops after the running
  trial; resume with mode="resume" (the study is in its storage). A worker joins a study and runs trials
  only. The caller records the result: fusion_gui/session/search_record.py's `record_search`.
- study.py: `list_trials(storage_url, study_name)` -> [`TrialRow`], every worker's trials (for a live
  table); `storage_url(settings, out_dir)`: the study's storage (default sqlite in the output folder).
- genome.py: the search space (`dimensions`), a point's merge recipe (`recipe_dict`; `recipe_for(settings,
  trial_row.params)` for a trial picked in the app), coarse-first grids.
- candidates.py: `CandidateMerger`: inputs read once, each recipe merged into a model held in memory.
- objectives.py: demo skills, perplexity and task files, each split into search and held-out examples.
- export.py: best recipe YAML, trials CSV, held-out JSON.
"""

from __future__ import annotations

__all__ = ["SearchSettings", "load_settings", "save_settings", "run_search", "list_trials"]


def __getattr__(name: str):  # lazy: reading settings imports neither torch nor optuna
    if name in ("SearchSettings", "load_settings", "save_settings"):
        import fusion_gui.engine.search.settings as settings

        return getattr(settings, name)
    if name == "run_search":
        from fusion_gui.engine.search.loop import run_search

        return run_search
    if name == "list_trials":
        from fusion_gui.engine.search.study import list_trials

        return list_trials
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
