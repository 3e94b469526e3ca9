"""Parameter-efficient fine-tuning of an encoder classifier: lora, ia3, prompt-tuning, prefix-tuning (through
peft), bitfit, adapter.

Each trains the task head plus a small part of the encoder, with the same loop as head-finetune, and saves
only what it trained: lora/ia3 in peft's own format (``adapter/adapter_config.json`` +
``adapter/adapter_model.safetensors``, loadable with plain ``peft.PeftModel.from_pretrained``) beside
``head.safetensors`` (prompt-tuning/prefix-tuning too); bitfit/adapter as ``trained.safetensors``. Reloading needs the same base backbone.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from taskfit.errors import TaskfitError
from taskfit.models.backbones import load_backbone
from taskfit.strategies.base import Context, write_strategy_file
from taskfit.strategies.head_finetune import EncoderClassifier, HeadFinetune

ADAPTER_DIR = "adapter"
HEAD_FILE = "head.safetensors"
TRAINED_FILE = "trained.safetensors"

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


def linear_module_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def check_targets(model: nn.Module, targets: list[str], what: str = "target_modules") -> None:
    """peft silently accepts names that match nothing in some versions; fail loudly, listing candidates."""
    names = linear_module_names(model)
    suffixes = sorted({".".join(n.split(".")[-k:]) for n in names for k in (1, 2) if n})
    for target in targets:
        if not any(n == target or n.endswith("." + target) for n in names):
            from taskfit.errors import did_you_mean

            raise TaskfitError(
                f"{what}: '{target}' matches no linear module of {type(model).__name__}."
                + did_you_mean(target, suffixes)
                + f" Candidates: {', '.join(suffixes)}"
            )


def load_peft_adapter(model: nn.Module, folder: Path):
    """peft's loader, but only from safetensors: it would fall back to unpickling adapter_model.bin."""
    from peft import PeftModel

    if not (Path(folder) / "adapter_model.safetensors").exists():
        raise TaskfitError(
            f"{folder}: no adapter_model.safetensors; taskfit loads adapter weights from safetensors only "
            "(a pickled adapter_model.bin can run code when loaded)"
        )
    return PeftModel.from_pretrained(model, str(folder))


LM_WEIGHTS_FILE = "model.safetensors"


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


def freeze_all_but_head(model: EncoderClassifier) -> None:
    model.encoder.requires_grad_(False)
    model.head.requires_grad_(True)


class PeftStrategy(HeadFinetune):
    """lora and ia3: the encoder becomes a peft model; only the adapter and the head train."""

    def peft_config(self, encoder: nn.Module):
        raise NotImplementedError

    def adapt(self) -> None:
        from peft import get_peft_model

        self.model.encoder = get_peft_model(self.model.encoder, self.peft_config(self.model.encoder))
        self.model.head.requires_grad_(True)

    save_embedding_layers: bool | str = "auto"  # peft's default: the whole matrix when the vocabulary grew

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.encoder.save_pretrained(  # peft's format: config + safetensors
            directory / ADAPTER_DIR, save_embedding_layers=self.save_embedding_layers
        )
        save_file(
            {k: v.contiguous() for k, v in self.model.head.state_dict().items()}, str(directory / HEAD_FILE)
        )
        write_strategy_file(directory, self.config, self.ctx)

    @classmethod
    def load(cls, directory: Path, config, ctx: Context, saved: dict):

        strategy = cls.__new__(cls)
        strategy.config, strategy.ctx, strategy.log = config, ctx, []
        backbone = load_backbone(config.backbone, "encoder", ctx.backbones.trust_remote_code, "cpu")
        strategy.tokenizer = backbone.tokenizer
        strategy.model = strategy.build_model(backbone.model)  # the task's head on the base encoder
        strategy.model.encoder = load_peft_adapter(strategy.model.encoder, directory / ADAPTER_DIR)
        strategy.model.head.load_state_dict(load_file(str(directory / HEAD_FILE)))
        from taskfit.models.backbones import resolve_device

        strategy.device = resolve_device(ctx.backbones.device)
        strategy.model.to(strategy.device)
        return strategy


def lora_config(settings, encoder: nn.Module):
    """peft's LoraConfig from taskfit's LoRA settings (r, alpha, lora_dropout, target_modules): the lora
    strategy's and continual learning's per-task adapters."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=resolve_targets(encoder, settings.target_modules, ATTENTION_TARGETS),
        bias="none",
    )


class Lora(PeftStrategy):
    def peft_config(self, encoder: nn.Module):
        return lora_config(self.config, encoder)


class IA3(PeftStrategy):
    def peft_config(self, encoder: nn.Module):
        from peft import IA3Config

        c = self.config
        targets = resolve_targets(encoder, c.target_modules, ATTENTION_TARGETS)
        if c.feedforward_modules:
            check_targets(encoder, c.feedforward_modules, "feedforward_modules")
        return IA3Config(target_modules=targets, feedforward_modules=c.feedforward_modules)


class PromptLearning(PeftStrategy):
    """prompt-tuning and prefix-tuning: trainable virtual tokens; the whole encoder stays frozen."""

    def _batch(self, examples):
        batch = super()._batch(examples)
        batch.pop("token_type_ids", None)  # peft ignores them with virtual tokens (and warns each call)
        return batch


class PromptTuning(PromptLearning):
    """Soft prompt (Lester et al. 2021): virtual-token embeddings prepended to the input embeddings."""

    def peft_config(self, encoder: nn.Module):
        from peft import PromptTuningConfig, PromptTuningInit, TaskType

        c = self.config
        init = PromptTuningInit.SAMPLE_VOCAB if c.init == "sample-vocab" else PromptTuningInit.RANDOM
        return PromptTuningConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            num_virtual_tokens=c.num_virtual_tokens,
            prompt_tuning_init=init,
        )


class PrefixTuning(PromptLearning):
    """Prefix tuning (Li & Liang 2021): trainable keys and values prepended in every attention layer."""

    def peft_config(self, encoder: nn.Module):
        from peft import PrefixTuningConfig, TaskType

        c = self.config
        return PrefixTuningConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            num_virtual_tokens=c.num_virtual_tokens,
            prefix_projection=c.prefix_projection,
            encoder_hidden_size=c.projection_size,
        )


class TrainedSubset(HeadFinetune):
    """bitfit and adapter: save and reload only the parameters that train."""

    def trained_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        params = dict(self.model.named_parameters())
        save_file(
            {n: params[n].detach().contiguous().cpu() for n in self.trained_names()},
            str(directory / TRAINED_FILE),
        )
        write_strategy_file(directory, self.config, self.ctx)

    @classmethod
    def load(cls, directory: Path, config, ctx: Context, saved: dict):
        strategy = cls(config, ctx)  # base backbone + fresh trainable parts, then the trained values
        state = load_file(str(directory / TRAINED_FILE))
        missing = set(strategy.trained_names()) - set(state)
        if missing:
            raise TaskfitError(
                f"{directory / TRAINED_FILE} lacks {len(missing)} trained tensors, e.g. {sorted(missing)[0]}"
            )
        strategy.model.load_state_dict(state, strict=False)
        return strategy


class BitFit(TrainedSubset):
    def adapt(self) -> None:
        freeze_all_but_head(self.model)
        biases = [p for n, p in self.model.encoder.named_parameters() if n.endswith(".bias")]
        if not biases:
            raise TaskfitError(f"bitfit: {type(self.model.encoder).__name__} has no bias terms to train")
        for p in biases:
            p.requires_grad_(True)


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


class Adapter(TrainedSubset):
    def adapt(self) -> None:
        c, encoder = self.config, self.model.encoder
        freeze_all_but_head(self.model)
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
        self.log.append({"event": "adapters", "count": wrapped, "bottleneck": bottleneck})
