"""Moved: the tuning methods and their helpers are in ``taskfit.strategies.tuning``; the classification
strategies that used them are ``HeadFinetune`` with a tuning method. These names stay importable from here
for modules written against the earlier layout (export, continual learning)."""

from taskfit.strategies.tuning import (
    ADAPTER_DIR,
    ADAPTER_MODULES,
    ATTENTION_TARGETS,
    HEAD_FILE,
    LM_WEIGHTS_FILE,
    TRAINED_FILE,
    Bottleneck,
    WithAdapter,
    attach_tuning,
    check_targets,
    linear_module_names,
    load_peft_adapter,
    lora_config,
    resolve_targets,
    save_tuning,
)

__all__ = [
    "ADAPTER_DIR",
    "ADAPTER_MODULES",
    "ATTENTION_TARGETS",
    "HEAD_FILE",
    "LM_WEIGHTS_FILE",
    "TRAINED_FILE",
    "Bottleneck",
    "WithAdapter",
    "attach_tuning",
    "check_targets",
    "linear_module_names",
    "load_peft_adapter",
    "lora_config",
    "resolve_targets",
    "save_tuning",
]
