"""The grid's results in an embedded SQLite database (``taskfit.db`` in the output folder).

One row per cell: its config, metrics, cost figures, status and error. Only the process that runs the grid
writes; the cells write their own folders, which stay the source of truth (the database is rebuilt from
them on a rerun, e.g. after the grid process was killed between a cell finishing and its row being written).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from taskfit.errors import TaskfitError

DB_FILE = "taskfit.db"
COLUMNS = [
    ("cell", "TEXT PRIMARY KEY"),  # folder under the output dir: strategy/backbone/kK/seed-S
    ("key", "TEXT"),  # hash of the resolved cell config
    ("strategy", "TEXT"),  # row name (id, default: the strategy name)
    ("method", "TEXT"),  # the strategy name
    ("backbone", "TEXT"),
    ("shots", "TEXT"),  # K per class: a number, 'all', or 0 for strategies that use no training data
    ("seed", "INTEGER"),
    ("status", "TEXT"),  # ok | failed | running | interrupted
    ("accuracy", "REAL"),
    ("macro_f1", "REAL"),
    ("trainable_params", "INTEGER"),
    ("total_params", "INTEGER"),
    ("load_seconds", "REAL"),  # loading the backbone (not part of fit_seconds, except under a search)
    ("fit_seconds", "REAL"),
    ("predict_examples_per_s", "REAL"),
    ("peak_rss_mb", "REAL"),
    ("saved_mb", "REAL"),
    ("search_trials", "INTEGER"),
    ("chosen", "TEXT"),  # JSON: hyperparameters the search chose
    ("error", "TEXT"),
    ("config", "TEXT"),  # JSON: the cell's resolved config (cell.json)
    ("metrics", "TEXT"),  # JSON: everything in metrics.json
    ("updated_at", "TEXT"),
]
NAMES = [name for name, _ in COLUMNS]


def connect(output_dir: Path) -> sqlite3.Connection:
    output_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(output_dir / DB_FILE, timeout=30)
    db.row_factory = sqlite3.Row
    db.execute(f"CREATE TABLE IF NOT EXISTS cells ({', '.join(f'{n} {t}' for n, t in COLUMNS)})")
    present = {row[1] for row in db.execute("PRAGMA table_info(cells)")}
    for name, kind in COLUMNS:  # a database written by an older taskfit gains the new columns
        if name not in present:
            db.execute(f"ALTER TABLE cells ADD COLUMN {name} {kind}")
    db.commit()
    return db


def open_existing(output_dir: str | Path) -> sqlite3.Connection:
    path = Path(output_dir) / DB_FILE
    if not path.exists():
        raise TaskfitError(
            f"{output_dir}: no {DB_FILE} here; give the output folder of a `taskfit compare` run "
            "(default runs/<name>)"
        )
    return connect(Path(output_dir))


def upsert(db: sqlite3.Connection, row: dict) -> None:
    values = {n: row.get(n) for n in NAMES}
    for n in ("chosen", "config", "metrics"):
        if values[n] is not None and not isinstance(values[n], str):
            values[n] = json.dumps(values[n], ensure_ascii=False)
    db.execute(
        f"INSERT INTO cells ({', '.join(NAMES)}) VALUES ({', '.join('?' * len(NAMES))}) "
        f"ON CONFLICT(cell) DO UPDATE SET {', '.join(f'{n}=excluded.{n}' for n in NAMES[1:])}",
        [values[n] for n in NAMES],
    )
    db.commit()


def mark_interrupted(db: sqlite3.Connection) -> int:
    """Rows left 'running' by a grid process that died: their cells will run again."""
    n = db.execute("UPDATE cells SET status='interrupted' WHERE status='running'").rowcount
    db.commit()
    return n


def rows(
    db: sqlite3.Connection,
    status: str | None = None,
    strategy: str | None = None,
    cells: Iterable[str] | None = None,
) -> list[dict]:
    query, args = "SELECT * FROM cells WHERE 1=1", []
    if status:
        query += " AND status=?"
        args.append(status)
    if strategy:
        query += " AND (strategy=? OR method=?)"
        args += [strategy, strategy]
    out = [dict(r) for r in db.execute(query + " ORDER BY cell", args)]
    if cells is not None:
        wanted = set(cells)
        out = [r for r in out if r["cell"] in wanted]
    for r in out:
        for n in ("chosen", "config", "metrics"):
            r[n] = json.loads(r[n]) if r[n] else None
    return out


def cell_folder(output_dir: str | Path, record: dict) -> Path:
    """Where a record's predictions are: its cell's folder, or the subfolder the summary reads it from
    (``files``: the calibration decided over the seeds, ``compare.cv.pool_calibrations``)."""
    return Path(output_dir) / (record.get("files") or record["cell"])


def to_csv(records: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=NAMES, extrasaction="ignore")
    writer.writeheader()
    for r in records:
        writer.writerow(
            {
                n: json.dumps(r[n], ensure_ascii=False) if isinstance(r.get(n), dict) else r.get(n)
                for n in NAMES
            }
        )
    return buffer.getvalue()
