"""The one table of strategies. Every per-task lookup in taskfit is derived from it.

A strategy is known by its task and name: ``lora`` means sequence-classification LoRA in ``classification``,
a tag layer over a LoRA backbone in ``ner`` and supervised fine-tuning in ``generation``. Each entry says
which config class validates its block, which class implements it (imported only when a cell runs, so that
``taskfit validate`` never imports torch), which backbone kinds it accepts, how a saved run is exported and
whether a saved run can be updated incrementally (``from:``).

Adding a strategy: its module, its config class, one ``StrategyEntry`` in ``ENTRIES`` (or ``register`` for a
plugin or a test).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from taskfit.config.classification import (
    AdapterStrategyConfig,
    BitFitConfig,
    ContrastiveConfig,
    HeadFinetuneConfig,
    IA3StrategyConfig,
    InContextConfig,
    LoraStrategyConfig,
    PrefixTuningStrategyConfig,
    PromptFinetuneConfig,
    PromptTuningStrategyConfig,
    ZeroShotConfig,
)
from taskfit.config.generation import (
    GenerationFullConfig,
    GenerationInContextConfig,
    GenerationLoraConfig,
    GenerationPromptTuningConfig,
    GenerationZeroShotConfig,
)
from taskfit.config.ner import (
    NerAdapterConfig,
    NerBitFitConfig,
    NerHeadFinetuneConfig,
    NerInContextConfig,
    NerLoraConfig,
    NerZeroShotConfig,
)
from taskfit.config.span import (
    QAHeadFinetuneConfig,
    QALoraConfig,
    RelationAdapterConfig,
    RelationBitFitConfig,
    RelationHeadFinetuneConfig,
    RelationLoraConfig,
)
from taskfit.errors import TaskfitError, did_you_mean
from taskfit.tasks.catalog import TASK_NAMES

TASKS = TASK_NAMES  # taskfit.tasks.catalog: the one list of task names
Kind = Literal["encoder", "causal-lm"]
EITHER: tuple[Kind, ...] = ("encoder", "causal-lm")
ENCODER: tuple[Kind, ...] = ("encoder",)
CAUSAL_LM: tuple[Kind, ...] = ("causal-lm",)
# How a saved run holds its trained weights, which decides what ``taskfit export`` can make of it:
#   full: a complete model (nothing to merge); peft: a mergeable peft adapter (lora, ia3);
#   virtual: peft prompt learning (virtual tokens, never mergeable); modules: Houlsby adapters (taskfit-only);
#   None: nothing trained (the backbone plus a prompt) or a head no plain transformers class holds.
ExportForm = Literal["full", "peft", "virtual", "modules"] | None
# What a strategy learns from its labelled examples, declared once: nothing (zero-shot: its result cannot
# change with the K-shot sample, one K=0 cell), the demonstrations it shows (in-context: the sample changes
# its prompt, no weight moves, nothing to export) or weights.
Learns = Literal["nothing", "demonstrations", "weights"]


@dataclass(frozen=True)
class StrategyEntry:
    task: str
    name: str
    config: type  # the pydantic model of its config block (a StrategyBase subclass)
    implementation: str  # "module:Class", imported on first use
    kinds: tuple[Kind, ...] = EITHER  # backbone kinds it accepts
    learns: Learns = "weights"
    export: ExportForm = None
    incremental: bool = False  # a saved run can be the start of a `from:` update
    options: dict[str, Any] = field(default_factory=dict)  # for the implementation, e.g. {"tuning": "lora"}

    @property
    def key(self) -> tuple[str, str]:
        return (self.task, self.name)

    @property
    def uses_examples(self) -> bool:
        """Whether its result can change with the K-shot sample (else: one K=0 cell)."""
        return self.learns != "nothing"

    @property
    def trains_weights(self) -> bool:
        """Whether a saved run holds weights it fitted (else the backbone plus a prompt: nothing to export)."""
        return self.learns == "weights"

    def load(self) -> type:
        """The implementing class (imports torch and the strategy's module)."""
        module, _, attr = self.implementation.partition(":")
        return getattr(importlib.import_module(module), attr)

    def accepts(self, kind: str) -> bool:
        return kind in self.kinds


def _e(task: str, name: str, config: type, implementation: str, **kw: Any) -> StrategyEntry:
    module = (
        implementation if implementation.startswith("taskfit.") else "taskfit.strategies." + implementation
    )
    return StrategyEntry(task, name, config, module, **kw)


# A trained strategy is a task head times a tuning method (``strategies.tuning``); options name the method.
FULL, LORA, IA3 = {"tuning": "full"}, {"tuning": "lora"}, {"tuning": "ia3"}
PROMPT_TUNING, PREFIX_TUNING = {"tuning": "prompt-tuning"}, {"tuning": "prefix-tuning"}
BITFIT, ADAPTER = {"tuning": "bitfit"}, {"tuning": "adapter"}

# fmt: off
ENTRIES: tuple[StrategyEntry, ...] = (
    # classification. head-finetune, lora, ia3, prompt-tuning and prefix-tuning take either kind: a causal LM
    # becomes a classifier on its last token's hidden state. bitfit needs bias terms (Llama-style LMs have
    # none); adapters and the SetFit recipe are defined for sentence encoders.
    _e("classification", "zero-shot", ZeroShotConfig, "zero_shot:ZeroShot", learns="nothing"),
    _e("classification", "in-context", InContextConfig, "in_context:InContext", kinds=CAUSAL_LM, learns="demonstrations"),
    _e("classification", "head-finetune", HeadFinetuneConfig, "head_finetune:HeadFinetune", options=FULL, export="full", incremental=True),
    _e("classification", "lora", LoraStrategyConfig, "head_finetune:HeadFinetune", options=LORA, export="peft", incremental=True),
    _e("classification", "ia3", IA3StrategyConfig, "head_finetune:HeadFinetune", options=IA3, export="peft", incremental=True),
    _e("classification", "prompt-tuning", PromptTuningStrategyConfig, "head_finetune:HeadFinetune", options=PROMPT_TUNING, export="virtual"),
    _e("classification", "prefix-tuning", PrefixTuningStrategyConfig, "head_finetune:HeadFinetune", options=PREFIX_TUNING, export="virtual"),
    _e("classification", "bitfit", BitFitConfig, "head_finetune:HeadFinetune", options=BITFIT, kinds=ENCODER, export="full", incremental=True),
    _e("classification", "adapter", AdapterStrategyConfig, "head_finetune:HeadFinetune", options=ADAPTER, kinds=ENCODER, export="modules", incremental=True),
    _e("classification", "contrastive", ContrastiveConfig, "contrastive:Contrastive", kinds=ENCODER, export="full"),
    _e("classification", "prompt-finetune", PromptFinetuneConfig, "prompt_finetune:PromptFinetune", kinds=CAUSAL_LM),
    # generation: a causal LM writes the target text
    _e("generation", "zero-shot", GenerationZeroShotConfig, "generation:GenerationPrompting", kinds=CAUSAL_LM, learns="nothing"),
    _e("generation", "in-context", GenerationInContextConfig, "generation:GenerationFewShot", kinds=CAUSAL_LM, learns="demonstrations"),
    _e("generation", "full-finetune", GenerationFullConfig, "supervised_finetune:SupervisedFinetune", options=FULL, kinds=CAUSAL_LM, export="full"),
    _e("generation", "lora", GenerationLoraConfig, "supervised_finetune:SupervisedFinetune", options=LORA, kinds=CAUSAL_LM, export="peft"),
    _e("generation", "prompt-tuning", GenerationPromptTuningConfig, "supervised_finetune:SupervisedFinetune", options=PROMPT_TUNING, kinds=CAUSAL_LM, export="virtual"),
    # ner: taggers read every token's hidden state (encoder or causal LM); the prompted ones generate
    _e("ner", "head-finetune", NerHeadFinetuneConfig, "ner:NerTagger", options=FULL),
    _e("ner", "lora", NerLoraConfig, "ner:NerTagger", options=LORA),
    _e("ner", "bitfit", NerBitFitConfig, "ner:NerTagger", options=BITFIT, kinds=ENCODER),
    _e("ner", "adapter", NerAdapterConfig, "ner:NerTagger", options=ADAPTER, kinds=ENCODER),
    _e("ner", "zero-shot", NerZeroShotConfig, "ner_prompting:NerPrompting", kinds=CAUSAL_LM, learns="nothing"),
    _e("ner", "in-context", NerInContextConfig, "ner_prompting:NerFewShot", kinds=CAUSAL_LM, learns="demonstrations"),
    # span tasks read encoder token states
    _e("relation", "head-finetune", RelationHeadFinetuneConfig, "relation:RelationStrategy", options=FULL, kinds=ENCODER),
    _e("relation", "lora", RelationLoraConfig, "relation:RelationStrategy", options=LORA, kinds=ENCODER),
    _e("relation", "bitfit", RelationBitFitConfig, "relation:RelationStrategy", options=BITFIT, kinds=ENCODER),
    _e("relation", "adapter", RelationAdapterConfig, "relation:RelationStrategy", options=ADAPTER, kinds=ENCODER),
    _e("extractive-qa", "head-finetune", QAHeadFinetuneConfig, "extractive_qa:SpanQA", options=FULL, kinds=ENCODER),
    _e("extractive-qa", "lora", QALoraConfig, "extractive_qa:SpanQA", options=LORA, kinds=ENCODER),
)
# fmt: on


class Registry:
    """Entries by (task, name). The module-level ``REGISTRY`` holds the built-in ones; a test or a plugin adds
    its own with ``register`` (and removes it with ``unregister``)."""

    def __init__(self, entries: Iterable[StrategyEntry]) -> None:
        self._entries: dict[tuple[str, str], StrategyEntry] = {}
        for entry in entries:
            self.register(entry)

    def register(self, entry: StrategyEntry) -> StrategyEntry:
        if entry.task not in TASKS:
            raise ValueError(f"unknown task '{entry.task}'; one of {', '.join(TASKS)}")
        if entry.key in self._entries:
            raise ValueError(f"strategy '{entry.name}' is already registered for task {entry.task}")
        name_field = entry.config.model_fields.get("name")
        if name_field is None or getattr(name_field.annotation, "__args__", (None,))[0] != entry.name:
            raise ValueError(f"{entry.config.__name__} must declare name: Literal['{entry.name}']")
        self._entries[entry.key] = entry
        return entry

    def unregister(self, task: str, name: str) -> None:
        self._entries.pop((task, name), None)

    def entries(self, task: str | None = None) -> list[StrategyEntry]:
        return [e for e in self._entries.values() if task is None or e.task == task]

    def names(self, task: str) -> list[str]:
        return [e.name for e in self.entries(task)]

    def get(self, task: str, name: str) -> StrategyEntry:
        entry = self._entries.get((task, name))
        if entry is None:
            names = self.names(task)
            raise TaskfitError(
                f"unknown strategy '{name}' (task: {task}); available: {', '.join(names)}."
                + did_you_mean(name, names)
            )
        return entry

    def configs(self, task: str) -> dict[str, type]:
        """Strategy name -> config class for a task."""
        return {e.name: e.config for e in self.entries(task)}

    def entry_of(self, config: Any) -> StrategyEntry:
        """The entry whose config class validated ``config`` (a config class belongs to one entry)."""
        for entry in self._entries.values():
            if type(config) is entry.config:
                return entry
        raise TaskfitError(f"{type(config).__name__} is not a registered strategy config")


PLUGIN_GROUP = "taskfit.strategies"  # the entry-point group an installed package registers strategies in


def load_plugins(registry: Registry) -> list[str]:
    """Register the strategies of installed packages: each entry point of the ``taskfit.strategies`` group
    names a ``StrategyEntry``, a list of them, or a function returning either. Done when this module is
    imported, so every process that runs cells (the default process executor's forkserver, Ray workers)
    knows the same strategies; one registered with ``REGISTRY.register`` at run time lives only in the
    process that registered it (``--in-process``). Returns the plugins' names."""
    from importlib.metadata import entry_points

    names = []
    for point in entry_points(group=PLUGIN_GROUP):
        try:
            value = point.load()
            value = value() if callable(value) and not isinstance(value, StrategyEntry) else value
        except Exception as exc:  # a broken plugin names itself instead of breaking every command obscurely
            raise TaskfitError(
                f"the taskfit plugin '{point.name}' ({point.value}, from the package that declares it) failed "
                f"to load: {type(exc).__name__}: {exc}; fix or uninstall it"
            ) from exc
        for entry in value if isinstance(value, list | tuple) else [value]:
            if not isinstance(entry, StrategyEntry):
                raise TaskfitError(
                    f"the taskfit plugin '{point.name}' ({point.value}) gave {type(entry).__name__}, not a "
                    "StrategyEntry"
                )
            if entry.key not in registry._entries:  # imported twice (a module reloaded): once is enough
                registry.register(entry)
        names.append(point.name)
    return names


REGISTRY = Registry(ENTRIES)
load_plugins(REGISTRY)  # installed packages' strategies, in every process that imports the registry
