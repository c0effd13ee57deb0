"""Save PNG / Save CSV of an Inspect panel's finished result: the PNG a grab of the panel's plot widget,
the CSV the engine's write_csv of `result`. The Depth, Spectral and Similarity panels share it."""

from __future__ import annotations

from PySide6.QtWidgets import QPushButton, QWidget

from fusion_gui.engine.inspect.export import write_csv
from fusion_gui.ui.widgets.file_dialogs import ask_save_file


class ExportsResult:
    """Mixed into a QWidget panel that has `png_button`, `csv_button`, `result` and `export_stem`
    (the default file name); `_export_view()` is the widget the PNG shows."""

    png_button: QPushButton
    csv_button: QPushButton
    export_stem: str

    def _export_view(self) -> QWidget:
        return self.plot

    def _connect_saving(self) -> None:
        self.png_button.clicked.connect(lambda: self._ask_and_save("png"))
        self.csv_button.clicked.connect(lambda: self._ask_and_save("csv"))

    def _set_saving(self, enabled: bool) -> None:
        self.png_button.setEnabled(enabled)
        self.csv_button.setEnabled(enabled)

    def save_png(self, path) -> None:
        self._export_view().grab().save(str(path))

    def save_csv(self, path) -> None:
        write_csv(self.result, path)

    def _ask_and_save(self, suffix: str) -> None:
        path = ask_save_file(self, "Save", f"{self.export_stem}.{suffix}", f"{suffix.upper()} (*.{suffix})")
        if path:
            (self.save_png if suffix == "png" else self.save_csv)(path)
