"""Distillation: a teacher's knowledge into a student, on the user's own text.

    from fusion_gui.engine.distill import load_config, distill
    result = yield from distill(load_config("distill.yml"), "out", cancel=token, pause=event)
"""

from fusion_gui.engine.distill.config import (DistillConfig, config_from_dict, config_to_dict, dump_config,
                                              load_config)

__all__ = ["DistillConfig", "config_from_dict", "config_to_dict", "distill", "dump_config", "load_config"]


def __getattr__(name):  # the trainer pulls in transformers.Trainer (seconds): only when a job runs
    if name == "distill":
        from fusion_gui.engine.distill.trainer import distill

        return distill
    raise AttributeError(name)
