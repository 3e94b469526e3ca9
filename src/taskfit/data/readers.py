"""Readers for user data: CSV, TSV, JSONL and Hugging Face ``datasets`` (disk folders or hub names).

Every problem is reported with the file and line, and what was expected.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from taskfit.errors import TaskfitError, did_you_mean


@dataclass(frozen=True)
class Example:
    text: str
    label: str | None = None
    text_pair: str | None = None
    source: str = ""  # "file:line", for error messages
    target: str | None = None  # generation: the text to produce
    # generation from chat data: the turns before the target, ((role, content), ...); text is the last one
    history: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Columns:
    text: str = "text"
    label: str | None = "label"
    text_pair: str | None = None
    target: str | None = None  # set for generation: the target column
    messages: str | None = None  # set for chat-format generation data
    # how a user names their columns, for the "column not found" error: the config key, or a command's flags
    mapping_hint: str = "Map yours with data.columns (e.g. columns: {text: review, label: sentiment})."


FORMATS = ("csv", "tsv", "jsonl", "hf")


def infer_format(path: str) -> str:
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if p.is_dir():
        return "hf"
    if not p.exists() and ("/" not in path or path.count("/") == 1) and not suffix:
        return "hf"  # looks like a hub dataset name such as "rotten_tomatoes" or "org/name"
    raise TaskfitError(
        f"{path}: cannot tell the format from the file name; set data.format to one of {', '.join(FORMATS)}"
    )


def _decode_lines(path: Path) -> list[str]:
    """Decode as UTF-8 line by line so that a bad byte is reported with its line number."""
    if not path.exists():
        hint = ""
        if path.parent.exists():
            hint = did_you_mean(path.name, [p.name for p in path.parent.iterdir()])
        raise TaskfitError(f"data file not found: {path}.{hint}")
    if path.is_dir():
        raise TaskfitError(f"{path} is a folder; expected a file (or set format: hf for a saved dataset)")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise TaskfitError(
                f"{path}:{number}: bytes that are not UTF-8 at column {exc.start + 1} "
                f"({line[max(0, exc.start - 10) : exc.start + 10]!r}). Re-save the file as UTF-8 "
                f"(e.g. iconv -f latin1 -t utf-8)."
            ) from None
    return out


def _field(
    row: dict, key: str, path: Path, line: int, columns_found: list[str], hint: str = Columns.mapping_hint
) -> object:
    if key not in row:
        raise TaskfitError(
            f"{path}:{line}: column '{key}' not found; columns found: {', '.join(map(str, columns_found))}."
            + did_you_mean(key, columns_found)
            + f" {hint}"
        )
    return row[key]


CHAT_ROLES = ("system", "user", "assistant")


def _chat_example(row: dict, cols: Columns, path: Path, line: int, found: list[str]) -> Example:
    """A ``messages`` list: the last message must be the assistant's (the target), the one before a user's."""
    messages = _field(row, cols.messages, path, line, found, cols.mapping_hint)  # type: ignore[arg-type]
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError:
            pass
    where = f"{path}:{line}: column '{cols.messages}'"
    if not isinstance(messages, list) or len(messages) < 2:
        raise TaskfitError(
            f"{where}: expected a list of at least 2 messages [{{role, content}}, ...] ending with the "
            f"assistant's reply, got {str(messages)[:80]!r}"
        )
    turns = []
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or m.get("role") not in CHAT_ROLES
            or not isinstance(m.get("content"), str)
        ):
            raise TaskfitError(
                f"{where}, message {i}: expected {{role: system|user|assistant, content: text}}, got {str(m)[:80]!r}"
            )
        turns.append((m["role"], m["content"]))
    if turns[-1][0] != "assistant" or turns[-2][0] != "user":
        raise TaskfitError(
            f"{where}: the last message must be the assistant's reply (the target) and the one before it the "
            f"user's; roles found: {[r for r, _ in turns]}"
        )
    return Example(text=turns[-2][1], target=turns[-1][1], history=tuple(turns[:-2]), source=f"{path}:{line}")


def _to_example(
    row: dict, cols: Columns, path: Path, line: int, found: list[str], need_label: bool
) -> Example:
    if cols.messages:
        return _chat_example(row, cols, path, line, found)
    text = _field(row, cols.text, path, line, found, cols.mapping_hint)
    if text is None or not str(text).strip():
        raise TaskfitError(
            f"{path}:{line}: empty text in column '{cols.text}'. Remove the row or fill it in."
        )
    pair = None
    if cols.text_pair:
        pair = _field(row, cols.text_pair, path, line, found, cols.mapping_hint)
        pair = None if pair is None else str(pair)
    label = None
    if cols.label and (need_label or cols.label in row):
        value = _field(row, cols.label, path, line, found, cols.mapping_hint)
        if value is None or str(value).strip() == "":
            raise TaskfitError(f"{path}:{line}: empty label in column '{cols.label}'.")
        label = str(value).strip()
    target = None
    if cols.target:
        value = _field(row, cols.target, path, line, found, cols.mapping_hint)
        if value is None or not str(value).strip():
            raise TaskfitError(
                f"{path}:{line}: empty target in column '{cols.target}'. Remove the row or fill it in."
            )
        target = str(value)
    return Example(text=str(text), label=label, text_pair=pair, source=f"{path}:{line}", target=target)


def check_field_count(row: dict, found: list[str], path: Path, line: int) -> None:
    """A row with more or fewer fields than the header is an error: csv.DictReader would otherwise shift it
    silently (the 2nd of 4 fields becomes the label, inventing a class; a missing field becomes None)."""
    extra = row.get(None)  # DictReader's restkey: the fields past the header's
    missing = sum(1 for key in found if row.get(key) is None)
    if extra or missing:
        n = len(found) + len(extra or []) - missing
        raise TaskfitError(
            f"{path}:{line}: {n} field{'s' if n != 1 else ''}, but the header has {len(found)} "
            f'({", ".join(found)}). Quote a field that holds the delimiter ("a, b"), or fix the row; '
            "`taskfit inspect` lists every such row."
        )


def iter_delimited(
    lines: Iterable[str], path: Path, delimiter: str, text_column: str
) -> Iterator[tuple[int, dict, list[str]]]:
    """(line, row, header) for each non-blank record; a ragged row or a csv error stops with its line."""
    reader = csv.DictReader(lines, delimiter=delimiter)
    try:
        found = list(reader.fieldnames or [])
        if not found:
            raise TaskfitError(
                f"{path}: the file is empty; expected a header row with columns such as '{text_column}'"
            )
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue  # blank line
            check_field_count(row, found, path, reader.line_num)
            yield reader.line_num, row, found
    except csv.Error as exc:
        raise TaskfitError(f"{path}:{reader.line_num}: unreadable as CSV/TSV ({exc})") from None


def read_delimited(path: Path, cols: Columns, delimiter: str, need_label: bool = True) -> list[Example]:
    text = "\n".join(_decode_lines(path))
    return [
        _to_example(row, cols, path, line, found, need_label)
        for line, row, found in iter_delimited(io.StringIO(text, newline=""), path, delimiter, cols.text)
    ]


def jsonl_objects(lines: Iterable[str], path, expected: str = "") -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; a line that is not one JSON object stops
    the read with its number. ``expected``: what a line should hold, added to the error."""
    hint = f"; expected {expected}" if expected else ""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskfitError(
                f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno}){hint}"
            ) from None
        except RecursionError:  # e.g. a line of 100,000 '[': json recurses once per level
            raise TaskfitError(f"{path}:{number}: JSON nested too deeply to read{hint}") from None
        if not isinstance(row, dict):
            raise TaskfitError(
                f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}{hint}"
            )
        yield number, row


def read_jsonl(path: Path, cols: Columns, need_label: bool = True) -> list[Example]:
    return [
        _to_example(row, cols, path, number, list(row), need_label)
        for number, row in jsonl_objects(_decode_lines(path), path)
    ]


def read_hf(spec: str, cols: Columns, need_label: bool = True) -> list[Example]:
    """``spec`` is a saved folder or a hub name, optionally with ``:split`` (e.g. ``rotten_tomatoes:train``)."""
    import datasets

    name, _, split = spec.partition(":")
    try:
        if Path(name).is_dir():
            ds = datasets.load_from_disk(name)
        else:
            ds = datasets.load_dataset(name)
    except Exception as exc:  # datasets raises many types; all mean "could not load it"
        raise TaskfitError(f"could not load the Hugging Face dataset '{name}': {exc}") from exc
    if isinstance(ds, datasets.DatasetDict):
        if not split:
            raise TaskfitError(
                f"'{name}' holds several splits ({', '.join(ds)}); name one, e.g. '{name}:{next(iter(ds))}'"
            )
        if split not in ds:
            raise TaskfitError(
                f"'{name}' has no split '{split}'; splits: {', '.join(ds)}." + did_you_mean(split, ds)
            )
        ds = ds[split]
    found = list(ds.column_names)
    label_names = None
    feature = ds.features.get(cols.label) if cols.label else None
    if feature is not None and hasattr(feature, "names"):
        label_names = feature.names  # ClassLabel: store the readable name, not the integer
    examples = []
    for i, row in enumerate(ds):
        if label_names is not None and row.get(cols.label) is not None:
            row = dict(row, **{cols.label: label_names[row[cols.label]]})
        examples.append(_to_example(row, cols, Path(spec), i + 1, found, need_label))
    return examples


def read_examples(path: str, cols: Columns, fmt: str = "auto", need_label: bool = True) -> list[Example]:
    fmt = infer_format(path) if fmt == "auto" else fmt
    if fmt == "hf":
        examples = read_hf(path, cols, need_label)
    elif fmt == "jsonl":
        examples = read_jsonl(Path(path), cols, need_label)
    elif fmt in ("csv", "tsv"):
        examples = read_delimited(Path(path), cols, "," if fmt == "csv" else "\t", need_label)
    else:
        raise TaskfitError(
            f"unknown data format '{fmt}'; expected one of {', '.join(FORMATS)}." + did_you_mean(fmt, FORMATS)
        )
    if not examples:
        raise TaskfitError(f"{path}: no examples found")
    return examples
