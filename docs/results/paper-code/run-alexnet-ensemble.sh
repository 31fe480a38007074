#!/usr/bin/env bash
# The AlexNet and ensemble rows of Table 1 (MNIST) in both protocols, resumable (issue 22).
#
# Phase 1 trains the four teachers at the notebooks' recipe (AlexNet and the jointly trained
# ensemble, MNIST 0-5 and 0-7), each writing a checkpoint after every epoch into its cache
# entry; a killed run, a session that ended or a node that died resumes from the last one
# ("resuming <teacher> from epoch k/N"). Finished student trials are never rerun. Run it
# again, as often as needed, until both sweeps print their tables:
#
#   RUNS=/somewhere/kept bash docs/results/paper-code/run-alexnet-ensemble.sh
#
# RUNS (default results/) holds the results and the teacher cache; put it where it outlives
# the work tree. DATA (default ../shared/data) holds MNIST/raw.
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${RUNS:-results}
DATA=${DATA:-../shared/data}
# AlexNet's rows first, in both protocols, then the ensemble's: the ensemble's two teachers
# are most of the hours, and the AlexNet rows land without waiting for them.
for teacher in alexnet ensemble; do
  for spec in paper-code paper-code-honest; do
    .venv/bin/qkd-sweep sweep "specs/$spec.yaml" --data-root "$DATA" --results "$RUNS" --quiet \
      --only dataset=mnist --only teacher=$teacher
  done
done
