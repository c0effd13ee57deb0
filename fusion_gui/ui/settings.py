"""What the app remembers between runs, as one JSON file in the user's config folder.

The folder is platformdirs' user_config_dir("fusion-gui"); FUSION_GUI_CONFIG_DIR overrides it
(tests point it at a temporary folder). A missing or unreadable file means default settings.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

RECENT_LIMIT = 10
CONFIG_DIR_ENV = "FUSION_GUI_CONFIG_DIR"
LAST_FOLDER_KEY = "last_folder"  # written by remember_folder() alone, so a window's stale copy never undoes it


def config_dir() -> Path:
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("fusion-gui", appauthor=False))


def settings_path() -> Path:
    return config_dir() / "settings.json"


def _push_recent(items: list[str], value: str) -> list[str]:
    return ([value] + [v for v in items if v != value])[:RECENT_LIMIT]


@dataclass
class AppSettings:
    window_geometry: str = ""  # base64 of QWidget.saveGeometry()
    window_state: str = ""  # base64 of QSplitter.saveState() for the Merge tab
    recent_models: list[str] = field(default_factory=list)
    recent_output_dirs: list[str] = field(default_factory=list)
    last_recipe_yaml: str = ""
    allow_hub_downloads: bool = False  # off: nothing reaches the Hugging Face Hub (issue 14)
    hub_pending_download: str = ""  # a repo ref whose download was interrupted: offered again

    @classmethod
    def load(cls, path: Path | None = None) -> "AppSettings":
        path = path or settings_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in data.items():
            if key not in known:
                continue
            default = getattr(cls(), key)
            if isinstance(default, bool):
                if isinstance(value, bool):
                    values[key] = value
            elif isinstance(default, list):
                if isinstance(value, list):
                    values[key] = [str(v) for v in value][:RECENT_LIMIT]
            elif isinstance(value, str):
                values[key] = value
        return cls(**values)

    def save(self, path: Path | None = None) -> None:
        """Write atomically, keeping keys this class does not own (the last folder, a newer
        version's settings); a read-only config folder is not worth bothering the user about."""
        path = path or settings_path()
        _write_json(path, {**_read_json(path), **asdict(self)})

    def add_recent_model(self, ref: str) -> None:
        self.recent_models = _push_recent(self.recent_models, ref)

    def add_recent_output_dir(self, folder: str) -> None:
        self.recent_output_dirs = _push_recent(self.recent_output_dirs, folder)

    @staticmethod
    def encode_bytes(raw: bytes) -> str:
        return base64.b64encode(bytes(raw)).decode("ascii")

    @staticmethod
    def decode_bytes(text: str) -> bytes:
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            return b""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def remembered_folder(path: Path | None = None) -> str:
    """The folder the last file dialog was used in, when it still exists; "" otherwise."""
    folder = _read_json(path or settings_path()).get(LAST_FOLDER_KEY)
    return folder if isinstance(folder, str) and folder and Path(folder).is_dir() else ""


def remember_folder(folder: str | Path, path: Path | None = None) -> None:
    """Where the next file dialog opens, in this run and the next."""
    path = path or settings_path()
    _write_json(path, {**_read_json(path), LAST_FOLDER_KEY: str(folder)})
