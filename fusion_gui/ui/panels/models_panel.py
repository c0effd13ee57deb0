"""The models of the merge: add them, see what they are, mark the base, see what will not fit.

Everything shown comes from open_model's headers (no tensor data is read), so it is cheap
enough to do on the spot when a model is added. A PEFT LoRA adapter folder is a model too: the
engine reads it as its base plus B @ A, so it is described, and checked, as that model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView, QButtonGroup, QDialog, QHBoxLayout, QHeaderView, QLabel, QMenu,
    QPushButton, QRadioButton, QTableWidget, QTableWidgetItem, QToolButton, QVBoxLayout, QWidget,
)

from fusion_gui.engine.naming import count_layers, layer_of
from fusion_gui.engine.errors import InputError
from fusion_gui.ui.dialogs.hub_cache_dialog import HubCacheDialog
from fusion_gui.formatting import format_bytes, format_count
from fusion_gui.ui.labels import distinct_labels
from fusion_gui.ui.settings import AppSettings
from fusion_gui.session.merge import MergeSession
from fusion_gui.ui.widgets.file_dialogs import ask_folder, ask_open_files

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class ModelInfo:
    """One model as the table shows it, from its headers."""

    ref: str
    label: str = ""
    architecture: str = "-"
    parameters: int | None = None
    dtype: str = "-"
    size_on_disk: int | None = None
    shards: int | None = None
    num_layers: int | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    error: str | None = None
    note: str = ""  # shown for the architecture when not a plain model: "LoRA adapter r=8 on <base>"
    adapter_base: str | None = None  # where the base an adapter applies to was found
    adapter_rank: object = None  # an adapter's r, as its config says



def adapter_folder_of(ref: str) -> str:
    """An adapter's weights file stands for its folder (the config beside it says the base)."""
    from fusion_gui.engine.io.adapter import ADAPTER_WEIGHTS, is_adapter_folder

    path = Path(ref)
    return str(path.parent) if path.name in ADAPTER_WEIGHTS and is_adapter_folder(path.parent) else ref


def describe_model(ref: str) -> ModelInfo:
    from fusion_gui.engine.io.opener import open_model

    try:
        reader = open_model(ref)
    except InputError as err:
        return ModelInfo(ref, label=Path(ref).name or ref, error=str(err))
    except Exception as err:  # an unreadable file is a row with a reason, never a crash
        return ModelInfo(ref, label=Path(ref).name or ref, error=f"Cannot read this model: {err}")
    try:
        config = reader.config or {}
        architecture = (config.get("architectures") or [None])[0] or config.get("model_type") or "-"
        dtypes: dict[str, int] = {}
        for info in reader.tensors.values():
            key = str(info.dtype).replace("torch.", "")
            dtypes[key] = dtypes.get(key, 0) + info.nbytes
        num_layers = config.get("num_hidden_layers") or config.get("n_layer") or count_layers(reader.tensors) or None
        note, adapter_base, adapter_rank, files = "", None, None, reader.files
        adapter_config = getattr(reader, "adapter_config", None)
        if adapter_config is not None:  # an AdapterReader: its base's tensors plus B @ A
            adapter_rank = adapter_config.get("r", "?")
            note = f"LoRA adapter r={adapter_rank} on {reader.base.label}"
            adapter_base, files = str(reader.base.path), reader.adapter.files  # its own size, not the base's
        size = 0
        for file in files:
            try:
                size += os.path.getsize(file)
            except OSError:
                pass
        return ModelInfo(
            ref=ref, label=reader.label, architecture=str(architecture),
            parameters=sum(_numel(i.shape) for i in reader.tensors.values()),
            dtype=max(dtypes, key=dtypes.get) if dtypes else "-", size_on_disk=size,
            shards=reader.num_shards, num_layers=num_layers,
            shapes={name: tuple(i.shape) for name, i in reader.tensors.items()},
            note=note, adapter_base=adapter_base, adapter_rank=adapter_rank,
        )
    finally:
        reader.close()


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _vocabulary_rows_differ(name: str, shape: tuple[int, ...], other: tuple[int, ...]) -> bool:
    """A tensor outside the layers that differs only in its rows: an embedding or output head of
    another vocabulary size, which a tokenizer merge re-orders into the output vocabulary."""
    return layer_of(name) is None and len(shape) == len(other) and shape[1:] == other[1:]


def incompatibility(model: ModelInfo, base: ModelInfo, vocabularies_merged: bool = False) -> str | None:
    """Why `model` cannot be merged with `base`, in one sentence; None when it can.
    With vocabularies_merged (the recipe names a tokenizer source), embedding rows may differ."""
    if model.error:
        return model.error
    if base.error:
        return None  # the base's own row says what is wrong with it
    if model.architecture != base.architecture and "-" not in (model.architecture, base.architecture):
        return f"Architecture {model.architecture} differs from the base's {base.architecture}."
    missing = [n for n in base.shapes if n not in model.shapes]
    if missing:
        return f"Lacks {len(missing)} of the base's tensors, e.g. '{missing[0]}'."
    extra = [n for n in model.shapes if n not in base.shapes]
    if extra:
        return f"Has {len(extra)} tensors the base lacks, e.g. '{extra[0]}'."
    for name, shape in model.shapes.items():
        if vocabularies_merged and _vocabulary_rows_differ(name, shape, base.shapes[name]):
            continue
        if base.shapes[name] != shape:
            return (f"Tensor '{name}' is {_shape_text(shape)}, the base's is "
                    f"{_shape_text(base.shapes[name])}.")
    return None


def _note_tip(info: ModelInfo) -> str:
    if not info.adapter_base:
        return info.note
    return f"{info.note} ({info.architecture}): it stands for {info.adapter_base} plus its low-rank update B·A."


COLUMNS = ("Base", "Name", "Architecture", "Params", "Dtype", "Size", "Shards", "Status")


class ModelsPanel(QWidget):
    """Binds the table to the merge session's models; model headers are cached by reference."""

    message = Signal(str)  # one line for the status bar
    models_added = Signal(list)  # the references just added (for "recent models")

    def __init__(self, document: MergeSession, parent: QWidget | None = None, settings: AppSettings | None = None):
        super().__init__(parent)
        self.document, self.settings = document, settings or AppSettings()
        self.hub_dialog = None  # "From the Hub…", made when first opened
        self._infos: dict[str, ModelInfo] = {}
        self._recent: list[str] = []
        self._shown_refs: list[str] | None = None
        self._base_buttons = QButtonGroup(self)
        self._base_buttons.setExclusive(True)

        self.add_button = QToolButton(text="Add model folder…")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.add_button.clicked.connect(self.pick_folder)
        self._add_menu = QMenu(self)
        self._add_menu.aboutToShow.connect(self._fill_add_menu)
        self.add_button.setMenu(self._add_menu)
        self.cache_button = QPushButton("From the cache…")  # short: four buttons share the form's width
        self.cache_button.setToolTip("Models already downloaded to the Hugging Face cache on this computer.")
        self.cache_button.clicked.connect(self.pick_from_cache)
        self.hub_button = QPushButton("From the Hub…")
        self.hub_button.clicked.connect(self.pick_from_hub)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Name"), QHeaderView.ResizeMode.Stretch)  # elided; tooltip in full
        self.problems_label = QLabel()
        self.problems_label.setWordWrap(True)
        self.problems_label.setStyleSheet("color: #b3261e;")
        self.problems_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hint = QLabel("Add models with the buttons above or drop model folders and "
                           ".safetensors files on the window.")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: palette(mid);")

        buttons = QHBoxLayout()
        for button in (self.add_button, self.cache_button, self.hub_button, self.remove_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.problems_label)
        layout.addWidget(self.hint)
        document.changed.connect(self._on_document_changed)
        self.refresh()

    # --- the API tests and the window use -----------------------------------------------

    def add_models(self, refs: list[str]) -> list[str]:
        """Add models by path or repo id; the first model added to an empty list is the base."""
        refs = [adapter_folder_of(str(ref)) for ref in refs]
        for ref in refs:
            if ref not in self.document.state.model_refs() and not self.document.state.uses_slices:
                self._infos[ref] = describe_model(ref)  # fresh headers: the folder may have changed
        added = self.document.add_models(refs, origin=self)
        if added:
            self.models_added.emit(added)
            self.message.emit(f"Added {len(added)} model{'s' if len(added) > 1 else ''}.")
        return added

    def remove_model(self, ref: str) -> None:
        self.document.remove_models([ref], origin=self)

    def set_base(self, ref: str | None) -> None:
        self.document.set_base(ref, origin=self)

    def info(self, ref: str) -> ModelInfo:
        if ref not in self._infos:
            self._infos[ref] = describe_model(ref)
        return self._infos[ref]

    def recheck_unreadable(self) -> None:
        """Describe again the rows that could not be read (a Hub model downloaded since), then redraw."""
        self._infos = {ref: info for ref, info in self._infos.items() if not info.error}
        self.refresh()

    def problems(self) -> dict[str, str]:
        """Reference -> the reason it cannot be merged, for every flagged row."""
        state = self.document.state
        base = self.info(state.base_model) if state.base_model else None
        merged_vocab = state.tokenizer_choice()[0] is not None
        out = {}
        for ref in state.model_refs():
            info = self.info(ref)
            if ref == state.base_model or base is None:
                reason = info.error
            else:
                reason = incompatibility(info, base, merged_vocab)
            if reason:
                out[ref] = reason
        if base is None and len(state.model_refs()) > 1:  # no base: compare with the first model
            refs = state.model_refs()
            for ref in refs[1:]:
                reason = incompatibility(self.info(ref), self.info(refs[0]), merged_vocab)
                if reason and ref not in out:
                    out[ref] = reason
        return out

    def labels(self) -> dict[str, str]:
        """What the rows call each model and each adapter's base: never one name for two folders."""
        names = {}
        for ref in self.display_refs():
            info = self.info(ref)
            names[ref] = info.label or ref
            if info.adapter_base:
                names.setdefault(info.adapter_base, Path(info.adapter_base).name or info.adapter_base)
        return distinct_labels(names)

    def layer_count(self) -> int | None:
        state = self.document.state
        for ref in ([state.base_model] if state.base_model else []) + state.model_refs():
            if self.info(ref).num_layers:
                return self.info(ref).num_layers
        return None

    def set_recent(self, refs: list[str]) -> None:
        self._recent = list(refs)

    # --- pickers --------------------------------------------------------------------------

    def pick_folder(self) -> None:
        folder = ask_folder(self, "Add a model folder")
        if folder:
            self.add_models([folder])

    def pick_files(self) -> None:
        files = ask_open_files(self, "Add weight files", "", "Weights (*.safetensors *.bin *.pt *.pth)")
        self.add_models(files)

    def pick_from_cache(self) -> None:
        dialog = HubCacheDialog(self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.add_models(dialog.selected_repos())
        dialog.deleteLater()

    def pick_from_hub(self):
        from fusion_gui.ui.hub.hub_dialog import open_hub_dialog

        return open_hub_dialog(self)

    def remove_selected(self) -> None:
        refs = self.display_refs()
        rows = {i.row() for i in self.table.selectedIndexes()}
        self.document.remove_models([refs[row] for row in sorted(rows) if row < len(refs)], origin=self)

    def _fill_add_menu(self) -> None:
        self._add_menu.clear()
        self._add_menu.addAction("Add weights file…", self.pick_files)
        self._add_menu.addAction("From Hugging Face cache…", self.pick_from_cache)
        if self._recent:
            self._add_menu.addSection("Recent")
            for ref in self._recent:
                self._add_menu.addAction(ref, lambda r=ref: self.add_models([r]))

    # --- view -------------------------------------------------------------------------------

    def _build_base_buttons(self, refs: list[str]) -> None:
        for button in self._base_buttons.buttons():
            self._base_buttons.removeButton(button)
        self.table.setRowCount(0)
        self.table.setRowCount(len(refs))
        for row, ref in enumerate(refs):
            radio = QRadioButton()
            radio.setToolTip("The base model: the others' changes are measured from it.")
            radio.toggled.connect(lambda on, r=ref: on and self.set_base(r))
            self._base_buttons.addButton(radio, row)
            holder = QWidget()
            holder_layout = QHBoxLayout(holder)
            holder_layout.setContentsMargins(6, 0, 6, 0)
            holder_layout.addWidget(radio, alignment=Qt.AlignmentFlag.AlignCenter)
            self.table.setCellWidget(row, 0, holder)
        self._shown_refs = list(refs)

    def _takes_base(self) -> bool:
        return self.document.takes_base()

    def _on_document_changed(self, origin: object) -> None:
        self.refresh()

    def display_refs(self) -> list[str]:
        """The rows: the base first, then the other models in recipe order."""
        return self.document.state.refs_base_first()

    def refresh(self) -> None:
        state = self.document.state
        refs = self.display_refs()
        problems = self.problems()
        takes_base = self._takes_base()
        if refs != self._shown_refs:  # rebuild the radio buttons only when the rows change
            self._build_base_buttons(refs)
        labels = self.labels()
        for row, ref in enumerate(refs):
            info = self.info(ref)
            radio = self._base_buttons.button(row)
            radio.blockSignals(True)
            radio.setChecked(ref == state.base_model)
            radio.blockSignals(False)
            radio.setEnabled(takes_base and not state.uses_slices)
            if ref in problems:
                status = "cannot read" if info.error else "incompatible"
            else:
                status = "base" if ref == state.base_model else "ok"
            note = (f"LoRA adapter r={info.adapter_rank} on {labels[info.adapter_base]}" if info.adapter_base
                    else info.note)
            cells = (labels[ref], note or info.architecture, format_count(info.parameters), info.dtype,
                     format_bytes(info.size_on_disk), "-" if info.shards is None else str(info.shards),
                     status)
            for column, text in enumerate(cells, start=1):
                item = QTableWidgetItem(text)
                item.setToolTip("\n".join(filter(None, (ref, _note_tip(info), problems.get(ref)))))
                if ref in problems:
                    item.setForeground(QColor("#b3261e"))
                self.table.setItem(row, column, item)
        if state.base_model is None:  # an exclusive group keeps one checked: clear it by hand
            self._base_buttons.setExclusive(False)
            for radio in self._base_buttons.buttons():
                radio.setChecked(False)
            self._base_buttons.setExclusive(True)
        rows_shown = min(max(len(refs), 3), 8)
        self.table.setFixedHeight(self.table.horizontalHeader().height() + 4 +
                                  rows_shown * self.table.verticalHeader().defaultSectionSize())
        self.problems_label.setText("\n".join(
            f"⚠ {labels[ref]}: {reason}" for ref, reason in problems.items()))
        self.problems_label.setVisible(bool(problems))
        self.hint.setVisible(not refs)
        self.remove_button.setEnabled(bool(refs) and not state.uses_slices)
