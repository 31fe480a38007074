# Shared by ray-head.sh and ray-worker.sh (sourced, not run): the environment and the
# `ray start` options every node gets, from environment variables.
#
#   RAY_NODE_IP              the address this node's Ray processes advertise. Default
#                            127.0.0.1 (laptop, tests): everything on loopback. `auto`:
#                            the address Ray finds other machines reach it by
#                            (containers, cloud VMs).
#   RAY_NUM_CPUS             CPUs this node offers (default: what Ray detects, cgroup
#                            limits included)
#   RAY_OBJECT_STORE_MEMORY  bytes of object store (default: Ray's, 30% of memory)
#   RAY_TEMP_DIR             Ray's temp/session dir (default /tmp/ray); also where
#                            `ray start` records the cluster address for a bare `ray.init()`
#   RAY_BLOCK                1: `ray start --block`, Ray in the foreground (a container's
#                            main process; it stops the node's processes on SIGTERM)
#   RAY_BIN, PYTHON          the `ray` and `python` to run (default: those on PATH)
#
# Anything passed to a script after its own options goes to `ray start` unchanged
# (the cluster launcher adds --autoscaling-config that way).
#
# Loopback: Ray's gRPC servers (GCS, raylet, workers) listen on loopback only when
# the node address is exactly 127.0.0.1, and on every interface for any other
# address, 127.0.0.2 included. On Linux Ray also replaces 127.0.0.1 by the
# machine's outward address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 says this
# is a one-machine cluster. So a node on loopback is a node on 127.0.0.1 with that
# variable set, and another 127.x address is refused.
# shellcheck shell=bash

export ARROW_DEFAULT_MEMORY_POOL=system
export RAY_USAGE_STATS_ENABLED=0
RAY_BIN="${RAY_BIN:-ray}"

# Exit 2 with a message on stderr.
die() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}

# The loopback address a host names (127.0.0.1 for 127.0.0.1 and localhost), or
# nothing when it is no loopback host; dies for the loopback addresses Ray would
# listen on every interface for.
loopback_of() {
    case "$1" in
        127.0.0.1|localhost) echo 127.0.0.1 ;;
        127.*|::1|'[::1]')
            die "$1: a Ray node on loopback must use 127.0.0.1 (for any other address Ray listens on every interface)" ;;
        *) ;;
    esac
}

# The options both kinds of node share, for node address $1 (or auto), in the array ray_args.
common_ray_args() {
    ray_args=(--disable-usage-stats)
    if [[ "$1" != auto ]]; then
        ray_args+=(--node-ip-address "$1")
    fi
    if [[ -n "${RAY_NUM_CPUS:-}" ]]; then
        ray_args+=(--num-cpus "$RAY_NUM_CPUS")
    fi
    if [[ -n "${RAY_OBJECT_STORE_MEMORY:-}" ]]; then
        ray_args+=(--object-store-memory "$RAY_OBJECT_STORE_MEMORY")
    fi
    if [[ -n "${RAY_TEMP_DIR:-}" ]]; then
        mkdir -p "$RAY_TEMP_DIR"
        ray_args+=(--temp-dir "$RAY_TEMP_DIR")
    fi
    if [[ "${RAY_BLOCK:-0}" == 1 ]]; then
        ray_args+=(--block)
    fi
}

# Keep a one-machine cluster's processes on loopback (inherited by all they start).
loopback_env() {
    export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    # With usage stats off, a head started by `ray start` still posts a "usage stats
    # disabled" notice to usage-stats.ray.io: on loopback it goes to a closed port.
    export RAY_USAGE_STATS_REPORT_URL="${RAY_USAGE_STATS_REPORT_URL:-http://127.0.0.1:9/}"
}
