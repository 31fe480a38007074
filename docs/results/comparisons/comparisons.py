"""The seed's comparisons side by side, from specs/comparisons-mnist.yaml.

    python docs/results/comparisons/comparisons.py docs/results/comparisons

reads FOLDER/trials.parquet and FOLDER/teachers.parquet and writes FOLDER/comparisons.md: one
row per direction (C->Q, Q->Q, C->C, Q->C), the student's own baseline beside the distilled
student, mean ± sd over seeds, the paired difference (distilled - baseline, matched on the
seed, which fixes the data sample and the initialization both runs share) with its 95% t
interval and p-value, and both sides' parameter counts; and FOLDER/figures/comparisons.png
(each seed's paired difference per direction, with the mean and its interval). Every ok row
counts; none is dropped, and rows that are not ok are counted.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

STUDENTS = {"amplitude": "Q", "classical": "C"}
TEACHERS = {"lenet": "C", "qnn": "Q"}
NAMES = {"amplitude": "Quantum, 3 qubit", "classical": "Classical", "lenet": "LeNet", "qnn": "QNN 8 qubit"}


def directions(t: pd.DataFrame) -> list[dict]:
    out = []
    for student, s in STUDENTS.items():
        base = t[(t["student"] == student) & (t["teacher"] == "none")].set_index("seed")["test_acc"]
        for teacher, c in TEACHERS.items():
            kd = t[(t["student"] == student) & (t["teacher"] == teacher)].set_index("seed")["test_acc"]
            seeds = sorted(set(base.index) & set(kd.index))
            d = (kd[seeds] - base[seeds]).to_numpy()
            res = stats.ttest_rel(kd[seeds], base[seeds]) if len(d) >= 2 else None
            ci = res.confidence_interval(0.95) if res is not None else None
            sizes = t[(t["student"] == student)]["n_params"]
            out.append({
                "direction": f"{c}→{s}", "teacher": teacher, "student": student,
                "base_mean": base.mean(), "base_sd": base.std(), "n_base": len(base),
                "kd_mean": kd.mean(), "kd_sd": kd.std(), "n_kd": len(kd), "diff": d.mean(), "d": d,
                "ci": (ci.low, ci.high) if ci is not None else (np.nan, np.nan),
                "p": res.pvalue if res is not None else np.nan, "pairs": len(d),
                "student_params": int(sizes.max()),
            })  # fmt: skip
    return out


def main(folder: Path) -> None:
    trials = pd.read_parquet(folder / "trials.parquet")
    ok = trials[trials["status"] == "ok"].copy()
    ok["test_acc"] *= 100
    teachers = pd.read_parquet(folder / "teachers.parquet").drop_duplicates("teacher_key", keep="last")
    tinfo = teachers.set_index("teacher")[["test_acc", "n_params", "train_seconds"]]
    rows = directions(ok)
    lines = [
        "# Distillation directions on MNIST 0-5 (from trials.parquet)",
        "",
        f"{len(trials)} trial rows, {len(ok)} ok"
        + (f"; not ok: {dict(trials.loc[trials['status'] != 'ok', 'status'].value_counts())}" if len(ok) < len(trials)
           else "; none left out") + ".",  # fmt: skip
        "",
        "Teachers (frozen; test accuracy on the whole class-filtered MNIST test split):",
        "",
        "| teacher | kind | test acc (%) | parameters | training (s) |",
        "|---|---|---|---|---|",
    ]
    for name in TEACHERS:
        if name in tinfo.index:
            r = tinfo.loc[name]
            kind = "quantum" if TEACHERS[name] == "Q" else "classical"
            lines.append(f"| {NAMES[name]} | {kind} | {100 * r.test_acc:.2f} | {int(r.n_params):,} | "
                         f"{r.train_seconds:.0f} |")  # fmt: skip
    lines += [
        "",
        "Students: test accuracy (%) after the last epoch, mean ± sd over seeds; paired Δ = distilled −",
        "baseline of the same student kind, matched on the seed, with its 95% t interval and p-value.",
        "",
        "| direction | teacher → student | student parameters | baseline | distilled | paired Δ [95% CI] | p | pairs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['direction']} | {NAMES[r['teacher']]} → {NAMES[r['student']]} | {r['student_params']:,} | "
            f"{r['base_mean']:.2f} ± {r['base_sd']:.2f} | {r['kd_mean']:.2f} ± {r['kd_sd']:.2f} | "
            f"{r['diff']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}] | {r['p']:.3g} | {r['pairs']} |"
        )
    (folder / "comparisons.md").write_text("\n".join(lines) + "\n")

    fig = Figure(figsize=(8.4, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    for i, r in enumerate(rows):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(r["d"])), r["d"], s=14, color="0.55", zorder=2)
        ax.errorbar(i, r["diff"], yerr=[[r["diff"] - r["ci"][0]], [r["ci"][1] - r["diff"]]], fmt="o", color="C3",
                    capsize=5, zorder=3)  # fmt: skip
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(range(len(rows)), [f"{r['direction']}\n{NAMES[r['teacher']]} → {NAMES[r['student']]}"
                                      for r in rows], fontsize=8)  # fmt: skip
    ax.set_ylabel("paired Δ test accuracy (points)")
    ax.set_title("MNIST 0-5: distilled − own baseline, per seed; mean and 95% CI", fontsize=10)
    fig.tight_layout()
    (folder / "figures").mkdir(exist_ok=True)
    fig.savefig(folder / "figures" / "comparisons.png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
