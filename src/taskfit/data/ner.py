"""NER data: tagged sentences, tag schemes (BIO, IOBES, IO) and the readers for CoNLL files and JSONL.

A sentence is kept as the original string plus its words with character offsets into it, and one BIO tag
per word. Entities always come back as character offsets into that string, never as word pieces, so a
prediction can be checked against (or highlighted in) the text the user gave.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from taskfit.data.readers import Example, _decode_lines, jsonl_objects
from taskfit.errors import TaskfitError, did_you_mean

SCHEMES = ("bio", "iobes", "io")
Span = tuple[int, int]


@dataclass(frozen=True)
class NerExample(Example):
    """``text`` is the sentence; ``tokens`` its words, ``spans`` their (start, end) character offsets in
    ``text``, ``tags`` their BIO tags (empty when unlabelled, e.g. a prediction request)."""

    tokens: tuple[str, ...] = ()
    spans: tuple[Span, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entity:
    type: str
    start: int  # character offsets into the sentence, end exclusive
    end: int
    text: str

    def as_dict(self) -> dict:
        return {"type": self.type, "text": self.text, "start": self.start, "end": self.end}


# ---------------------------------------------------------------------------------------------------
# Tag schemes. Decoding any scheme into spans is seqeval's get_entities (conlleval rules: an I- after O or
# after another type starts an entity); encoding spans into a scheme is the few lines below.


def tag_spans(tags: list[str] | tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(type, first word, last word) of every entity in a BIO, IOBES, IOB1 or IO tag sequence."""
    import warnings

    from seqeval.metrics.sequence_labeling import get_entities

    with warnings.catch_warnings():  # it warns on tags like 'PER' without a prefix; check_tags reports those
        warnings.simplefilter("ignore")
        return [(t, s, e) for t, s, e in get_entities(list(tags)) if t != "_"]


def spans_to_tags(n: int, spans: list[tuple[str, int, int]], scheme: str = "bio") -> list[str]:
    tags = ["O"] * n
    for kind, start, end in spans:
        for i in range(start, end + 1):
            if scheme == "io":
                tags[i] = f"I-{kind}"
            elif scheme == "iobes" and start == end:
                tags[i] = f"S-{kind}"
            elif scheme == "iobes" and i == end:
                tags[i] = f"E-{kind}"
            else:
                tags[i] = f"{'B' if i == start else 'I'}-{kind}"
    return tags


def convert_tags(tags: list[str] | tuple[str, ...], scheme: str) -> list[str]:
    """Any scheme -> ``scheme`` (bio, iobes or io)."""
    if scheme not in SCHEMES:
        raise TaskfitError(f"unknown tag scheme '{scheme}'; one of {', '.join(SCHEMES)}")
    return spans_to_tags(len(tags), tag_spans(tags), scheme)


def tag_names(types: list[str], scheme: str) -> list[str]:
    """Every tag of a scheme over these entity types, O first."""
    prefixes = {"bio": "BI", "iobes": "BIES", "io": "I"}[scheme]
    return ["O", *(f"{p}-{t}" for t in types for p in prefixes)]


def entities_of(example: NerExample, tags: list[str] | tuple[str, ...]) -> list[Entity]:
    """Word-level tags -> entities with character offsets into ``example.text``."""
    out = []
    for kind, first, last in tag_spans(tags):
        start, end = example.spans[first][0], example.spans[last][1]
        out.append(Entity(kind, start, end, example.text[start:end]))
    return out


def entity_types(examples: list[NerExample]) -> list[str]:
    return sorted({kind for e in examples for kind, _, _ in tag_spans(e.tags)})


# ---------------------------------------------------------------------------------------------------
# Words of raw text (prediction requests, text + entities JSONL): whitespace, punctuation and each CJK
# character on its own. tokenizers' pre-tokenizers give exactly that, with offsets into the original string.

CJK = r"[\u2e80-\u2fff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"


def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation("isolated"),
            pre_tokenizers.Split(Regex(CJK), "isolated"),
        ]
    )


def split_words(text: str) -> list[tuple[str, Span]]:
    return [(w, (s, e)) for w, (s, e) in _pre_tokenizer().pre_tokenize_str(text)]


def from_text(text: str, source: str = "", entities: list[tuple[str, int, int]] = ()) -> NerExample:
    """A sentence from raw text; ``entities`` (type, start, end) in characters become word tags. A word that
    an entity boundary cuts is split there, so no annotated boundary is lost."""
    cuts = sorted({b for _, s, e in entities for b in (s, e)})
    words: list[Span] = []
    for _, (s, e) in split_words(text):
        inner = [c for c in cuts if s < c < e]
        for a, b in zip([s, *inner], [*inner, e]):
            words.append((a, b))
    tags = ["O"] * len(words)
    for kind, s, e in sorted(entities, key=lambda x: (x[1], x[2])):
        inside = [i for i, (a, b) in enumerate(words) if a >= s and b <= e]
        if not inside:
            raise TaskfitError(f"{source}: entity {kind} [{s}:{e}] {text[s:e]!r} covers no word")
        if any(tags[i] != "O" for i in inside):
            raise TaskfitError(
                f"{source}: entity {kind} [{s}:{e}] {text[s:e]!r} overlaps another; nested or overlapping "
                "entities are not supported (keep the outer one)"
            )
        for j, i in enumerate(inside):
            tags[i] = f"{'B' if j == 0 else 'I'}-{kind}"
    return NerExample(
        text=text,
        source=source,
        tokens=tuple(text[a:b] for a, b in words),
        spans=tuple(words),
        tags=tuple(tags),
    )


def _joins_without_space(left: str, right: str) -> bool:
    return bool(re.fullmatch(CJK, left[-1:])) and bool(re.fullmatch(CJK, right[:1]))


def from_tokens(tokens: list[str], tags: list[str] | None, source: str = "") -> NerExample:
    """Words -> a sentence string: joined by spaces, except between two CJK characters (Chinese CoNLL files
    have one character per line; '江 泽 民' is not how the text reads)."""
    text, spans = "", []
    for i, tok in enumerate(tokens):
        if i and not _joins_without_space(tokens[i - 1], tok):
            text += " "
        spans.append((len(text), len(text) + len(tok)))
        text += tok
    bio = tuple(convert_tags(tags, "bio")) if tags else ()
    return NerExample(text=text, source=source, tokens=tuple(tokens), spans=tuple(spans), tags=bio)


# ---------------------------------------------------------------------------------------------------
# CoNLL: the one reader (taskfit inspect --task ner uses it too).


@dataclass
class ConllSentence:
    tokens: list[str]
    tags: list[str]
    line: int  # line of the first token
    lines: list[int] = field(default_factory=list)


@dataclass
class ConllFile:
    sentences: list[ConllSentence]
    malformed: list[str]  # "file:line: ..." lines without a tag
    empty_sentences: list[str]  # "file:line: ..." two blank lines in a row


def parse_conll(path: str | Path, strict_encoding: bool = True) -> ConllFile:
    """Token in the first column, tag in the last (tab or space separated), a blank line between sentences,
    ``-DOCSTART-`` lines skipped; problems are collected with their line, not raised. ``strict_encoding``
    off: undecodable bytes become U+FFFD (inspect reports them itself)."""
    path = Path(path)
    if strict_encoding:
        lines = _decode_lines(path)
    else:
        lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    sentences: list[ConllSentence] = []
    current: ConllSentence | None = None
    blank_run, malformed, empty = 0, [], []
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts or line.startswith("-DOCSTART-"):
            if current is not None:
                sentences.append(current)
                current = None
            blank_run += 1
            if blank_run == 2 and number > 2:
                empty.append(f"{path}:{number}: an empty sentence (two blank lines in a row)")
            continue
        blank_run = 0
        if len(parts) < 2:
            malformed.append(f"{path}:{number}: expected 'token tag', got {line!r}")
            continue
        if current is None:
            current = ConllSentence([], [], number)
        current.tokens.append(parts[0])
        current.tags.append(parts[-1])
        current.lines.append(number)
    if current is not None:
        sentences.append(current)
    return ConllFile(sentences, malformed, empty)


def check_tags(tags: list[str], where: str) -> None:
    for tag in tags:
        prefix, _, kind = tag.partition("-")
        if tag != "O" and (prefix not in ("B", "I", "E", "S") or not kind):
            raise TaskfitError(
                f"{where}: tag {tag!r} is not O or B-/I-/E-/S-TYPE (BIO, IOBES or IO tags, e.g. B-PER)"
            )


def read_conll(path: str | Path) -> list[NerExample]:
    parsed = parse_conll(path)
    if parsed.malformed:
        raise TaskfitError(
            parsed.malformed[0]
            + f" ({len(parsed.malformed)} such line(s); `taskfit inspect --task ner` lists them)"
        )
    out = []
    for s in parsed.sentences:
        for tag, line in zip(s.tags, s.lines):
            check_tags([tag], f"{path}:{line}")
        out.append(from_tokens(s.tokens, s.tags, f"{path}:{s.line}"))
    return out


def read_ner_jsonl(path: str | Path, columns) -> list[NerExample]:
    """One sentence per line: ``{"tokens": [...], "tags": [...]}`` or ``{"text": ..., "entities":
    [{"start": 0, "end": 4, "type": "PER"}, ...]}`` (character offsets, end exclusive; ``label`` for type)."""
    path = Path(path)
    out = []
    for number, row in jsonl_objects(_decode_lines(path), path):
        where = f"{path}:{number}"
        if columns.tokens in row:
            tokens, tags = row[columns.tokens], row.get(columns.tags)
            if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
                raise TaskfitError(f"{where}: '{columns.tokens}' must be a list of non-empty strings")
            if not isinstance(tags, list) or len(tags) != len(tokens):
                raise TaskfitError(
                    f"{where}: '{columns.tags}' must be a list with one tag per token "
                    f"({len(tokens)} tokens, got {tags if not isinstance(tags, list) else len(tags)!r})"
                )
            check_tags(tags, where)
            out.append(from_tokens(tokens, tags, where))
        elif columns.text in row:
            out.append(_from_entities_row(row, columns, where))
        else:
            raise TaskfitError(
                f"{where}: expected '{columns.tokens}' + '{columns.tags}' or '{columns.text}' + "
                f"'{columns.entities}'; keys found: {', '.join(row)}."
                + did_you_mean(columns.tokens, list(row))
                + " Map yours with data.columns (e.g. columns: {tokens: words, tags: ner_tags})."
            )
    return out


def _from_entities_row(row: dict, columns, where: str) -> NerExample:
    text = row[columns.text]
    if not isinstance(text, str) or not text.strip():
        raise TaskfitError(f"{where}: '{columns.text}' must be a non-empty string")
    raw = row.get(columns.entities, [])
    if not isinstance(raw, list):
        raise TaskfitError(f"{where}: '{columns.entities}' must be a list of {{start, end, type}}")
    entities = []
    for i, ent in enumerate(raw):
        kind = ent.get("type", ent.get("label")) if isinstance(ent, dict) else None
        start, end = (ent.get("start"), ent.get("end")) if isinstance(ent, dict) else (None, None)
        if not (isinstance(kind, str) and isinstance(start, int) and isinstance(end, int)):
            raise TaskfitError(
                f"{where}: {columns.entities}[{i}] must be {{start: int, end: int, type: str}}, got {ent!r}"
            )
        if not 0 <= start < end <= len(text):
            raise TaskfitError(
                f"{where}: {columns.entities}[{i}] [{start}:{end}] is outside the text ({len(text)} characters)"
            )
        if "text" in ent and ent["text"] != text[start:end]:
            raise TaskfitError(
                f"{where}: {columns.entities}[{i}] says {ent['text']!r} but text[{start}:{end}] is "
                f"{text[start:end]!r}: offsets are characters, end exclusive"
            )
        entities.append((kind, start, end))
    return from_text(text, where, entities)


NER_SUFFIXES = (".jsonl", ".ndjson", ".json")


def read_ner(path: str, columns, fmt: str = "auto") -> list[NerExample]:
    """CoNLL (any suffix but JSON lines) or JSONL."""
    fmt = ("jsonl" if Path(path).suffix.lower() in NER_SUFFIXES else "conll") if fmt == "auto" else fmt
    if fmt not in ("conll", "jsonl"):
        raise TaskfitError(f"{path}: task ner reads conll or jsonl files, not format: {fmt}")
    examples = read_conll(path) if fmt == "conll" else read_ner_jsonl(path, columns)
    if not examples:
        raise TaskfitError(f"{path}: no sentences found")
    return examples
