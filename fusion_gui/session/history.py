"""History of every run (merge, distillation, evaluation) in one SQLite file in the user data folder.

Qt-free (stdlib sqlite3). Each run keeps its recipe or config text, input files with their content
hashes, output folder, scores, duration, peak memory, smoke verdict and the plots' numbers (JSON).
Scores are also cached by (model content hash, task hash), so evaluating an unchanged model again
is instant. A damaged file is moved aside and a new one started: the history is never a reason
for the app not to start (the message is in History.notice).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fusion_gui.session.content_hash import file_sha256, model_hash

SCHEMA_VERSION = 1
FILE_NAME = "history.sqlite"
_SCHEMA = """
CREATE TABLE runs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started REAL NOT NULL, seconds REAL,
    status TEXT NOT NULL, title TEXT, recipe TEXT, output TEXT, peak_bytes INTEGER, verdict TEXT, details TEXT);
CREATE TABLE inputs (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, role TEXT, path TEXT,
    content_hash TEXT);
CREATE TABLE scores (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, model TEXT, task TEXT,
    metric TEXT, value REAL, n INTEGER, model_hash TEXT, task_hash TEXT);
CREATE TABLE score_cache (model_hash TEXT, task_hash TEXT, model TEXT, task TEXT, metric TEXT, value REAL,
    n INTEGER, created REAL, PRIMARY KEY (model_hash, task_hash, metric));
CREATE TABLE file_hashes (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT);
CREATE INDEX scores_metric ON scores(task, metric);
"""


def data_dir() -> Path:
    """The user data folder (FUSION_GUI_DATA_DIR overrides platformdirs' choice)."""
    override = os.environ.get("FUSION_GUI_DATA_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("fusion-gui", appauthor=False))


@dataclass(frozen=True)
class InputFile:
    path: str
    role: str = "input"  # "input" | "base" | "teacher" | "student" | "model"
    content_hash: str = ""


@dataclass(frozen=True)
class Score:
    model: str
    task: str  # a task file's name or an lm-eval task
    metric: str  # "acc", "acc_norm", "exact_match", "perplexity", ...
    value: float
    n: int = 0
    model_hash: str = ""
    task_hash: str = ""


@dataclass(frozen=True)
class RunRecord:
    id: int
    kind: str  # "merge" | "distill" | "eval" | "search"
    started: float  # seconds since the epoch
    seconds: float | None
    status: str  # "done" | "failed" | "cancelled"
    title: str
    recipe: str
    output: str
    peak_bytes: int | None
    verdict: str | None
    inputs: tuple[InputFile, ...] = ()
    scores: tuple[Score, ...] = ()
    details: dict = field(default_factory=dict)  # e.g. {"layer_metrics": [...]}: the plots' numbers


class History:
    """One history database. Methods are safe to call from a job's thread."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else data_dir() / FILE_NAME
        self.notice: str | None = None  # a sentence for the user when the file could not be used as it was
        self._lock = threading.Lock()
        self._db = self._open()

    # ---- opening ----------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self._connect(self.path)
        except _NewerSchema:
            self.notice = (f"The history file {self.path} was written by a newer fusion_gui; this session's "
                           f"runs are not recorded in it.")
        except sqlite3.DatabaseError:
            aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                os.replace(self.path, aside)
                self.notice = f"The history file was damaged; it was moved to {aside} and a new one started."
                return self._connect(self.path)
            except (OSError, sqlite3.DatabaseError) as err:
                self.notice = f"The history file {self.path} cannot be used ({err}); runs are not kept after exit."
        except OSError as err:
            self.notice = f"The history folder {self.path.parent} cannot be written ({err}); runs are not kept."
        return self._connect(Path(":memory:"))

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
        try:
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise _NewerSchema()
            if version == 0:
                with db:
                    db.executescript(_SCHEMA)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- recording --------------------------------------------------------------------------
    def record(self, kind: str, *, title: str = "", recipe: str = "", inputs=(), output: str = "",
               scores=(), seconds: float | None = None, peak_bytes: int | None = None, verdict: str | None = None,
               status: str = "done", details: dict | None = None, started: float | None = None) -> int:
        """Store one run; returns its id. Inputs are InputFile (a missing content_hash is left empty)."""
        with self._lock, self._db as db:
            cur = db.execute(
                "INSERT INTO runs (kind, started, seconds, status, title, recipe, output, peak_bytes, verdict, details)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (kind, started if started is not None else time.time(), seconds, status, title, recipe, output,
                 peak_bytes, verdict, json.dumps(details or {}, default=_plain)))
            run_id = cur.lastrowid
            db.executemany("INSERT INTO inputs VALUES (?,?,?,?)",
                           [(run_id, i.role, i.path, i.content_hash) for i in inputs])
            db.executemany("INSERT INTO scores VALUES (?,?,?,?,?,?,?,?)",
                           [(run_id, s.model, s.task, s.metric, s.value, s.n, s.model_hash, s.task_hash)
                            for s in scores])
        return run_id

    def delete(self, run_id: int) -> None:
        with self._lock, self._db as db:
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # ---- reading ----------------------------------------------------------------------------
    def runs(self, kind: str | None = None, search: str | None = None, sort_by: str | None = None,
             limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first; or best first by a score ("task/metric", the run's best value; runs
        without it last). search matches title, recipe, output and input paths."""
        where, args = [], []
        if kind:
            where.append("r.kind = ?")
            args.append(kind)
        if search:
            where.append("(r.title LIKE ? OR r.recipe LIKE ? OR r.output LIKE ? OR EXISTS "
                         "(SELECT 1 FROM inputs i WHERE i.run_id = r.id AND i.path LIKE ?))")
            args += [f"%{search}%"] * 4
        order = "r.started DESC, r.id DESC"
        select = "SELECT r.id FROM runs r"
        if sort_by:
            task, _, metric = sort_by.rpartition("/")
            select = ("SELECT r.id, (SELECT MAX(s.value) FROM scores s WHERE s.run_id = r.id AND s.metric = ?"
                      + (" AND s.task = ?" if task else "") + ") AS best FROM runs r")
            args = [metric] + ([task] if task else []) + args
            order = "best IS NULL, best DESC, " + order
        sql = select + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            ids = [row[0] for row in self._db.execute(sql, args)]
        return [self.get(i) for i in ids]

    def get(self, run_id: int) -> RunRecord:
        with self._lock:
            row = self._db.execute("SELECT id, kind, started, seconds, status, title, recipe, output, peak_bytes, "
                                   "verdict, details FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"No run {run_id} in the history.")
            inputs = self._db.execute("SELECT path, role, content_hash FROM inputs WHERE run_id = ?", (run_id,))
            inputs = tuple(InputFile(*r) for r in inputs)
            scores = self._db.execute("SELECT model, task, metric, value, n, model_hash, task_hash FROM scores "
                                      "WHERE run_id = ?", (run_id,))
            scores = tuple(Score(*r) for r in scores)
        return RunRecord(*row[:10], inputs=inputs, scores=scores, details=json.loads(row[10] or "{}"))

    # ---- score cache ------------------------------------------------------------------------
    def cached_scores(self, model_hash_: str, task_hash: str) -> list[Score] | None:
        with self._lock:
            rows = self._db.execute("SELECT model, task, metric, value, n FROM score_cache WHERE model_hash = ? "
                                    "AND task_hash = ?", (model_hash_, task_hash)).fetchall()
        return [Score(*r, model_hash=model_hash_, task_hash=task_hash) for r in rows] or None

    def store_scores(self, model_hash_: str, task_hash: str, scores) -> None:
        """Cache a finished evaluation's scores (call it only when the evaluation completed)."""
        with self._lock, self._db as db:
            db.executemany("INSERT OR REPLACE INTO score_cache VALUES (?,?,?,?,?,?,?,?)",
                           [(model_hash_, task_hash, s.model, s.task, s.metric, s.value, s.n, time.time())
                            for s in scores])

    # ---- content hashes ---------------------------------------------------------------------
    def file_hash(self, path: str | Path) -> str:
        """sha256 of a file's bytes, cached by (path, size, mtime): a file is read once until it changes."""
        path = Path(path).resolve()
        stat = path.stat()
        with self._lock:
            row = self._db.execute("SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ?",
                                   (str(path), stat.st_size, stat.st_mtime_ns)).fetchone()
        if row:
            return row[0]
        digest = file_sha256(path)
        with self._lock, self._db as db:
            db.execute("INSERT OR REPLACE INTO file_hashes VALUES (?,?,?,?)",
                       (str(path), stat.st_size, stat.st_mtime_ns, digest))
        return digest

    def model_hash(self, path: str | Path) -> str:
        return model_hash(Path(path), self.file_hash)


class _NewerSchema(Exception):
    pass


def _plain(value):
    """JSON for numpy arrays and numbers in the details (the plots' numbers)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return str(value)
