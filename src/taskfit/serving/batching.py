"""Dynamic batching: concurrent requests' inputs share one forward pass.

Written by hand: FastAPI/uvicorn have no request batching, and the serving frameworks that do (TorchServe,
Triton, Ray Serve) would be a second server to deploy. The rule is the usual one: a batch closes when it holds
``max_batch_size`` items or ``max_wait`` seconds after its first item arrived; only items with the same key
(e.g. the same decoding settings) share a batch. One worker thread runs the model, so the event loop stays
free to accept requests while a batch computes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


@dataclass
class _Item:
    payload: object
    key: Hashable
    future: asyncio.Future


class Batcher:
    def __init__(
        self,
        run: Callable[[Hashable, list], list],
        max_batch_size: int = 16,
        max_wait: float = 0.01,
        on_batch: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.run, self.max_batch_size, self.max_wait, self.on_batch = run, max_batch_size, max_wait, on_batch
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskfit-model")
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.held: deque[_Item] = deque()  # items of another key than the batch being filled
        self.task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return self.queue.qsize() + len(self.held)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, payloads: list, key: Hashable = None) -> list:
        """Results for ``payloads`` (in order), computed in batches with other requests' items."""
        loop = asyncio.get_running_loop()
        items = [_Item(p, key, loop.create_future()) for p in payloads]
        for item in items:
            self.queue.put_nowait(item)
        try:
            return list(await asyncio.gather(*(i.future for i in items)))
        except asyncio.CancelledError:  # the request timed out or went away: drop what has not run yet
            for item in items:
                item.future.cancel()
            raise

    async def call(self, fn: Callable, *args):
        """Run ``fn`` on the model thread (e.g. a streamed generation), in turn with the batches."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _next(self, timeout: float | None) -> _Item | None:
        if self.held:
            return self.held.popleft()
        if not self.queue.empty():
            return self.queue.get_nowait()
        if timeout is None:
            return await self.queue.get()
        if timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next(None)
            if first is None or first.future.done():
                continue
            batch, other = [first], []
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch_size:
                item = await self._next(max(deadline - loop.time(), 0.0))
                if item is None:
                    break
                if item.future.done():
                    continue
                (batch if item.key == first.key else other).append(item)
            self.held.extendleft(reversed(other))  # first in line for the next batch
            if not await self._settle(first.key, batch):
                # one bad input must not fail the requests batched with it: each item alone, so that only
                # the bad one gets the error
                for item in batch:
                    await self._settle(first.key, [item])

    async def _settle(self, key: Hashable, batch: list[_Item]) -> bool:
        """Run ``batch`` and give each item its result. When it raises, a single item gets the error; a larger
        batch is left pending and False returned, for the caller to retry its items one by one."""
        try:
            live, results = await asyncio.get_running_loop().run_in_executor(
                self.executor, self._run_live, key, batch
            )
        except Exception as exc:
            if len(batch) > 1:
                return False
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return True
        for item, result in zip(live, results):
            if not item.future.done():
                item.future.set_result(result)
        return True

    def _run_live(self, key: Hashable, batch: list[_Item]) -> tuple[list[_Item], list]:
        """On the model thread: skip items whose request timed out while the batch waited for the thread."""
        live = [i for i in batch if not i.future.done()]
        if not live:
            return [], []
        self.on_batch(len(live))
        return live, self.run(key, [i.payload for i in live])
