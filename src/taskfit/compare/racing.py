"""Racing the rows of a cross-validated grid (issue 38): every row runs its first seed; a row whose
held-out predictions on that seed's labelled pool are clearly behind the leader's is not run on the other
seeds. "Clearly": the leader's gain in the grid's ranking metric (at the data's label shares) exceeds
``Z`` standard errors of a paired bootstrap over the same pool examples (``selection.choose_on_resamples``), so a
row is stopped only on evidence that a few more seeds would not overturn. A stopped row keeps its first
seed's result in the leaderboard, is marked stopped with that evidence, and is never recommended.

Written here: racing (Maron & Moore's Hoeffding races, F-Race) exists in no library taskfit uses; the
paired bootstrap is the grid's own.
"""

from __future__ import annotations

from dataclasses import dataclass

# The leader's gain must exceed this many bootstrap standard errors over the pool's examples. With shots: all
# every seed scores the same examples, so more seeds cannot resample them: they change folds, initialisation
# and demonstrations, whose spread over seeds on issue 18's runs was 0.02-0.05. Two example-bootstrap
# standard errors (about 0.19 macro-F1 on 40 labels) are several times that; on K-shot pools, which each
# seed draws anew, it is a one-sided p of about 0.02 per row.
Z = 2.0
STOPPED = "stopped"  # a cell's status in taskfit.db when its row was stopped by the race


@dataclass
class Verdict:
    row: tuple[str, str, str]  # (strategy id, backbone, K)
    leader: tuple[str, str, str]
    gain: float  # the leader's score minus this row's, on the examples both predicted
    noise: float  # one bootstrap standard error of that gain
    examples: int
    stopped: bool

    def reason(self, metric_label: str, seed) -> str:
        return (
            f"stopped after seed {seed}: {self.leader[0]} ({self.leader[1]}) led by {self.gain:.3f} "
            f"{metric_label} on the same {self.examples} held-out examples, {self.gain / self.noise:.1f} "
            f"standard errors (stopped beyond {Z:.0f})"
        )


def _held_out(record: dict, pool: str) -> list[dict] | None:
    """A cell's held-out predictions on the labelled pool: out-of-fold, or a row without training data's
    predictions on ``pool``; None when it kept none."""
    metrics = record.get("metrics") or {}
    return metrics.get("oof") or (metrics.get("pool_predictions") or {}).get(pool)


def race(records: list[dict], pool: str, labels: list[str], key: str, prior=None) -> list[Verdict]:
    """The verdicts on one seed's cells (``records``: finished cells of that seed, and the rows without
    training data) over the labelled pool ``pool`` ("all/0"). Rows whose predictions do not cover the same
    examples in the same order as the leader's are left running."""
    from taskfit.compare.prior import weights_for
    from taskfit.compare.selection import choose_on_resamples

    rows = {}
    for r in records:
        held = _held_out(r, pool)
        if r.get("status") == "ok" and held:
            rows[(r["strategy"], r["backbone"], str(r["shots"]))] = held
    if len(rows) < 2:
        return []
    golds = {name: [x["gold"] for x in held] for name, held in rows.items()}
    reference = max(golds.values(), key=len)
    rows = {name: held for name, held in rows.items() if golds[name] == reference}

    def argmax(p: dict) -> str:
        return max(labels, key=lambda lab: p.get(lab, float("-inf")))

    def preds(name, keep) -> list[str]:
        return [argmax(rows[name][i]["probs"]) for i in keep]

    def covered(*names) -> list[int]:
        return [i for i in range(len(reference)) if all(rows[n][i].get("probs") is not None for n in names)]

    def score(name) -> float:
        import numpy as np

        from taskfit.compare.selection import _score

        keep = covered(name)
        index = {lab: i for i, lab in enumerate(labels)}
        gold = np.array([index[reference[i]] for i in keep])
        pred = np.array([index[p] for p in preds(name, keep)])
        w = weights_for([reference[i] for i in keep], prior)
        return _score(gold, pred, len(labels), key, np.ones(len(keep)) if w is None else w)

    scores = {name: score(name) for name in rows}
    leader = max(scores, key=lambda n: (scores[n], n[2] == "0"))  # on a tie, the row that trains nothing
    out = []
    for name in rows:
        if name == leader:
            continue
        keep = covered(name, leader)
        if len(keep) < 4:
            continue
        gold = [reference[i] for i in keep]
        rule = choose_on_resamples(
            gold, preds(name, keep), preds(leader, keep), labels, key, weight=weights_for(gold, prior)
        )
        gain, noise = rule["gain"], rule["noise"]
        stopped = noise > 0 and gain > Z * noise
        out.append(Verdict(name, leader, gain, noise, len(keep), stopped))
    return out


class Race:
    """The engine's side of racing: which cells decide (each K's first-seed cells and the rows without
    training data), and, once they have all ended, which pending cells are not run."""

    def __init__(self, cells: list, seeds: list, labels: list[str], key: str, label: str, prior=None) -> None:
        from taskfit.compare.plan import pool_name

        self.first, self.labels, self.key, self.label, self.prior = seeds[0], labels, key, label, prior
        ks = sorted({c.shots for c in cells if c.seed is not None}, key=str)
        untrained = {c.path for c in cells if c.seed is None}
        self.gates = {
            k: (
                {c.path for c in cells if c.seed == self.first and c.shots == k} | untrained,
                pool_name(k, self.first),
            )
            for k in ks
        }
        self.decided: dict = {}  # K -> verdicts
        self.stopped: dict[tuple, str] = {}  # (K, strategy id, backbone) -> why
        self.cells = [c.path for c in cells]

    def order(self, todo: list, prior: dict | None = None) -> list:
        """The cells that decide first, so the race is decided as early as possible: the quick ones (under
        a minute by the cost model: the rows without training data, in-context) to set the leader, then the
        longest first, so that the workers end the first seed together; the later seeds after them."""
        from taskfit.compare.plan import shots_label

        def seconds(cell) -> float:
            return (prior or {}).get(
                (f"{cell.strategy.run_id}/{cell.strategy.backbone}", shots_label(cell.shots)), 0.0
            )

        def rank(cell) -> tuple:
            if cell.seed not in (self.first, None):
                return (2, 0.0)
            cost = seconds(cell)
            return (0, cost) if cost < 60 else (1, -cost)

        return sorted(todo, key=rank)

    def stopped_cells(self, records: list[dict], pending: list) -> list[tuple[object, str]]:
        """(cell, reason) for each pending cell of a row the race stops now (``records``: the grid's cells
        in taskfit.db). Judged again each time one of a K's deciding cells ends: a row clearly behind a row
        that has finished is behind whatever the rows still running score."""
        done = {r["cell"]: r for r in records if r.get("status") in ("ok", "failed")}
        out = []
        for k, (gate, pool) in self.gates.items():
            if k in self.decided:
                continue
            finished = [done[p] for p in gate if p in done]
            verdicts = race(finished, pool, self.labels, self.key, self.prior)
            if gate <= set(done):
                self.decided[k] = verdicts
            for verdict in verdicts:
                if not verdict.stopped:
                    continue
                reason = verdict.reason(self.label, self.first)
                self.stopped.setdefault((k, *verdict.row[:2]), reason)
                for item in pending:
                    cell = item[0]
                    if cell.shots == k and (cell.strategy.run_id, cell.strategy.backbone) == verdict.row[:2]:
                        out.append((item, reason))
        return out

    def stops(self, cell) -> str | None:
        """Why a later seed's cell (running or pending) is not needed any more, else None."""
        if cell.seed in (self.first, None):
            return None
        return self.stopped.get((cell.shots, cell.strategy.run_id, cell.strategy.backbone))

    def prioritise(self, records: list[dict], queue) -> None:
        """Later seeds of the rows that lead on their first seed start first (the least likely to be
        stopped), rows whose first seed has not finished last; the deciding cells keep their place."""
        first = {
            (r["strategy"], r["backbone"], r["shots"]): (r.get("metrics") or {}).get(f"dev_{self.key}")
            for r in records
            if r.get("seed") == self.first and r.get("status") == "ok"
        }

        def rank(item) -> tuple:
            cell = item[0]
            if cell.seed in (self.first, None):
                return (0, 0.0)
            from taskfit.compare.plan import shots_label

            score = first.get((cell.strategy.run_id, cell.strategy.backbone, shots_label(cell.shots)))
            return (1, -score) if score is not None else (2, 0.0)

        items = sorted(queue, key=rank)
        queue.clear()
        queue.extend(items)
