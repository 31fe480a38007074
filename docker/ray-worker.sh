#!/usr/bin/env bash
# Join this machine to a qkd-sweep Ray cluster as a worker node.
#
#   RAY_HEAD_ADDRESS  the head's GCS, HOST:PORT (required), e.g. head:6379
#   RAY_NODE_IP       this node's address; default: 127.0.0.1 when the head is on
#                     loopback (a second node on the same machine), else auto
#   and RAY_NUM_CPUS, RAY_OBJECT_STORE_MEMORY, RAY_TEMP_DIR, RAY_BLOCK (ray-common.sh)
#
# Extra arguments go to `ray start` as they are.
set -euo pipefail
# shellcheck source=docker/ray-common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/ray-common.sh"

head="${RAY_HEAD_ADDRESS:?set it to the HOST:PORT of the head node, e.g. head:6379}"
head_loopback="$(loopback_of "${head%:*}")"
if [[ -n "$head_loopback" ]]; then
    # A head on this machine's loopback: this node joins it on loopback too.
    node_ip="${RAY_NODE_IP:-127.0.0.1}"
    loopback="$(loopback_of "$node_ip")"
    [[ -n "$loopback" ]] || die "RAY_NODE_IP=$node_ip: a node that joins a head on loopback must be on 127.0.0.1"
    node_ip="$loopback"
    head="$head_loopback:${head##*:}"
else
    node_ip="${RAY_NODE_IP:-auto}"
    loopback="$(loopback_of "$node_ip")"
    [[ -z "$loopback" ]] || die "RAY_NODE_IP=$node_ip: a node on loopback cannot join a head at ${head%:*}"
fi
unset RAY_ADDRESS
common_ray_args "$node_ip"

if [[ "$node_ip" != 127.0.0.1 ]]; then
    unset RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER  # Ray's multi-node mode, the default on Linux
    exec "$RAY_BIN" start --address "$head" "${ray_args[@]}" "$@"
fi

# A second node on loopback. RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps 127.0.0.1 as
# it is in this node's processes, but `ray start --address` refuses to join a
# cluster in that mode (it is meant for Windows and macOS). Ray's own test
# clusters run several nodes on 127.0.0.1; here `ray start` sees the multi-node
# switch on for its refusal alone, while the functions that resolve addresses,
# and every process the node starts, keep it off.
loopback_env
exec "${PYTHON:-python}" -c '
import sys
import types

import ray._private.ray_constants as constants
import ray.scripts.scripts as scripts

for_start = types.ModuleType(constants.__name__)
for_start.__dict__.update(vars(constants))
for_start.ENABLE_RAY_CLUSTER = True  # only the "no multi-node clusters" check reads it here
scripts.ray_constants = for_start
sys.argv = ["ray", *sys.argv[1:]]
sys.exit(scripts.main())
' start --address "$head" "${ray_args[@]}" "$@"
