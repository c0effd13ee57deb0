"""Teacher and student of different vocabularies: which tokens they share, and which teacher position
predicts from the same text as each student position.

Tokens are matched by the text they stand for: SentencePiece's '▁' and byte-level BPE's byte alphabet
('Ġ' for a space) are read back to plain text first, so 'Ġthe', '▁the' and ' the' are one token.
Positions are matched by character offsets: a student position and a teacher position align when
both models have read exactly the same characters so far (their last tokens end at the same offset).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from fusion_gui.engine.errors import InputError

SPIECE_SPACE = "\u2581"


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet read back: the printable stand-in of each byte -> the byte."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and "ByteLevel" in (type(backend.pre_tokenizer).__name__ +
                                                  type(backend.decoder).__name__)


def token_text(token: str, byte_level: bool) -> str:
    """The text a vocabulary entry stands for."""
    if byte_level:
        decoder = _byte_decoder()
        if all(ch in decoder for ch in token):
            return bytes(decoder[ch] for ch in token).decode("utf-8", errors="replace")
        return token
    return token.replace(SPIECE_SPACE, " ")


def token_texts(tokenizer) -> list[str]:
    """Each id's text ("" for special tokens, which stand for no text)."""
    byte_level, special = is_byte_level(tokenizer), set(tokenizer.all_special_ids)
    texts = [""] * len(tokenizer)
    for token, i in tokenizer.get_vocab().items():
        if i < len(texts):
            texts[i] = "" if i in special else token_text(token, byte_level)
    return texts


SPECIAL_ROLES = ("bos_token_id", "eos_token_id", "unk_token_id", "pad_token_id")


def special_pairs(student_tok, teacher_tok) -> dict[int, int]:
    """Special tokens stand for no text: they are matched by role (the student's EOS is the teacher's)."""
    pairs: dict[int, int] = {}
    for role in SPECIAL_ROLES:
        s_id, t_id = getattr(student_tok, role, None), getattr(teacher_tok, role, None)
        if s_id is not None and t_id is not None and s_id not in pairs and t_id not in pairs.values():
            pairs[s_id] = t_id
    return pairs


@dataclass(frozen=True)
class SharedVocab:
    student_ids: torch.Tensor  # [n] ids of the shared tokens in the student's vocabulary
    teacher_ids: torch.Tensor  # [n] the same tokens' ids in the teacher's
    student_rest: torch.Tensor  # the student's other ids
    teacher_rest: torch.Tensor  # the teacher's other ids

    @property
    def size(self) -> int:
        return len(self.student_ids)


def shared_vocab(student_tok, teacher_tok, student_label: str = "student", teacher_label: str = "teacher"
                 ) -> SharedVocab:
    """The tokens both vocabularies hold (by text); one sentence when they share none."""
    s_texts, t_texts = token_texts(student_tok), token_texts(teacher_tok)
    teacher_by_text: dict[str, int] = {}
    for i, text in enumerate(t_texts):
        if text:
            teacher_by_text.setdefault(text, i)
    specials = special_pairs(student_tok, teacher_tok)  # special tokens have no text: paired by role
    pairs, seen = [], set(specials.values())
    for i, text in enumerate(s_texts):
        j = teacher_by_text.get(text) if text and i not in specials else None
        if j is not None and j not in seen:
            pairs.append((i, j))
            seen.add(j)
    if not pairs:  # roles alone align no text
        raise InputError(f"The {teacher_label}'s and the {student_label}'s vocabularies share no token, so no "
                         f"position can be matched between them; choose a teacher whose tokenizer shares "
                         f"tokens with the student's.")
    pairs += list(specials.items())
    s_ids = torch.tensor([p[0] for p in pairs])
    t_ids = torch.tensor([p[1] for p in pairs])

    def rest(n, used):
        keep = torch.ones(n, dtype=torch.bool)
        keep[used] = False
        return keep.nonzero().flatten()

    return SharedVocab(s_ids, t_ids, rest(len(s_texts), s_ids), rest(len(t_texts), t_ids))


class SequenceAligner:
    """Re-reads a batch of student token blocks as the teacher's tokens, with the alignment. A special
    token (BOS, EOS) counts as one character that only it covers: it becomes the teacher's token of the
    same role, and the text between specials is tokenized by the teacher piece by piece."""

    def __init__(self, student_tok, teacher_tok):
        if not getattr(teacher_tok, "is_fast", False):
            raise InputError("Distilling across vocabularies needs the teacher's fast tokenizer "
                             "(tokenizer.json), for character offsets.")
        self.texts, self.teacher = token_texts(student_tok), teacher_tok
        self.specials = set(student_tok.all_special_ids)
        self.roles = special_pairs(student_tok, teacher_tok)
        probe = teacher_tok("a")["input_ids"]  # does the teacher put BOS before an input?
        bos = teacher_tok.bos_token_id
        self.teacher_bos = bos if bos is not None and probe and probe[0] == bos else None

    def _teacher_row(self, block: list[int]) -> tuple[list[int], list[int], list[int], list[bool]]:
        """(teacher ids, their end offsets, the student tokens' end offsets, whether the teacher has a
        counterpart of each student token's text or role)."""
        t_ids, t_ends, ends, covered = [], [], [], []
        offset, piece, piece_start = 0, "", 0

        def flush():
            if piece:
                enc = self.teacher(piece, add_special_tokens=False, return_offsets_mapping=True)
                t_ids.extend(enc["input_ids"])
                t_ends.extend(piece_start + end for _, end in enc["offset_mapping"])

        for token in block:
            if token in self.specials:
                flush()
                piece, offset = "", offset + 1  # the special's own virtual character
                piece_start = offset
                if token in self.roles:
                    t_ids.append(self.roles[token])
                    t_ends.append(offset)
                covered.append(token in self.roles)
            else:
                text = self.texts[token] if token < len(self.texts) else ""
                piece, offset = piece + text, offset + len(text)
                covered.append(bool(text))
            ends.append(offset)
        flush()
        if self.teacher_bos is not None and (not t_ids or t_ids[0] != self.teacher_bos):
            t_ids, t_ends = [self.teacher_bos] + t_ids, [0] + t_ends
        return t_ids, t_ends, ends, covered

    def teacher_inputs(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(teacher ids [B, Lt], attention mask [B, Lt], t_pos [B, L-1]): t_pos[b, i] is the teacher
        position whose logits predict the same next text as the student's logits at i, or -1."""
        rows, positions = [], []
        for block in ids.tolist():
            t_ids, t_ends, ends, covered = self._teacher_row(block)
            by_end = {}
            for j, end in enumerate(t_ends[:-1]):  # the teacher's last position predicts past the block
                by_end[end] = j  # several tokens may end at one offset (empty ones): the last has read all
            # a student position aligns when the teacher has read the same and has a counterpart of what comes next
            pos = [by_end.get(ends[i], -1) if covered[i + 1] else -1 for i in range(len(block) - 1)]
            rows.append(t_ids)
            positions.append(pos)
        width = max(1, max(len(r) for r in rows))
        pad = self.teacher.pad_token_id if self.teacher.pad_token_id is not None else 0
        t_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):
            t_ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention[b, : len(row)] = 1
        return t_ids.to(ids.device), attention.to(ids.device), torch.tensor(positions, device=ids.device)
