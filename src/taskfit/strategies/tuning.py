"""Tuning methods: what of a backbone trains, how that is saved, and how it is put back into a freshly built
model. A trained strategy is a task head (classifier, tagger, relation or span head) times one of these.

Every method works on a task model with an ``encoder`` (the backbone) and a ``head`` (a plain module):

  full           everything trains, less what the freeze options name; the whole model is saved
                 (``model.safetensors`` + the encoder's config and tokenizer, so it reloads without the backbone)
  lora, ia3      the encoder becomes a peft model; adapter + head train. Saved in peft's own format
                 (``adapter/``, loadable with plain ``peft.PeftModel.from_pretrained``) + ``head.safetensors``
  prompt-tuning, prefix-tuning
                 peft prompt learning: trained virtual tokens, the encoder frozen; saved as lora is
  bitfit         the encoder's bias terms + head; ``trained.safetensors`` holds just those
  adapter        Houlsby bottleneck adapters + head; ``trained.safetensors`` as bitfit

``new_tokens`` are vocabulary rows a task added (relation's entity markers): they must train even where the
embedding matrix is frozen. The causal-LM helpers at the end (``attach_tuning``/``save_tuning``) are the
generation and prompt-finetune strategies' version of the same choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from taskfit.errors import TaskfitError, did_you_mean

ADAPTER_DIR = "adapter"
HEAD_FILE = "head.safetensors"
TRAINED_FILE = "trained.safetensors"
WEIGHTS_FILE = "model.safetensors"
LM_WEIGHTS_FILE = "model.safetensors"

# Friendly target presets per architecture (model_type); "all-linear" is peft's own keyword.
ATTENTION_TARGETS = {
    "bert": ["query", "key", "value"],
    "roberta": ["query", "key", "value"],
    "distilbert": ["q_lin", "k_lin", "v_lin"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
# Houlsby adapters go on the projection that ends each sub-layer, before its residual add + LayerNorm.
ADAPTER_MODULES = {
    "bert": ["attention.output.dense", "output.dense"],
    "roberta": ["attention.output.dense", "output.dense"],
}


class TuningMethod(Protocol):
    """Decide what trains (``adapt``), save it, and put a saved run's weights back (``restore``)."""

    name: str
    virtual_tokens: bool  # peft prompt learning: the encoder's input gets virtual tokens (no token types)

    def backbone(self, config: Any, ctx: Any, saved_dir: Path | None) -> tuple[nn.Module, Any]:
        """(encoder, tokenizer) to build the task model on."""
        ...

    def adapt(self, model: nn.Module, log: list[dict], new_tokens: Sequence[int] = ()) -> None: ...

    def save(self, model: nn.Module, tokenizer: Any, directory: Path) -> None: ...

    def restore(
        self, model: nn.Module, directory: Path, log: list[dict], new_tokens: Sequence[int] = ()
    ) -> None:
        """Load a saved run's trained weights into a model ``backbone`` + the task head just built."""
        ...


# ---------------------------------------------------------------------------------------------------
# Helpers


def linear_module_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def check_targets(model: nn.Module, targets: list[str], what: str = "target_modules") -> None:
    """peft silently accepts names that match nothing in some versions; fail loudly, listing candidates."""
    names = linear_module_names(model)
    suffixes = sorted({".".join(n.split(".")[-k:]) for n in names for k in (1, 2) if n})
    for target in targets:
        if not any(n == target or n.endswith("." + target) for n in names):
            raise TaskfitError(
                f"{what}: '{target}' matches no linear module of {type(model).__name__}."
                + did_you_mean(target, suffixes)
                + f" Candidates: {', '.join(suffixes)}"
            )


def resolve_targets(model: nn.Module, targets, preset_table: dict[str, list[str]]) -> list[str] | str | None:
    model_type = getattr(model.config, "model_type", "")
    if targets == "all-linear":
        return "all-linear"
    if targets == "default":
        return None  # peft's own per-architecture default
    if targets == "attention":
        if model_type not in preset_table:
            raise TaskfitError(
                f"no 'attention' preset for model type '{model_type}'; name the modules in target_modules "
                f"(linear modules: {', '.join(sorted({n.split('.')[-1] for n in linear_module_names(model)}))})"
            )
        targets = preset_table[model_type]
    check_targets(model, list(targets))
    return list(targets)


def load_peft_adapter(model: nn.Module, folder: Path):
    """peft's loader, but only from safetensors: it would fall back to unpickling adapter_model.bin."""
    from peft import PeftModel

    if not (Path(folder) / "adapter_model.safetensors").exists():
        raise TaskfitError(
            f"{folder}: no adapter_model.safetensors; taskfit loads adapter weights from safetensors only "
            "(a pickled adapter_model.bin can run code when loaded)"
        )
    return PeftModel.from_pretrained(model, str(folder))


def lora_config(settings, encoder: nn.Module):
    """peft's LoraConfig from taskfit's LoRA settings (r, alpha, lora_dropout, target_modules): the lora
    tuning method's and continual learning's per-task adapters."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=resolve_targets(encoder, settings.target_modules, ATTENTION_TARGETS),
        bias="none",
    )


def freeze(model: nn.Module, embeddings: bool, bottom_layers: int) -> None:
    encoder = model.encoder
    if embeddings:
        for p in encoder.get_input_embeddings().parameters():
            p.requires_grad_(False)
        emb_module = getattr(encoder, "embeddings", None)
        if emb_module is not None:  # BERT-style: positions, token types and their LayerNorm too
            for p in emb_module.parameters():
                p.requires_grad_(False)
    if bottom_layers:
        layers = _encoder_layers(encoder)
        if bottom_layers > len(layers):
            raise TaskfitError(
                f"freeze_layers={bottom_layers}, but the encoder has only {len(layers)} layers"
            )
        for layer in layers[:bottom_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)


def _encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    for path in ("encoder.layer", "layers", "transformer.layer", "h"):
        obj = encoder
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise TaskfitError(f"cannot find the layer list of {type(encoder).__name__} to freeze")


def freeze_all_but_head(model: nn.Module) -> None:
    model.encoder.requires_grad_(False)
    model.head.requires_grad_(True)


def train_new_tokens(encoder: nn.Module, token_ids: Sequence[int]) -> None:
    """New vocabulary rows must train even where the embeddings are frozen (bitfit, adapter,
    freeze_embeddings). peft's trainable-tokens layer trains (and saves) just those rows."""
    if not token_ids:
        return
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    embeddings = encoder.get_input_embeddings()
    if isinstance(embeddings, TrainableTokensLayer) or embeddings.weight.requires_grad:
        return
    layer = TrainableTokensLayer(embeddings, "default")
    layer.update_layer("default", token_indices=list(token_ids))
    encoder.set_input_embeddings(layer)


def _base_backbone(config, ctx) -> tuple[nn.Module, Any]:
    from taskfit.models.backbones import load_backbone

    backbone = load_backbone(config.backbone, "encoder", ctx.backbones.trust_remote_code, "cpu")
    return backbone.model, backbone.tokenizer


# ---------------------------------------------------------------------------------------------------
# Methods


class OnBaseBackbone:
    """What full fine-tuning, bitfit and adapters share: built on the pretrained backbone, no virtual tokens."""

    name = "base"
    virtual_tokens = False

    def __init__(self, config) -> None:
        self.config = config

    def backbone(self, config, ctx, saved_dir: Path | None) -> tuple[nn.Module, Any]:
        return _base_backbone(config, ctx)


class FullFinetune(OnBaseBackbone):
    """Everything trains, less what freeze_encoder/freeze_embeddings/freeze_layers name."""

    name = "full"

    def backbone(self, config, ctx, saved_dir: Path | None) -> tuple[nn.Module, Any]:
        if saved_dir is None:
            return _base_backbone(config, ctx)
        # a saved run holds the whole model: architecture from its config, weights from its safetensors
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        return AutoModel.from_config(AutoConfig.from_pretrained(saved_dir)), AutoTokenizer.from_pretrained(
            saved_dir
        )

    def adapt(self, model: nn.Module, log: list[dict], new_tokens: Sequence[int] = ()) -> None:
        c = self.config
        if c.freeze_encoder:
            model.encoder.requires_grad_(False)
        freeze(model, c.freeze_embeddings, c.freeze_layers)
        train_new_tokens(model.encoder, new_tokens)

    def save(self, model: nn.Module, tokenizer, directory: Path) -> None:
        from taskfit.io import save_safetensors_atomic

        directory.mkdir(parents=True, exist_ok=True)
        model.encoder.config.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        save_safetensors_atomic(model, directory / WEIGHTS_FILE)

    def restore(
        self, model: nn.Module, directory: Path, log: list[dict], new_tokens: Sequence[int] = ()
    ) -> None:
        from safetensors.torch import load_model

        self.adapt(model, log, new_tokens)
        load_model(model, str(directory / WEIGHTS_FILE), device="cpu")


class PeftTuning:
    """lora, ia3, prompt-tuning, prefix-tuning: the encoder becomes a peft model; only it and the head train."""

    virtual_tokens = False

    def __init__(self, name: str, config) -> None:
        self.name, self.config = name, config
        self.virtual_tokens = name in ("prompt-tuning", "prefix-tuning")
        self.new_tokens: list[int] = []

    def backbone(self, config, ctx, saved_dir: Path | None) -> tuple[nn.Module, Any]:
        return _base_backbone(config, ctx)  # the adapter needs the same base backbone

    def peft_config(self, encoder: nn.Module):
        c = self.config
        if self.name == "lora":
            config = lora_config(c, encoder)
            # peft trains (and saves with the adapter) the new rows of the otherwise frozen embedding matrix
            return replace(config, trainable_token_indices=self.new_tokens) if self.new_tokens else config
        if self.new_tokens:
            raise TaskfitError(f"{self.name} cannot train new vocabulary rows; use lora, bitfit or adapter")
        if self.name == "ia3":
            from peft import IA3Config

            targets = resolve_targets(encoder, c.target_modules, ATTENTION_TARGETS)
            if c.feedforward_modules:
                check_targets(encoder, c.feedforward_modules, "feedforward_modules")
            return IA3Config(target_modules=targets, feedforward_modules=c.feedforward_modules)
        if self.name == "prompt-tuning":  # soft prompt (Lester et al. 2021): virtual input embeddings
            from peft import PromptTuningConfig, PromptTuningInit, TaskType

            init = PromptTuningInit.SAMPLE_VOCAB if c.init == "sample-vocab" else PromptTuningInit.RANDOM
            return PromptTuningConfig(
                task_type=TaskType.FEATURE_EXTRACTION,
                num_virtual_tokens=c.num_virtual_tokens,
                prompt_tuning_init=init,
            )
        # prefix tuning (Li & Liang 2021): trainable keys and values prepended in every attention layer
        from peft import PrefixTuningConfig, TaskType

        return PrefixTuningConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            num_virtual_tokens=c.num_virtual_tokens,
            prefix_projection=c.prefix_projection,
            encoder_hidden_size=c.projection_size,
        )

    def adapt(self, model: nn.Module, log: list[dict], new_tokens: Sequence[int] = ()) -> None:
        from peft import get_peft_model

        self.new_tokens = list(new_tokens)
        model.encoder = get_peft_model(model.encoder, self.peft_config(model.encoder))
        model.head.requires_grad_(True)

    def save(self, model: nn.Module, tokenizer, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # peft's default ("auto") saves the whole embedding matrix when the vocabulary grew; new rows trained
        # as peft trainable tokens are saved with the adapter, the rest of the matrix is the base's
        model.encoder.save_pretrained(
            directory / ADAPTER_DIR, save_embedding_layers=False if self.new_tokens else "auto"
        )
        save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, str(directory / HEAD_FILE))

    def restore(
        self, model: nn.Module, directory: Path, log: list[dict], new_tokens: Sequence[int] = ()
    ) -> None:
        self.new_tokens = list(new_tokens)
        model.encoder = load_peft_adapter(model.encoder, directory / ADAPTER_DIR)
        model.head.load_state_dict(load_file(str(directory / HEAD_FILE)))


class Bottleneck(nn.Module):
    """Houlsby adapter: x + up(act(down(x))); ``up`` starts at zero, so training starts from the base model."""

    def __init__(self, hidden: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class WithAdapter(nn.Module):
    """Wraps a projection so that its output passes through an adapter."""

    def __init__(self, inner: nn.Linear, bottleneck: int) -> None:
        super().__init__()
        self.inner = inner
        self.adapter = Bottleneck(inner.out_features, bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.inner(x))


class TrainedSubset(OnBaseBackbone):
    """bitfit and adapter: the head plus a small part of the encoder train; save and reload only those."""

    name = "subset"

    def open_up(self, model: nn.Module, log: list[dict]) -> None:
        raise NotImplementedError

    def adapt(self, model: nn.Module, log: list[dict], new_tokens: Sequence[int] = ()) -> None:
        freeze_all_but_head(model)
        self.open_up(model, log)
        train_new_tokens(model.encoder, new_tokens)

    @staticmethod
    def trained_names(model: nn.Module) -> list[str]:
        return [n for n, p in model.named_parameters() if p.requires_grad]

    def save(self, model: nn.Module, tokenizer, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        params = dict(model.named_parameters())
        save_file(
            {n: params[n].detach().contiguous().cpu() for n in self.trained_names(model)},
            str(directory / TRAINED_FILE),
        )

    def restore(
        self, model: nn.Module, directory: Path, log: list[dict], new_tokens: Sequence[int] = ()
    ) -> None:
        self.adapt(model, log, new_tokens)  # base backbone + fresh trainable parts, then the trained values
        state = load_file(str(directory / TRAINED_FILE))
        missing = set(self.trained_names(model)) - set(state)
        if missing:
            raise TaskfitError(
                f"{directory / TRAINED_FILE} lacks {len(missing)} trained tensors, e.g. {sorted(missing)[0]}"
            )
        model.load_state_dict(state, strict=False)


class BitFitTuning(TrainedSubset):
    name = "bitfit"

    def open_up(self, model: nn.Module, log: list[dict]) -> None:
        biases = [p for n, p in model.encoder.named_parameters() if n.endswith(".bias")]
        if not biases:
            raise TaskfitError(f"bitfit: {type(model.encoder).__name__} has no bias terms to train")
        for p in biases:
            p.requires_grad_(True)


class AdapterTuning(TrainedSubset):
    name = "adapter"

    def open_up(self, model: nn.Module, log: list[dict]) -> None:
        c, encoder = self.config, model.encoder
        model_type = getattr(encoder.config, "model_type", "")
        suffixes = c.adapter_modules or ADAPTER_MODULES.get(model_type)
        if not suffixes:
            raise TaskfitError(
                f"adapter: no default placement for model type '{model_type}'; set adapter_modules to the "
                f"projections that end each sub-layer (linear modules: "
                f"{', '.join(sorted({n.split('.')[-1] for n in linear_module_names(encoder)}))})"
            )
        check_targets(encoder, suffixes, "adapter_modules")
        bottleneck = max(1, encoder.config.hidden_size // c.reduction_factor)
        wrapped = 0
        for name, module in list(encoder.named_modules()):
            if isinstance(module, nn.Linear) and any(name.endswith(s) for s in suffixes):
                parent = encoder.get_submodule(name.rsplit(".", 1)[0]) if "." in name else encoder
                setattr(parent, name.rsplit(".", 1)[-1], WithAdapter(module, bottleneck))
                wrapped += 1
        if c.train_layer_norm:
            for module in encoder.modules():
                if isinstance(module, nn.LayerNorm):
                    module.requires_grad_(True)
        log.append({"event": "adapters", "count": wrapped, "bottleneck": bottleneck})


TUNING_METHODS = ("full", "lora", "ia3", "prompt-tuning", "prefix-tuning", "bitfit", "adapter")


def tuning_method(name: str, config) -> TuningMethod:
    """The tuning method ``name`` (a registry entry's ``options["tuning"]``) with the strategy's settings."""
    if name == "full":
        return FullFinetune(config)
    if name in ("lora", "ia3", "prompt-tuning", "prefix-tuning"):
        return PeftTuning(name, config)
    if name == "bitfit":
        return BitFitTuning(config)
    if name == "adapter":
        return AdapterTuning(config)
    raise TaskfitError(
        f"unknown tuning method '{name}'; one of {', '.join(TUNING_METHODS)}"
        + did_you_mean(name, TUNING_METHODS)
    )


def tuning_of(config, default: str = "full") -> str:
    """The tuning method the registry names for a strategy config."""
    from taskfit.registry import REGISTRY

    return REGISTRY.entry_of(config).options.get("tuning", default)


# ---------------------------------------------------------------------------------------------------
# Causal LMs (generation, prompt-finetune): a peft wrapper, or the LM's own weights


def attach_tuning(lm: nn.Module, saved_dir: Path | None, make_peft_config=None, seed: int = 0):
    """A causal LM's trainable part: a peft wrapper (new from ``make_peft_config()``, initialised from ``seed``,
    or the saved adapter), or, with no peft config, the LM's own weights (restored from a saved run's
    safetensors). Returns the wrapper or None."""
    if make_peft_config is not None:
        if saved_dir is not None:
            return load_peft_adapter(lm, saved_dir / ADAPTER_DIR)
        from peft import get_peft_model

        torch.manual_seed(seed)  # the adapter's random init belongs to the run's seed, whatever ran before
        return get_peft_model(lm, make_peft_config())
    if saved_dir is not None:
        from safetensors.torch import load_model

        load_model(lm, str(saved_dir / LM_WEIGHTS_FILE), device=str(lm.device))
    return None


def save_tuning(directory: Path, peft_model, lm: nn.Module) -> None:
    """What ``attach_tuning`` reloads: the adapter alone, or the whole LM as safetensors."""
    from taskfit.io import save_safetensors_atomic

    directory.mkdir(parents=True, exist_ok=True)
    if peft_model is not None:
        peft_model.save_pretrained(directory / ADAPTER_DIR)
    else:
        save_safetensors_atomic(lm, directory / LM_WEIGHTS_FILE)
