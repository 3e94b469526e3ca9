"""task: relation. Classify the relation between two marked entities of a sentence.

Entity markers ``[E1] .. [/E1]`` (head) and ``[E2] .. [/E2]`` (tail) are inserted around the two spans and added
to the tokenizer as special tokens (new embedding rows, trained with the rest). The classifier reads the hidden
states at the two entity-start markers, concatenated ("entity start", Baldini Soares et al. 2019, "Matching
the Blanks"), or a pooled sentence state (``entity_pooling: pooled``). A sentence longer than ``max_length`` is
windowed around the entities, so no marker is ever cut off.

Data: JSONL, one relation per line, ``{"text": ..., "head": {"start": s, "end": e} | [s, e], "tail": ...,
"label": ...}`` with character offsets (end exclusive), or ``{"tokens": [...], "head": [s, e], ...}`` with token
indices (end exclusive, tokens joined by spaces).

The model and the strategies (head-finetune, lora, bitfit, adapter) are in ``taskfit.strategies.relation``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from taskfit.data.readers import Example, _decode_lines, jsonl_objects
from taskfit.errors import TaskfitError
from taskfit.evaluation.metrics import classification_metrics

MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")
_MARKER_RE = re.compile(r"\[/?E[12]\]")


@dataclass(frozen=True)
class RelationExample(Example):
    """``text`` with the head and tail entities as character spans [start, end); ``label`` the relation."""

    head: tuple[int, int] = (0, 0)
    tail: tuple[int, int] = (0, 0)

    def key_fields(self) -> list:
        """What a cell's data fingerprint adds for this example (moving a span makes its cells stale)."""
        return [list(self.head), list(self.tail)]


# ---------------------------------------------------------------------------------------------------
# Reading


def _span(value, where: str, n: int, unit: str) -> tuple[int, int]:
    if isinstance(value, dict) and "start" in value and "end" in value:
        start, end = value["start"], value["end"]
    elif isinstance(value, list | tuple) and len(value) == 2:
        start, end = value
    else:
        raise TaskfitError(
            f'{where}: expected {{"start": s, "end": e}} or [s, e] ({unit} offsets, end exclusive), '
            f"got {json.dumps(value)[:80]}"
        )
    if not (isinstance(start, int) and isinstance(end, int)) or not 0 <= start < end <= n:
        raise TaskfitError(
            f"{where}: span [{start}, {end}) is not inside the {n} {unit}s of the sentence "
            "(0 <= start < end <= length, end exclusive)"
        )
    return start, end


def relation_from_row(row: dict, source: str, text_key: str = "text", label_key: str | None = "label"):
    """One JSONL row as a RelationExample; every problem names ``source`` (file:line) and the key."""
    if "tokens" in row and text_key not in row:
        tokens = row["tokens"]
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            raise TaskfitError(f"{source}: 'tokens' must be a non-empty list of strings")
        starts, pos = [], 0
        for t in tokens:
            starts.append(pos)
            pos += len(t) + 1
        text = " ".join(tokens)
        spans = []
        for key in ("head", "tail"):
            if key not in row:
                raise TaskfitError(f"{source}: missing '{key}' (the {key} entity's token span [start, end))")
            s, e = _span(row[key], f"{source}: {key}", len(tokens), "token")
            spans.append((starts[s], starts[e - 1] + len(tokens[e - 1])))
    else:
        text = row.get(text_key)
        if not isinstance(text, str) or not text.strip():
            raise TaskfitError(
                f"{source}: missing or empty '{text_key}' (the sentence); keys found: {', '.join(row)}"
            )
        spans = []
        for key in ("head", "tail"):
            if key not in row:
                raise TaskfitError(
                    f'{source}: missing \'{key}\' (the {key} entity as {{"start": s, "end": e}}, character '
                    "offsets, end exclusive)"
                )
            span = _span(row[key], f"{source}: {key}", len(text), "character")
            given = row[key].get("text") if isinstance(row[key], dict) else None
            if given is not None and text[span[0] : span[1]] != given:
                raise TaskfitError(
                    f"{source}: {key} span [{span[0]}, {span[1]}) is {text[span[0] : span[1]]!r} in the text, "
                    f"but its 'text' says {given!r}"
                )
            spans.append(span)
    (hs, he), (ts, te) = spans
    if hs < te and ts < he:
        raise TaskfitError(f"{source}: the head [{hs}, {he}) and tail [{ts}, {te}) spans overlap")
    label = None
    if label_key and label_key in row:
        if row[label_key] is None or str(row[label_key]).strip() == "":
            raise TaskfitError(f"{source}: empty '{label_key}' (the relation)")
        label = str(row[label_key]).strip()
    return RelationExample(text=text, label=label, source=source, head=spans[0], tail=spans[1])


def read_relations(
    path: str | Path, text_key: str = "text", label_key: str = "label"
) -> list[RelationExample]:
    path = Path(path)
    examples = []
    for number, row in jsonl_objects(_decode_lines(path), path):
        example = relation_from_row(row, f"{path}:{number}", text_key, label_key)
        if example.label is None:
            raise TaskfitError(
                f"{path}:{number}: missing '{label_key}' (the relation); keys found: {', '.join(row)}"
            )
        examples.append(example)
    if not examples:
        raise TaskfitError(f"{path}: no examples found")
    return examples


# ---------------------------------------------------------------------------------------------------
# Markers and encoding


def insert_markers(text: str, head: tuple[int, int], tail: tuple[int, int]) -> str:
    """'Bill Gates founded Microsoft.' -> '[E1] Bill Gates [/E1] founded [E2] Microsoft [/E2].'"""
    # at one position an end marker goes before a start marker (adjacent entities)
    inserts = [(head[0], 1, "[E1] "), (head[1], 0, " [/E1]"), (tail[0], 1, "[E2] "), (tail[1], 0, " [/E2]")]
    out, last = [], 0
    for pos, _, marker in sorted(inserts):
        out += [text[last:pos], marker]
        last = pos
    return "".join([*out, text[last:]])


def parse_marked(text: str, source: str = "input") -> RelationExample:
    """The inverse of ``insert_markers``: a text with the four markers typed in (what predict/serve accept)."""
    clean, found, last = [], {}, 0
    for m in _MARKER_RE.finditer(text):
        clean.append(text[last : m.start()])
        if m.group() in found:
            break
        found[m.group()] = len("".join(clean))
        last = m.end()
    clean.append(text[last:])
    if sorted(found) != sorted(MARKERS) or len(_MARKER_RE.findall(text)) != 4:
        raise TaskfitError(
            f"{source}: a relation input needs each of {' '.join(MARKERS)} once around the two entities, "
            f"e.g. '[E1]Bill Gates[/E1] founded [E2]Microsoft[/E2].'; got {text[:80]!r}"
        )
    plain = "".join(clean)

    def span(open_: str, close: str) -> tuple[int, int]:
        s, e = found[open_], found[close]
        while s < e and plain[s].isspace():
            s += 1
        while e > s and plain[e - 1].isspace():
            e -= 1
        if s >= e:
            raise TaskfitError(f"{source}: {open_} .. {close} encloses no text")
        return s, e

    return RelationExample(text=plain, source=source, head=span("[E1]", "[/E1]"), tail=span("[E2]", "[/E2]"))


def as_relation(example: Example) -> RelationExample:
    return example if isinstance(example, RelationExample) else parse_marked(example.text, example.source)


def _windows(n: int, marks: list[int], budget: int) -> list[tuple[int, int]]:
    """Token ranges [a, b) to keep out of ``n`` so that every marker position in ``marks`` (E1, /E1, E2, /E2)
    survives: one window around both entities when they fit, else one around each entity."""
    lo, hi = min(marks), max(marks) + 1
    if hi - lo <= budget:
        start = max(0, min(lo - (budget - (hi - lo)) // 2, n - budget))
        return [(start, start + budget)]
    half = budget // 2
    ranges = []
    for a, b in sorted([(marks[0], marks[1] + 1), (marks[2], marks[3] + 1)]):
        if b - a <= half:
            pad = (half - (b - a)) // 2
            ranges.append((max(0, a - pad), min(n, b + pad)))
        else:  # an entity longer than its share: its start (with the marker) and its end marker
            ranges += [(a, a + half - 1), (b - 1, b)]
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def encode_relation(tokenizer, example: RelationExample, max_length: int, marker_ids: list[int]):
    """(input_ids, position of [E1], position of [E2]) for one example, at most ``max_length`` tokens."""
    marked = insert_markers(example.text, example.head, example.tail)
    ids = tokenizer(marked)["input_ids"]
    if len(ids) > max_length:
        enc = tokenizer(marked, add_special_tokens=False, return_offsets_mapping=True)
        tokens, offsets = enc["input_ids"], enc["offset_mapping"]
        marks = [tokens.index(m) for m in marker_ids]
        budget = max_length - tokenizer.num_special_tokens_to_add()
        pieces = [marked[offsets[a][0] : offsets[b - 1][1]] for a, b in _windows(len(tokens), marks, budget)]
        ids = tokenizer(" ".join(pieces), truncation=True, max_length=max_length)["input_ids"]
    if any(m not in ids for m in marker_ids):  # a tokenizer that re-tokenises a window differently
        raise TaskfitError(
            f"{example.source}: an entity marker does not fit in max_length={max_length} tokens; raise max_length"
        )
    return ids, ids.index(marker_ids[0]), ids.index(marker_ids[2])


# ---------------------------------------------------------------------------------------------------
# Metrics


def relation_metrics(
    gold: list[str], predicted: list[str], labels: list[str], no_relation: str | None
) -> dict:
    """Accuracy, and micro- and macro-F1 over the relation labels other than ``no_relation``, as relation
    extraction papers report (TACRED: micro-F1 without no_relation; SemEval-2010 Task 8: macro-F1 without Other)."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    metrics = classification_metrics(gold, predicted, labels)
    positive = [lab for lab in labels if lab != no_relation]
    metrics["macro_f1_all_labels"] = metrics["macro_f1"]
    for name, fn, average in (
        ("micro_f1", f1_score, "micro"),
        ("micro_precision", precision_score, "micro"),
        ("micro_recall", recall_score, "micro"),
        ("macro_f1", f1_score, "macro"),
    ):
        metrics[name] = float(fn(gold, predicted, labels=positive, average=average, zero_division=0))
    metrics["no_relation_label"] = no_relation
    # the leaderboard's majority row is an accuracy; here F1 without no-relation is the score, so say what
    # always answering the most frequent label gets on it instead
    majority = metrics.pop("majority_baseline")
    always = [majority["label"]] * len(gold)
    metrics["majority_micro_f1"] = float(
        f1_score(gold, always, labels=positive, average="micro", zero_division=0)
    )
    return metrics


# ---------------------------------------------------------------------------------------------------
# Pools


def load_relation_pools(cfg):
    """Relation JSONL files -> labelled pools; dev/test carved from train (stratified) when not given."""
    from taskfit.data.prepare import Pools, _check_labels, _dedupe, _hold_out, _limit_test
    from taskfit.errors import did_you_mean

    if cfg.dataset or not cfg.train:
        raise TaskfitError("task: relation has no built-in datasets; set data.train to a relation JSONL file")
    if cfg.format not in ("auto", "jsonl"):
        raise TaskfitError(
            f"task: relation reads JSONL files; data.format is {cfg.format!r} (use auto or jsonl)"
        )
    text, label = cfg.columns.text, cfg.columns.label
    train = read_relations(cfg.train, text, label)
    dev = read_relations(cfg.dev, text, label) if cfg.dev else []
    test = read_relations(cfg.test, text, label) if cfg.test else []
    found = sorted({e.label for e in train})  # type: ignore[type-var]
    labels = list(cfg.labels) if cfg.labels else found
    missing = [lab for lab in labels if lab not in found]
    if missing:
        raise TaskfitError(f"data.labels names {missing} but {cfg.train} has only {', '.join(found)}")
    if len(labels) < 2:
        raise TaskfitError(
            f"{cfg.train}: relation classification needs at least 2 labels; train has {labels}"
        )
    if cfg.no_relation_label is not None and cfg.no_relation_label not in labels:
        raise TaskfitError(
            f"data.no_relation_label: '{cfg.no_relation_label}' is not a label of {cfg.train} "
            f"(labels: {', '.join(labels)})." + did_you_mean(cfg.no_relation_label, labels)
        )
    notes: list[str] = []
    train, dev, test = _hold_out(cfg, train, dev, test, notes, "relations")
    train, dev = _dedupe(cfg, train, dev, test, notes, "relations", "sentence")
    for split, name in ((train, "train"), (dev, "dev"), (test, "test")):
        _check_labels(split, labels, name)
    return Pools(train, dev, _limit_test(cfg, test, notes, "relations"), labels, notes)


def evaluate_relation(strategy, test: list[RelationExample], labels: list[str], no_relation: str | None):
    """A grid cell's test metrics and predictions.jsonl rows (the marked sentence, gold, predicted, scores)."""
    preds = strategy.predict(test)
    metrics = relation_metrics([e.label for e in test], preds.labels, labels, no_relation)
    rows = [
        {
            "text": insert_markers(e.text, e.head, e.tail),
            "gold": e.label,
            "predicted": p,
            "probs": dict(zip(preds.label_names, map(float, pr))),
        }
        for e, p, pr in zip(test, preds.labels, preds.probs.tolist())
    ]
    return metrics, rows
