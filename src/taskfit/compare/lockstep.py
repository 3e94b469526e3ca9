"""Cross-validation folds trained in lockstep, epoch by epoch, so that they can stop together once their
mean held-out curve has stopped improving (issue 38: most of the fixed 30-epoch fold curves were flat long
before their end).

Each fold runs in a thread of its own, but only one computes at a time, in fold order: fold 0 trains its
epoch 1 and scores its held-out examples, hands over to fold 1, ..., and the last fold of the round decides
from the mean curve whether every fold stops. The order never depends on timing, so a cell's result is the
same on every run. All k fold models are alive at once (``fits_at_once`` says when that is too much memory;
the folds then run one after another, each stopped by its own curve).

Written here: the loop is synchronous (``training.loop.fit_epochs``) and deep inside each strategy's
``fit``; threads with a turn are the least intrusive way to interleave k of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Cancelled(Exception):
    """Another fold failed: this one stops at its next epoch boundary."""


class Lockstep:
    """Turn-taking of ``folds`` threads. ``decide(epoch)`` is called once per round, after every fold still
    training has reported that epoch; True stops all of them."""

    def __init__(self, folds: int, decide: Callable[[int], bool]) -> None:
        self._cond = threading.Condition()
        self._active = list(range(folds))
        self._turn = 0
        self._stop = False
        self._error: BaseException | None = None
        self._decide = decide

    def _pass_turn(self, after: int) -> None:
        later = [i for i in self._active if i > after]
        self._turn = later[0] if later else (self._active[0] if self._active else -1)
        self._cond.notify_all()

    def _wait(self, fold: int) -> None:
        self._cond.wait_for(lambda: self._turn == fold or self._error is not None)
        if self._error is not None:
            raise Cancelled

    def wait_turn(self, fold: int) -> None:
        with self._cond:
            self._wait(fold)

    def epoch_end(self, fold: int, epoch: int) -> bool:
        """Fold ``fold`` finished ``epoch`` (and scored it): hand over, wait for the round's decision."""
        with self._cond:
            if fold == self._active[-1]:
                self._stop = bool(self._decide(epoch))
            self._pass_turn(fold)
            self._wait(fold)
            return self._stop

    def finish(self, fold: int) -> None:
        with self._cond:
            if fold in self._active:
                self._active.remove(fold)
                self._pass_turn(fold)

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()


class OneAfterAnother:
    """The same interface for folds run one after another (``together=False``): each fold's epochs end
    with the decision on the mean curve of the folds so far (of those that reached each epoch)."""

    def __init__(self, decide: Callable[[int], bool]) -> None:
        self._decide = decide

    def epoch_end(self, fold: int, epoch: int) -> bool:
        return bool(self._decide(epoch))


def run_in_lockstep(
    folds: int,
    work: Callable[[int, Lockstep | OneAfterAnother], None],
    decide: Callable[[int], bool],
    together: bool = True,
) -> None:
    """``work(fold, lockstep)`` for every fold, in lockstep (or one after another when not ``together``);
    the first failure is raised here once every thread has stopped."""
    if not together:
        solo = OneAfterAnother(decide)
        for fold in range(folds):
            work(fold, solo)
        return
    lockstep = Lockstep(folds, decide)
    errors: list[BaseException] = []

    def body(fold: int) -> None:
        try:
            lockstep.wait_turn(fold)
            work(fold, lockstep)
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread below
            errors.append(exc)
            lockstep.fail(exc)
        finally:
            lockstep.finish(fold)

    threads = [
        threading.Thread(target=body, args=(i,), name=f"taskfit-fold-{i}", daemon=True) for i in range(folds)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def fits_at_once(folds: int, trainable: int, total: int, memory_bytes: int | None = None) -> bool:
    """Whether ``folds`` models of this size fit in memory together: weights (fp32) plus, for what trains,
    gradients and AdamW's two moments, against half of this machine's memory per core (cells run one per
    core). minilm head-finetune: 5 x 0.2 GB; smollm2 LoRA: 5 x 0.6 GB; smollm2 fully fine-tuned, 5 x 2.2 GB,
    runs its folds one after another on a 24 GB, 2-core machine."""
    import os

    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    per_cell = memory_bytes / max(1, os.cpu_count() or 1) / 2
    return folds * (4 * total + 12 * trainable) <= per_cell
