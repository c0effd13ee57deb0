"""Qt-free, evented state of the app: what is loaded and chosen in each tab (psygnal signals).

Views bind to these objects and change them only through their intent methods or fields; the
objects are tested without Qt. Anything slow they need (pre-flight, vocabulary comparison) is a job.
"""

from fusion_gui.session.inspect import InspectState
from fusion_gui.session.merge import MergeSession, find_method
from fusion_gui.session.merge_state import MergeState, is_scalar, starting_value
from fusion_gui.session.search import SearchSession
from fusion_gui.session.tabs import CompareState, DistillState, EvalState


class Session:
    """Everything the window holds: one state per tab."""

    def __init__(self) -> None:
        self.merge = MergeSession()
        self.compare = CompareState()
        self.inspect = InspectState()
        self.evaluate = EvalState()
        self.distill = DistillState()
        self.search = SearchSession()
        self.history = None  # the run history (History), opened on first use: see open_history


__all__ = ["CompareState", "DistillState", "EvalState", "InspectState", "MergeSession", "MergeState", "SearchSession",
           "Session",
           "find_method", "is_scalar", "starting_value"]
