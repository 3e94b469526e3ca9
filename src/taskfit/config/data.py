"""Where a run's examples come from: the files or built-in dataset, their columns, and the K-shot grid."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from taskfit.config.base import Strict


class ColumnsConfig(Strict):
    text: str = "text"
    label: str = "label"
    text_pair: str | None = None
    target: str = Field("target", description="generation: the output text column")
    messages: str | None = Field(
        None,
        description="generation: a column of chat messages [{role, content}, ...]; the last (assistant) "
        "message is the target",
    )
    # task: ner (JSONL): tokens + tags, or text + character-offset entities
    tokens: str = Field("tokens", description="ner: the column of words (a list)")
    tags: str = Field("tags", description="ner: the column of tags, one per word (BIO, IOBES or IO)")
    entities: str = Field(
        "entities", description="ner: the column of [{start, end, type}] character offsets into text"
    )


Shots = Annotated[int, Field(ge=1)] | Literal["all"] | None


class DataConfig(Strict):
    """Where examples come from and how many of them a run sees."""

    dataset: str | None = Field(None, description="built-in dataset name (taskfit datasets lists them)")
    train: str | None = Field(
        None, description="CSV/TSV/JSONL file, saved HF dataset folder, or hub name[:split]"
    )
    dev: str | None = None
    test: str | None = None
    format: Literal["auto", "csv", "tsv", "jsonl", "hf", "conll"] = Field(
        "auto", description="conll: one 'token tag' per line, blank line between sentences (task: ner)"
    )
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    labels: list[str] | None = Field(None, description="label order; default: sorted labels of train")
    shots: Shots | list[Shots] = Field(
        16,
        description="K examples per class drawn from train (generation: K pairs in all; ner: K sentences in "
        "all; all or null = every example); a list is a grid",
    )
    dev_shots: int | None = Field(None, ge=1, description="K per class for the dev set; default = shots")
    test_limit: int | None = Field(
        None, ge=1, description="evaluate on a fixed subset of this many test examples"
    )
    split_seed: int = Field(0, description="seed for carving dev/test out of train when they are not given")
    selection: Literal["auto", "dev", "cv"] | None = Field(
        "auto",
        description="how a cell makes its choices (epochs, calibration) and scores itself for the ranking: dev "
        "(the dev sample) or cv (stratified k folds over train + dev, then a fit on all of them; for a file of "
        "your own with no dev file and at most 200 examples per label, 2000 in all, nothing is held out: the "
        "folds are the estimate); auto (default): cv for such a file with shots: all, else dev",
    )
    folds: int = Field(5, ge=2, le=20, description="with selection: cv, the number of folds")
    dedupe: bool = Field(
        False,
        description="drop from train (and dev) texts that also occur in a later split (never from test)",
    )
    no_relation_label: str | None = Field(
        None,
        description="task relation: the label meaning 'no relation' (e.g. no_relation, Other), left out of "
        "micro- and macro-F1 as relation-extraction papers score",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.dataset is None) == (self.train is None):
            raise ValueError("set exactly one of data.dataset (built-in) or data.train (your file)")
        if isinstance(self.shots, list):
            if not self.shots:
                raise ValueError("data.shots: an empty list; give at least one K (or all)")
            if len(set(map(str, self.shots))) != len(self.shots):
                raise ValueError(f"data.shots lists a K twice: {self.shots}")
        return self

    def shot_grid(self) -> list[int | None]:
        """The K values of the grid, smallest first; None means all of train."""
        values = self.shots if isinstance(self.shots, list) else [self.shots]
        ks = [None if v in (None, "all") else int(v) for v in values]
        return sorted(ks, key=lambda k: float("inf") if k is None else k)

    def for_shots(self, k: int | None) -> DataConfig:
        """This data config with one K (what a grid cell sees)."""
        return self.model_copy(update={"shots": k})

    @property
    def k(self) -> int | None:
        """The single K of a one-cell data config (None = all of train)."""
        if isinstance(self.shots, list):
            raise ValueError("data.shots is a grid; take one value with for_shots()")
        return None if self.shots in (None, "all") else int(self.shots)  # type: ignore[arg-type]
