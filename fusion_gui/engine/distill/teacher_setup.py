"""Which Trainer a distillation runs on and what stands for its teacher: the live model, a teacher
cache (no model), or the live model with on-policy batches. The variants are mixins on the trainer's
own class (passed in, so they need not import it)."""

from __future__ import annotations


def trainer_setup(config, base: type, teacher, tokenizer, emit) -> tuple[type, dict]:
    """(Trainer class, the keyword arguments that carry the teacher) for config; base is DistillTrainer."""
    if config.teacher_cache:
        from fusion_gui.engine.distill.cached_trainer import CachedTeacherMixin
        from fusion_gui.engine.distill.teacher_cache import TeacherCache

        return (type("CachedTeacherTrainer", (CachedTeacherMixin, base), {}),
                {"teacher_cache": TeacherCache(config.teacher_cache, config)})
    if config.on_policy is not None:
        from fusion_gui.engine.distill.on_policy import OnPolicyMixin

        return (type("OnPolicyTrainer", (OnPolicyMixin, base), {}),
                {"teacher": teacher, "on_policy": config.on_policy, "tokenizer": tokenizer, "emit": emit})
    return base, {"teacher": teacher}
