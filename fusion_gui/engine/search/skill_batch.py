"""Demo skill objectives scored together: every skill's problems of one split as one batch of prompts,
tokenized once per search (the candidates share the base's tokenizer) and completed in one greedy pass.
Each problem's answer is cut to its own skill's length limit, so each skill's exact-match score is the one
`fusion-gui eval --task <skill>` gives (scoring.skill_score)."""

from __future__ import annotations

from fusion_gui.engine.cancel import CancelToken


class SkillBatch:
    def __init__(self, groups: list[list[tuple[str, str]]]):
        self.groups = groups  # one list of (prompt, answer) a skill objective
        self.problems = [x for g in groups for x in g]
        # room for the end-of-sequence token after each skill's longest answer, as skill_score gives it
        self.limits = [max(len(a) for _, a in g) + 1 for g in groups for _ in g]
        self._encoded = None  # (tokenizer, pad id, [Prompts]): the prompts as the last tokenizer seen encodes them

    def accuracies(self, model, tokenizer, cancel: CancelToken | None = None) -> list[float]:
        """Each skill objective's exact-match share of greedy answers, in the order of `groups`."""
        from fusion_gui.engine.evaluate.greedy import encode_prompts, greedy_ids
        from fusion_gui.engine.evaluate.scoring import _GREEDY_ROWS, _decode, _pad_id

        pad = _pad_id(model, tokenizer)
        if self._encoded is None or self._encoded[0] is not tokenizer or self._encoded[1] != pad:
            prompts = [p for p, _ in self.problems]
            self._encoded = (tokenizer, pad, [encode_prompts(tokenizer, prompts[i:i + _GREEDY_ROWS], pad)
                                              for i in range(0, len(prompts), _GREEDY_ROWS)])
        rows = [row for batch in self._encoded[2] for row in greedy_ids(model, batch, max(self.limits), cancel)]
        right = [_decode(tokenizer, row[:limit]).strip() == want
                 for row, limit, (_, want) in zip(rows, self.limits, self.problems)]
        scores, start = [], 0
        for g in self.groups:
            scores.append(sum(right[start:start + len(g)]) / len(g))
            start += len(g)
        return scores
