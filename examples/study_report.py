"""The study's tables (Markdown, reStructuredText) and chart.

Part of the MovieLens study (``movielens_context.py``, its entry point).
"""

from __future__ import annotations

import numpy as np
from study_models import (
    BASELINES,
    CHOSEN,
    DIM,
    ENSEMBLED,
    MODELS,
    PROTOCOLS,
    SETUPS,
)


def summarize(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    sd = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return {"mean": float(array.mean()), "sd": sd, "n": int(array.size)}


def collect(runs: dict, setup: str, protocol: str, name: str, kind: str) -> dict:
    row = {"setup": setup, "protocol": protocol, "model": name, "kind": kind}
    for metric in ("hit@10", "hit@100", "ndcg@10"):
        row[metric] = summarize([run[metric] for run in runs])
    return row


def table_data(runs: dict, kinds: dict) -> list[dict]:
    """One summarised row per (setup, protocol, model), in table order.

    ``runs`` maps ``(setup, protocol, model)`` to per-seed results and
    ``kinds`` maps ``(setup, model)`` to ``(kind, description)``.
    """
    rows = []
    for (setup, protocol, name), values in runs.items():
        kind, description = kinds[setup, name]
        row = collect(values, setup, protocol, name, kind)
        row["description"] = description
        rows.append(row)
    order = {name: i for i, name in enumerate([*BASELINES, *MODELS, CHOSEN, ENSEMBLED])}
    names = [s.name for s in SETUPS]
    rows.sort(
        key=lambda r: (
            PROTOCOLS.index(r["protocol"]),
            names.index(r["setup"]),
            order[r["model"]],
        )
    )
    return rows


def cell(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.3f} ± {stats['sd']:.3f}"


def table_rows(results: dict, protocol: str) -> list[list[str]]:
    """The cells of one protocol's table: header first."""
    rows = [r for r in results["rows"] if r["protocol"] == protocol]
    out = [
        ["setup", "model", "hit@10", "hit@100", "NDCG@10", "hit@10 / EASE"]
        + ["hit@100 / EASE"]
    ]
    for row in rows:
        ease = next(
            (r for r in rows if r["setup"] == row["setup"] and "EASE" in r["model"]),
            None,
        )
        ratios = [
            f"{row[m]['mean'] / ease[m]['mean']:.2f}x" if ease else "n/a"
            for m in ("hit@10", "hit@100")
        ]
        label = (
            f"{row['model']}: {row['description']}"
            if row["kind"] == "model"
            else f"*{row['model']}*"
        )
        out.append(
            [row["setup"], label, cell(row["hit@10"]), cell(row["hit@100"])]
            + [cell(row["ndcg@10"]), *ratios]
        )
    return out


def footnote(results: dict) -> str:
    meta = results["meta"]
    return (
        f"Mean ± sd over seeds {meta['seeds']}; baselines in italics. Tutorial "
        "recipe: Adagrad 0.1, 3 epochs, batch 2048. Long recipe: Adam 3e-3, "
        f"{meta['long_epochs']} epochs, batch 1024, logQ correction; {DIM}-d. "
        "The chosen recipe of each setup comes from "
        f"{meta['trials']} Optuna trials on its validation slice. Wall time "
        f"{meta['wall_seconds']:.0f} s, peak RSS {meta['peak_rss_gb']:.2f} GB "
        f"on {meta['machine']}. TFRS tutorial reference (random split, "
        "3 epochs): test top-100 0.21 without timestamps, 0.25 with them."
    )


def markdown_table(cells: list[list[str]]) -> list[str]:
    """A Markdown table's lines: ``cells[0]`` the header."""
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    return lines + ["| " + " | ".join(row) + " |" for row in cells[1:]]


def list_table(title: str, cells: list[list[str]], widths: str = "") -> list[str]:
    """A reStructuredText list-table's lines: ``cells[0]`` the header, a
    second cell wrapped in asterisks italic (the baselines)."""
    lines = [f".. list-table:: {title}", "   :header-rows: 1"]
    lines += [f"   :widths: {widths}"] if widths else []
    lines.append("")
    for row in cells:
        # Baselines are *italic*; any other asterisk is literal.
        escaped = [value.replace("*", r"\*") for value in row]
        if row is not cells[0] and row[1].startswith("*"):
            escaped[1] = f"*{row[1].strip('*')}*"
        lines.append(f"   * - {escaped[0]}")
        lines += [f"     - {value}" for value in escaped[1:]]
    return lines


def markdown(results: dict) -> str:
    lines = []
    for protocol in PROTOCOLS:
        cells = table_rows(results, protocol)
        if len(cells) == 1:
            continue
        lines += [f"**{protocol} protocol**", "", *markdown_table(cells), ""]
    lines.append(footnote(results))
    return "\n".join(lines) + "\n"


def restructured_text(results: dict) -> str:
    """The tables as reStructuredText list-tables, for the docs."""
    lines = []
    for protocol in PROTOCOLS:
        cells = table_rows(results, protocol)
        if len(cells) == 1:
            continue
        widths = "14 40 10 10 10 8 8"
        lines += [*list_table(f"{protocol} protocol", cells, widths), ""]
    lines.append(footnote(results))
    return "\n".join(lines) + "\n"


def chart(results: dict, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in results["rows"] if r["protocol"] == "next-event"]
    if not rows:
        return False
    setups = list(dict.fromkeys(r["setup"] for r in rows))
    figure, axes = plt.subplots(
        2, len(setups), figsize=(5.5 * len(setups), 7.5), squeeze=False
    )
    for column, setup in enumerate(setups):
        part = [r for r in rows if r["setup"] == setup]
        colours = ["#a5a5a5" if r["kind"] == "baseline" else "#4472c4" for r in part]
        for line, metric in enumerate(("hit@10", "hit@100")):
            axis = axes[line][column]
            axis.barh(
                range(len(part)),
                [r[metric]["mean"] for r in part],
                xerr=[r[metric]["sd"] for r in part],
                color=colours,
                capsize=3,
            )
            axis.set_yticks(range(len(part)), [r["model"] for r in part], fontsize=8)
            axis.invert_yaxis()
            axis.set_xlabel(f"test {metric} (next-event, seen items excluded)")
            axis.set_title(setup, fontsize=10)
    figure.suptitle("Baselines (grey) and models (blue)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
