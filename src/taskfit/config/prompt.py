"""Prompts for the prompting strategies: the template and verbalizer, the candidates of a prompt search and
the label-bias calibration options."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from taskfit.config.base import Strict


def _as_word_lists(value: Any) -> Any:
    """A verbalizer may give one word as a string: {pos: " good"} means {pos: [" good"]}."""
    if isinstance(value, dict):
        return {str(k): ([v] if isinstance(v, str) else v) for k, v in value.items()}
    return value


class PromptConfig(Strict):
    template: str = Field(..., description='e.g. "Review: {text}\\nSentiment:{answer}"')
    verbalizer: dict[str, list[str]] = Field(
        default_factory=dict,
        description="label -> words scored at {answer}; inserted verbatim (mind the leading space)",
    )
    label_descriptions: dict[str, str] = Field(
        default_factory=dict,
        description="label -> description, for encoder zero-shot by embedding similarity",
    )

    @field_validator("verbalizer", mode="before")
    @classmethod
    def _words_as_lists(cls, value: Any) -> Any:
        return _as_word_lists(value)


class PromptSearchConfig(Strict):
    """Candidate prompts scored on the few-shot dev set; the best is kept and all are reported."""

    templates: list[str] = Field(default_factory=list, description="alternatives to prompt.template")
    verbalizers: list[dict[str, list[str]]] = Field(
        default_factory=list, description="alternatives to prompt.verbalizer"
    )
    auto_label_words: int = Field(
        0,
        ge=0,
        description="add this many verbalizers found by LM-BFF label-word search on the training shots",
    )

    @field_validator("verbalizers", mode="before")
    @classmethod
    def _words_as_lists(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_as_word_lists(v) for v in value]
        return value


# None (the default) leaves the key out of cell keys (compare/plan.py KEYED_WHEN_SET): cells planned before the
# option existed keep their keys.
PROMPT_MAX_LENGTH_HELP = (
    "token budget of a prompt (causal LM): longer prompts have their demonstrations' texts cut first (longest "
    "first), then the input's; the template and the answer slot stay whole. Default: 1024, or the backbone's "
    "trained context if smaller"
)
ENCODER_MAX_LENGTH_HELP = (
    "; encoder zero-shot: tokens embedded per text (longer texts lose their end), default 256"
)

Calibration = Literal["none", "contextual", "pmi"]
CALIBRATION_HELP = "correct the LM's label bias: contextual (content-free inputs) or pmi (domain premise)"


PROMPT_ENSEMBLE_HELP = (
    "with prompt_search: average the label probabilities of the N candidates (template x verbalizer) with "
    "the best dev accuracy instead of keeping only the best one; every prediction costs N scoring passes"
)


class CalibratedPrompting:
    """Rows of a prompting strategy whose calibration is not its default are named by it: ``zero-shot+pmi``,
    ``in-context+uncalibrated``; a prompt ensemble by its size: ``zero-shot+3-prompts``."""

    def calibration_setting(self) -> str | None:
        return self.calibration  # type: ignore[attr-defined]

    def searches_prompts(self) -> bool:
        return self.prompt_search is not None  # type: ignore[attr-defined]

    def variant(self) -> str:
        calibration = getattr(self, "calibration", "none")
        ensemble = getattr(self, "prompt_ensemble", None)
        prompts = f"+{ensemble}-prompts" if ensemble and ensemble > 1 else ""
        if calibration == type(self).model_fields["calibration"].default:  # type: ignore[attr-defined]
            return prompts
        return "+" + {"dev": "dev-calibrated", "none": "uncalibrated"}.get(calibration, calibration) + prompts


def check_prompt_ensemble(config):
    """A prompt ensemble averages prompt-search candidates: without a search there are none."""
    if getattr(config, "prompt_ensemble", None) and getattr(config, "prompt_search", None) is None:
        raise ValueError(
            "prompt_ensemble averages the best prompt_search candidates: add a prompt_search block "
            "(templates:, verbalizers: or auto_label_words:) or drop prompt_ensemble"
        )
    return config
