#!/usr/bin/env bash
# Start this machine's Ray head node (the GCS and the first raylet) of a qkd-sweep cluster.
#
#   RAY_PORT      the GCS port workers and drivers join at (default 6379)
#   RAY_NODE_IP   default 127.0.0.1: the node's processes listen on loopback only
#   and RAY_NUM_CPUS, RAY_OBJECT_STORE_MEMORY, RAY_TEMP_DIR, RAY_BLOCK (ray-common.sh)
#
# Laptop / tests: the defaults. Container: RAY_NODE_IP=auto RAY_BLOCK=1 (compose.yaml).
# Extra arguments go to `ray start` as they are.
set -euo pipefail
# shellcheck source=docker/ray-common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/ray-common.sh"

node_ip="${RAY_NODE_IP:-127.0.0.1}"
loopback="$(loopback_of "$node_ip")"
if [[ -n "$loopback" ]]; then
    node_ip="$loopback"
    loopback_env
fi
unset RAY_ADDRESS
common_ray_args "$node_ip"

exec "$RAY_BIN" start --head --port "${RAY_PORT:-6379}" --include-dashboard=false "${ray_args[@]}" "$@"
