#!/usr/bin/env bash
# Wait until the Ray cluster has its nodes, then run a sweep through it.
#
#   run-sweep.sh [SPEC] [qkd-sweep sweep options...]
#
#   SPEC               the spec (first argument, else $SPEC, else specs/quickstart.yaml)
#   RAY_HEAD_ADDRESS   the head's GCS, HOST:PORT (default 127.0.0.1:${RAY_PORT:-6379})
#   RAY_EXPECT_NODES   wait for this many alive nodes that offer CPUs (default 1)
#   RAY_WAIT_S         give up after this many seconds (default 300), exit status 3
#   RAY_JOIN           1: first join the cluster as a node without CPUs (ray-worker.sh):
#                      a driver must run on a Ray node, and a one-shot container is none
#
# The driver runs on this machine and writes the results itself, so the spec's
# results root (and the teacher cache) must be on storage every node sees.
set -euo pipefail
export ARROW_DEFAULT_MEMORY_POOL=system
export RAY_USAGE_STATS_ENABLED=0
here="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"

spec="${SPEC:-specs/quickstart.yaml}"
if [[ $# -gt 0 && "$1" != -* ]]; then
    spec="$1"
    shift
fi
address="${RAY_HEAD_ADDRESS:-127.0.0.1:${RAY_PORT:-6379}}"
expect="${RAY_EXPECT_NODES:-1}"
wait_s="${RAY_WAIT_S:-300}"

if [[ "${RAY_JOIN:-0}" == 1 ]]; then
    RAY_HEAD_ADDRESS="$address" RAY_NUM_CPUS=0 RAY_BLOCK=0 "$here/ray-worker.sh"
fi
case "${address%:*}" in
    # A driver for a head on 127.0.0.1 must keep that address as it is (ray-head.sh).
    127.0.0.1|localhost) export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ;;
esac
unset RAY_ADDRESS

echo "run-sweep.sh: waiting up to ${wait_s}s for ${expect} node(s) with CPUs at ${address}"
# Bounded twice: the helper gives up at the deadline, `timeout` if a call into Ray hangs.
rc=0
timeout --kill-after=5 "$((wait_s + 30))" "${PYTHON:-python}" "$here/wait-for-nodes.py" "$address" "$expect" "$wait_s" ||
    rc=$?
if [[ $rc -ne 0 ]]; then
    echo "run-sweep.sh: the cluster at ${address} did not have ${expect} node(s) with CPUs within ${wait_s}s" >&2
    exit 3
fi

exec "${QKD_SWEEP:-qkd-sweep}" sweep "$spec" --address "$address" "$@"
