"""A classical yardstick for the 3-qubit student at the paper's data size.

L2-regularised logistic regression on all 784 pixels, trained on exactly the
900 images (150 per class) that the student of each seed trains on and scored
on the same 900 test images. C is swept and every value printed: picking the
best of them looks at the test split, so the best row is an optimistic bound.

    python docs/results/paper-mnist/readings/linear_reference.py ../shared/data
"""

import sys

import numpy as np
from sklearn.linear_model import LogisticRegression

from workers.data import load_dataset, student_splits
from workers.trial import _seeds

root = sys.argv[1] if len(sys.argv) > 1 else "data"
ds = load_dataset("mnist", tuple(range(6)), root, False)
splits = [student_splits(ds, 150, 150, _seeds(seed)["data"], False) for seed in range(5)]
print("C      per seed 0-4 (%)                       mean   sd")
for c in (0.01, 0.05, 0.2, 1.0):
    accs = []
    for train, test in splits:
        model = LogisticRegression(max_iter=3000, C=c).fit(train.images.flatten(1).numpy(), train.labels.numpy())
        accs.append(100 * model.score(test.images.flatten(1).numpy(), test.labels.numpy()))
    print(f"{c:<6} {np.round(accs, 2)}  {np.mean(accs):.2f}  {np.std(accs, ddof=1):.2f}")
