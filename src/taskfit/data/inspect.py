"""Know your data before you train on it: parsing anomalies, duplicates and leakage, class balance, and how
a backbone's tokenizer sees the texts.

Every finding carries figures and, where it has one, the file and line. ``taskfit inspect`` prints them;
``taskfit compare`` runs the same checks first and shows the warnings. Written by hand: no library we use
checks raw CSV structure, cross-split leakage and tokenizer coverage together.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from taskfit.data.catalog import normalise
from taskfit.data.delimited_scan import scan_delimited
from taskfit.data.ner import ConllSentence, check_tags, parse_conll
from taskfit.data.readers import Example, infer_format
from taskfit.errors import TaskfitError

UNK_WARN = 0.01  # warn when more than 1% of tokens are the unknown token
TRUNC_WARN = 0.01  # warn when more than 1% of texts would be truncated
EXAMPLES_SHOWN = 3


@dataclass
class Finding:
    check: str  # e.g. "parse.long-field", "duplicates.cross-split"
    severity: str  # "error" (data unusable as is), "warning" (likely corrupts results) or "info"
    message: str  # one line, with figures
    count: int = 0
    where: list[str] = field(default_factory=list)  # "file:line" or short examples


@dataclass
class InspectReport:
    findings: list[Finding] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def add(
        self, check: str, severity: str, message: str, count: int = 0, where: list[str] | None = None
    ) -> None:
        self.findings.append(Finding(check, severity, message, count, list(where or [])))

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity in ("warning", "error")]

    def exit_code(self, strict: bool = False) -> int:
        """1 when an error was found (the data cannot be used as is), or any warning with ``strict``."""
        return int(any(f.severity == "error" for f in self.findings) or (strict and bool(self.problems)))

    def problem_lines(self) -> list[str]:
        """One line per warning or error, without the examples: what compare and init print."""
        return [f"{f.check}: {f.message}" for f in self.problems]

    def as_json(self) -> dict:
        return {"findings": [asdict(f) for f in self.findings], "stats": self.stats}

    def render(self) -> str:
        lines = []
        for f in self.findings:
            lines.append(f"{f.severity.upper():<7} {f.check}: {f.message}")
            lines.extend(f"          {w}" for w in f.where[:EXAMPLES_SHOWN])
            if len(f.where) > EXAMPLES_SHOWN:
                lines.append(f"          … and {len(f.where) - EXAMPLES_SHOWN} more")
        n = len(self.problems)
        lines.append(f"{n} problem{'s' if n != 1 else ''} found" if n else "no problems found")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Raw files: what the parser would silently accept or choke on.


def scan_file(path: str | Path, report: InspectReport, fmt: str = "auto") -> None:
    """BOM, line endings, undecodable bytes; for CSV/TSV also field counts and swallowed records."""
    path = Path(path)
    if not path.is_file():
        return
    if fmt == "auto":
        try:
            fmt = infer_format(str(path))
        except TaskfitError:  # e.g. a .conll file (task: ner): the encoding checks still apply
            fmt = "text"
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        report.add("parse.bom", "info", f"{path} starts with a UTF-8 byte-order mark (removed when read)", 1)
        raw = raw[3:]
    crlf, lf, cr = (
        raw.count(b"\r\n"),
        raw.count(b"\n") - raw.count(b"\r\n"),
        raw.count(b"\r") - raw.count(b"\r\n"),
    )
    kinds = {name: n for name, n in (("CRLF", crlf), ("LF", lf), ("CR", cr)) if n}
    if len(kinds) > 1:
        report.add(
            "parse.line-endings",
            "warning",
            f"{path} mixes line endings ({', '.join(f'{n} {k}' for k, n in kinds.items())}): "
            "a sign of files pasted together",
            sum(kinds.values()),
        )
    bad = []
    lines = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad.append(
                f"{path}:{number}: column {exc.start + 1}: {line[max(0, exc.start - 10) : exc.start + 10]!r}"
            )
            lines.append(line.decode("utf-8", errors="replace"))
    if bad:
        report.add(
            "parse.encoding",
            "error",
            f"{path}: {len(bad)} line(s) with bytes that are not UTF-8 (re-save as UTF-8, e.g. iconv -f latin1 -t utf-8)",
            len(bad),
            bad,
        )
    if fmt in ("csv", "tsv"):
        scan_delimited(path, "\n".join(lines), "," if fmt == "csv" else "\t", report)


# ---------------------------------------------------------------------------------------------------
# Examples: duplicates, leakage, conflicting labels, balance.


def check_duplicates(splits: dict[str, list[Example]], report: InspectReport) -> None:
    for name, examples in splits.items():
        exact = Counter(e.text for e in examples)
        near: dict[str, list[Example]] = defaultdict(list)
        for e in examples:
            near[normalise(e.text)].append(e)
        n_exact = sum(c - 1 for c in exact.values() if c > 1)
        n_near = sum(len(g) - 1 for g in near.values() if len(g) > 1) - n_exact
        if n_exact or n_near:
            groups = [g for g in near.values() if len(g) > 1]
            report.add(
                "duplicates.within-split",
                "warning",
                f"{name}: {n_exact} exact duplicate(s) and {n_near} more after normalising case and whitespace "
                f"({len(groups)} texts repeated)",
                n_exact + n_near,
                [" = ".join(e.source for e in g[:3]) + f": {g[0].text[:50]!r}" for g in groups],
            )
    names = list(splits)
    index = {name: {normalise(e.text): e for e in splits[name]} for name in names}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = [t for t in index[a] if t in index[b]]
            if shared:
                report.add(
                    "duplicates.cross-split",
                    "warning",
                    f"{len(shared)} text(s) of {b} also in {a} (after normalising case and whitespace): "
                    f"leakage inflates {b} scores; data.dedupe: true drops them from {a}",
                    len(shared),
                    [f"{index[a][t].source} = {index[b][t].source}: {t[:50]!r}" for t in shared],
                )
    labels: dict[str, set] = defaultdict(set)
    where: dict[str, list[str]] = defaultdict(list)
    for examples in splits.values():
        for e in examples:
            key = normalise(e.text)
            labels[key].add(e.label)
            where[key].append(f"{e.source} ({e.label})")
    conflicts = [k for k, v in labels.items() if len(v) > 1]
    if conflicts:
        report.add(
            "duplicates.conflicting-labels",
            "warning",
            f"{len(conflicts)} text(s) appear with different labels: mislabelled, or the task is ambiguous",
            len(conflicts),
            [", ".join(where[k][:4]) + f": {k[:50]!r}" for k in conflicts],
        )


def check_balance(
    splits: dict[str, list[Example]], labels: list[str], shots: int | None, report: InspectReport
) -> None:
    counts = {name: Counter(e.label for e in examples) for name, examples in splits.items()}
    report.stats["label_counts"] = {name: {lab: c[lab] for lab in labels} for name, c in counts.items()}
    scored = "test" if splits.get("test") else next(iter(splits))
    c = counts[scored]
    total = sum(c.values())
    if total:
        label, n = c.most_common(1)[0]
        report.stats["majority_baseline"] = {"split": scored, "label": label, "accuracy": n / total}
        report.add(
            "balance.majority-baseline",
            "info",
            f"majority-class baseline on {scored}: {n / total:.3f} (always '{label}'); a model must beat this",
            total,
        )
    train = counts.get("train", Counter())
    if train:
        ratio = max(train.values()) / max(min(train[lab] for lab in labels), 1)
        if ratio >= 5:
            report.add(
                "balance.imbalanced",
                "warning",
                f"train is imbalanced: the largest class has {ratio:.0f}x the examples of the smallest; "
                "report macro-F1 beside accuracy",
                int(ratio),
            )
    if shots:
        for name in ("train", "dev"):
            rare = {
                lab: counts.get(name, Counter())[lab]
                for lab in labels
                if counts.get(name, Counter())[lab] < shots
            }
            if rare and counts.get(name):
                report.add(
                    f"balance.too-rare-for-k.{name}",
                    "warning" if name == "train" else "info",
                    f"{name}: label(s) with fewer than K={shots} examples: "
                    + ", ".join(f"'{lab}' ({n})" for lab, n in rare.items()),
                    len(rare),
                )


# ---------------------------------------------------------------------------------------------------
# The backbone's view: token lengths, truncation, unknown tokens, scripts.


def script_of(char: str) -> str | None:
    if not char.isalpha():
        return None
    name = unicodedata.name(char, "")
    for script in (
        "CJK",
        "HIRAGANA",
        "KATAKANA",
        "HANGUL",
        "LATIN",
        "CYRILLIC",
        "ARABIC",
        "HEBREW",
        "GREEK",
        "DEVANAGARI",
        "THAI",
    ):
        if name.startswith(script):
            return script
    return "OTHER"


def check_scripts(texts: list[str], report: InspectReport) -> None:
    counts: Counter = Counter()
    for t in texts:
        counts.update(s for s in map(script_of, t) if s)
    total = sum(counts.values())
    if not total:
        return
    shares = {s: n / total for s, n in counts.most_common()}
    report.stats["scripts"] = shares
    report.add(
        "text.scripts",
        "info",
        "letters by script: " + ", ".join(f"{s} {v:.1%}" for s, v in list(shares.items())[:4]),
        total,
    )


def check_tokens(
    texts: list[str],
    backbone: str,
    max_length: int,
    report: InspectReport,
    sample: int = 5000,
    windowed: bool = False,
) -> None:
    """Lengths vs max_length (``windowed``: ner splits long sentences into windows, nothing is lost) and the
    unknown-token rate."""
    from transformers import AutoTokenizer

    from taskfit.models.backbones import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve(backbone))
    if len(texts) > sample:  # lengths and rates from an even sample: fast on large sets
        step = len(texts) / sample
        texts = [texts[int(i * step)] for i in range(sample)]
    ids = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    lengths = sorted(len(x) for x in ids)
    limit = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
    truncated = sum(n > limit for n in lengths) / len(lengths)

    def pct(q: float) -> int:
        return lengths[min(len(lengths) - 1, int(q * len(lengths)))]

    stats = {
        "tokens_median": pct(0.5),
        "tokens_p95": pct(0.95),
        "tokens_max": lengths[-1],
        "max_length": limit,
        "truncated_share": truncated,
    }
    fate = "are split into overlapping windows (task: ner)" if windowed else "would be truncated"
    report.add(
        f"tokens.{backbone}.lengths",
        "warning" if truncated > TRUNC_WARN and not windowed else "info",
        f"{backbone}: tokens per text median {stats['tokens_median']}, 95th percentile {stats['tokens_p95']}, "
        f"max {stats['tokens_max']}; {truncated:.1%} of texts exceed max_length {limit} and {fate}",
        len(lengths),
    )
    unk = tokenizer.unk_token_id
    if unk is not None and unk not in (
        tokenizer.eos_token_id,
        tokenizer.bos_token_id,
    ):  # byte-level BPE has no real unk
        special = set(tokenizer.all_special_ids) - {unk}
        body = [t for x in ids for t in x if t not in special]
        rate = sum(t == unk for t in body) / max(len(body), 1)
        stats["unk_rate"] = rate
        with_unk = sum(unk in x for x in ids) / len(ids)
        report.add(
            f"tokens.{backbone}.unknown",
            "warning" if rate > UNK_WARN else "info",
            f"{backbone}: {rate:.2%} of tokens are {tokenizer.unk_token} ({with_unk:.1%} of texts have one)"
            + (
                "; the model cannot see those characters: try a backbone whose vocabulary covers them"
                if rate > UNK_WARN
                else ""
            ),
            sum(t == unk for t in body),
        )
    report.stats[f"tokens.{backbone}"] = stats


def check_examples(
    splits: dict[str, list[Example]],
    labels: list[str],
    shots: int | None = None,
    backbones: list[str] | None = None,
    max_length: int = 256,
    report: InspectReport | None = None,
    windowed: bool = False,
) -> InspectReport:
    report = report or InspectReport()
    report.stats["sizes"] = {name: len(examples) for name, examples in splits.items()}
    check_duplicates(splits, report)
    if labels:  # generation data has no classes
        check_balance(splits, labels, shots, report)
    texts = [e.text for examples in splits.values() for e in examples]
    check_scripts(texts, report)
    for backbone in backbones or []:
        check_tokens(texts, backbone, max_length, report, windowed=windowed)
    return report


def inspect_data(
    data, backbones: list[str] | None = None, max_length: int = 256, task: str = "classification"
) -> InspectReport:
    """All checks for a data config: its raw files first (these never stop), then the examples a run sees."""
    from taskfit.errors import TaskfitError
    from taskfit.tasks import load_pools

    report = InspectReport()
    scan_files(data, report)
    try:
        pools = load_pools(data, task)
    except TaskfitError as exc:
        report.add("load", "error", str(exc), 1)
        return report
    for note in pools.notes:
        report.add("load.note", "info", note)
    return check_pools(data, pools, backbones, max_length, report)


def scan_files(data, report: InspectReport) -> None:
    """The raw-file checks for a data config's own files (built-in datasets and HF datasets have none)."""
    if data.train and data.format != "hf":
        for path in (data.train, data.dev, data.test):
            if path:
                scan_file(path, report, data.format)


def check_pools(
    data, pools, backbones: list[str] | None, max_length: int, report: InspectReport
) -> InspectReport:
    """The example-level checks on loaded pools, flagging labels too rare for the grid's largest K."""
    ks = [k for k in data.shot_grid() if k]
    splits = {"train": pools.train, "dev": pools.dev, "test": pools.test}
    from taskfit.tasks import get_task

    task = get_task(getattr(pools, "task", "classification"))
    return check_examples(
        {k: v for k, v in splits.items() if v},
        pools.labels if task.per_class else [],  # ner: entity types, not one class per example
        max(ks, default=None),
        backbones,
        max_length,
        report,
        windowed=task.tags_words,
    )


# ---------------------------------------------------------------------------------------------------
# NER: CoNLL-style files (one "token tag" per line, a blank line between sentences).


def read_conll(path: str | Path, report: InspectReport) -> list[ConllSentence]:
    """The NER reader's parse (data/ner.py: the one CoNLL reader), its problems reported, not raised."""
    parsed = parse_conll(path, strict_encoding=False)
    if parsed.malformed:
        report.add(
            "ner.malformed-line",
            "error",
            f"{path}: {len(parsed.malformed)} line(s) without a tag",
            len(parsed.malformed),
            parsed.malformed,
        )
    if parsed.empty_sentences:
        report.add(
            "ner.empty-sentence",
            "warning",
            f"{path}: {len(parsed.empty_sentences)} empty sentence(s)",
            len(parsed.empty_sentences),
            parsed.empty_sentences,
        )
    return parsed.sentences


def check_tag_scheme(sentences: list[ConllSentence], path: str, report: InspectReport) -> None:
    """BIO/IOB2: an I-X must follow B-X or I-X; anything but O, B-*, I-* (or BIOES' E-, S-) is unknown."""
    violations, unknown = [], []
    for s in sentences:
        previous = "O"
        for tag, line in zip(s.tags, s.lines):
            prefix, _, kind = tag.partition("-")
            try:
                check_tags([tag], f"{path}:{line}")  # the reader's own rule: one verdict for one input
            except TaskfitError as exc:
                unknown.append(str(exc))
            if prefix == "I" and previous not in (f"B-{kind}", f"I-{kind}"):
                violations.append(
                    f"{path}:{line}: {tag} after {previous} (expected B-{kind} or I-{kind} before it)"
                )
            previous = tag
    if violations:
        report.add(
            "ner.tag-scheme",
            "warning",
            f"{path}: {len(violations)} I- tag(s) without a B- of the same type before them",
            len(violations),
            violations,
        )
    if unknown:
        report.add(
            "ner.unknown-tag-format",
            "error",  # compare/run refuse them
            f"{path}: {len(unknown)} tag(s) not in BIO form",
            len(unknown),
            unknown,
        )


def inspect_ner(train: str, dev: str | None = None, test: str | None = None) -> InspectReport:
    report = InspectReport()
    splits: dict[str, list[ConllSentence]] = {}
    for name, path in (("train", train), ("dev", dev), ("test", test)):
        if path:
            if not Path(path).is_file():
                report.add("load", "error", f"{name} file not found (or not a file): {path}", 1)
                continue
            scan_file(path, report, "jsonl")  # encoding, BOM and line endings only
            splits[name] = read_conll(path, report)
            if not splits[name]:
                report.add("load", "error", f"{path}: no sentences found", 1)
            check_tag_scheme(splits[name], path, report)
    seen = {t for s in splits.get("train", []) for t in s.tags}
    for name in ("dev", "test"):
        unseen = Counter(t for s in splits.get(name, []) for t in s.tags if t not in seen)
        if unseen:
            report.add(
                f"ner.unseen-tags.{name}",
                "warning",
                f"{name}: tag(s) never seen in train: "
                + ", ".join(f"{t} ({n})" for t, n in unseen.most_common()),
                sum(unseen.values()),
            )
    report.stats["sentences"] = {name: len(v) for name, v in splits.items()}
    report.stats["tags"] = {name: dict(Counter(t for s in v for t in s.tags)) for name, v in splits.items()}
    for name, v in splits.items():
        report.add(
            f"ner.{name}", "info", f"{name}: {len(v)} sentences, {sum(len(s.tokens) for s in v)} tokens"
        )
    return report
