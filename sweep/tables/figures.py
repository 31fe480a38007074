"""The figures: per-epoch losses (Fig. 6) and test accuracy per teacher (Fig. 7)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sweep.tables.common import CELL, Report
from sweep.tables.labels import teacher_rank
from workers.io import Location, atomic_write


def _panels(n: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.8 * ncols, 3.6 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _colors(labels: list[str]) -> dict[str, str]:
    others = iter(f"C{i}" for i in range(10))
    return {lab: "0.35" if lab == "baseline" else next(others, "C9") for lab in labels}


def _label_order(df: pd.DataFrame) -> list[str]:
    known = teacher_rank()
    first = df.drop_duplicates("label").assign(
        _t=lambda x: x["teacher"].map(lambda t: known.index(t) if t in known else 9)
    )
    return first.sort_values(["_t", "teacher", "temperature", "lam", "kd_form"], na_position="first")["label"].tolist()


def _save(fig, path: Location) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def loss_figure(report: Report, path: Location) -> None:
    ep = report.epochs
    keys = list(report.panel_titles)
    fig, axes = _panels(len(keys))
    colors = _colors(_label_order(ep))
    stats_ = ep.groupby([*CELL, "label", "epoch"], dropna=False)[["train_loss", "test_loss"]].agg(["mean", "std"])
    for ax, key in zip(axes, keys, strict=False):
        cell = stats_.xs(key, level=CELL) if key in stats_.index.droplevel(["label", "epoch"]) else None
        if cell is None:
            ax.text(0.5, 0.5, "no per-epoch rows", ha="center", va="center", transform=ax.transAxes)
        else:
            for label in [lab for lab in colors if lab in cell.index.get_level_values("label")]:
                line = cell.xs(label, level="label")
                for col, style in (("train_loss", "-"), ("test_loss", "--")):
                    m, s = line[(col, "mean")], line[(col, "std")].fillna(0)
                    ax.plot(line.index, m, style, color=colors[label], label=f"{label} {col.split('_')[0]}")
                    ax.fill_between(line.index, m - s, m + s, color=colors[label], alpha=0.15, linewidth=0)
            if (cell.xs("mean", axis=1, level=1) > 0).all().all():
                ax.set_yscale("log")
            ax.legend(fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(title=report.panel_titles[key], xlabel="epoch", ylabel="loss")
    fig.suptitle("Train (solid) and test (dashed) loss\n(mean ± std over seeds)", fontsize="medium")
    _save(fig, path)


def accuracy_figure(report: Report, path: Location) -> None:
    ps = report.per_seed
    keys = list(report.panel_titles)
    fig, axes = _panels(len(keys))
    colors = _colors(_label_order(ps))
    for ax, key in zip(axes, keys, strict=False):
        cell = ps[(ps[CELL] == pd.Series(key, index=CELL)).all(axis=1)]
        labels = [lab for lab in colors if lab in set(cell["label"])]
        acc = cell.groupby("label")["acc"].agg(["mean", "std"]).reindex(labels) * 100
        x = np.arange(len(labels))
        ax.bar(x, acc["mean"], yerr=acc["std"].fillna(0), capsize=4, color=[colors[lab] for lab in labels], alpha=0.6)
        for i, lab in enumerate(labels):
            pts = cell.loc[cell["label"] == lab, "acc"].to_numpy() * 100
            jitter = np.linspace(-0.15, 0.15, len(pts)) if len(pts) > 1 else np.zeros(1)
            ax.scatter(x[i] + jitter, pts, s=14, color="black", zorder=3)
        low = max(0.0, float(np.nanmin(cell["acc"])) * 100 - 5)
        ax.set_ylim(low, 100)
        ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
        ax.set(title=report.panel_titles[key], ylabel="test accuracy (%)")
    fig.suptitle("Student test accuracy per teacher\n(mean ± std; seeds as points)", fontsize="medium")
    _save(fig, path)
