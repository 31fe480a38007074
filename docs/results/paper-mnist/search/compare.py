"""Tuned distillation against the equally tuned baseline, paired by seed.

`qkd-sweep tables` pairs a distilled student only with the baseline of the same
student settings; the two tuned arms differ in their learning rate, so this
script pairs the arms of specs/search-mnist-tuned.yaml by seed itself.

    python docs/results/paper-mnist/search/compare.py docs/results/paper-mnist/search/tuned
"""

import sys

import pandas as pd
from scipy import stats

folder = sys.argv[1] if len(sys.argv) > 1 else "results/search-mnist-tuned"
t = pd.read_parquet(f"{folder}/trials.parquet")
t = t[t["status"] == "ok"].copy()
paper = (t["lr"] == 0.001) & (t["teacher"].eq("none") | ((t["temperature"] == 3) & (t["lam"] == 0.9)))
t["arm"] = t["teacher"].map({"none": "baseline", "lenet": "LeNet"}) + ", " + paper.map({True: "paper", False: "tuned"})
acc = t.pivot_table(index="seed", columns="arm", values="test_acc") * 100
val = t.pivot_table(index="seed", columns="arm", values="val_acc") * 100
settings = t.drop_duplicates("arm").set_index("arm")[["lr", "temperature", "lam"]]
print("arm                 lr        T      lam    test acc (%)     val acc (%)")
for arm in sorted(acc.columns):
    s = settings.loc[arm]
    print(
        f"{arm:<18}  {s.lr:<8.4g}  {s.temperature:<5.3g}  {s.lam:<5.3g}  "
        f"{acc[arm].mean():.2f} ± {acc[arm].std():.2f}   {val[arm].mean():.2f} ± {val[arm].std():.2f}"
    )
print(f"\nseeds {list(acc.index)}; paired differences of test accuracy, 95% t interval, paired t-test:")
for a, b in (
    ("LeNet, tuned", "baseline, tuned"),
    ("LeNet, paper", "baseline, paper"),
    ("baseline, tuned", "baseline, paper"),
    ("LeNet, tuned", "LeNet, paper"),
):
    res = stats.ttest_rel(acc[a], acc[b])
    ci = res.confidence_interval(0.95)
    print(f"  {a} - {b}: {(acc[a] - acc[b]).mean():+.2f} [{ci.low:+.2f}, {ci.high:+.2f}], p {res.pvalue:.2f}")
