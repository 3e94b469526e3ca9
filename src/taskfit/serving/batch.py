"""``taskfit predict``: a saved run over a CSV/TSV/JSONL file, streaming and resumable.

Rows are read one at a time and predicted in chunks, so memory stays flat however large the file. Output goes
to ``OUTPUT.partial`` (one JSON line per input row, flushed and fsynced per chunk) and is renamed to ``OUTPUT``
when every row is done: a finished file is never half-written, and after an interruption ``--resume``
continues after the last complete line of the partial file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from taskfit.data.readers import (
    Columns,
    Example,
    _decode_lines,
    _to_example,
    infer_format,
    iter_delimited,
    jsonl_objects,
)
from taskfit.errors import TaskfitError
from taskfit.serving.predictor import Predictor, iter_chunks


def iter_examples(path: str | Path, cols: Columns, fmt: str = "auto") -> Iterator[Example]:
    """Examples one at a time, each with its ``file:line`` source, errors naming the line."""
    try:
        yield from _iter_examples(Path(path), cols, fmt)
    except UnicodeDecodeError as exc:
        raise TaskfitError(
            f"{path}: bytes that are not UTF-8 ({exc.reason}); re-save the file as UTF-8 "
            "(`taskfit inspect` names the line)"
        ) from None


def _iter_examples(path: Path, cols: Columns, fmt: str) -> Iterator[Example]:
    fmt = infer_format(str(path)) if fmt == "auto" else fmt
    if fmt == "hf":
        raise TaskfitError(f"{path}: predict reads CSV, TSV or JSONL files (got a dataset folder)")
    if not path.exists():
        _decode_lines(path)  # raises the standard "not found, did you mean" error
    with path.open(encoding="utf-8-sig", newline="" if fmt != "jsonl" else None, errors="strict") as f:
        if fmt == "jsonl":
            for number, row in jsonl_objects(f, path):
                yield _to_example(row, cols, path, number, list(row), need_label=False)
            return
        for line, row, found in iter_delimited(f, path, "," if fmt == "csv" else "\t", cols.text):
            yield _to_example(row, cols, path, line, found, need_label=False)


def _complete_lines(path: Path, chunk: int = 1 << 20) -> int:
    """Complete (newline-terminated) lines of a partial output; a torn last line is cut off. Read in pieces:
    the partial output of a large input may not fit in memory."""
    if not path.exists():
        return 0
    lines, keep, offset = 0, 0, 0
    with path.open("r+b") as f:
        while piece := f.read(chunk):
            lines += piece.count(b"\n")
            last = piece.rfind(b"\n")
            if last >= 0:
                keep = offset + last + 1
            offset += len(piece)
        if keep < offset:
            f.truncate(keep)
    return lines


def _check_resumable(partial: Path, done: int, total: int, rows: Iterator[Example], input_path) -> None:
    """Skip the rows the partial output already holds, after checking that it was made from this input."""
    if done > total:
        raise TaskfitError(
            f"{partial} holds {done} predictions but {input_path} has only {total} rows: it was made from "
            "another input; pass --overwrite to start over"
        )
    last = None
    for _ in range(done):
        last = next(rows)
    with partial.open("rb") as f:
        f.seek(max(0, partial.stat().st_size - 1_000_000))
        tail = f.read().splitlines()[-1]
    try:
        recorded = json.loads(tail)
    except json.JSONDecodeError:
        recorded = {}
    line = lambda source: str(source).rsplit(":", 1)[-1]  # noqa: E731 (the file may have moved)
    if last is None or recorded.get("text") != last.text or line(recorded.get("source")) != line(last.source):
        raise TaskfitError(
            f"{partial}: its last prediction is for {recorded.get('source')!r} ({str(recorded.get('text'))[:40]!r}), "
            f"but row {done} of {input_path} is {last.source if last else None!r}: the input changed since; "
            "pass --overwrite to start over"
        )


def check_predict_job(
    run_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    cols: Columns,
    fmt: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
) -> int:
    """Everything that can refuse a prediction job without loading the model: the output and its partial
    file, every input row (a streaming pass). Returns the number of input rows."""
    output = Path(output_path)
    partial = output.with_name(output.name + ".partial")
    if output.exists() and not overwrite:
        raise TaskfitError(f"{output} exists; pass --overwrite to replace it")
    if partial.exists() and not resume and not overwrite:
        raise TaskfitError(
            f"{partial} holds an interrupted prediction; pass --resume to continue it or --overwrite to start over"
        )
    return sum(1 for _ in iter_examples(input_path, cols, fmt))


def predict_file(
    run_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    cols: Columns | None = None,
    fmt: str = "auto",
    batch_size: int = 32,
    resume: bool = False,
    overwrite: bool = False,
    progress=None,
    predictor: Predictor | None = None,
) -> dict:
    """Predict every row of ``input_path`` into JSONL ``output_path``; returns counts."""
    cols = cols or Columns(label=None)
    output = Path(output_path)
    partial = output.with_name(output.name + ".partial")
    total = check_predict_job(run_dir, input_path, output_path, cols, fmt, resume, overwrite)
    if overwrite and not resume:
        partial.unlink(missing_ok=True)
    done = _complete_lines(partial)
    predictor = predictor or Predictor.load(run_dir)
    advance = progress("predict", total) if progress else (lambda n: None)
    advance(min(done, total))
    rows = iter_examples(input_path, cols, fmt)
    if done:
        _check_resumable(partial, done, total, rows, input_path)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("a", encoding="utf-8") as out:
        for chunk in iter_chunks(rows, batch_size):
            results = predictor.predict(chunk)
            out.write(
                "".join(
                    json.dumps({"source": e.source, "text": e.text, **r}, ensure_ascii=False) + "\n"
                    for e, r in zip(chunk, results)
                )
            )
            out.flush()
            os.fsync(out.fileno())  # a chunk that was reported done survives a crash
            advance(len(chunk))
    os.replace(partial, output)
    return {"rows": total, "resumed_after": done, "output": str(output)}
