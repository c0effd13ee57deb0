"""The merged model's tokenizer, as mergekit spells it, and the inputs' vocabularies side by side.

The combo writes `tokenizer_source` (copy the base's tokenizer, "base", "union" or a model) and the
pad spin turns it into the `tokenizer:` block; both follow a recipe opened from a file. Once a
tokenizer is chosen and two or more models are loaded, the engine compares their vocabularies on a
worker (loading a 150k-token tokenizer takes a second): a table per model here, the tokens that
only some models have in VocabDialog.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QPushButton,
    QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from fusion_gui.engine.merge.chat_template import BUILTIN as BUILTIN_TEMPLATES
from fusion_gui.ui.dialogs.vocab_dialog import VocabDialog
from fusion_gui.session.merge import MergeSession
from fusion_gui.ui.jobs import LatestJob
from fusion_gui.ui.worker import JobWorker

COPY, BASE, UNION = None, "base", "union"
COLUMNS = ("Model", "Tokens", "Embedding rows", "Not in every model")
COLUMN_TIPS = (
    "",
    "Tokens in the model's tokenizer, added tokens included.",
    "Rows of the model's embedding (config vocab_size); more than its tokens when padded.",
    "Tokens of this model that at least one other model lacks.",
)


def vocab_job(refs: list[str], token):
    """The generator the worker runs (a module function so tests can wrap it); yields nothing."""
    from fusion_gui.engine.merge.vocab_compare import compare_vocabularies

    yield from ()
    return compare_vocabularies(refs)


def model_name(ref: str) -> str:
    return Path(ref).name or str(ref)


def explanation(source: str | None, has_base: bool) -> str:
    """What a tokenizer choice does, in a sentence."""
    if source is COPY:
        return ("The merged model gets the base model's tokenizer files as they are; embeddings merge "
                "row by row, so every model needs the same vocabulary.")
    if source == UNION:
        return ("Every token of every model. A token some models lack takes its embedding from the "
                "models that have it.")
    if source == BASE:
        text = ("The vocabulary of the base model. Each model's embeddings are matched to it token by token; "
                "tokens the base lacks are dropped.")
        return text if has_base else text + " Mark a base model above first."
    return (f"The vocabulary of {model_name(source)}. Each model's embeddings are matched to it token by "
            "token; tokens it lacks are dropped.")


def merged_size(comparison, refs: list[str], source: str | None, base: str | None) -> int | None:
    """Tokens of the merged vocabulary for a choice, when the comparison tells."""
    if source == UNION:
        return comparison.union_size
    ref = base if source in (BASE, COPY) else source
    if ref in refs and len(refs) == len(comparison.models):
        return comparison.models[refs.index(ref)].tokenizer_size
    return None


class TokenizerPanel(QWidget):
    message = Signal(str)

    def __init__(self, document: MergeSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.vocab_runner = LatestJob(self)
        self.vocab_runner.result.connect(lambda comparison: self._on_result(comparison, None))
        self.vocab_runner.failed.connect(lambda summary, _details: self._on_result(None, summary))
        self._requested_refs: tuple[str, ...] | None = None  # what the newest comparison reads
        self.comparison = None  # the engine's VocabComparison of `_compared_refs`
        self.error: str | None = None  # why comparing `_compared_refs` failed
        self._compared_refs: tuple[str, ...] | None = None
        self._asked = False  # compare although the default choice needs no comparison
        self.dialog: VocabDialog | None = None

        self.source_combo = QComboBox()
        self.source_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source_combo.currentIndexChanged.connect(lambda _: self._edited())
        self.explanation = QLabel()
        self.explanation.setWordWrap(True)
        self.pad_box = QSpinBox(minimum=0, maximum=4096, singleStep=8)
        self.pad_box.setSpecialValueText("off")
        self.pad_box.setMinimumWidth(90)
        self.pad_box.setToolTip("Round the embedding rows up to a multiple of this (64 or 128 suit GPU "
                                "kernels). Written as the recipe's `tokenizer:` block.")
        self.pad_box.valueChanged.connect(lambda _: self._edited())

        self.template_combo = QComboBox()
        self.template_combo.setToolTip("The chat template saved with the merged tokenizer (the recipe's "
                                       "chat_template).")
        self.template_combo.currentIndexChanged.connect(lambda _: self._template_edited())

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for column, tip in enumerate(COLUMN_TIPS):
            self.table.horizontalHeaderItem(column).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.totals_label = QLabel()
        self.totals_label.setWordWrap(True)
        self.tokens_button = QPushButton("Tokens not in every model…")
        self.tokens_button.clicked.connect(self.show_tokens)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.compare_button = QPushButton("Compare vocabularies")
        self.compare_button.setToolTip("Read every model's tokenizer and compare the vocabularies.")
        self.compare_button.clicked.connect(self.compare_now)

        self.pad_hint = QLabel("embedding rows (64 or 128 suit GPUs)")
        pad_row = QHBoxLayout()
        pad_row.addWidget(self.pad_box)
        pad_row.addWidget(self.pad_hint, 1)
        choice_form = QFormLayout()
        choice_form.addRow("Tokenizer", self.source_combo)
        pad_form = QFormLayout()
        pad_form.addRow("Pad to a multiple of", pad_row)
        pad_form.addRow("Chat template", self.template_combo)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status_label, 1)
        status_row.addWidget(self.compare_button, alignment=Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(choice_form)
        layout.addWidget(self.explanation)  # full width: a wrapped label in a form row gets gaps
        layout.addLayout(pad_form)
        layout.addWidget(self.table)
        layout.addWidget(self.totals_label)
        layout.addWidget(self.tokens_button, alignment=Qt.AlignmentFlag.AlignRight)
        layout.addLayout(status_row)
        document.changed.connect(self._on_document_changed)
        self.refresh()

    # --- API ------------------------------------------------------------------------------

    def set_choice(self, source: str | None, pad_to_multiple_of: int | None = None) -> None:
        """Pick a tokenizer (None, "base", "union" or a model reference), as the widgets do."""
        pad = self.pad_box.value() if pad_to_multiple_of is None else pad_to_multiple_of
        self.document.set_tokenizer(source, pad, origin=self)
        self.refresh()

    @property
    def worker(self) -> JobWorker | None:
        return self.vocab_runner.worker

    def compare_now(self) -> None:
        """Compare the vocabularies even with the default choice; again after an error."""
        self._asked = True
        self._compared_refs, self._requested_refs, self.comparison, self.error = None, None, None, None
        self._update_comparison()

    def show_tokens(self) -> VocabDialog | None:
        if self.comparison is None:
            return None
        if self.dialog is not None:
            self.dialog.close()
            self.dialog.deleteLater()
        self.dialog = VocabDialog(self.comparison, self)
        self.dialog.show()
        return self.dialog

    # --- view ------------------------------------------------------------------------------

    def _edited(self) -> None:
        source = self.source_combo.currentData()
        self.set_choice(source, self.pad_box.value() if source is not COPY else 0)

    def _template_edited(self) -> None:
        self.document.set_chat_template(self.template_combo.currentData(), origin=self)

    def _on_document_changed(self, origin: object) -> None:
        if origin is not self:
            self.refresh()

    def refresh(self) -> None:
        state = self.document.state
        source, pad = state.tokenizer_choice()
        refs = state.refs_base_first()
        choices = [("Copy from the base model (default)", COPY), ("Vocabulary of the base model", BASE),
                   ("Union of all vocabularies", UNION)]
        others = [ref for ref in refs if ref != state.base_model or ref == source]  # the base has its entry
        choices += [(f"Vocabulary of {model_name(ref)}", ref)
                    for ref in others + ([source] if source not in (COPY, BASE, UNION, *refs) else [])]
        self.source_combo.blockSignals(True)
        if choices != [(self.source_combo.itemText(i), self.source_combo.itemData(i))
                       for i in range(self.source_combo.count())]:
            self.source_combo.clear()
            for text, data in choices:
                self.source_combo.addItem(text, data)
                if data not in (COPY, BASE, UNION):
                    self.source_combo.setItemData(self.source_combo.count() - 1, data, Qt.ItemDataRole.ToolTipRole)
        self.source_combo.setCurrentIndex(max(0, self.source_combo.findData(source)))
        self.source_combo.blockSignals(False)
        self.pad_box.blockSignals(True)
        self.pad_box.setValue(pad)
        self.pad_box.setEnabled(source is not COPY)
        self.pad_hint.setEnabled(source is not COPY)
        self.pad_box.blockSignals(False)
        self.explanation.setText(explanation(source, state.base_model is not None))
        self._refresh_template(state.chat_template)
        self._update_comparison()

    def _refresh_template(self, current: str | None) -> None:
        choices = [("Keep the tokenizer's own", None), ("auto: the one most models share", "auto")]
        choices += [(name, name) for name in BUILTIN_TEMPLATES]
        if current not in [data for _, data in choices]:  # a template written out in the recipe
            choices.append(("Written in the recipe", current))
        self.template_combo.blockSignals(True)
        self.template_combo.clear()
        for text, data in choices:
            self.template_combo.addItem(text, data)
        self.template_combo.setCurrentIndex(self.template_combo.findData(current))
        self.template_combo.blockSignals(False)

    def _update_comparison(self) -> None:
        refs = tuple(self.document.state.refs_base_first())
        source, _ = self.document.state.tokenizer_choice()
        wanted = len(refs) >= 2 and (source is not COPY or self._asked)
        if wanted and refs != self._compared_refs and refs != self._requested_refs:
            self._requested_refs = refs  # an older run still reading is dropped when it answers
            self.vocab_runner.request(lambda token: vocab_job(list(refs), token))
        elif not wanted and self._requested_refs is not None:
            self.vocab_runner.cancel_pending()
            self._requested_refs = None
        busy = self.vocab_runner.busy
        current = wanted and refs == self._compared_refs and not busy
        shown = self.comparison if current and self.error is None else None
        self._show_comparison(shown, list(refs))
        if not wanted:
            self._set_status("")
        elif busy:
            self._set_status("Reading the models' tokenizers…")
        elif self.error:
            self._set_status(self.error, error=True)
        else:
            self._set_status("")
        self.compare_button.setVisible(len(refs) >= 2 and not busy and (not wanted or bool(self.error)))
        self.compare_button.setText("Compare again" if wanted and self.error else "Compare vocabularies")

    def _on_result(self, comparison, error: str | None) -> None:
        refs = self._requested_refs
        self._compared_refs, self._requested_refs, self.comparison, self.error = refs, None, comparison, error
        if self.dialog is not None:  # it lists the models compared before
            self.dialog.close()
        if error:
            self.message.emit(f"Cannot compare the vocabularies: {error}")
        self._update_comparison()  # the models may have changed meanwhile

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #b3261e;" if error else "color: palette(dark);")
        self.status_label.setVisible(bool(text))

    def _show_comparison(self, comparison, refs: list[str]) -> None:
        for widget in (self.table, self.totals_label, self.tokens_button):
            widget.setVisible(comparison is not None)
        if comparison is None:
            return
        state = self.document.state
        self.table.setRowCount(len(comparison.models))
        for row, info in enumerate(comparison.models):
            is_base = row < len(refs) and refs[row] == state.base_model
            rows = "-" if info.embedding_rows is None else f"{info.embedding_rows:,}"
            cells = (info.label + ("  (base)" if is_base else ""), f"{info.tokenizer_size:,}", rows,
                     f"{info.only_here:,}")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if row < len(refs):
                    item.setToolTip(refs[row])
                self.table.setItem(row, column, item)
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height() + 4 +
                                  len(comparison.models) * self.table.verticalHeader().defaultSectionSize())
        source, pad = state.tokenizer_choice()
        totals = f"Union: {comparison.union_size:,} tokens, {comparison.common_size:,} of them in every model."
        size = merged_size(comparison, refs, source, state.base_model)
        if size is not None:
            padded = math.ceil(size / pad) * pad if pad else size
            totals += f" The merged model: {size:,} tokens"
            totals += f", {padded:,} embedding rows." if padded != size else "."
        self.totals_label.setText(totals)
        partial = len(comparison.partial_tokens)
        self.tokens_button.setText(f"{partial:,} tokens not in every model…")
        self.tokens_button.setEnabled(partial > 0)
