"""The reduction ablation's error chart, from specs/ablation.yaml.

    python docs/results/ablation/ablation.py docs/results/ablation

reads FOLDER/trials.parquet and writes FOLDER/ablation.md (test error in %, mean ± sd over
seeds, per dataset x qubits x reduction, with each cell's seed count) and
FOLDER/figures/ablation.png: grouped bars of test error per reduction, a bar per qubit count,
one panel per dataset, ±1 sd whiskers and each seed as a point (the seed README's error chart,
under this project's protocol). Every ok row counts; rows that are not ok are counted.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

REDUCTIONS = ["fc", "avgpool", "maxpool", "crop", "pca"]
NAMES = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "cifar10": "CIFAR10 (gray)"}


def main(folder: Path) -> None:
    trials = pd.read_parquet(folder / "trials.parquet")
    ok = trials[trials["status"] == "ok"].copy()
    ok["error"] = 100 * (1 - ok["test_acc"])
    cells = ok.groupby(["dataset", "qubits", "reduction"])["error"].agg(["mean", "std", "size"])
    qubits = sorted(ok["qubits"].unique())
    datasets = [d for d in NAMES if d in set(ok["dataset"])]
    lines = [
        "# Reduction ablation: test error (%) of baseline students (from trials.parquet)",
        "",
        f"{len(trials)} trial rows, {len(ok)} ok"
        + (f"; not ok: {dict(trials.loc[trials['status'] != 'ok', 'status'].value_counts())}" if len(ok) < len(trials)
           else "; none left out") + ". Mean ± sd over seeds (n).",  # fmt: skip
        "",
        "| dataset | reduction | " + " | ".join(f"{q} qubits" for q in qubits) + " |",
        "|---|---|" + "---|" * len(qubits),
    ]
    for ds in datasets:
        for red in REDUCTIONS:
            vals = []
            for q in qubits:
                if (ds, q, red) in cells.index:
                    c = cells.loc[(ds, q, red)]
                    vals.append(f"{c['mean']:.2f} ± {c['std']:.2f} ({int(c['size'])})")
                else:
                    vals.append("–")
            lines.append(f"| {NAMES[ds]} | {red} | " + " | ".join(vals) + " |")
    (folder / "ablation.md").write_text("\n".join(lines) + "\n")

    fig = Figure(figsize=(5.2 * len(datasets), 3.8))
    FigureCanvasAgg(fig)
    width = 0.8 / len(qubits)
    for k, ds in enumerate(datasets):
        ax = fig.add_subplot(1, len(datasets), k + 1)
        for j, q in enumerate(qubits):
            x = np.arange(len(REDUCTIONS)) + (j - (len(qubits) - 1) / 2) * width
            means = [cells.loc[(ds, q, r), "mean"] if (ds, q, r) in cells.index else np.nan for r in REDUCTIONS]
            sds = [cells.loc[(ds, q, r), "std"] if (ds, q, r) in cells.index else np.nan for r in REDUCTIONS]
            ax.bar(x, means, width * 0.95, yerr=sds, capsize=3, label=f"{q} qubits", color=f"C{j}", alpha=0.85)
            for xi, red in zip(x, REDUCTIONS, strict=True):
                pts = ok[(ok["dataset"] == ds) & (ok["qubits"] == q) & (ok["reduction"] == red)]["error"]
                ax.scatter(np.full(len(pts), xi), pts, s=8, color="k", zorder=3)
        ax.set_xticks(range(len(REDUCTIONS)), REDUCTIONS)
        ax.set_ylabel("test error (%)")
        ax.set_title(f"{NAMES[ds]}, baseline students", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    (folder / "figures").mkdir(exist_ok=True)
    fig.savefig(folder / "figures" / "ablation.png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
