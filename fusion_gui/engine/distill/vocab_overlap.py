"""Before a distillation: how much of the student's vocabulary the teacher's covers, for the Distill
view (the tokenizer panel's comparison of raw tokens, plus the tokens matched by text)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from fusion_gui.engine.errors import InputError
from fusion_gui.events import Event


@dataclass(frozen=True)
class VocabOverlap:
    comparison: object  # merge.vocab_compare.VocabComparison of [teacher, student]
    teacher_size: int
    student_size: int
    shared_by_text: int  # tokens matched by the text they stand for (0: no alignment possible)

    def sentence(self) -> str:
        if self.comparison.models and self.comparison.common_size == self.comparison.union_size:
            return f"One vocabulary ({self.student_size:,} tokens): the teacher's logits are used as they are."
        if not self.shared_by_text:
            return "The vocabularies share no token: no position can be aligned, so this teacher cannot be used."
        return (f"Different vocabularies: the teacher has {self.teacher_size:,} tokens, the student "
                f"{self.student_size:,}, {self.shared_by_text:,} shared by text "
                f"({100 * self.shared_by_text / max(1, self.student_size):.0f}% of the student's). Training "
                f"aligns positions by characters: KL on the shared tokens, ULD on the rest.")


def vocab_overlap(teacher: str, student: str, cancel=None) -> Generator[Event, None, VocabOverlap]:
    """The comparison job (yields nothing; returns the overlap)."""
    from transformers import AutoTokenizer

    from fusion_gui.engine.distill.vocab_alignment import shared_vocab
    from fusion_gui.engine.merge.vocab_compare import compare_vocabularies

    comparison = compare_vocabularies([teacher, student])
    s_tok, t_tok = AutoTokenizer.from_pretrained(student), AutoTokenizer.from_pretrained(teacher)
    try:
        shared = shared_vocab(s_tok, t_tok).size
    except InputError:
        shared = 0
    return VocabOverlap(comparison, len(t_tok), len(s_tok), shared)
    yield  # a generator, like every job
