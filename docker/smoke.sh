#!/usr/bin/env bash
# Build docker/Dockerfile and run it: a head and a worker node from the image, both on
# 127.0.0.1, and a sweep (the quickstart by default) through run-sweep.sh on them; then
# check that the result rows came from both nodes. Exit 0 only when they did.
#
#   docker/smoke.sh [SPEC [qkd-sweep sweep options...]]        (from anywhere; run as root)
#
#   SPEC  a spec in the image (default /app/specs/quickstart.yaml), or a file on this
#         machine, which is copied to the shared folder and run from there
#
# Too slow for `make test` (minutes, a multi-GB image): a documented, repeatable check
# (docs/cluster.md says what it built and ran, and how long it took).
#
# The engine: docker when its daemon answers, else podman when a `podman run --rm`
# actually runs, else buildah (`buildah bud` and `buildah run` with chroot isolation,
# on the host's network). The base image: BASE_IMAGE (the Dockerfile's default) when it
# is in the engine's store or can be pulled, else one made here from Debian's packages:
# debootstrap of bookworm with python3.11, a venv at /opt/python first on PATH (what
# python:3.11-slim gives: a `python -m pip` that installs freely) and this machine's CA
# certificates (so that pip in the build reaches PyPI the way this machine does),
# imported with `podman import` (or buildah from scratch, or docker import).
#
# The two nodes share the host's network, so they are two raylets on 127.0.0.1 with
# their own ports, as in tests/test_cluster.py. Each has a Ray temp dir of its own, as
# in separate containers; the driver runs in the head's container (compose's `exec head
# run-sweep.sh` way), and of the raylets on its host Ray connects a driver to the head's.
# Results, teacher cache and data are on a folder of this machine, /shared in both.
#
# Settings (environment):
#   SMOKE_ENGINE        auto (default) | docker | podman | buildah
#   BASE_IMAGE          default python:3.11-slim-bookworm (the Dockerfile's default)
#   SMOKE_LOCAL_BASE    the tag of the base made here (localhost/qkd-smoke-base:bookworm-py311)
#   SMOKE_REBUILD_BASE  1: make the local base again even if it exists
#   DEBIAN_MIRROR       debootstrap's mirror (default: this machine's apt source for Debian)
#   TORCH_INDEX_URL     default https://download.pytorch.org/whl/cpu (the Dockerfile's);
#                       if it does not answer, https://pypi.org/simple (PyPI's CUDA build)
#   SMOKE_IMAGE         the tag of the built image (localhost/qkd-sweep:smoke)
#   SMOKE_NO_CACHE      1: build without the layer cache
#   SMOKE_WORK          scratch: logs, shared folder, Ray temp dir (/var/tmp/qkd-smoke)
#   SMOKE_CPUS          CPUs each node offers (2: the quickstart's teachers ask for 2)
#   SMOKE_OBJECT_STORE  object store bytes per node (536870912)
#   SMOKE_WAIT_S        how long run-sweep.sh waits for the two nodes (180)
#   SMOKE_RMI           1: remove the built image at the end (the base stays)
set -euo pipefail

here="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
root="$(dirname "$here")"
engine="${SMOKE_ENGINE:-auto}"
base="${BASE_IMAGE:-python:3.11-slim-bookworm}"
local_base="${SMOKE_LOCAL_BASE:-localhost/qkd-smoke-base:bookworm-py311}"
torch_index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
image="${SMOKE_IMAGE:-localhost/qkd-sweep:smoke}"
work="${SMOKE_WORK:-/var/tmp/qkd-smoke}"
cpus="${SMOKE_CPUS:-2}"
object_store="${SMOKE_OBJECT_STORE:-536870912}"
wait_s="${SMOKE_WAIT_S:-180}"
spec="/app/specs/quickstart.yaml"
if [[ $# -gt 0 ]]; then
    spec="$1"
    shift
fi
sweep_args=("$@")

# One name for this run's Ray temp dir in each container, short (Unix socket paths) and
# unique: it is also how this script finds the cluster's processes on this machine to end
# them. Each node's is a folder of its own here ($work/ray-head, $work/ray-worker), so
# that its logs stay after the run.
ray_tmp="/tmp/qkds-$$"
head_name=qkd-smoke-head
worker_name=qkd-smoke-worker
t_start=$SECONDS
t_step=$SECONDS
step_name=""
declare -A took=()

say() { echo "smoke.sh: $*"; }
fail() {
    echo "smoke.sh: FAILED: $*" >&2
    exit 1
}
step() {
    if [[ -n "$step_name" ]]; then
        took[$step_name]=$((SECONDS - t_step))
        say "  ... ${took[$step_name]} s"
    fi
    step_name="$1"
    t_step=$SECONDS
    echo
    say "== $1 ($(date -u +%H:%M:%S), $((SECONDS - t_start)) s in)"
}
run() {
    say "+ $*"
    "$@"
}

[[ $(id -u) == 0 ]] || fail "run as root (debootstrap, and the containers' storage)"
mkdir -p "$work"
# One run at a time per scratch folder (its logs, shared folder and container names).
exec 9>"$work/.lock"
flock -n 9 || fail "another smoke.sh is running with $work (SMOKE_WORK)"
logs="$work/logs"
rm -rf "$logs"
mkdir -p "$logs"

# -- the engine ---------------------------------------------------------------------
step "1. engine"
builder=""
if [[ "$engine" == auto || "$engine" == docker ]]; then
    if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>"$logs/docker-info.err"; then
        engine=docker builder=docker
    elif [[ "$engine" == docker ]]; then
        fail "docker: no daemon answers ($(tail -n 1 "$logs/docker-info.err" 2>/dev/null))"
    else
        say "docker: not used ($(command -v docker >/dev/null && tail -n 1 "$logs/docker-info.err" || echo 'not installed'))"
    fi
fi
if [[ -z "$builder" ]]; then
    [[ "$engine" != podman ]] || command -v podman >/dev/null || fail "podman is not installed"
    [[ "$engine" != buildah ]] || command -v buildah >/dev/null || fail "buildah is not installed"
    if command -v podman >/dev/null; then
        builder=podman  # imports the base; whether `podman run` works is tried below
    elif command -v buildah >/dev/null; then
        builder=buildah
    else
        fail "none of docker (with a daemon), podman, buildah (apt-get install buildah podman)"
    fi
fi
if [[ "$engine" == auto && "$builder" == podman ]]; then
    say "engine: podman or buildah (the podman run probe below decides); base images via podman"
else
    say "engine: $engine; base images via $builder"
fi

image_exists() {
    case "$builder" in
        docker) docker image inspect "$1" >/dev/null 2>&1 ;;
        podman) podman image exists "$1" ;;
        buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
    esac
}

# -- the base image -------------------------------------------------------------------
step "2. base image"
debian_mirror() {
    local uri
    uri="$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' |
        grep -E '/debian/?$' | head -n 1 || true)"
    if [[ -z "$uri" ]]; then
        uri="$(grep -hE '^\s*deb\s+(\[[^]]*\]\s+)?https?://\S+/debian/?\s+bookworm' /etc/apt/sources.list \
            /etc/apt/sources.list.d/*.list 2>/dev/null | sed -E 's/^\s*deb\s+(\[[^]]*\]\s+)?//' |
            awk '{print $1}' | head -n 1 || true)"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}
make_local_base() {
    local rootfs="$work/rootfs" tarball="$work/rootfs.tar" mirror
    mirror="${DEBIAN_MIRROR:-$(debian_mirror)}"
    command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install debootstrap)"
    rm -rf "$rootfs" "$tarball"
    run debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$mirror" >"$logs/debootstrap.log" 2>&1 ||
        fail "debootstrap (see $logs/debootstrap.log): $(tail -n 3 "$logs/debootstrap.log")"
    # This machine's extra CA certificates, so that pip in the build trusts what this
    # machine's pip trusts (Debian's pip and pip >= 24.2 read the system store).
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null
    fi
    run chroot "$rootfs" python3 -m venv /opt/python
    chroot "$rootfs" /opt/python/bin/python -c 'import sys, ssl; print("base:", sys.version.split()[0], ssl.OPENSSL_VERSION)'
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/* "$rootfs"/root/.cache
    # The image's own resolver files come from the engine at run time.
    : >"$rootfs/etc/resolv.conf"
    tar -C "$rootfs" --numeric-owner -cf "$tarball" .
    local path="/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    case "$builder" in
        docker | podman)
            run "$builder" import --change "ENV PATH=$path" --change "ENV LANG=C.UTF-8" \
                --change 'CMD ["python3"]' "$tarball" "$local_base" >/dev/null ;;
        buildah)
            local c
            c="$(buildah from --name qkd-smoke-base-build scratch)"
            run buildah add "$c" "$tarball" / >/dev/null
            buildah config --env "PATH=$path" --env LANG=C.UTF-8 --cmd python3 "$c"
            run buildah commit --rm "$c" "$local_base" >/dev/null ;;
    esac
    rm -rf "$rootfs" "$tarball"
}
base_arg="$base"
if image_exists "$base"; then
    say "$base: in the store"
elif timeout 120 "$builder" pull "$base" >"$logs/pull.log" 2>&1; then
    say "$base: pulled"
else
    say "$base: not in the store and not pulled ($(tail -n 1 "$logs/pull.log"))"
    base_arg="$local_base"
    if [[ "${SMOKE_REBUILD_BASE:-0}" != 1 ]] && image_exists "$local_base"; then
        say "$local_base: made earlier, used as it is (SMOKE_REBUILD_BASE=1 makes it again)"
    else
        say "making $local_base offline: debootstrap of bookworm from $(debian_mirror)"
        make_local_base
    fi
fi
say "base: $base_arg"

# -- can podman run? --------------------------------------------------------------------
if [[ "$engine" == auto || "$engine" == podman ]] && [[ "$builder" == podman ]]; then
    step "3. podman run probe"
    if podman run --rm --network host "$base_arg" python3 -c 'print("podman run works")' \
        >"$logs/podman-run.log" 2>&1; then
        engine=podman
    elif [[ "$engine" == podman ]]; then
        fail "podman run: $(tail -n 1 "$logs/podman-run.log")"
    else
        say "podman run does not work here: $(tail -n 1 "$logs/podman-run.log")"
        command -v buildah >/dev/null || fail "and buildah is not installed (apt-get install buildah)"
        engine=buildah
    fi
    say "engine: $engine"
elif [[ "$engine" == auto ]]; then
    engine="$builder"
fi

# -- the torch index --------------------------------------------------------------------
step "4. torch index"
if curl -fsS -m 15 -o /dev/null "${torch_index%/}/torch/" 2>"$logs/torch-index.err"; then
    say "$torch_index answers"
elif [[ -n "${TORCH_INDEX_URL:-}" ]]; then
    fail "TORCH_INDEX_URL=$torch_index does not answer: $(tail -n 1 "$logs/torch-index.err")"
else
    say "$torch_index does not answer ($(tail -n 1 "$logs/torch-index.err")): PyPI's index instead (the CUDA build and its nvidia-* libraries)"
    torch_index=https://pypi.org/simple
fi

# -- the build ---------------------------------------------------------------------------
step "5. build $image ($engine)"
build_args=(-f docker/Dockerfile --build-arg "BASE_IMAGE=$base_arg" --build-arg "TORCH_INDEX_URL=$torch_index"
    -t "$image")
[[ "${SMOKE_NO_CACHE:-0}" == 1 ]] && build_args+=(--no-cache)
cd "$root"
case "$engine" in
    docker) build_args+=(--network host) ;;
    podman) build_args+=(--network host --layers --pull=never --ignorefile docker/Dockerfile.dockerignore) ;;
    buildah)
        build_args+=(--isolation chroot --network host --layers --pull=never
            --ignorefile docker/Dockerfile.dockerignore) ;;
esac
if [[ "$engine" == buildah ]]; then
    build=(buildah bud)
    image_id() { buildah inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null || true; }
else
    build=("$engine" build)
    image_id() { "$engine" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
fi
old_id="$(image_id "$image")"
say "+ ${build[*]} ${build_args[*]} .  (log: $logs/build.log)"
if ! nice -n 10 "${build[@]}" "${build_args[@]}" . >"$logs/build.log" 2>&1; then
    tail -n 30 "$logs/build.log" >&2
    fail "the build (see $logs/build.log)"
fi
grep -E 'torch .* import together' "$logs/build.log" | tail -n 1 || true
# The previous build of this tag, now untagged: removed (its layers below the changed
# step stay in the cache, shared with the new image).
new_id="$(image_id "$image")"
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
    say "the previous $image ($old_id) is replaced: removed"
    if [[ "$engine" == buildah ]]; then
        buildah rmi "$old_id" >/dev/null 2>&1 || true
    else
        "$engine" rmi "$old_id" >/dev/null 2>&1 || true
    fi
fi

# -- what was built ---------------------------------------------------------------------
step "6. the image"
if [[ "$engine" == docker ]]; then
    size="$(docker image inspect --format '{{.Size}}' "$image")"
elif command -v podman >/dev/null; then  # podman and buildah share the store
    size="$(podman image inspect --format '{{.Size}}' "$image")"
else
    size="$(buildah images --format '{{.Size}}' "$image" | head -n 1)"
fi
if [[ "$size" =~ ^[0-9]+$ ]]; then
    say "$image: $size bytes ($((size / 1000000)) MB), built from $base_arg"
else
    say "$image: $size, built from $base_arg"
fi

# -- the two nodes -----------------------------------------------------------------------
shared="$work/shared"
rm -rf "$shared" "$work/ray-head" "$work/ray-worker"
mkdir -p "$shared" "$work/ray-head" "$work/ray-worker"
chown 1000:1000 "$shared" "$work/ray-head" "$work/ray-worker"  # the image's user, qkd
if [[ "$spec" != /app/* && -f "$spec" ]]; then
    cp "$spec" "$shared/$(basename "$spec")"
    chown 1000:1000 "$shared/$(basename "$spec")"
    spec="/shared/$(basename "$spec")"
fi
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
address="127.0.0.1:$port"
token="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
node_env=(RAY_AUTH_MODE=token "RAY_AUTH_TOKEN=$token" "RAY_TEMP_DIR=$ray_tmp" "RAY_NUM_CPUS=$cpus"
    "RAY_OBJECT_STORE_MEMORY=$object_store" RAY_BLOCK=1)
# Ray's head asks the cloud metadata address which cloud it is on unless this file exists
# (docs/cluster.md, "Loopback"); nothing here may leave the machine.
# shellcheck disable=SC2016  # $HOME is the container's
prelude='printf "{}\n" > "$HOME/ray_bootstrap_config.yaml"; '

# This run's cluster processes on this machine: those whose command line names its Ray temp
# dir (ray start, GCS, raylets, agents; the engine's own run commands) and their descendants.
cluster_pids() {
    local p roots=()
    for p in /proc/[0-9]*; do
        [[ "${p#/proc/}" == "$$" ]] && continue
        if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$ray_tmp"; then
            roots+=("${p#/proc/}")
        fi
    done
    [[ ${#roots[@]} -gt 0 ]] || return 0
    ps -eo pid=,ppid= | awk -v roots="${roots[*]}" -v me="$$" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
        { parent[$1] = $2 }
        END {
            do { grew = 0; for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1 } } while (grew)
            for (p in keep) if (p != me) print p
        }'
}
stop_cluster() {
    local pids sig
    case "$engine" in
        docker | podman)
            "$engine" stop -t 15 "$head_name" "$worker_name" >/dev/null 2>&1 || true
            "$engine" rm -f "$head_name" "$worker_name" >/dev/null 2>&1 || true ;;
    esac
    for sig in TERM KILL; do
        pids="$(cluster_pids)"
        [[ -n "$pids" ]] || break
        # shellcheck disable=SC2086
        kill -s "$sig" $pids 2>/dev/null || true
        for _ in $(seq 30); do
            [[ -n "$(cluster_pids)" ]] || break
            sleep 0.5
        done
    done
    if [[ "$engine" == buildah ]]; then
        local job
        for job in "${node_jobs[@]}"; do
            wait "$job" 2>/dev/null || true  # the background `buildah run`s, ended above
        done
        buildah rm "$head_name" "$worker_name" >/dev/null 2>&1 || true
    fi
}
cleanup() {
    local rc=$?
    trap - EXIT
    echo
    say "== cleanup: the nodes' processes and containers"
    stop_cluster
    left="$(cluster_pids)"
    [[ -z "$left" ]] || say "processes of the cluster still running: $left"
    if [[ "${SMOKE_RMI:-0}" == 1 ]]; then
        case "$engine" in
            buildah) buildah rmi "$image" >/dev/null 2>&1 || true ;;
            *) "$engine" rmi "$image" >/dev/null 2>&1 || true ;;
        esac
    fi
    [[ -z "$left" ]] || rc=1
    say "exit $rc after $((SECONDS - t_start)) s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_node NAME LOG RAYDIR VAR=VALUE... -- COMMAND: a container of the image running
# COMMAND in the background, on the host's network, with the shared folder and its Ray
# temp dir (RAYDIR here).
start_node() {
    local name="$1" log="$2" raydir="$3"
    shift 3
    local envs=()
    while [[ "$1" != -- ]]; do
        envs+=(-e "$1")
        shift
    done
    shift
    local shown="${envs[*]//RAY_AUTH_TOKEN=*/RAY_AUTH_TOKEN=...}"
    case "$engine" in
        docker | podman)
            "$engine" rm -f "$name" >/dev/null 2>&1 || true
            say "+ $engine run -d --name $name --network host --shm-size 2g -v $shared:/shared -v $raydir:$ray_tmp -w /shared $shown $image $*"
            "$engine" run -d --name "$name" --network host --shm-size 2g \
                -v "$shared:/shared" -v "$raydir:$ray_tmp" -w /shared "${envs[@]}" "$image" "$@" >/dev/null
            ("$engine" logs -f "$name" >"$log" 2>&1 &) ;;
        buildah)
            buildah rm "$name" >/dev/null 2>&1 || true
            # buildah run's own default is 1024 open files, which Ray calls too few: this
            # machine's limits (raising them is not allowed here, see the podman probe).
            run buildah from --pull=never --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --name "$name" "$image" \
                >/dev/null
            say "+ buildah run --isolation chroot --network host -v $shared:/shared -v $raydir:$ray_tmp --workingdir /shared $shown $name -- $* &"
            buildah run --isolation chroot --network host -v "$shared:/shared" -v "$raydir:$ray_tmp" \
                --workingdir /shared "${envs[@]}" "$name" -- "$@" </dev/null >"$log" 2>&1 &
            node_jobs+=($!) ;;
    esac
}
# in_head VAR=VALUE... -- COMMAND: run COMMAND in the head's container (docker exec).
in_head() {
    local envs=()
    while [[ "$1" != -- ]]; do
        envs+=(-e "$1")
        shift
    done
    shift
    case "$engine" in
        docker | podman) "$engine" exec -w /shared "${envs[@]}" "$head_name" "$@" ;;
        buildah) buildah run --isolation chroot --network host -v "$shared:/shared" \
            -v "$work/ray-head:$ray_tmp" --workingdir /shared "${envs[@]}" "$head_name" -- "$@" ;;
    esac
}
node_jobs=()
# The node's process has ended (buildah: its `buildah run`; docker, podman: its container).
node_ended() {
    case "$engine" in
        docker | podman) [[ "$("$engine" inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" != true ]] ;;
        buildah) ! kill -0 "${node_jobs[$2]}" 2>/dev/null ;;
    esac
}
gcs_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

step "7. head node at $address"
start_node "$head_name" "$logs/head.log" "$work/ray-head" "${node_env[@]}" "RAY_PORT=$port" -- \
    bash -c "${prelude}exec ray-head.sh"
for _ in $(seq 120); do
    gcs_answers && break
    node_ended "$head_name" 0 && { tail -n 20 "$logs/head.log" >&2; fail "the head node ended"; }
    sleep 1
done
gcs_answers || { tail -n 20 "$logs/head.log" >&2; fail "the head's GCS did not answer at $address"; }
say "the head's GCS answers at $address"

step "8. worker node"
start_node "$worker_name" "$logs/worker.log" "$work/ray-worker" "${node_env[@]}" "RAY_HEAD_ADDRESS=$address" -- \
    bash -c "${prelude}exec ray-worker.sh"

# Every TCP socket of the cluster's processes, sampled while the sweep runs.
sample_sockets() {
    while :; do
        local pids
        pids="$(cluster_pids | paste -sd '|' -)"
        if [[ -n "$pids" ]]; then
            ss -Htanp 2>/dev/null | grep -E "pid=($pids)," >>"$logs/sockets.txt" || true
        fi
        sleep 5
    done
}

step "9. sweep: run-sweep.sh $spec ${sweep_args[*]}"
sample_sockets &
sampler=$!
sweep_rc=0
in_head RAY_AUTH_MODE=token "RAY_AUTH_TOKEN=$token" "RAY_HEAD_ADDRESS=$address" RAY_EXPECT_NODES=2 \
    "RAY_WAIT_S=$wait_s" -- bash -c "${prelude}exec run-sweep.sh \"\$@\"" run-sweep "$spec" "${sweep_args[@]}" \
    2>&1 | tee "$logs/sweep.log" || sweep_rc=$?
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
[[ $sweep_rc == 0 ]] || fail "run-sweep.sh exited with $sweep_rc (logs: $logs)"

step "10. rows from both nodes"
mkdir -p "$shared/.smoke"
cat >"$shared/.smoke/check.py" <<'EOF'
"""The result rows against the cluster's nodes: one head, one worker, rows from both."""
import glob
import sys

import pandas as pd
import ray

ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
role = {n["NodeID"]: "head" if "node:__internal_head__" in n["Resources"] else "worker"
        for n in ray.nodes() if n["Alive"]}
ray.shutdown()
paths = glob.glob("/shared/results/*/trials.parquet")
if len(paths) != 1:
    sys.exit(f"expected one trials.parquet under /shared/results, found {paths}")
t = pd.read_parquet(paths[0])
print(f"{paths[0]}: {len(t)} rows, status {t.status.value_counts().to_dict()}")
for node, n in t.node_id.value_counts().items():
    print(f"  {n} rows from the {role.get(node, 'unknown node')} {node}")
if sorted(role.values()) != ["head", "worker"]:
    sys.exit(f"the cluster has nodes {role}, not one head and one worker")
if set(t.node_id) != set(role):
    sys.exit(f"rows came from {sorted(set(t.node_id))}, not from both nodes {sorted(role)}")
if not (t.status == "ok").all() or not t.config_hash.is_unique:
    sys.exit("not every row is ok, once")
print("rows from both nodes: yes")
EOF
in_head RAY_AUTH_MODE=token "RAY_AUTH_TOKEN=$token" RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 -- \
    python /shared/.smoke/check.py "$address" || fail "the rows (see above)"

step "11. loopback"
if [[ -s "$logs/sockets.txt" ]]; then
    # ss -tan: state, recv-q, send-q, local, peer, process
    bad="$(awk '{print $4, $5}' "$logs/sockets.txt" | tr ' ' '\n' | grep -vE '^(127\.|\[::ffff:127\.|\*:\*$|0\.0\.0\.0:\*$|\[::\]:\*$)' | sort -u || true)"
    say "$(wc -l <"$logs/sockets.txt") socket samples of the cluster's processes"
    [[ -z "$bad" ]] || fail "sockets not on loopback: $(echo "$bad" | paste -sd ' ' -)"
    say "every socket on 127.0.0.1"
else
    say "no socket samples (ss saw none of the cluster's processes)"
fi

step "12. versions"
cat >"$shared/.smoke/versions.py" <<'EOF'
import getpass
import importlib.metadata as m
import platform

print("user", getpass.getuser(), "| python", platform.python_version(), "|",
      " ".join(f"{d} {m.version(d)}" for d in ("ray", "torch", "torchvision", "qiskit", "qiskit-aer",
                                                 "numpy", "pandas", "pyarrow", "qkd-sweep")))
print("os", dict(line.rstrip().split("=", 1) for line in open("/etc/os-release") if "=" in line)["PRETTY_NAME"])
EOF
in_head -- python /shared/.smoke/versions.py
took[$step_name]=$((SECONDS - t_step))
step_name=""

echo
say "== summary (engine $engine, base $base_arg, torch index $torch_index, image $image${size:+, $size bytes})"
for s in "${!took[@]}"; do
    echo "$s: ${took[$s]} s"
done | sort -n
say "OK: the image built, a head and a worker ran it on 127.0.0.1, and the sweep's rows came from both"
