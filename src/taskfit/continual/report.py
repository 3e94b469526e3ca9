"""The continual report: a table of methods (average accuracy, BWT, FWT, train time, trainable parameters)
and each method's accuracy matrix as a heatmap; ``report.md`` (plots as SVG files beside it) and a
self-contained ``report.html``, with the compare report's helpers."""

from __future__ import annotations

import html
import statistics
from pathlib import Path

import yaml

from taskfit.compare.report import CSS, _md_table_html, _pyplot, _svg
from taskfit.compare.summary import fmt_mean_std
from taskfit.io import write_text_atomic


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _mean_matrix(matrices: list[list[list[float]]]) -> list[list[float]]:
    return [
        [statistics.fmean(m[i][j] for m in matrices) for j in range(len(matrices[0][i]))]
        for i in range(len(matrices[0]))
    ]


def summarise(config, results: list[dict]) -> dict:
    """One row per method: the metrics as mean (and std over seeds), the mean R and baseline."""
    rows = []
    for method in config.methods:
        runs = [r for r in results if r["method"] == method.run_id]
        ok = [r for r in runs if "error" not in r]
        row = {
            "method": method.run_id,
            "seeds": len(ok),
            "errors": [r["error"] for r in runs if "error" in r],
        }
        for key in ("average_accuracy", "bwt", "fwt", "train_seconds"):
            row[key], row[f"{key}_std"] = _mean_std([r[key] for r in ok])
        row["trainable_params"] = ok[0]["trainable_params"] if ok else None
        row["R"] = _mean_matrix([r["R"] for r in ok]) if ok else None
        row["baseline"] = [statistics.fmean(b) for b in zip(*(r["baseline"] for r in ok))] if ok else None
        rows.append(row)
    return {"name": config.name, "tasks": [t.name for t in config.tasks], "methods": rows}


def _signed(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:+.3f}" + ("" if std is None else f" ± {std:.3f}")


def methods_table(summary: dict) -> str:
    lines = [
        "| method | seeds | average accuracy | BWT | FWT | train s | trainable params |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["methods"]:
        train = "—" if r["train_seconds"] is None else f"{r['train_seconds']:.1f}"
        params = "—" if r["trainable_params"] is None else f"{r['trainable_params']:,}"
        lines.append(
            f"| {r['method']} | {r['seeds']} | {fmt_mean_std(r['average_accuracy'], r['average_accuracy_std'])} | "
            f"{_signed(r['bwt'], r['bwt_std'])} | {_signed(r['fwt'], r['fwt_std'])} | {train} | {params} |"
        )
    return "\n".join(lines)


def matrix_table(summary: dict, row: dict) -> str:
    tasks = summary["tasks"]
    lines = ["| after stage | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    lines.append("| (untrained) | " + " | ".join(f"{v:.3f}" for v in row["baseline"]) + " |")
    for task, values in zip(tasks, row["R"]):
        lines.append(f"| {task} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines)


def heatmaps(summary: dict) -> str | None:
    """One panel per method: rows = after each stage (the untrained model first), columns = tasks."""
    shown = [r for r in summary["methods"] if r["R"]]
    if not shown:
        return None
    plt = _pyplot()
    tasks = summary["tasks"]
    fig, axes = plt.subplots(
        1, len(shown), figsize=(2.2 + 1.0 * len(tasks) * len(shown), 0.6 * len(tasks) + 1.6), squeeze=False
    )
    for k, (ax, r) in enumerate(zip(axes[0], shown)):
        matrix = [r["baseline"], *r["R"]]
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for i, values in enumerate(matrix):
            for j, v in enumerate(values):
                ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    color="white" if v < 0.6 else "black",
                    fontsize=8,
                )
        ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
        rows = ["untrained", *[f"after {t}" for t in tasks]]
        ax.set_yticks(range(len(matrix)), rows if k == 0 else [""] * len(rows))  # same rows in every panel
        ax.set_title(r["method"])
        ax.set_xlabel("evaluated on")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="test accuracy")
    return _svg(fig)


CAPTION = (
    "Accuracy matrix per method (mean over seeds): row i = after training stage i (first row: before any "
    "training, each task's head untrained), column j = test accuracy on task j."
)
DEFINITIONS = [
    "Task-incremental setting: one classification head per task on the shared encoder; the task's name is "
    "known at prediction.",
    "Average accuracy: mean of the last row of R. BWT (backward transfer): mean over earlier tasks of "
    "R[last][j] − R[j][j]; negative means forgetting. FWT (forward transfer): mean over later tasks of "
    "R[j−1][j] − b_j, b_j the untrained model's accuracy with the same untrained head (Lopez-Paz & Ranzato 2017).",
    "train s: training time of all stages together (the method's own extra work, such as the Fisher, included; "
    "evaluation excluded). trainable params: the most trained in one stage.",
]


def write_continual_report(out: Path, config, summary: dict, results: list[dict]) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = methods_table(summary)
    svg = heatmaps(summary)
    if svg:
        write_text_atomic(out / "plots" / "heatmaps.svg", svg)
    failures = [f"{r['method']} seed {r['seed']}: {r['error']}" for r in results if "error" in r]
    sequence = " → ".join(summary["tasks"])
    title = f"{summary['name']}: continual learning over {sequence}"
    md = [f"# {title}", "", "## Methods", "", table, ""] + [f"- {d}" for d in DEFINITIONS] + [""]
    if svg:
        md += [f"![{CAPTION}](plots/heatmaps.svg)", "", f"*{CAPTION}*", ""]
    md += ["## Accuracy matrices", ""]
    for r in summary["methods"]:
        if r["R"]:
            md += [f"### {r['method']}", "", matrix_table(summary, r), ""]
    if failures:
        md += ["## Failed runs", ""] + [f"- {f}" for f in failures] + [""]
    write_text_atomic(out / "report.md", "\n".join(md))

    body = [f"<h1>{html.escape(title)}</h1>", "<h2>Methods</h2>", _md_table_html(table), "<ul>"]
    body += [f"<li>{html.escape(d)}</li>" for d in DEFINITIONS] + ["</ul>"]
    if svg:
        body.append(
            f'<figure id="plot-heatmaps">{svg}<figcaption>{html.escape(CAPTION)}</figcaption></figure>'
        )
    body.append("<h2>Accuracy matrices</h2>")
    for r in summary["methods"]:
        if r["R"]:
            body += [f"<h3>{html.escape(r['method'])}</h3>", _md_table_html(matrix_table(summary, r))]
    if failures:
        body.append('<h2 class="failed">Failed runs</h2><ul>')
        body += [f'<li class="failed">{html.escape(f)}</li>' for f in failures] + ["</ul>"]
    config_yaml = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    body.append(
        f"<h2>Config</h2><details><summary>the resolved config</summary><pre>{html.escape(config_yaml)}</pre></details>"
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(summary['name'])} · taskfit continual</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    write_text_atomic(out / "report.html", page)
    from taskfit.io import write_json_atomic

    write_json_atomic(out / "summary.json", summary)
    return {"markdown": out / "report.md", "html": out / "report.html"}
