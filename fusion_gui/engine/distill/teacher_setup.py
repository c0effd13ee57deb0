"""Which Trainer a distillation runs on and what stands for its teacher: the live model, a teacher
cache (no model), the live model with on-policy batches, or a teacher of another vocabulary. The
variants are mixins on the trainer's own class (passed in, so they need not import it)."""

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
    cross = _cross_vocab_args(config, teacher)
    if cross is not None:
        from fusion_gui.engine.distill.cross_vocab_trainer import CrossVocabMixin

        return type("CrossVocabTrainer", (CrossVocabMixin, base), {}), cross
    return base, {"teacher": teacher}


def match_tokenizers(config):
    """(the student's tokenizer, its vocabulary size): the same vocabulary as before, or, when the
    teacher's differs, any that shares tokens with it (the losses then go through vocab_alignment)."""
    from fusion_gui.engine.distill.data import check_tokenizers
    from fusion_gui.engine.errors import InputError

    try:
        return check_tokenizers(config.teacher, config.student)
    except InputError as err:
        cross = cross_tokenizers(config)
        if cross is None:
            raise err from None
    s_tok, t_tok = cross
    from fusion_gui.engine.distill.cross_vocab_trainer import CROSS_VOCAB_LOSSES
    from fusion_gui.engine.distill.vocab_alignment import shared_vocab

    from transformers import AutoConfig

    for role, path, tok in (("teacher", config.teacher, t_tok), ("student", config.student, s_tok)):
        rows = getattr(AutoConfig.from_pretrained(path).get_text_config(), "vocab_size", None)
        if rows is not None and rows < len(tok):
            raise InputError(f"The {role} '{path}' has {rows} embedding rows, fewer than its tokenizer's "
                             f"{len(tok)} tokens.")
    shared = shared_vocab(s_tok, t_tok)  # refuses vocabularies with no token in common
    sizes = f"the teacher's {len(t_tok)} tokens, the student's {len(s_tok)}, {shared.size} shared"
    other = [s.name for s in config.losses if s.name not in CROSS_VOCAB_LOSSES]
    if other:
        raise InputError(f"Teacher and student use different vocabularies ({sizes}): use forward_kl, uld and ce "
                         f"across them, not {', '.join(other)}.")
    if config.on_policy is not None or config.teacher_cache:
        raise InputError(f"Teacher and student use different vocabularies ({sizes}); on-policy batches and "
                         f"teacher caches need one vocabulary.")
    return s_tok, len(s_tok)


def cross_tokenizers(config):
    """(student, teacher) tokenizers when both load and their vocabularies differ; else None."""
    from transformers import AutoTokenizer

    try:
        s_tok, t_tok = AutoTokenizer.from_pretrained(config.student), AutoTokenizer.from_pretrained(config.teacher)
    except (OSError, ValueError):
        return None
    return (s_tok, t_tok) if s_tok.get_vocab() != t_tok.get_vocab() else None


def _cross_vocab_args(config, teacher) -> dict | None:
    cross = cross_tokenizers(config)
    if cross is None:
        return None
    from fusion_gui.engine.distill.vocab_alignment import SequenceAligner, shared_vocab

    s_tok, t_tok = cross
    return {"teacher": teacher, "aligner": SequenceAligner(s_tok, t_tok), "shared": shared_vocab(s_tok, t_tok),
            "teacher_vocab": len(t_tok)}  # match_tokenizers checked the rows cover it
