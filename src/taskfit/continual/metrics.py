"""The GEM metrics of an accuracy matrix (Lopez-Paz & Ranzato 2017, section 4).

``R[i][j]`` is the test accuracy on task j after training stage i (0-based, T stages); ``baseline[j]`` the
accuracy on task j of the model before any training (its head untrained), the ``b_j`` of the paper.
"""

from __future__ import annotations


def continual_metrics(R: list[list[float]], baseline: list[float]) -> dict[str, float | None]:
    """average accuracy = mean of the last row; BWT = mean over j < T of R[T][j] - R[j][j] (negative:
    forgetting); FWT = mean over j > 1 of R[j-1][j] - b_j (what earlier stages gave a task before its own).
    Both are None with a single task."""
    T = len(R)
    if T == 0 or any(len(row) != T for row in R) or len(baseline) != T:
        raise ValueError(f"R must be T x T with T baselines; got {[len(r) for r in R]} and {len(baseline)}")
    last = R[-1]
    average = sum(last) / T
    if T == 1:
        return {"average_accuracy": average, "bwt": None, "fwt": None}
    bwt = sum(last[j] - R[j][j] for j in range(T - 1)) / (T - 1)
    fwt = sum(R[j - 1][j] - baseline[j] for j in range(1, T)) / (T - 1)
    return {"average_accuracy": average, "bwt": bwt, "fwt": fwt}
