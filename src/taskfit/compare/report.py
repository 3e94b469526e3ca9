"""The comparison report: Markdown (``report.md``, plots as SVG files beside it) and one self-contained HTML
page (``report.html``, plots inline), both written atomically."""

from __future__ import annotations

import html
import io
import re
from pathlib import Path

from taskfit.compare.summary import Group, fmt_mean_std, leaderboard, shots_order
from taskfit.io import write_text_atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "taskfit", "font.size": 9})
    return plt


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: the SVG is inlined in HTML


def _colors(groups: list[Group]) -> dict[tuple[str, str], tuple]:
    plt = _pyplot()
    names = list(dict.fromkeys((g.strategy, g.backbone) for g in groups))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _plotted(ok: list[Group]) -> tuple[str, str]:
    """(the key plotted, its axis name): test, or with no test split (true few-shot) the CV score."""
    if any(g.score is not None for g in ok):
        return ok[0].metric.key, "test"
    return f"dev_{ok[0].metric.key}", "cross-validated"


def shots_plot(groups: list[Group], majority: float | None) -> str | None:
    """Accuracy vs K per strategy (mean ± std over seeds); strategies without training data as flat lines."""
    ok = [g for g in groups if g.ok]
    ks = sorted({g.shots for g in ok if g.shots != "0"}, key=shots_order)
    if not ok:
        return None
    plt = _pyplot()
    colors = _colors(groups)
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = list(range(len(ks))) or [0]
    key, on = _plotted(ok)
    for name in dict.fromkeys((g.strategy, g.backbone) for g in ok):
        curve = [g for g in ok if (g.strategy, g.backbone) == name]
        label = f"{name[0]} ({name[1]})"
        if curve[0].shots == "0":
            ax.axhline(curve[0].mean(key), color=colors[name], linestyle="--", label=f"{label}, no training")
            continue
        x = [ks.index(g.shots) for g in curve]
        y = [g.mean(key) for g in curve]
        err = [g.std(key) or 0.0 for g in curve]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=colors[name], label=label)
    if majority is not None:
        ax.axhline(majority, color="grey", linestyle=":", label="majority class")
    m = ok[0].metric
    ax.set_xticks(xs, [f"K={k}" for k in ks] or ["K=0"])
    ax.set_xlabel("labelled examples per class (K)" if m.k_unit == "per class" else f"K: {m.k_unit}")
    ax.set_ylabel(f"{on} {m.label} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _svg(fig)


def cost_plot(groups: list[Group]) -> str | None:
    """Accuracy vs trainable parameters and vs training time, at the largest K."""
    ok = [g for g in groups if g.ok]
    ks = sorted({g.shots for g in ok}, key=shots_order)
    if not ok:
        return None
    ref = ks[-1]
    shown = [g for g in ok if g.shots in (ref, "0")]
    plt = _pyplot()
    colors = _colors(groups)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    key, on = _plotted(ok)
    for g in shown:
        d = g.as_dict()
        y, err = g.mean(key), g.std(key) or 0.0
        for ax, x in (
            (axes[0], max(d["trainable_params"] or 0, 1)),
            (axes[1], max(d["fit_seconds_mean"] or 0, 0.01)),
        ):
            ax.errorbar([x], [y], yerr=[err], marker="o", capsize=3, color=colors[(g.strategy, g.backbone)])
            ax.annotate(
                f"{g.strategy}\n({g.backbone})", (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points"
            )
    axes[0].set_xscale("log")
    axes[0].set_xlabel("trainable parameters (log; frozen = 1)")
    axes[1].set_xlabel("training time per run, s (search included)")
    axes[0].set_ylabel(f"{on} {ok[0].metric.label} at K={ref}")
    for ax in axes:
        ax.grid(alpha=0.3)
    return _svg(fig)


def learning_plot(groups: list[Group], logs: dict[str, list[dict]]) -> str | None:
    """Train loss and dev accuracy per epoch (mean over seeds) for the trained strategies at the largest K."""
    ok = [g for g in groups if g.ok and g.shots != "0"]
    if not ok:
        return None
    ref = sorted({g.shots for g in ok}, key=shots_order)[-1]
    plt = _pyplot()
    colors = _colors(groups)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    dev_key = ok[0].metric.dev_key or ("dev_accuracy" if ok[0].metric.proportion else "dev_loss")
    drawn = 0
    for g in (g for g in ok if g.shots == ref):
        per_epoch: dict[int, dict[str, list[float]]] = {}
        for r in g.ok:
            for rec in logs.get(r["cell"], []):
                if "epoch" in rec and "event" not in rec:
                    slot = per_epoch.setdefault(rec["epoch"], {"train_loss": [], dev_key: []})
                    for key in slot:
                        if rec.get(key) is not None:
                            slot[key].append(rec[key])
        if not per_epoch:
            continue
        drawn += 1
        epochs = sorted(per_epoch)
        for ax, key in zip(axes, ("train_loss", dev_key)):
            pts = [(e, sum(v) / len(v)) for e in epochs if (v := per_epoch[e][key])]
            if pts:
                ax.plot(*zip(*pts), marker=".", color=colors[(g.strategy, g.backbone)], label=g.name)
    if not drawn:
        plt.close(fig)
        return None
    axes[0].set_ylabel("train loss")
    axes[1].set_ylabel(dev_key.replace("_", " ") + (" (target tokens)" if dev_key == "dev_loss" else ""))
    for ax in axes:
        ax.set_xlabel("epoch (mean over seeds; runs stop early)")
        ax.grid(alpha=0.3)
    # the dev axis is empty when cross-validation chose (the fit on all labels has no dev): legend the other
    (axes[1] if axes[1].lines else axes[0]).legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"learning curves at K={ref}", fontsize=9)
    return _svg(fig)


def _md_inline(text: str) -> str:
    """Markdown bold and code spans of our own recommendation text, as HTML (input escaped first)."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _md_table_html(markdown: str) -> str:
    rows = [line.strip("|").split(" | ") for line in markdown.splitlines() if not line.startswith("|---")]
    head, body = rows[0], rows[1:]
    out = [
        "<table><thead><tr>",
        *(f"<th>{html.escape(c.strip())}</th>" for c in head),
        "</tr></thead><tbody>",
    ]
    for r in body:
        out.append("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>")
    return "".join(out) + "</tbody></table>"


CSS = """
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1b1b1b;line-height:1.45}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{font-size:.85em;color:#555}
.failed{color:#a40000}code,pre{background:#f5f5f5}pre{padding:.6em;overflow:auto;font-size:.8em}
"""

CAPTIONS = {
    "shots": "Test score against labelled examples (per class for classification); dashed: strategies that use "
    "no training data.",
    "cost": "Test score against cost at the largest K: trainable parameters and training time per run.",
    "learning": "Learning curves: train loss and the dev measure that picks the epoch, per epoch.",
}


def write_report(
    output_dir: Path,
    name: str,
    groups: list[Group],
    recommendation: list[str],
    notes: list[str],
    logs: dict[str, list[dict]],
    majority: dict | None,
    config_yaml: str,
    samples: list[dict] | None = None,
    ensembles: list[Group] = (),
) -> dict[str, Path]:
    """``samples``: generation only, [{input, target, outputs: {row name: text}}] (before vs after);
    ``ensembles``: rows of ``compare.ensemble``, in the leaderboard after the others (not in the plots)."""
    plots = {
        "shots": shots_plot(groups, (majority or {}).get(groups[0].metric.key) if groups else None),
        "cost": cost_plot(groups),
        "learning": learning_plot(groups, logs),
    }
    plots = {k: v for k, v in plots.items() if v}
    for key, svg in plots.items():
        write_text_atomic(output_dir / "plots" / f"{key}.svg", svg)
    table = leaderboard(groups, majority, ensembles)
    failures = [e for g in groups for e in g.as_dict()["errors"]]
    chosen = [(g, c) for g in groups for c in g.as_dict()["chosen"]]

    md = [f"# {name}: which adaptation strategy to use", "", "## Recommendation", "", *recommendation, ""]
    md += ["## Leaderboard", "", table, ""]
    md += [f"- {n}" for n in notes] + [""]
    for key in plots:
        md += [f"![{CAPTIONS[key]}](plots/{key}.svg)", "", f"*{CAPTIONS[key]}*", ""]
    if samples:
        md += ["## Samples: the untouched model beside the tuned ones", ""]
        for i, smp in enumerate(samples, 1):
            md += [f"{i}. **input:** {smp['input']}  ", f"   **target:** {smp['target']}  "]
            md += [f"   **{name}:** {text}  " for name, text in smp["outputs"].items()] + [""]
    if chosen:
        md += ["## Hyperparameters chosen on dev", ""]
        md += [f"- {g.strategy} ({g.backbone}) K={g.shots}: {c}" for g, c in chosen] + [""]
    if failures:
        md += ["## Failed cells", ""] + [f"- {f}" for f in failures] + [""]
    write_text_atomic(output_dir / "report.md", "\n".join(md))

    body = [
        f"<h1>{html.escape(name)}: which adaptation strategy to use</h1>",
        "<h2>Recommendation</h2><ul>",
        *(f"<li>{_md_inline(line.removeprefix('- '))}</li>" for line in recommendation),
        "</ul><h2>Leaderboard</h2>",
        _md_table_html(table),
        "<ul>",
        *(f"<li>{_md_inline(n)}</li>" for n in notes),
        "</ul>",
    ]
    for key, svg in plots.items():
        body.append(
            f'<figure id="plot-{key}">{svg}<figcaption>{html.escape(CAPTIONS[key])}</figcaption></figure>'
        )
    if samples:
        body.append("<h2>Samples: the untouched model beside the tuned ones</h2><table><thead><tr>")
        names = list(samples[0]["outputs"])
        body += [f"<th>{html.escape(c)}</th>" for c in ["input", "target", *names]]
        body.append("</tr></thead><tbody>")
        for smp in samples:
            cells = [smp["input"], smp["target"], *(smp["outputs"].get(n, "") for n in names)]
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        body.append("</tbody></table>")
    if chosen:
        body.append("<h2>Hyperparameters chosen on dev</h2><ul>")
        body += [
            f"<li>{html.escape(f'{g.strategy} ({g.backbone}) K={g.shots}: {c}')}</li>" for g, c in chosen
        ]
        body.append("</ul>")
    if failures:
        body.append('<h2 class="failed">Failed cells</h2><ul>')
        body += [f'<li class="failed">{html.escape(f)}</li>' for f in failures]
        body.append("</ul>")
    body.append(
        f"<h2>Config</h2><details><summary>the resolved config</summary><pre>{html.escape(config_yaml)}</pre></details>"
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(name)} · taskfit report</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    write_text_atomic(output_dir / "report.html", page)
    return {"markdown": output_dir / "report.md", "html": output_dir / "report.html"}


__all__ = ["fmt_mean_std", "write_report"]
