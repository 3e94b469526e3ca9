"""From a data config to the exact train/dev/test lists one run sees.

The same (config, seed) always yields the same lists, so every strategy in an experiment is compared on
identical examples. The test set never depends on the seed.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from taskfit.config import DataConfig
from taskfit.data.catalog import card, load_builtin
from taskfit.data.readers import Columns, Example, read_examples
from taskfit.errors import TaskfitError, did_you_mean


@dataclass
class Splits:
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    labels: list[str]
    notes: list[str]  # what was done to the data, shown to the user


@dataclass
class Pools:
    """All labelled data before k-shot sampling (loaded once per experiment)."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]
    labels: list[str]
    notes: list[str]
    task: str = "classification"
    per_class: bool = True  # K examples of every label; ner: K sentences in all (a sentence has many types)
    # how cells choose and are ranked, data.selection resolved ("auto" decided on this data): "dev" or "cv"
    selection: str = "dev"


def k_shot(
    examples: list[Example],
    k: int,
    labels: list[str],
    seed: int,
    what: str = "train",
    allow_fewer: bool = False,
) -> list[Example]:
    """K examples per class, chosen with ``seed``; shuffled so classes are not in blocks.

    Nested across K: with one seed, the 8 shots of a class are among its 16 shots (each class is put in a
    seeded order and its first K taken), so a metric-vs-K curve measures more data, not another sample.
    ``allow_fewer`` takes all of a class that has fewer than K (used for dev sets) instead of failing.
    """
    by_label: dict[str, list[Example]] = {lab: [] for lab in labels}
    for e in examples:
        by_label[e.label].append(e)  # type: ignore[index]
    smallest = min(by_label, key=lambda lab: len(by_label[lab]))
    if k > len(by_label[smallest]) and not allow_fewer:
        raise TaskfitError(
            f"K={k} examples per class is more than the {what} split has for label '{smallest}' "
            f"({len(by_label[smallest])}). Nearest valid K: {len(by_label[smallest])}; "
            f"or set shots: null to use all examples."
        )
    chosen = []
    for lab in labels:
        order = by_label[lab][:]
        random.Random(f"{seed}/{lab}").shuffle(order)
        chosen.extend(order[:k])
    random.Random(seed).shuffle(chosen)
    return chosen


def _carve(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Stratified split of ``examples`` into (rest, carved)."""
    rng = random.Random(seed)
    by_label: dict[str | None, list[Example]] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e)
    rest, carved = [], []
    for group in by_label.values():
        group = group[:]
        rng.shuffle(group)
        n = max(1, round(len(group) * fraction)) if len(group) > 1 else 0
        carved.extend(group[:n])
        rest.extend(group[n:])
    return rest, carved


def _check_labels(split: list[Example], labels: list[str], name: str) -> None:
    for e in split:
        if e.label not in labels:
            raise TaskfitError(
                f"{e.source}: label '{e.label}' in {name} does not occur in train (labels: {', '.join(labels)})."
                + did_you_mean(e.label or "", labels)
            )


def load_classification_pools(cfg: DataConfig) -> Pools:
    """Labelled texts (a built-in or files); dev/test carved from train (stratified) when not given."""
    notes: list[str] = []
    selection = "dev"
    if cfg.dataset:
        ds = _builtin(cfg, "classification", "", "duplicates", notes)
        notes[-1] += f" and {ds.conflicts_dropped} conflicting texts"
        train, dev, test = ds.train, ds.dev, ds.test
        labels = list(cfg.labels or ds.card.labels)
    else:
        cols = Columns(text=cfg.columns.text, label=cfg.columns.label, text_pair=cfg.columns.text_pair)
        train = read_examples(cfg.train, cols, cfg.format)  # type: ignore[arg-type]
        dev = read_examples(cfg.dev, cols, cfg.format) if cfg.dev else []
        test = read_examples(cfg.test, cols, cfg.format) if cfg.test else []
        found = sorted({e.label for e in train})  # type: ignore[type-var]
        if cfg.labels:
            missing = [lab for lab in cfg.labels if lab not in found]
            if missing:
                raise TaskfitError(f"data.labels names {missing} but train has only {', '.join(found)}")
            labels = list(cfg.labels)
        else:
            labels = found
        if len(labels) < 2:
            raise TaskfitError(
                f"{cfg.train}: classification needs at least 2 labels; train has only {labels}"
            )
        smallest = min(label_counts(train).values())
        if few_labels(cfg, len(train), len(labels), smallest):  # true few-shot: every label in the folds
            selection = "cv"
            notes.append(
                f"{len(train)} labelled examples and no dev file: nothing held out"
                + ("" if test else " (no test either)")
                + f"; {cfg.folds}-fold cross-validation over all of them chooses and estimates"
            )
            single = [lab for lab, n in label_counts(train).items() if n == 1]
            if single:
                notes.append(
                    f"label(s) {', '.join(map(repr, single))} have 1 labelled example: each sits in one fold, "
                    "whose fits never learn it (label a few more to measure it)"
                )
        else:
            train, dev, test = _hold_out(cfg, train, dev, test, notes, "examples")
    train, dev = _dedupe(cfg, train, dev, test, notes, "examples", "text")
    _check_labels(train, labels, "train")
    _check_labels(dev, labels, "dev")
    _check_labels(test, labels, "test")
    pools = Pools(train, dev, _limit_test(cfg, test, notes, "examples"), labels, notes)
    pools.selection = "cv" if cfg.selection == "cv" else selection
    return pools


FEW_PER_LABEL = 200  # data.selection: auto takes cv up to this many labelled examples per label ...
FEW_MAX = 2000  # ... and this many in all (the size up to which a final model is fitted unasked)


def few_labels(cfg: DataConfig, n_train: int, n_labels: int, smallest: int = 2) -> bool:
    """True few-shot: cross-validation over every label, nothing held out. For a file of the user's own with
    no dev file and a small labelled pool, with ``selection: cv``, or with ``auto`` (the default) when every
    label trains (``shots: all``, the one K; ``auto`` is resolved on the grid's data config, before cells).

    There, a 10% dev hold-out would rank on a handful of examples per label, a 20% test hold-out would be
    too small to check anything (80 examples give about ±9 points of accuracy at 95%) and both would be
    taken from the model's training data, while each of the 2k+1 fits per candidate is cheap: the folds use
    every label and are the estimate. A K grid (``shots: [8, 16]``) samples from the file, whose other
    examples can be held out, so auto keeps dev there. ``smallest``: the rarest label's count."""
    small = cfg.train is not None and not cfg.dev and n_train <= min(FEW_PER_LABEL * n_labels, FEW_MAX)
    # a label with one example stays in (issue 38: on a 40-row trec file ABBR had one, and carving dev and
    # test instead took 12 of the 40 labels): it sits in one fold, whose fits never learn it. A file with
    # fewer than two examples per label on average cannot make folds at all: it is held out as before (and
    # says which split comes out empty)
    small = small and (smallest >= 2 or n_train >= 2 * n_labels)
    if cfg.selection == "cv":
        return small
    return cfg.selection == "auto" and cfg.shot_grid() == [None] and small


def _hold_out(cfg: DataConfig, train, dev, test, notes: list[str], unit: str):
    """User files without a test or dev file: carve them out of train (stratified when labelled)."""
    given, carved = len(train), []
    if not test:
        train, test = _carve(train, 0.2, cfg.split_seed)
        notes.append(f"no test file: held out 20% of train ({len(test)} {unit}, split_seed={cfg.split_seed})")
        carved.append("test (20%)")
    if not dev:
        train, dev = _carve(train, 0.1, cfg.split_seed + 1)
        notes.append(f"no dev file: held out 10% of train ({len(dev)} {unit})")
        carved.append("dev (10%)")
    check_carved(cfg, train, dev, test, given, carved, unit)
    return train, dev, test


def check_carved(cfg: DataConfig, train, dev, test, given: int, carved: list[str], unit: str) -> None:
    """Say up front when holding out dev/test leaves a split empty (training would fail later, obscurely)."""
    if not carved:
        return
    for name, split in (("train", train), ("dev", dev), ("test", test)):
        if not split:
            raise TaskfitError(
                f"{cfg.train}: {name} has 0 {unit} after holding out {' and '.join(carved)} of its {given}; "
                f"give dev/test files (data.dev, data.test) or more data"
            )


def _dedupe(cfg: DataConfig, train, dev, test, notes: list[str], unit: str, what: str):
    if cfg.dedupe:
        train, dev, dropped = drop_cross_split_duplicates(train, dev, test)
        notes.append(
            f"dedupe: dropped {dropped['train']} train and {dropped['dev']} dev {unit} whose {what} also occurs "
            "in a later split (test is never changed)"
        )
    return train, dev


def _builtin(cfg: DataConfig, task: str, unit: str, dropped: str, notes: list[str]):
    """The built-in dataset the config names, refused when it is for another task; notes its split sizes."""
    ds = load_builtin(cfg.dataset)  # type: ignore[arg-type]
    if ds.card.task != task:
        raise TaskfitError(
            f"data.dataset '{cfg.dataset}' is a {ds.card.task} dataset; add 'task: {ds.card.task}' to the config, "
            f"or pick a {task} dataset (taskfit datasets lists them)"
        )
    notes.append(
        f"built-in '{cfg.dataset}': {len(ds.train)}/{len(ds.dev)}/{len(ds.test)} train/dev/test {unit}after "
        f"dropping {ds.duplicates_dropped} {dropped}"
    )
    return ds


def _limit_test(cfg: DataConfig, test: list[Example], notes: list[str], unit: str) -> list[Example]:
    if cfg.test_limit and cfg.test_limit < len(test):
        rng = random.Random(12345)  # fixed: the test subset never depends on the run seed
        test = sorted(rng.sample(test, cfg.test_limit), key=lambda e: e.source)
        notes.append(f"evaluating on a fixed subset of {len(test)} test {unit} (data.test_limit)")
    return test


def load_pair_pools(cfg: DataConfig) -> Pools:
    """Generation data: (input, target) pairs; dev/test carved at random when not given."""
    notes: list[str] = []
    if cfg.dataset:
        ds = _builtin(cfg, "generation", "pairs ", "repeated inputs", notes)
        train, dev, test = ds.train, ds.dev, ds.test
    else:
        c = cfg.columns
        cols = Columns(text=c.text, label=None, text_pair=c.text_pair, target=c.target, messages=c.messages)
        train = read_examples(cfg.train, cols, cfg.format)  # type: ignore[arg-type]
        dev = read_examples(cfg.dev, cols, cfg.format) if cfg.dev else []
        test = read_examples(cfg.test, cols, cfg.format) if cfg.test else []
        train, dev, test = _hold_out(cfg, train, dev, test, notes, "pairs")
    train, dev = _dedupe(cfg, train, dev, test, notes, "pairs", "input")
    return Pools(train, dev, _limit_test(cfg, test, notes, "pairs"), [], notes)


def load_ner_pools(cfg: DataConfig) -> Pools:
    """Tagged sentences (CoNLL or JSONL, or a built-in); labels are the entity types."""
    from taskfit.data.ner import entity_types, read_ner

    notes: list[str] = []
    if cfg.dataset:
        ds = _builtin(cfg, "ner", "sentences ", "duplicates", notes)
        train, dev, test = ds.train, ds.dev, ds.test
        types = list(cfg.labels or ds.card.labels)
    else:
        fmt = cfg.format if cfg.format in ("conll", "jsonl") else "auto"
        if cfg.format not in ("auto", "conll", "jsonl"):
            raise TaskfitError(
                f"data.format: {cfg.format} cannot hold NER data; use conll or jsonl (or auto)"
            )
        train = read_ner(cfg.train, cfg.columns, fmt)  # type: ignore[arg-type]
        dev = read_ner(cfg.dev, cfg.columns, fmt) if cfg.dev else []
        test = read_ner(cfg.test, cfg.columns, fmt) if cfg.test else []
        found = entity_types(train)
        if not found:
            raise TaskfitError(f"{cfg.train}: no entities in train (every tag is O)")
        types = list(cfg.labels or found)
        unknown = sorted(set(entity_types(dev + test)) - set(types))
        if unknown:
            raise TaskfitError(
                f"dev/test have entity type(s) {unknown} that train does not ({', '.join(types)}); "
                "add examples of them to train or remove them"
            )
        rng = random.Random(cfg.split_seed)  # sentences carved at random: there is no class to stratify by
        given, carved = len(train), []
        if not test:
            order = train[:]
            rng.shuffle(order)
            n = max(1, round(len(order) * 0.2))
            train, test = order[n:], order[:n]
            notes.append(
                f"no test file: held out 20% of train ({len(test)} sentences, split_seed={cfg.split_seed})"
            )
            carved.append("test (20%)")
        if not dev:
            order = train[:]
            rng.shuffle(order)
            n = max(1, round(len(order) * 0.1))
            train, dev = order[n:], order[:n]
            notes.append(f"no dev file: held out 10% of train ({len(dev)} sentences)")
            carved.append("dev (10%)")
        check_carved(cfg, train, dev, test, given, carved, "sentences")
    train, dev = _dedupe(cfg, train, dev, test, notes, "sentences", "text")
    return Pools(train, dev, _limit_test(cfg, test, notes, "sentences"), types, notes, "ner", per_class=False)


def k_pairs(examples: list[Example], k: int, seed: int, what: str = "train", allow_fewer: bool = False):
    """K pairs chosen with ``seed``, nested across K (a seeded order, its first K)."""
    if k > len(examples) and not allow_fewer:
        raise TaskfitError(
            f"K={k} pairs is more than the {what} split has ({len(examples)}). Nearest valid K: "
            f"{len(examples)}; or set shots: null to use all of them."
        )
    order = examples[:]
    random.Random(f"{seed}/pairs").shuffle(order)
    return order[:k]


def drop_cross_split_duplicates(
    train: list[Example], dev: list[Example], test: list[Example]
) -> tuple[list[Example], list[Example], dict[str, int]]:
    """Train loses texts (normalised case and whitespace) found in dev or test; dev loses those in test."""
    from taskfit.data.catalog import normalise

    in_test = {normalise(e.text) for e in test}
    kept_dev = [e for e in dev if normalise(e.text) not in in_test]
    later = in_test | {normalise(e.text) for e in kept_dev}
    kept_train = [e for e in train if normalise(e.text) not in later]
    return kept_train, kept_dev, {"train": len(train) - len(kept_train), "dev": len(dev) - len(kept_dev)}


def sample_splits(pools: Pools, cfg: DataConfig, seed: int) -> Splits:
    train, dev, notes = pools.train, pools.dev, list(pools.notes)
    if not pools.labels or not pools.per_class:  # generation, ner: K pairs/sentences in all
        if cfg.k is not None:
            train = k_pairs(pools.train, cfg.k, seed, "train")
        dev_k = cfg.dev_shots or cfg.k
        if dev_k is not None:
            dev = k_pairs(pools.dev, dev_k, seed + 10_000, "dev", allow_fewer=True)
        return Splits(train, dev, pools.test, list(pools.labels), notes)
    if cfg.k is not None:
        train = k_shot(pools.train, cfg.k, pools.labels, seed, "train")
    dev_k = cfg.dev_shots or cfg.k
    if dev_k is not None:
        dev = k_shot(pools.dev, dev_k, pools.labels, seed + 10_000, "dev", allow_fewer=True)
        short = {lab: n for lab, n in label_counts(pools.dev).items() if n < dev_k}
        if short:
            notes.append(f"dev has fewer than {dev_k} examples for {short}: all of them are used")
    return Splits(train, dev, pools.test, pools.labels, notes)


def label_counts(examples: list[Example]) -> Counter:
    return Counter(e.label for e in examples)


def default_prompt_fields(cfg: DataConfig) -> dict | None:
    """A built-in dataset's template and verbalizer, used when the config has no prompt block."""
    if not cfg.dataset:
        return None
    c = card(cfg.dataset)
    return {"template": c.template, "verbalizer": c.verbalizer, "label_descriptions": c.label_descriptions}
