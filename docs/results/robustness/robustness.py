"""Test accuracy against noise, baseline beside LeNet distillation, from specs/robustness-mnist.yaml.

    python docs/results/robustness/robustness.py docs/results/robustness

reads FOLDER/trials.parquet and writes FOLDER/robustness.md (the table per noise level: baseline
and LeNet mean ± sd over seeds, the paired difference LeNet − baseline with its 95% t interval;
then the slopes) and FOLDER/figures/robustness.png. Every ok row counts; none is dropped.

A level is what the test split was scored under, and how the model was trained: "trained and
scored" under one noise (``test_noise`` as ``noise``), or "trained clean, scored noisy". The
slope of a curve is the least-squares slope of test accuracy against the depolarizing 2-qubit
probability p2 over the levels of that curve (clean at p2 = 0), fitted per seed; distillation
changes the slope if the per-seed difference of the two slopes (paired on the seed, which fixes
the data sample and initialization both runs share) has a 95% interval that excludes 0.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

NAMES = {"none": "baseline", "lenet": "LeNet"}
COLORS = {"none": "tab:blue", "lenet": "tab:orange"}


def p2_of(noise: str, scale: float) -> float:
    """The depolarizing 2-qubit probability of a noise spec at a scale (NaN for a device, 0 clean)."""
    if not noise:
        return 0.0
    kind, _, args = noise.partition(":")
    if kind != "depolarizing":
        return np.nan
    values = [float(v) for v in args.split(",")]
    p2 = values[1] if len(values) > 1 else min(1.0, 10 * values[0])
    return p2 * scale


def load(folder: Path) -> pd.DataFrame:
    t = pd.read_parquet(folder / "trials.parquet")
    t = t[t["status"] == "ok"].copy()
    t["test_acc"] *= 100
    t["trained"] = np.where(t["noise"] == "", "clean", t["noise"])
    t["p2"] = [p2_of(n, s) for n, s in zip(t["test_noise"], t["noise_scale"], strict=True)]
    t["curve"] = np.where(
        (t["noise"] == "") & (t["test_noise"] != ""), "trained clean, scored noisy", "trained and scored noisy"
    )
    t["level"] = [level(r) for r in t.itertuples()]
    return t


def level(r) -> str:
    if not r.test_noise:
        return "none"
    if r.test_noise.startswith("fake:"):
        name = r.test_noise
    else:
        name = f"depolarizing p2={r.p2:g}"
    return name if r.noise == r.test_noise else f"{name}, trained clean"


def ci(d: np.ndarray) -> tuple[float, float, float]:
    """Mean of d and its 95% t interval."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return float(d.mean()) if len(d) else np.nan, np.nan, np.nan
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    return float(d.mean()), float(lo), float(hi)


def per_level(t: pd.DataFrame) -> pd.DataFrame:
    rows = []
    order = t.sort_values(["curve", "p2", "test_noise"], ascending=[True, True, True])["level"].unique()
    for lvl in order:
        g = t[t["level"] == lvl]
        acc = g.pivot_table(index="seed", columns="teacher", values="test_acc")
        b, le = acc.get("none"), acc.get("lenet")
        pair = (le - b).dropna() if b is not None and le is not None else pd.Series(dtype=float)
        d, lo, hi = ci(pair.to_numpy())
        first = g.iloc[0]
        rows.append(
            {
                "level": lvl,
                "curve": first["curve"],
                "noise": first["noise"],
                "test_noise": first["test_noise"],
                "noise_scale": first["noise_scale"],
                "p2": first["p2"],
                "base_mean": b.mean(),
                "base_sd": b.std(),
                "base_n": b.count(),
                "lenet_mean": le.mean(),
                "lenet_sd": le.std(),
                "lenet_n": le.count(),
                "diff": d,
                "ci_low": lo,
                "ci_high": hi,
                "n_pairs": len(pair),
                "layout": ", ".join(sorted(set(g["test_layout"]) - {""})),
                "depth": ", ".join(str(x) for x in sorted(set(g["test_transpiled_depth"]))),
                "two_qubit": ", ".join(str(x) for x in sorted(set(g["test_two_qubit_gates"]))),
                "wall_s": g["wall_s"].mean(),
            }
        )
    return pd.DataFrame(rows)


def slopes(t: pd.DataFrame, curve: str) -> pd.DataFrame:
    """Per seed and teacher: the slope of test accuracy (points) against p2, over the clean level
    and the depolarizing levels of ``curve``."""
    g = t[(t["level"] == "none") | ((t["curve"] == curve) & t["p2"].gt(0))]
    out = []
    for (seed, teacher), s in g.groupby(["seed", "teacher"]):
        if s["p2"].nunique() >= 2:
            out.append({"seed": seed, "teacher": teacher, "slope": np.polyfit(s["p2"], s["test_acc"], 1)[0]})
    if not out:
        return pd.DataFrame()
    return pd.DataFrame(out).pivot_table(index="seed", columns="teacher", values="slope")


def interaction(t: pd.DataFrame, lvl: str) -> tuple[float, float, float]:
    """Per seed: (LeNet − baseline at lvl) − (LeNet − baseline noise-free); its mean and 95% interval."""
    acc = t.pivot_table(index="seed", columns=["level", "teacher"], values="test_acc")
    d = (acc[(lvl, "lenet")] - acc[(lvl, "none")]) - (acc[("none", "lenet")] - acc[("none", "none")])
    return ci(d.dropna().to_numpy())


def fmt(m: float, s: float) -> str:
    return f"{m:.2f} ± {s:.2f}"


def fmt_ci(d: float, lo: float, hi: float) -> str:
    return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def write_md(t: pd.DataFrame, lv: pd.DataFrame, folder: Path) -> str:
    lines = [
        "# Robustness to noise: MNIST 0-5, 3 qubits, baseline and LeNet distillation",
        "",
        "Test accuracy (%) after the last epoch, mean ± sd over seeds; paired Δ = LeNet − baseline "
        "per seed, mean [95% t interval]. Generated by `robustness.py` from `trials.parquet`.",
        "",
        "| level | trained under | scored under | baseline | LeNet | paired Δ [95% CI] | n | "
        "layout (physical qubits) | depth | 2q gates |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def scaled(noise: str, scale: float) -> str:
        return "none" if not noise else noise if scale == 1 else f"{noise} × {scale:g}"

    for r in lv.itertuples():
        lines.append(
            f"| {r.level} | {scaled(r.noise, r.noise_scale)} | {scaled(r.test_noise, r.noise_scale)} "
            f"| {fmt(r.base_mean, r.base_sd)} | {fmt(r.lenet_mean, r.lenet_sd)} "
            f"| {fmt_ci(r.diff, r.ci_low, r.ci_high)} | {r.n_pairs} | {r.layout or '-'} | {r.depth} | {r.two_qubit} |"
        )
    lines += [
        "",
        "## Slopes: accuracy points per unit of p2 (depolarizing, clean level at p2 = 0)",
        "",
        "| curve | baseline slope | LeNet slope | paired Δ slope [95% CI] | n |",
        "|---|---|---|---|---|",
    ]
    for curve in ("trained and scored noisy", "trained clean, scored noisy"):
        s = slopes(t, curve)
        if {"none", "lenet"} <= set(s.columns):
            d = (s["lenet"] - s["none"]).dropna()
            lines.append(
                f"| {curve} | {fmt(s['none'].mean(), s['none'].std())} | "
                f"{fmt(s['lenet'].mean(), s['lenet'].std())} | {fmt_ci(*ci(d.to_numpy()))} | {len(d)} |"
            )
    lines += [
        "",
        "## Distillation's effect at a level against its effect noise-free",
        "",
        "Per seed: (LeNet − baseline at the level) − (LeNet − baseline noise-free).",
        "",
        "| level | Δ(level) − Δ(none) [95% CI] |",
        "|---|---|",
    ]
    for lvl in lv["level"]:
        if lvl != "none":
            lines.append(f"| {lvl} | {fmt_ci(*interaction(t, lvl))} |")
    text = "\n".join(lines) + "\n"
    (folder / "robustness.md").write_text(text)
    return text


def figure(t: pd.DataFrame, lv: pd.DataFrame, folder: Path) -> None:
    fig = Figure(figsize=(16, 4.8))
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.3, 0.8, 1.5]})
    # (a) depolarizing: accuracy against p2, both curves, both teachers
    for curve, style in (("trained and scored noisy", "-"), ("trained clean, scored noisy", "--")):
        sub = lv[(lv["level"] == "none") | ((lv["curve"] == curve) & lv["p2"].gt(0))].sort_values("p2")
        for k, teacher in enumerate(("none", "lenet")):
            x = sub["p2"].to_numpy() + (k - 0.5) * 0.008
            col = "base" if teacher == "none" else "lenet"
            m, sd = sub[f"{col}_mean"], sub[f"{col}_sd"]
            ax1.errorbar(
                x,
                m,
                yerr=sd,
                fmt="o" + style,
                color=COLORS[teacher],
                capsize=3,
                alpha=1 if style == "-" else 0.6,
                label=f"{NAMES[teacher]}, {curve}",
            )
            if style == "-":
                pts = t[(t["teacher"] == teacher) & t["level"].isin(sub["level"])]
                ax1.scatter(pts["p2"] + (k - 0.5) * 0.008, pts["test_acc"], s=8, color=COLORS[teacher], alpha=0.35)
    ax1.set_xlabel("depolarizing 2-qubit probability p2 (p1 = p2 / 10)")
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_title("depolarizing noise (mean ± sd, seeds as dots)")
    ax1.legend(fontsize=7, loc="lower left")
    # (b) devices
    dev = lv[lv["level"].isin(["none"]) | lv["test_noise"].str.startswith("fake:")]
    dev = dev[dev["curve"] == "trained and scored noisy"]
    xs = np.arange(len(dev))
    for k, teacher in enumerate(("none", "lenet")):
        col = "base" if teacher == "none" else "lenet"
        ax2.errorbar(
            xs + (k - 0.5) * 0.2,
            dev[f"{col}_mean"],
            yerr=dev[f"{col}_sd"],
            fmt="o",
            color=COLORS[teacher],
            capsize=3,
            label=NAMES[teacher],
        )
        pts = t[(t["teacher"] == teacher)]
        for i, lvl in enumerate(dev["level"]):
            y = pts.loc[pts["level"] == lvl, "test_acc"]
            ax2.scatter(np.full(len(y), i + (k - 0.5) * 0.2), y, s=8, color=COLORS[teacher], alpha=0.35)
    ax2.set_xticks(xs, dev["level"], rotation=15)
    ax2.set_title("IBM devices (trained and scored on each)")
    ax2.legend(fontsize=8)
    # (c) paired differences per level
    ys = np.arange(len(lv))[::-1]
    ax3.errorbar(
        lv["diff"], ys, xerr=[lv["diff"] - lv["ci_low"], lv["ci_high"] - lv["diff"]], fmt="o", color="k", capsize=3
    )
    ax3.axvline(0, color="grey", lw=0.8)
    ax3.set_yticks(ys, lv["level"], fontsize=8)
    ax3.set_xlabel("paired Δ test accuracy, LeNet − baseline (points, 95% CI)")
    ax3.set_title("distillation's effect per level")
    fig.tight_layout()
    (folder / "figures").mkdir(exist_ok=True)
    fig.savefig(folder / "figures" / "robustness.png", dpi=120)


def main(folder: str) -> None:
    d = Path(folder)
    t = load(d)
    lv = per_level(t)
    print(write_md(t, lv, d))
    figure(t, lv, d)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent))
