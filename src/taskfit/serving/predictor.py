"""A saved run behind one small interface, for batch prediction (``taskfit predict``) and the HTTP service.

Classification: texts -> label + scores; NER: texts -> entities (type, text, start/end character offsets);
relation: a text with [E1]..[/E1] and [E2]..[/E2] typed around the two
entities -> label + scores; extractive-qa: question (text) + context (text_pair) -> answer, start, end, score.
Generation: texts -> generated text through the run's own template
and decoding settings (the path its test scores were measured on), plus raw completions and chat turns for
the OpenAI-compatible endpoints.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from taskfit.config import DecodingConfig
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.models.backbones import resolve_device
from taskfit.strategies import BackboneCache, load_strategy, read_strategy_file
from taskfit.strategies.saved import find_model_dir
from taskfit.tasks import get_task
from taskfit.training.precision import autocast


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length", as OpenAI reports it


@dataclass
class Predictor:
    strategy: object
    task: str  # the run's task (taskfit.tasks.TASK_NAMES)
    name: str  # the run's strategy id, shown as the served model's name
    labels: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one forward pass at a time
    precision: str = "no"  # what the run was evaluated in: served predictions are computed the same way
    device: str = "cpu"

    @classmethod
    def load(cls, run_dir: str | Path, trust_remote_code: bool = False, device: str = "auto") -> Predictor:
        directory = find_model_dir(run_dir)
        saved = read_strategy_file(directory)
        strategy = load_strategy(directory, BackboneCache(trust_remote_code, device))
        return cls(
            strategy,
            saved.get("task", "classification"),
            saved["strategy"].get("id") or saved["strategy"]["name"],
            list(saved.get("labels") or []),
            precision=saved.get("mixed_precision", "no"),  # runs saved before it was recorded: fp32
            device=str(resolve_device(device)),
        )

    @contextlib.contextmanager
    def _computing(self) -> Iterator[None]:
        """One forward pass at a time, without gradients, in the run's precision."""
        with self.lock, torch.no_grad(), autocast(self.precision, self.device):
            yield

    @property
    def generates(self) -> bool:
        """Whether this run writes text (the completion and chat endpoints)."""
        return get_task(self.task).generates

    # -- the common path: one result dict per input ------------------------------------------------------

    def predict(self, examples: Sequence[Example]) -> list[dict]:
        with self._computing():
            return get_task(self.task).serve(self.strategy, list(examples))

    # -- generation: raw completions and chat turns (OpenAI-compatible endpoints) -------------------------

    def _require_generation(self) -> None:
        if not self.generates:
            raise TaskfitError(f"this run is a {self.task} model; it cannot generate text (use /v1/predict)")

    @property
    def decoding(self) -> DecodingConfig:
        return self.strategy.config.decoding  # type: ignore[attr-defined]

    def _parts(self):
        s = self.strategy
        return s.net, s.model.tokenizer, s.model.renderer  # type: ignore[attr-defined]

    def chat_prompt_ids(self, messages: Sequence[dict]) -> list[int]:
        """The last user message as the run's input, earlier turns as its history (as in training)."""
        self._require_generation()
        if not messages or messages[-1].get("role") != "user":
            raise TaskfitError("messages must end with a user message")
        history = tuple((m["role"], m["content"]) for m in messages[:-1])
        example = Example(text=messages[-1]["content"], history=history)
        _, _, renderer = self._parts()
        try:
            return renderer.prompt_ids(
                example, self.strategy.demos_for(example), self.strategy.config.max_length
            )  # type: ignore[attr-defined]
        except (
            Exception
        ) as exc:  # the chat template's own checks (e.g. roles must alternate) raise jinja errors
            if type(exc).__module__.startswith("jinja2"):
                raise TaskfitError(f"the model's chat template rejected these messages: {exc}") from None
            raise

    def check_length(self, prompt: list[int], max_new_tokens: int) -> None:
        """A prompt plus its new tokens must fit the model's positions (beyond them it fails or degrades)."""
        net, _, _ = self._parts()
        limit = getattr(net.config, "max_position_embeddings", None)
        if limit and len(prompt) + max_new_tokens > limit:
            raise TaskfitError(
                f"the prompt has {len(prompt)} tokens; with max_tokens {max_new_tokens} that is over this model's "
                f"{limit} positions: shorten the prompt or ask for fewer tokens"
            )

    def text_prompt_ids(self, prompt: str) -> list[int]:
        """A raw completion prompt: the text as given, no template."""
        self._require_generation()
        _, tokenizer, _ = self._parts()
        return tokenizer(prompt)["input_ids"]

    def complete(
        self, prompts: Sequence[list[int]], decoding: DecodingConfig, seed: int = 0
    ) -> list[Completion]:
        from taskfit.models.generation import generate

        self._require_generation()
        net, tokenizer, renderer = self._parts()
        details: list = []
        with self._computing():
            texts, _ = generate(
                net, tokenizer, list(prompts), decoding, renderer.stop_token_ids(), seed, per_item=details
            )
        return [Completion(t, len(p), n, reason) for t, p, (n, reason) in zip(texts, prompts, details)]

    def stream(
        self,
        prompt: list[int],
        decoding: DecodingConfig,
        seed: int = 0,
        on_text: Callable[[str], None] = print,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Completion:
        """Generate one completion, calling ``on_text`` with each new piece of text as it is decoded;
        ``should_stop`` is polled every token (a client that went away, a deadline)."""
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        if decoding.method == "beam":
            raise TaskfitError("beam search cannot stream; send temperature 0 (greedy) or > 0 (sampling)")

        class Abandoned(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
                stop = should_stop()
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        from taskfit.models.generation import generation_kwargs

        self._require_generation()
        net, tokenizer, renderer = self._parts()
        stop_ids = renderer.stop_token_ids()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]

        class Pieces(BaseStreamer):
            """Decodes the growing output and passes on only the new text (whole characters only)."""

            def __init__(self) -> None:
                self.ids: list[int] = []
                self.sent = ""
                self.skip_prompt = True

            def put(self, value: torch.Tensor) -> None:
                if self.skip_prompt:  # generate first sends the prompt itself
                    self.skip_prompt = False
                    return
                self.ids.extend(i for i in value.reshape(-1).tolist() if i not in stop_ids)
                self._send(final=False)

            def _send(self, final: bool) -> None:
                text = tokenizer.decode(self.ids, skip_special_tokens=True)
                if text.endswith("\ufffd") and not final:  # a multi-byte character may be incomplete
                    return
                if len(text) > len(self.sent) and text.startswith(self.sent):
                    on_text(text[len(self.sent) :])
                    self.sent = text

            def end(self) -> None:
                self._send(final=True)

        streamer = Pieces()
        kwargs = generation_kwargs(decoding, stop_ids, pad, net)
        if decoding.stop:
            kwargs.update(stop_strings=list(decoding.stop), tokenizer=tokenizer)
        with self._computing():
            torch.manual_seed(seed)
            ids = torch.tensor([prompt], device=net.device)
            out = net.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([Abandoned()]),
                **kwargs,
            )
        generated = out[0, len(prompt) :].tolist()
        ended = any(t in stop_ids for t in generated)
        return Completion(streamer.sent, len(prompt), len(generated), "stop" if ended else "length")


def iter_chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
