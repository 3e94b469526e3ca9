"""A grid experiment as a list of cells, each keyed by a hash of everything that decides its result.

A cell is one (strategy, backbone, K, seed). Strategies that use no training data (zero-shot without a prompt
search) give one cell with K=0 and no seed: their answer cannot change across the grid.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from taskfit.compare.search import parallel_trials_key
from taskfit.config import ExperimentConfig, PromptConfig, StrategyBase
from taskfit.data.prepare import Pools, default_prompt_fields, sample_splits
from taskfit.errors import TaskfitError
from taskfit.models.backbones import detect_kind, resolve_device
from taskfit.registry import REGISTRY
from taskfit.tasks import get_task
from taskfit.training.dropout import uses_cheap_masks
from taskfit.training.precision import config_precision

CELL_FORMAT = 1  # bump when a change to taskfit makes old cells incomparable


@dataclass(frozen=True)
class Cell:
    strategy: StrategyBase
    shots: int | None  # K per class; None = all of train; 0 = the strategy uses no training data
    seed: int | None  # None: the result does not depend on the seed
    key: str  # hash of the resolved cell config: a finished cell with the same key is not run again
    path: str  # folder under the output dir, e.g. "lora/minilm/k16/seed-0"
    # a K=0 cell of a cross-validated grid: the (K, seed) labelled pools it also predicts (``scored_pools``)
    pools: tuple[tuple[int | None, int], ...] = ()
    # what the cell's own held-out choices are made on when not accuracy (``choice_metric``)
    choose_by: str | None = None
    # the label shares those choices are weighted to (``choice_prior``: (label, share) pairs), else ()
    prior: tuple[tuple[str, float], ...] = ()

    @property
    def label(self) -> str:
        seed = "" if self.seed is None else f" | seed {self.seed}"
        return f"{self.strategy.run_id} | {self.strategy.backbone} | K={shots_label(self.shots)}{seed}"


def shots_label(k: int | None) -> str:
    return "all" if k is None else str(k)


def uses_shots(strategy: StrategyBase) -> bool:
    """Whether a strategy's result can change with the k-shot sample (zero-shot without search can't)."""
    entry = REGISTRY.entry_of(strategy)
    return entry.uses_examples or strategy.searches_prompts()


def scored_pools(config: ExperimentConfig) -> tuple[tuple[int | None, int], ...]:
    """The (K, seed) labelled pools a K=0 cell predicts in a cross-validated grid: every pool the trained
    cells choose on. Scored on them (rather than on a dev sample of its own), a row that learns nothing is
    ranked on the same examples as the cross-validated rows and can join their out-of-fold ensembles
    (its predictions on a pool it never trained on are out of fold by construction)."""
    if config.data.selection != "cv" or not any(uses_shots(s) for s in config.strategies):
        return ()
    return tuple((k, seed) for k in config.data.shot_grid() for seed in config.seeds)


def pool_name(k: int | None, seed: int) -> str:
    """How a K=0 cell's ``pool_predictions`` name one (K, seed) pool: "16/0", "all/2"."""
    return f"{shots_label(k)}/{seed}"


def resolve_prompt(config: ExperimentConfig, labels: list[str] | None = None) -> ExperimentConfig:
    """Fill in the built-in dataset's prompt when the config has none; with ``labels``, also the label
    descriptions encoder zero-shot needs, derived from the label names (``pos`` -> "positive").

    Derived descriptions are added only where they change what zero-shot would embed (an abbreviated label
    with no description or verbalizer word), so grids that never relied on them keep their cell keys."""
    if config.prompt is None:
        fields = default_prompt_fields(config.data)
        if fields:
            config = config.model_copy(update={"prompt": PromptConfig(**fields)})
    if labels is None or not get_task(config.task).describes_labels:
        return config
    if not any(s.name == "zero-shot" for s in config.strategies):
        return config
    from taskfit.quickstart import derive_prompt, derived_label_descriptions

    derived = derived_label_descriptions(config.prompt, list(labels))
    if not derived:
        return config
    if config.prompt is None:  # an encoder-only grid with no prompt block: the whole prompt from the names
        return config.model_copy(update={"prompt": PromptConfig(**derive_prompt(list(labels)))})
    descriptions = {**config.prompt.label_descriptions, **derived}
    prompt = config.prompt.model_copy(update={"label_descriptions": descriptions})
    return config.model_copy(update={"prompt": prompt})


def check_update(config: ExperimentConfig) -> None:
    """``from: RUN_DIR``: the saved run exists and every strategy continues it (same strategy and backbone).
    Checked here, not by the config's validators, because it reads the saved run from disk."""
    if config.from_run is None:
        return
    from taskfit.continual.incremental import check_saved_run

    for i, strategy in enumerate(config.strategies):
        check_saved_run(config.from_run, strategy, where=f"strategies.{i}")


def validate_plan(config: ExperimentConfig, pools: Pools) -> None:
    """Reject what cannot work before anything trains: a saved run that the update cannot continue, a
    strategy on the wrong kind of backbone, a bad template or verbalizer, a K larger than the data allows."""
    check_update(config)
    resolve_device(config.device)
    kinds: dict[str, str] = {}
    needs_prompt = False
    for s in config.strategies:
        if s.backbone not in kinds:
            kinds[s.backbone] = detect_kind(s.backbone, config.trust_remote_code)
        kind = kinds[s.backbone]
        entry = REGISTRY.entry_of(s)
        if not entry.accepts(kind):
            wanted = entry.kinds[0]
            raise TaskfitError(
                f"strategy '{s.run_id}' needs {_article(wanted)} {wanted} backbone, but '{s.backbone}' is "
                f"{_article(kind)} {kind}"
                + (" (try backbone: smollm2)" if wanted == "causal-lm" else " (try backbone: minilm)")
            )
        needs_prompt |= kind == "causal-lm"
        augment = s.augmentation()
        if augment is not None:
            check_augment(s.run_id, augment, config.trust_remote_code, kinds)
    get_task(config.task).check_prompt(config.prompt, pools.labels, needs_prompt)
    if any(uses_shots(s) for s in config.strategies):
        for k in config.data.shot_grid():
            for seed in config.seeds:
                sample_splits(pools, config.data.for_shots(k), seed)  # raises on a K the data cannot give


def check_augment(run_id: str, augment, trust_remote_code: bool, kinds: dict[str, str]) -> None:
    """Before anything trains: synonyms alone without WordNet, or a paraphraser that is not a causal LM."""
    from taskfit.data.augment import usable_ops

    usable_ops(augment)  # raises when nothing could run
    if "paraphrase" in augment.ops:
        name = augment.paraphrase.backbone
        if name not in kinds:
            kinds[name] = detect_kind(name, trust_remote_code)
        if kinds[name] != "causal-lm":
            raise TaskfitError(
                f"strategy '{run_id}': augment.paraphrase.backbone '{name}' is {_article(kinds[name])} "
                f"{kinds[name]}; paraphrasing needs a causal LM with a chat template (try smollm2)"
            )


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def data_fingerprint(pools: Pools) -> str:
    """Hash of the examples themselves: an edited data file makes its cells stale."""
    h = hashlib.sha256()
    for name, split in (("train", pools.train), ("dev", pools.dev), ("test", pools.test)):
        h.update(name.encode())
        for e in split:
            fields = [e.text, e.text_pair, e.label]
            if e.target is not None:  # generation (classification hashes stay as they were)
                fields += [e.target, [list(turn) for turn in e.history]]
            if hasattr(e, "key_fields"):  # relation spans, QA answers
                fields += e.key_fields()
            if getattr(e, "tags", None):  # ner: the words and their tags
                fields += [list(e.tokens), list(e.tags)]
            h.update(json.dumps(fields, ensure_ascii=False).encode())
    h.update(json.dumps(pools.labels).encode())
    return h.hexdigest()


def _slug(backbone: str) -> str:
    """A readable folder name for a backbone: a name, a hub id (org--name) or a local folder's basename."""
    tail = backbone.rstrip("/").split("/")[-1] if "/" in backbone and backbone.count("/") > 1 else backbone
    return re.sub(r"[^A-Za-z0-9._-]+", "--", tail).strip("-") or "backbone"


# Options added after cells were first keyed: left out of the key while off, so that older finished cells keep
# their keys; when set they are part of it (they change results), as every other strategy setting.
# max_length: None only in the prompting strategies (trained strategies always have a number, always keyed)
KEYED_WHEN_SET = ("augment", "adversarial", "max_length", "prompt_ensemble", "demo_sets")


def unset_options(strategy: StrategyBase) -> set[str]:
    dumped = strategy.model_dump(include=set(KEYED_WHEN_SET))
    return {k for k in KEYED_WHEN_SET if k in dumped and dumped[k] is None}


def unweighted(strategy: StrategyBase, k: int | None, per_class: bool, cv: bool) -> set[str]:
    """``class_weight`` (issue 36) left out of the key where it cannot change a result, so that finished
    cells keep their keys there: ``none`` (what every cell did before it existed), and a sample of K per
    class trained without folds (every label's weight is 1). Under cross-validation the folds' shares
    differ slightly, and ``shots: all`` holds the data's own shares: there it is keyed."""
    value = strategy.model_dump().get("class_weight")
    if value is None:
        return set()
    if value == "none" or (per_class and isinstance(k, int) and k > 0 and not cv):
        return {"class_weight"}
    return set()


def unset_data(data) -> set[str]:
    """Data options added after cells were first keyed, left out of the key while unset (as KEYED_WHEN_SET).
    An unresolved ``auto`` counts as unset: ``resolve_selection`` turns it into None or cv before planning."""
    return {"selection", "folds"} if data.selection in (None, "auto") else set()


def resolve_selection(config: ExperimentConfig, pools: Pools) -> ExperimentConfig:
    """``data.selection: auto`` decided on the loaded data (``Pools.selection``): cv, or else None, the
    unset value grids had before auto existed, so that their cells keep their keys. Cells then see the
    decision, whatever their own K."""
    if config.data.selection != "auto":
        return config
    chosen = "cv" if pools.selection == "cv" else None
    return config.model_copy(update={"data": config.data.model_copy(update={"selection": chosen})})


def update_fields(config: ExperimentConfig) -> dict:
    """An incremental update (from: RUN_DIR): what it starts from and how it limits forgetting."""
    return {
        "from": config.from_run,
        "old_data": config.old_data.model_dump(mode="json") if config.old_data else None,
        "continual": config.continual.model_dump(mode="json") if config.continual else None,
    }


def _chooses_on_held_out(config: ExperimentConfig, strategy: StrategyBase, k: int | None) -> bool:
    """A prompting strategy with ``calibration: auto`` under cross-validation: it chooses its calibration on
    held-out labels (in-context: the pool outside its demonstrations; otherwise the folds)."""
    return not (
        config.data.selection != "cv"
        or k == 0
        or not strategy.chooses_calibration()  # (selection: similar, per-query prefixes, never does)
        or strategy.search  # a search cell chooses on dev, never on the held-out pool
        or config.from_run  # an incremental update does not cross-validate
    )


CORRECTION_VERSION = (
    2  # in the cell key of a label cell: cells saved before it (or its temperature) run again
)


def _corrects_on_held_out(config: ExperimentConfig, off_too: bool = False) -> bool:
    """A label cell chooses its decision correction on held-out predictions (``compare.correction``);
    ``off_too``: whether it would, were ``correction`` on."""
    return get_task(config.task).corrects_decisions and not config.from_run and (off_too or config.correction)


def choice_metric(
    config: ExperimentConfig, strategy: StrategyBase, k: int | None, ranked_by: str
) -> str | None:
    """The metric a cell's own choices are made on when it must follow the grid's ranking metric: on a grid
    ranked by macro-F1 (imbalanced labels) a calibration or a decision correction chosen on accuracy can be
    the one macro-F1 then marks down (BENCHMARKS.md, issue 18: trec). None: accuracy, and the cell key
    unchanged."""
    if ranked_by == "accuracy":
        return None
    if not (_chooses_on_held_out(config, strategy, k) or _corrects_on_held_out(config)):
        return None
    return ranked_by


def choice_prior(
    config: ExperimentConfig, strategy: StrategyBase, k: int | None, prior: dict[str, float] | None
) -> dict[str, float] | None:
    """The data's label shares a label cell of a K-shot grid weights its held-out choices by (a one-prefix
    in-context cell's calibration, every cell's decision correction; importance weights, ``compare.prior``),
    when they are not the balanced shares of its pool: the grid
    ranks the rows at the data's shares, so the cell chooses at them too. On trec (K=16) the unweighted
    choice kept contextual on a seed where the weighted held-out gain of none was +0.074 and none was
    0.087 better on test (BENCHMARKS.md, issue 18). None: unweighted, and the cell key unchanged."""
    from taskfit.compare.cv import uses_one_prefix
    from taskfit.compare.prior import TOLERANCE

    one_prefix = uses_one_prefix(strategy) and _chooses_on_held_out(config, strategy, k)
    if not prior or k is None or not (one_prefix or _corrects_on_held_out(config)):
        return None
    if all(abs(share - 1 / len(prior)) <= TOLERANCE for share in prior.values()):
        return None  # balanced data: a K-shot pool already has its shares
    return {label: round(share, 6) for label, share in prior.items()}


def plan_cells(
    config: ExperimentConfig,
    fingerprint: str,
    ranked_by: str = "accuracy",
    prior: dict[str, float] | None = None,
) -> list[Cell]:
    """The grid's cells and their keys. ``ranked_by``: the grid's ranking metric (``selection.yardstick``),
    which only cells whose own choices follow it (``choice_metric``) record in their key; ``prior``: the
    labelled data's label shares, which cells that weight their choices by them record (``choice_prior``)."""
    slugs: dict[str, str] = {}
    for b in dict.fromkeys(s.backbone for s in config.strategies):
        slug = _slug(b)
        if slug in slugs.values():
            slug += "-" + hashlib.sha256(b.encode()).hexdigest()[:6]
        slugs[b] = slug
    cells = []
    task = get_task(config.task)
    precision = config_precision(config)
    cheap_masks = uses_cheap_masks(config.training.fast_dropout, resolve_device(config.device))
    pools = scored_pools(config)
    for s in config.strategies:
        if uses_shots(s):
            grid = [(k, seed) for k in config.data.shot_grid() for seed in config.seeds]
        else:
            grid = [(0, None)]
        for k, seed in grid:
            choose_by = choice_metric(config, s, k, ranked_by)
            weighted_by = choice_prior(config, s, k, prior)
            resolved = {
                "format": CELL_FORMAT,
                "strategy": s.model_dump(
                    mode="json",
                    exclude={
                        "id",
                        *unset_options(s),
                        *unweighted(s, k, task.per_class, config.data.selection == "cv"),
                    },
                ),
                "data": config.data.for_shots(k).model_dump(mode="json", exclude=unset_data(config.data))
                if k != 0
                else None,
                "data_fingerprint": fingerprint,
                "prompt": config.prompt.model_dump(mode="json") if config.prompt else None,
                "seed": seed,
                "device": config.device,
                "trust_remote_code": config.trust_remote_code,
                **({"task": config.task} if task.in_cell_key else {}),
                **(update_fields(config) if config.from_run else {}),
                **parallel_trials_key(config, s),  # only where batched trials change the proposals
                # precision changes results (auto: as resolved on this machine); checkpoints and trackers do not
                **({"mixed_precision": precision} if precision != "no" else {}),
                **({"dropout_masks": "cheap"} if cheap_masks else {}),
                # a K=0 cell of a cross-validated grid predicts the pools the data config and seeds draw
                **(
                    {"pools": {"data": config.data.model_dump(mode="json"), "seeds": config.seeds}}
                    if k == 0 and pools
                    else {}
                ),
                **({"choose_by": choose_by} if choose_by else {}),
                **({"choice_prior": weighted_by} if weighted_by else {}),
                # the decision correction changes a label cell's labels and scores (compare.correction)
                **(
                    {"correction": CORRECTION_VERSION if config.correction else False}
                    if _corrects_on_held_out(config, True)
                    else {}
                ),
            }
            key = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]
            path = f"{s.run_id}/{slugs[s.backbone]}/k{shots_label(k)}" + (
                "" if seed is None else f"/seed-{seed}"
            )
            shares = tuple(sorted(weighted_by.items())) if weighted_by else ()
            cells.append(Cell(s, k, seed, key, path, pools if k == 0 else (), choose_by, shares))
    return cells
