"""``ray.parallel_trials``: the trials of one ``search:`` cell run at once on the Ray cluster.

The study stays in the cell's own Ray task, which alone asks and tells (``search.run_search``): it asks a
batch of ``parallel_trials`` trials, runs the first in its own process (it holds the cell's resources anyway)
and the others as nested Ray tasks that reserve what a cell reserves, then tells the scores in trial-number
order. Nothing but the trial's params goes out and its score comes back, so Optuna's storage need not be
reachable from the nodes: an in-memory study suffices, and ``ray.search_storage`` (an RDB URL) only keeps it.

The cell's result is the best trial's fitted strategy, as in the sequential search. When that trial ran on
another worker, the cell fits its params once more (one fit more than the sequential search): the fit is
seeded by the cell, so it is the same model as the trial's wherever training is deterministic (CPU; a GPU's
non-deterministic kernels can differ in float rounding). Shipping the trial's saved folder back instead
would cost every trial's model through the object store and a save/load round trip that not every strategy
keeps exactly (its training log, its parameter counts); a refit is the same code path as a sequential cell.

The executor counts such a cell as ``ParallelSearch.slots`` cells (the cell itself plus the trials it may
run elsewhere), so the cells in flight never hold the resources their trials wait for: a blocked Ray task
gives back its CPUs but keeps its GPUs and memory.
"""

from __future__ import annotations

import os
from dataclasses import replace

from taskfit.compare.search import TrialResult, fit_trial

# as ray_executor.ENV_PREFIXES; not imported from there: worker -> ray_search -> ray_executor -> worker
ENV_PREFIXES = ("TASKFIT_",)


def run_trial_task(
    candidate, ctx_fields: dict, train: list, dev: list, task: str, threads: int, environ: dict
):
    """The nested Ray task: fit one trial in a fresh worker process and return its score (not its model)."""
    os.environ.update(environ)
    from taskfit.libraries import quiet_libraries

    quiet_libraries()
    import torch

    from taskfit.strategies import BackboneCache, Context

    torch.set_num_threads(max(1, threads))
    trust_remote_code, device = ctx_fields.pop("trust_remote_code"), ctx_fields.pop("device")
    ctx = Context(backbones=BackboneCache(trust_remote_code, device), **ctx_fields)
    result = fit_trial(candidate, ctx, train, dev, task)
    import ray

    node = ray.util.get_node_ip_address()
    return {"metric": result.metric, "score": result.score, "seconds": result.seconds, "node": node}


def cluster_batch_runner(candidate, ctx, train: list, dev: list, task: str, parallel):
    """A ``search.RunBatch`` that runs a batch's trials at once: up to ``parallel.slots`` - 1 of them as Ray
    tasks and the rest, one after another, in this process. Outside a Ray worker: all in this process."""
    try:
        import ray
    except ImportError:
        ray = None
    if ray is None or not ray.is_initialized():
        print("search: not in a Ray task; the trials run one after another here", flush=True)
        return lambda params: [fit_trial(candidate(p), ctx, train, dev, task) for p in params]
    need = parallel.resources
    remote = ray.remote(
        num_cpus=need.get("CPU", 1),
        num_gpus=need.get("GPU", 0),
        memory=int(need["memory"]) if need.get("memory") else None,
        max_calls=1,  # a fresh process per trial, like a cell's own
        name="taskfit-trial",
    )(run_trial_task)
    # trackers write into the cell's folder, which another node does not have: remote trials feed none
    ctx_fields = {
        "labels": ctx.labels,
        "prompt": ctx.prompt,
        "seed": ctx.seed,
        "run": replace(ctx.run, report_to=[], tracking_dir=None, checkpoint_dir=None),
        "no_relation_label": ctx.no_relation_label,
        "trust_remote_code": ctx.backbones.trust_remote_code,
        "device": ctx.backbones.device,
    }
    threads = int(need.get("CPU", 1))
    environ = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}

    def run_batch(params: list[dict]) -> list[TrialResult]:
        results: list[TrialResult | None] = [None] * len(params)
        pending = list(range(len(params)))
        running: dict = {}  # ObjectRef -> index in the batch

        def collect(timeout: float | None) -> None:
            done, _ = ray.wait(
                list(running), num_returns=len(running) if timeout is None else 1, timeout=timeout
            )
            for ref in done:
                out = ray.get(ref)  # a trial that raised fails the cell, as a sequential trial would
                results[running.pop(ref)] = TrialResult(
                    out["metric"], out["score"], out["seconds"], node=out["node"]
                )

        try:
            while pending or running:
                while len(pending) > 1 and len(running) < parallel.slots - 1:  # the first stays here
                    i = pending.pop()
                    running[
                        remote.remote(
                            candidate(params[i]), dict(ctx_fields), train, dev, task, threads, environ
                        )
                    ] = i
                if pending:
                    i = pending.pop(0)
                    results[i] = fit_trial(candidate(params[i]), ctx, train, dev, task)
                    if running:
                        collect(0)
                else:
                    collect(None)
        except BaseException:
            for ref in running:
                ray.cancel(ref, force=True)
            raise
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    return run_batch
