"""From a data file alone to a grid: ``taskfit compare my.csv`` and ``taskfit init my.csv``.

Reads a sample of the file, finds the text and label columns, the task (classification; NER for CoNLL), the
labels and the script, derives the prompt from the label names, and sizes a grid to a time budget from a cost
model measured on 2 CPU cores (BENCHMARKS.md). The result is an ordinary config: written out, it validates
with ``taskfit validate`` and reruns the same cells.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from taskfit.compare.cost import DROP_ORDER, estimate_seconds
from taskfit.errors import TaskfitError
from taskfit.progress import format_duration

DEFAULT_BUDGET = "15m"  # a laptop CPU: the default grid on mr takes 12 minutes on 2 cores

# Label names people abbreviate, and the words a model reads best for them. Names not listed are used as
# they are (underscores and dashes become spaces).
LABEL_WORDS = {
    "pos": "positive",
    "neg": "negative",
    "neu": "neutral",
    "neut": "neutral",
    "p": "positive",
    "n": "negative",
    "+": "positive",
    "-": "negative",
    "+1": "positive",
    "-1": "negative",
    "spam": "spam",
    "ham": "not spam",
    "obj": "objective",
    "subj": "subjective",
    "ent": "entailment",
    "contra": "contradiction",
    "loc": "location",
    "per": "person",
    "org": "organization",
    "misc": "miscellaneous",
    "hum": "person",
    "num": "number",
    "desc": "description",
    "abbr": "abbreviation",
    "enty": "entity",
}
SENTIMENT_WORDS = {"positive", "negative", "neutral", "mixed"}
TEXT_NAMES = ("text", "sentence", "review", "content", "comment", "body", "document", "question", "tweet")
LABEL_NAMES = ("label", "labels", "class", "category", "sentiment", "target", "polarity", "y", "tag")


def label_word(label: str) -> str:
    """The word for a label name: known abbreviations expanded (pos -> positive), others as they are."""
    key = label.strip().lower()
    if key in LABEL_WORDS:
        return LABEL_WORDS[key]
    return re.sub(r"[_\-]+", " ", label.strip()) or label


def is_cjk(text: str) -> bool:
    """Mostly Han/kana/hangul characters (Chinese, Japanese, Korean): no spaces between words."""
    letters = [c for c in text if c.isalpha()]
    cjk = sum(
        1
        for c in letters
        if "\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" or "\uf900" <= c <= "\ufaff"
    )
    return bool(letters) and cjk / len(letters) > 0.3


def derive_prompt(labels: list[str], texts: list[str] = ()) -> dict:
    """Template, verbalizer and label descriptions from the label names (``pos`` -> " positive")."""
    cjk = is_cjk(" ".join(texts[:200])) or is_cjk(" ".join(labels))
    words = {lab: label_word(lab) for lab in labels}
    sentiment = set(words.values()) <= SENTIMENT_WORDS
    if cjk:
        template = "评论：{text}\n情感：{answer}" if sentiment else "文本：{text}\n类别：{answer}"
        zh = {"positive": "正面", "negative": "负面", "neutral": "中性"}
        verbalizer = {lab: [zh.get(w, w)] for lab, w in words.items()}
        descriptions = {lab: zh.get(w, w) + ("评价" if sentiment else "") for lab, w in words.items()}
    else:
        template = "Review: {text}\nSentiment:{answer}" if sentiment else "Text: {text}\nCategory:{answer}"
        verbalizer = {lab: [" " + w] for lab, w in words.items()}  # inserted verbatim after the colon
        descriptions = {lab: (f"a {w} review" if sentiment else w) for lab, w in words.items()}
    return {"template": template, "verbalizer": verbalizer, "label_descriptions": descriptions}


def derived_label_descriptions(prompt, labels: list[str]) -> dict[str, str]:
    """Descriptions for the labels a prompt leaves undescribed, where the derived word says more than what
    encoder zero-shot would otherwise embed (the verbalizer's first word, else the bare label name)."""
    out = {}
    for lab in labels:
        if prompt is not None and (lab in prompt.label_descriptions or prompt.verbalizer.get(lab)):
            continue
        word = label_word(lab)
        if word != lab:
            out[lab] = word
    return out


def parse_budget(text: str | float | int) -> float:
    """Seconds from '15m', '1h', '90s', '1h30m' or a number of seconds."""
    if isinstance(text, int | float):
        return float(text)
    parts = re.fullmatch(
        r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text
    )
    if not text.strip() or parts is None or not any(parts.groups()):
        raise TaskfitError(f"--budget '{text}': expected a duration such as 15m, 1h, 1h30m or 600s")
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    return h * 3600 + m * 60 + s


# -- reading a sample of the data --------------------------------------------------------------------------


def _rows(path: Path, fmt: str, limit: int = 2000) -> list[dict]:
    raw = path.read_bytes()[: 4 << 20].decode("utf-8", errors="replace").lstrip("\ufeff")
    if fmt == "jsonl":
        rows = []
        for line in raw.splitlines()[:limit]:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut at the sample's end; the real read reports bad lines properly
            if isinstance(obj, dict):
                rows.append(obj)
        return rows
    reader = csv.DictReader(io.StringIO(raw, newline=""), delimiter="\t" if fmt == "tsv" else ",")
    return [row for _, row in zip(range(limit), reader, strict=False)]


def _pick(names: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {n.lower().strip(): n for n in names}
    return next((lower[w] for w in wanted if w in lower), None)


def detect_columns(rows: list[dict], source: str) -> tuple[str, str]:
    """(text column, label column): by name first, else the longest free-text column and the string column
    with the fewest distinct short values."""
    if not rows:
        raise TaskfitError(f"{source}: no rows to read; expected a header and labelled examples")
    names = [n for n in rows[0] if n is not None]
    stats = {}
    for n in names:
        values = [str(r.get(n) or "") for r in rows if not isinstance(r.get(n), list | dict)]
        if not values:
            continue
        stats[n] = (sum(map(len, values)) / len(values), len(set(values)))
    text = _pick(names, TEXT_NAMES) or max(stats, key=lambda n: stats[n][0], default=None)
    candidates = [n for n in stats if n != text and stats[n][1] <= max(2, min(50, len(rows) // 2))]
    label = _pick([n for n in names if n != text], LABEL_NAMES)
    if label is None and candidates:
        label = min(candidates, key=lambda n: (stats[n][1] < 2, stats[n][0]))
    if text is None or label is None:
        raise TaskfitError(
            f"{source}: cannot tell which columns hold the text and the label (columns: {', '.join(names)}); "
            "name them with --text COLUMN --label COLUMN"
        )
    return text, label


# -- the plan ----------------------------------------------------------------------------------------------


@dataclass
class Quickstart:
    """A config derived from a data file, and what was detected and cut to get it (printed to the user)."""

    raw: dict  # the config, only what differs from the defaults
    found: list[str] = field(default_factory=list)
    cuts: list[str] = field(default_factory=list)
    estimate_s: float = 0.0
    # with racing: the time when every trained row is stopped after its first seed (estimate_s: none is)
    raced_s: float | None = None

    def describe(self) -> str:
        when = f"about {format_duration(self.estimate_s)}"
        if self.raced_s is not None and self.raced_s < self.estimate_s:
            when = (
                f"about {format_duration(self.raced_s)} if the race stops the trained rows after their first "
                f"seed, at most {format_duration(self.estimate_s)} if it stops none"
            )
        lines = [*self.found, f"estimated time: {when}"]
        lines += [f"cut to fit the budget: {c}" for c in self.cuts]
        return "\n".join(lines)

    def config_yaml(self, source: str) -> str:
        """The config as a commented YAML file (what ``taskfit init`` writes)."""
        head = [
            f"# taskfit config derived from {source} (taskfit init / taskfit compare FILE).",
            "# Only what differs from the defaults; edit and run: taskfit compare THIS_FILE",
            *(f"#   {line}" for line in self.describe().splitlines()),
        ]
        body = yaml.dump(
            self.raw, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110, default_flow_style=None
        )
        notes = {
            "prompt:": "# prompt: derived from the label names; the verbalizer's words go verbatim at {answer},\n"
            "# label_descriptions are what encoder zero-shot compares each text with",
            "strategies:": "# strategies: sized to the budget (see the cuts above); add or remove rows freely",
        }
        out = []
        for line in body.splitlines():
            if line in notes:
                out.append(notes[line])
            out.append(line)
        return "\n".join(head) + "\n" + "\n".join(out) + "\n"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (templates) double-quoted on one line, as a person writes them."""


def _str(dumper: yaml.SafeDumper, value: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if "\n" in value else None)


_Dumper.add_representer(str, _str)


def _source(data: str, fmt: str | None) -> tuple[dict, str, str]:
    """(data block, task, format) of a file or built-in name."""
    from taskfit.data.catalog import builtin_names, card

    if data in builtin_names():
        return {"dataset": data}, card(data).task, "builtin"
    path = Path(data)
    if not path.exists():
        from taskfit.errors import did_you_mean

        raise TaskfitError(
            f"{data}: no such file, and not a built-in dataset ({', '.join(builtin_names())})."
            + did_you_mean(data, builtin_names())
        )
    suffix = path.suffix.lower()
    fmt = fmt or ("conll" if suffix in (".conll", ".bio", ".iob") else None)
    if fmt is None:
        from taskfit.data.readers import infer_format

        fmt = infer_format(data)
    return {"train": data}, ("ner" if fmt == "conll" else "classification"), fmt


def plan(
    data: str,
    text: str | None = None,
    label: str | None = None,
    text_pair: str | None = None,
    budget: str | float = DEFAULT_BUDGET,
    name: str | None = None,
    fmt: str | None = None,
) -> Quickstart:
    """The config for ``data`` (a file or a built-in dataset name), sized to ``budget``."""
    from taskfit.config import ExperimentConfig, validate_config
    from taskfit.tasks import get_task, load_pools

    seconds = parse_budget(budget)
    block, task, fmt = _source(data, fmt)
    if fmt not in ("builtin", "auto"):
        block["format"] = fmt if fmt == "conll" else "auto"
        if block["format"] == "auto":
            del block["format"]
    found = []
    if fmt not in ("builtin", "conll", "hf"):
        rows = _rows(Path(data), fmt)
        if text is None or label is None:
            auto_text, auto_label = detect_columns(rows, data)
            text, label = text or auto_text, label or auto_label
        names = list(rows[0]) if rows else []
        for flag, col in (("--text", text), ("--label", label), ("--text-pair", text_pair)):
            if col is not None and col not in names:
                from taskfit.errors import did_you_mean

                raise TaskfitError(
                    f"{data}: {flag} '{col}' is not a column (columns: {', '.join(names)})."
                    + did_you_mean(col, names)
                )
        columns = {"text": text, "label": label, **({"text_pair": text_pair} if text_pair else {})}
        if columns != {"text": "text", "label": "label"}:
            block["columns"] = columns
        found.append(
            f"columns: text '{text}', label '{label}'" + (f", pair '{text_pair}'" if text_pair else "")
        )
    name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", Path(data).stem).strip("-") or "my-data"
    raw: dict = {"name": name}
    if task != ExperimentConfig.model_fields["task"].default:  # the written config holds only what differs
        raw["task"] = task
    raw["data"] = block
    probe = validate_config({**raw, "strategies": [{"name": "head-finetune", "backbone": "minilm"}]})
    pools = load_pools(probe.data, task)
    texts = [e.text for e in pools.train[:200]]
    script = (
        "Chinese/Japanese/Korean (no spaces between words)" if is_cjk(" ".join(texts)) else "Latin or other"
    )
    found.insert(
        0,
        f"data: {data} -> task {task}, {len(pools.train)}/{len(pools.dev)}/{len(pools.test)} train/dev/test",
    )
    found.append(f"labels: {', '.join(pools.labels)}; script: {script}")
    if get_task(task).tags_words:  # one tag per word (ner): K sentences, the taggers' grid
        return _plan_ner(raw, pools, found, seconds)
    return _plan_classification(raw, pools, texts, found, seconds)


def _plan_classification(raw: dict, pools, texts: list[str], found: list[str], seconds: float) -> Quickstart:
    """The protocol follows the data (issue 38): a small file of one's own gets every label in
    cross-validation and the final model, nothing held out; a larger one a learning curve up to all of
    its training split, so that the recommendation is made at the size the final model trains on."""
    from collections import Counter

    from taskfit.compare.cost import cjk_share, padded_tokens, text_tokens
    from taskfit.config import DataConfig
    from taskfit.data.prepare import few_labels

    builtin = raw["data"].get("dataset")
    labelled = [*pools.train, *pools.dev, *pools.test]
    counts = Counter(e.label for e in labelled)
    if builtin:  # its own prompt (data card), filled in when the grid runs: nothing to write
        from taskfit.data.prepare import default_prompt_fields

        prompt = default_prompt_fields(validate_config_data(raw))
    else:
        prompt = derive_prompt(list(pools.labels), texts)
    rows = [("zero-shot", "smollm2"), ("zero-shot", "minilm"), ("in-context", "smollm2")]
    rows += [("head-finetune", "minilm"), ("lora", "minilm"), ("contrastive", "minilm")]
    if is_cjk(" ".join(texts)):
        found.append("note: minilm reads few Chinese characters (many [UNK]); smollm2 is byte-level")
    tokens = text_tokens([e.text + " " + (e.text_pair or "") for e in labelled[:1000]])
    cjk = cjk_share([e.text for e in labelled[:200]])
    joined = [e.text + " " + (e.text_pair or "") for e in labelled[:1000]]
    padded = (padded_tokens(joined), padded_tokens(joined, 24))
    found.append(f"texts: about {tokens:.0f} tokens each (the time estimate reads it)")
    n_labels = len(pools.labels)
    whole = DataConfig(train=raw["data"].get("train") or "-", shots="all")
    if not builtin and few_labels(whole, len(labelled), n_labels, min(counts.values())):
        plan = _few_protocol(raw, len(labelled), n_labels, tokens, rows, found, seconds, (cjk, padded))
    else:
        plan = _curve_protocol(raw, pools, tokens, rows, found, seconds, builtin, (cjk, padded))
    if any(b == "smollm2" for _, b in rows) or ("zero-shot", "minilm") in rows:
        if not builtin:  # a built-in dataset's own prompt is filled in when the grid runs
            raw["prompt"] = prompt
        words = ", ".join(f"{lab} -> {prompt['verbalizer'][lab][0]!r}" for lab in pools.labels)
        found.append(f"prompt: {prompt['template']!r}; label words {words}")
        descs = ", ".join(f"{lab} -> {prompt['label_descriptions'][lab]!r}" for lab in pools.labels)
        found.append(f"label descriptions (encoder zero-shot): {descs}")
    raw["strategies"] = _strategy_rows(rows)
    return plan


def _few_protocol(
    raw, n: int, n_labels: int, tokens: float, rows, found, seconds, reads=(0.0, (None, None))
) -> Quickstart:
    """Every label trains and is scored out of fold (``shots: all``, cross-validation), then the best row
    is refitted on all of them into final/; the budget cuts seeds, then folds, then rows."""
    from taskfit.compare.cost import Workload

    # 2 seeds, not 3: with every label in the pool a seed changes only the folds, the initialisation and the
    # demonstrations, while all seeds share the examples' sampling noise; the second seed shows that spread,
    # and a third cost a 40-row file 2 more minutes (6m50s against the 5 minutes issue 38 sets)
    seeds, folds, cuts = 2, 5, []

    def workload(k: int | None = None) -> Workload:
        cjk, (padded, pairs) = reads
        return Workload(n, 0, 0, tokens, n_labels, k or folds, n, cjk, padded, pairs)

    def cost() -> float:
        return estimate_seconds(rows, [None], seeds, workload())

    def least(row) -> float:  # the row alone at the fewest seeds and folds the cuts below go to
        return estimate_seconds([row], [None], 1, workload(3))

    while cost() > seconds:
        # a row that would take over half the budget even at one seed and 3 folds (contrastive on long or
        # CJK texts: its pairs pad to the longest text and cost the square of the length) goes first,
        # before every other row loses seeds and folds to it
        heavy = max((r for r in rows if r in DROP_ORDER), key=least, default=None)
        if heavy is not None and len(rows) > 2 and least(heavy) > seconds / 2:
            rows.remove(heavy)
            cuts.append(
                f"strategy {heavy[0]} ({heavy[1]}) dropped: alone it would take about "
                f"{least(heavy) / 60:.0f} min of the {seconds / 60:.0f} min budget at one seed and 3 folds"
            )
        elif seeds > 1:
            seeds -= 1
            cuts.append(f"seeds: {seeds} instead of {seeds + 1}")
        elif folds > 3:
            folds -= 1
            cuts.append(f"folds: {folds} instead of {folds + 1}")
        elif any(r in rows for r in DROP_ORDER):
            gone = next(r for r in DROP_ORDER if r in rows)
            rows.remove(gone)
            cuts.append(f"strategy {gone[0]} ({gone[1]}) dropped")
        else:
            break
    data = raw["data"]
    data["shots"] = "all"
    if folds != 5:
        data["folds"] = folds
    raw["seeds"] = list(range(seeds))
    if found and found[0].startswith("data: "):  # the probe's dev/test carve does not happen here
        found[0] = found[0].rsplit(",", 1)[0] + f", {n} labelled examples, none held out"
    found.insert(
        1,
        f"protocol: {n} labelled examples (at most 200 per label): nothing is held out. {folds}-fold "
        "cross-validation over every label ranks the rows, and its score and interval are the only estimate "
        "(a carved test set this small would say little and take labels from training); the recommended row "
        f"is then refitted on all {n} into final/",
    )
    if seeds > 1:
        found.insert(
            2,
            f"seeds: {seeds}; a seed changes the fold assignment, the trained rows' initialisation and "
            "in-context's demonstrations, and the report gives the spread over seeds. Every row runs seed 0 "
            "first; a row clearly behind the leader there is not run on the others (race: false turns that "
            "off)",
        )
    quick = Quickstart(raw, found, cuts, cost())
    if seeds > 1:  # every row's first seed, then the later seeds of the prompting rows only
        w = workload()
        prompting = [r for r in rows if r[0] == "in-context"]
        quick.raced_s = estimate_seconds(rows, [None], 1, w) + estimate_seconds(
            prompting, [None], seeds - 1, w
        )
    quick.found.append(
        f"grid: {len(rows)} strategies, every label, {seeds} seed(s): "
        + ", ".join(f"{name} ({b})" for name, b in rows)
    )
    return quick


def _curve_protocol(
    raw, pools, tokens: float, rows, found, seconds, builtin, reads=(0.0, (None, None))
) -> Quickstart:
    """Dev and test held out; K per class on a learning curve that reaches all of the training split (a
    built-in dataset keeps the benchmark's K = 8, 16, 32). The budget cuts the test subset, seeds, the
    middle of the curve, rows, and last the full size (then the pick is an extrapolation, said so)."""
    from collections import Counter

    from taskfit.compare.cost import Workload

    counts = Counter(e.label for e in pools.train)
    smallest = min(counts[lab] for lab in pools.labels)
    if builtin:
        ks: list = [k for k in (8, 16, 32) if k <= smallest] or [max(1, smallest)]
    else:
        ks = [k for k in (8, 32, 128) if k < smallest] + [None]
    seeds, n_test, cuts = 3, len(pools.test), []
    test_limit = None
    if n_test > 500:
        test_limit, n_test = 500, 500
        cuts.append(f"a fixed subset of 500 of the {len(pools.test)} test examples (data.test_limit)")
    n_labels = len(pools.labels)

    def cost() -> float:
        w = Workload(
            len(pools.train),
            len(pools.dev),
            n_test,
            tokens,
            n_labels,
            scored=len(pools.dev),
            cjk=reads[0],
            padded=reads[1][0],
            padded_pairs=reads[1][1],
        )
        return estimate_seconds(rows, ks, seeds, w)

    while cost() > seconds:
        if n_test > 200:
            test_limit = n_test = 200
            cuts.append(f"test subset of 200 of {len(pools.test)} examples")
        elif seeds > 1:
            seeds -= 1
            cuts.append(f"seeds: {seeds} instead of {seeds + 1}")
        elif len(ks) > 2 or (len(ks) == 2 and ks[-1] is not None):
            gone = ks.pop(-2 if ks[-1] is None else -1)
            cuts.append(f"K={gone} dropped")
        elif any(r in rows for r in DROP_ORDER):
            gone = next(r for r in DROP_ORDER if r in rows)
            rows.remove(gone)
            cuts.append(f"strategy {gone[0]} ({gone[1]}) dropped")
        elif ks[-1] is None and smallest > 8:
            ks[-1] = max(k for k in (8, 32, 128) if k < smallest)
            cuts.append(
                f"K=all dropped: the grid stops at K={ks[-1]} per class, so its pick for the final model "
                f"(trained on all {len(pools.train) + len(pools.dev)} labels) is an extrapolation from there"
            )
            ks = sorted(set(ks))
        else:
            break
    data = raw["data"]
    shots = ["all" if k is None else k for k in ks]
    data["shots"] = shots if len(shots) > 1 else shots[0]
    if test_limit:
        data["test_limit"] = test_limit
    raw["seeds"] = list(range(seeds))
    if not builtin:
        found.insert(
            1,
            f"protocol: {len(pools.train) + len(pools.dev) + len(pools.test)} labelled examples: test (20%) and "
            f"dev (10%) held out; a learning curve at K = {', '.join(map(str, shots))} per class"
            + (
                ": the recommendation is made at all of train, the size the final model trains on"
                if ks[-1] is None
                else f" (an extrapolation to all of train from K={ks[-1]})"
            ),
        )
    quick = Quickstart(raw, found, cuts, cost())
    quick.found.append(
        f"grid: {len(rows)} strategies, K {shots}, {seeds} seed(s): "
        + ", ".join(f"{name} ({b})" for name, b in rows)
    )
    return quick


def validate_config_data(raw: dict):
    from taskfit.config import DataConfig

    return DataConfig.model_validate(raw["data"])


def _strategy_rows(rows: list[tuple[str, str]]) -> list[dict]:
    out: list[dict] = []
    for name, backbone in rows:
        same = next((r for r in out if r["name"] == name and name == "zero-shot"), None)
        if same is not None:  # one row, both backbones (as in the default grid)
            same["backbone"] = [same["backbone"], backbone]
            continue
        row: dict = {"name": name, "backbone": backbone}
        if name == "in-context":
            row["demos_per_class"] = 1  # this 135M model gets worse with more demonstrations
        if name == "contrastive":
            row["num_iterations"] = 5
        out.append(row)
    return out


def _plan_ner(raw: dict, pools, found: list[str], seconds: float) -> Quickstart:
    n = len(pools.train)
    ks = [k for k in (16, 32, 64) if k <= n] or [max(1, n)]
    seeds, cuts = 3, []
    per_cell = 3 + 0.5 * 8  # seconds per sentence of training (epochs included), measured on minilm

    def cost() -> float:
        return sum(seeds * (3 + per_cell * k / 8 * 3) for k in ks) * 2 / 2

    while cost() > seconds and (seeds > 1 or len(ks) > 1):
        if seeds > 1:
            seeds -= 1
            cuts.append(f"seeds: {seeds} instead of {seeds + 1}")
        else:
            cuts.append(f"K={ks.pop()} dropped")
    raw["data"]["shots"] = ks if len(ks) > 1 else ks[0]
    raw["seeds"] = list(range(seeds))
    raw["strategies"] = [
        {"name": "head-finetune", "backbone": "minilm"},
        {"name": "lora", "backbone": "minilm"},
    ]
    found.append(f"grid: head-finetune and lora taggers (minilm), K {ks} sentences, {seeds} seed(s)")
    return Quickstart(raw, found, cuts, cost())


def write_config(quick: Quickstart, source: str, path: Path, overwrite: bool = False) -> Path:
    if path.exists() and not overwrite:
        raise TaskfitError(f"{path} exists; choose another with --output, or --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(quick.config_yaml(source), encoding="utf-8")
    return path


def looks_like_data(arg: str) -> bool:
    """``taskfit compare ARG``: a data file or built-in dataset name rather than a YAML config."""
    from taskfit.data.catalog import builtin_names

    return arg in builtin_names() or Path(arg).suffix.lower() not in (".yaml", ".yml", "")
