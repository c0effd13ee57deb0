"""Which Trainer a distillation runs on and what stands for its teacher: the live model, a teacher
cache (no model), or the live model with on-policy batches."""

from __future__ import annotations


def trainer_setup(config, teacher, tokenizer, emit) -> tuple[type, dict]:
    """(Trainer class, the keyword arguments that carry the teacher) for config."""
    if config.teacher_cache:
        from fusion_gui.engine.distill.cached_trainer import CachedTeacherTrainer
        from fusion_gui.engine.distill.teacher_cache import TeacherCache

        return CachedTeacherTrainer, {"teacher_cache": TeacherCache(config.teacher_cache, config)}
    if config.on_policy is not None:
        from fusion_gui.engine.distill.on_policy import OnPolicyTrainer

        return OnPolicyTrainer, {"teacher": teacher, "on_policy": config.on_policy, "tokenizer": tokenizer,
                                 "emit": emit}
    from fusion_gui.engine.distill.trainer import DistillTrainer

    return DistillTrainer, {"teacher": teacher}
