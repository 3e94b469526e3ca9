"""Extra training signal made from the K-shot sample: augmented copies (EDA, character edits, paraphrases) and
adversarial perturbations of the embeddings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from taskfit.config.base import Strict

AugmentOp = Literal[
    "swap", "delete", "insert", "synonym", "char_swap", "char_delete", "char_insert", "paraphrase"
]
WORD_OPS: tuple[str, ...] = ("swap", "delete", "insert", "synonym")
CHAR_OPS: tuple[str, ...] = ("char_swap", "char_delete", "char_insert")


class ParaphraseConfig(Strict):
    """How the ``paraphrase`` operation asks a chat LM to rewrite a training text."""

    backbone: str = Field("smollm2", description="a causal LM with a chat template")
    instruction: str = Field(
        "Rewrite the following text in different words, keeping its meaning and tone. "
        "Reply with the rewritten text only.",
        description="the user turn before the text",
    )
    max_new_tokens: int = Field(64, ge=4, description="longer outputs are cut, then rejected if unfinished")
    temperature: float = Field(
        0.8, ge=0, description="0: greedy (one paraphrase per text); else sampled, seeded by the cell"
    )
    max_length_ratio: float = Field(
        2.0, gt=1, description="reject a paraphrase longer than this many times the original (characters)"
    )
    batch_size: int = Field(8, ge=1)


class AugmentConfig(Strict):
    """Extra training examples made from the K-shot training sample (never dev or test); labels kept."""

    ops: list[AugmentOp] = Field(
        default_factory=lambda: ["swap", "delete", "insert", "synonym"],
        min_length=1,
        description="each augmented copy applies one of these, drawn at random: EDA word operations (swap, "
        "delete, insert a word of the same text, synonym from WordNet), character operations (char_swap, "
        "char_delete, char_insert of a character of the same text; suit Chinese), paraphrase (a chat LM)",
    )
    per_example: int = Field(4, ge=1, description="augmented copies made per training example")
    rate: float = Field(
        0.1, gt=0, le=0.5, description="share of the words (or characters) an operation changes; at least 1"
    )
    seed: int | None = Field(None, description="default: the cell's seed")
    paraphrase: ParaphraseConfig = Field(default_factory=ParaphraseConfig)

    @field_validator("ops")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"augment.ops lists an operation twice: {value}")
        return value


class AdversarialConfig(Strict):
    """Adversarial training on the embedding output: every step adds the gradient of the loss at a perturbed
    input (per example in an L2 ball of radius epsilon) to the clean gradient."""

    method: Literal["fgm", "pgd"] = Field(
        "fgm",
        description="fgm: one step of size epsilon (Miyato et al.); pgd: projected ascent (Madry et al.)",
    )
    epsilon: float = Field(1.0, gt=0, description="L2 radius of the perturbation of one example's embeddings")
    steps: int = Field(3, ge=1, description="pgd: ascent steps (each one more forward/backward pass)")
    alpha: float = Field(0.3, gt=0, description="pgd: size of one ascent step")
    weight: float = Field(1.0, gt=0, description="weight of the adversarial loss added to the clean loss")


def augment_field() -> Any:
    return Field(None, description="augment the K-shot training sample (see AugmentConfig); null: off")


def adversarial_field() -> Any:
    return Field(None, description="FGM/PGD adversarial training on the embeddings; null: off")
