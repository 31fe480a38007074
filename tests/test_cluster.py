"""A real two-node Ray cluster on this machine, started by the entry scripts the
containers run (docker/ray-head.sh, docker/ray-worker.sh) as plain processes,
and a small sweep through ``--address`` by docker/run-sweep.sh: every row once,
trials on both nodes, every socket of the cluster on loopback, nothing left over.

The scripts run with HOME pointing at a folder that holds an empty
``ray_bootstrap_config.yaml``: a head's dashboard process otherwise asks the
cloud metadata address (169.254.169.254) which cloud it is on, once, at start.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from sweep.grid import expand
from sweep.spec import load_spec

pytest.importorskip("ray")

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent  # the venv's ray, python and qkd-sweep

# 8 trials (4 baselines, 4 distilled from one LeNet trained in phase 1), one CPU each: on
# two one-CPU nodes Tune runs two at a time, one per node. A trial takes over half a second
# once its process is warm (batches of one), so that one node cannot finish them all while
# the other node's first trial is still importing torch.
SPEC = {
    "name": "cluster",
    "grid": {
        "dataset": "digits",
        "classes": "0-3",
        "teacher": ["none", "lenet"],
        "qubits": 2,
        "temperature": 2,
        "lam": 0.9,
        "seed": [0, 1, 2, 3],
    },
    "trial": {
        "backend": "statevector",
        "epochs": 2,
        "batch_size": 1,
        "samples_per_class": 80,
        "test_samples_per_class": 20,
    },
    "teacher": {"epochs": 1},
    "resources": {"cpus_per_trial": 1, "cpus_per_teacher": 1, "max_failures": 1},
}


@dataclass
class Cluster:
    address: str
    temp_dir: str
    env: dict[str, str]
    logs: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_processes(temp_dir: str) -> list[psutil.Process]:
    """This cluster's processes: those whose command line names its temp dir (GCS, raylets,
    agents, monitors) and their descendants (workers, which rename themselves ray::...)."""
    me = os.getpid()
    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        if p.pid != me and any(temp_dir in a for a in p.info["cmdline"] or ()):
            found[p.pid] = p
    for p in list(found.values()):
        try:
            found.update((c.pid, c) for c in p.children(recursive=True))
        except psutil.Error:
            pass
    return list(found.values())


def alive(p: psutil.Process) -> bool:
    """Still running (a zombie has ended: it only waits for its parent, here often init, to reap it)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop(procs: list[psutil.Process], grace: float = 2) -> None:
    """SIGTERM, then SIGKILL what is still running after ``grace`` seconds."""
    for sig in ("terminate", "kill"):
        for p in procs:
            if alive(p):
                try:
                    getattr(p, sig)()
                except psutil.Error:
                    pass
        deadline = time.monotonic() + grace
        while any(alive(p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.1)


def node_ids(temp_dir: str) -> dict[str, str]:
    """{node id: node address} of this cluster's raylets, from their command lines."""
    nodes = {}
    for p in cluster_processes(temp_dir):
        try:
            if p.name() != "raylet":
                continue
            args = dict(a.split("=", 1) for a in p.cmdline()[1:] if a.startswith("--") and "=" in a)
        except psutil.Error:
            continue
        nodes[args["--node_id"]] = args["--node_ip_address"]
    return nodes


def loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def sockets(procs: list[psutil.Process]) -> list[tuple[int, str, str, str]]:
    """(pid, name, local address, remote address) of every inet socket the processes hold."""
    out = []
    for p in procs:
        try:
            name = p.name()
            out += [(p.pid, name, c.laddr.ip if c.laddr else "", c.raddr.ip if c.raddr else "")
                    for c in p.net_connections(kind="inet")]  # fmt: skip
        except psutil.Error:  # it ended meanwhile
            pass
    return out


def run_script(name: str, env: dict[str, str], log: Path, timeout: float = 60) -> None:
    with log.open("w") as out:  # a file, not a pipe: the daemons `ray start` leaves behind keep no pipe open
        rc = subprocess.run([str(DOCKER / name)], env=env, stdout=out, stderr=subprocess.STDOUT,
                            timeout=timeout, check=False).returncode  # fmt: skip
    assert rc == 0, f"{name} exited with {rc}:\n{log.read_text()[-3000:]}"


@pytest.fixture
def cluster(tmp_path):
    # Unix socket paths are limited to ~107 characters: a short temp dir, not tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="qr", dir="/tmp")
    home = tmp_path / "home"
    home.mkdir()
    (home / "ray_bootstrap_config.yaml").write_text("{}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHON=sys.executable,
        HOME=str(home),
        RAY_TEMP_DIR=temp_dir,
        RAY_NUM_CPUS="1",
        RAY_OBJECT_STORE_MEMORY=str(100 * 2**20),
        RAY_AUTH_MODE="token",  # as in compose.yaml: every process shows the cluster's token
        RAY_AUTH_TOKEN=secrets.token_hex(32),
    )
    port = free_port()
    address = f"127.0.0.1:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        run_script("ray-head.sh", {**env, "RAY_PORT": str(port)}, logs / "head.log")
        run_script("ray-worker.sh", {**env, "RAY_HEAD_ADDRESS": address}, logs / "worker.log")
        yield Cluster(address, temp_dir, env, logs)
    finally:
        procs = cluster_processes(temp_dir)
        stop(procs)
        left = {p.pid for p in procs + cluster_processes(temp_dir) if alive(p)}
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"processes of the test cluster still running: {left}"


def test_two_node_cluster_runs_a_sweep_on_both_nodes(cluster, tmp_path):
    t0 = time.monotonic()
    nodes = node_ids(cluster.temp_dir)
    assert len(nodes) == 2 and set(nodes.values()) == {"127.0.0.1"}, nodes
    # `ray start` recorded the address in the cluster's own temp dir, not in /tmp/ray, where a
    # bare ray.init() (anyone else's local sweep on this machine) would find it and join.
    assert (Path(cluster.temp_dir) / "ray_current_cluster").read_text().strip() == cluster.address
    default = Path("/tmp/ray/ray_current_cluster")
    assert not default.exists() or default.read_text().strip() != cluster.address

    spec = {**SPEC, "paths": {"results": str(tmp_path / "results")}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    expected = {c.config_hash() for c in expand(load_spec(path)).trials}
    assert len(expected) == 8

    env = {**cluster.env, "RAY_HEAD_ADDRESS": cluster.address, "RAY_WAIT_S": "60"}
    # run-sweep.sh waits for the nodes it is told to expect, and no longer than it is told.
    t1 = time.monotonic()
    short = subprocess.run([str(DOCKER / "run-sweep.sh"), str(path)], env={**env, "RAY_EXPECT_NODES": "3",
                           "RAY_WAIT_S": "3"}, cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert short.returncode == 3, short.stdout + short.stderr
    assert "2 of 3 node(s) with CPUs" in short.stderr and time.monotonic() - t1 < 30
    assert not (tmp_path / "results").exists()  # no sweep started

    env["RAY_EXPECT_NODES"] = "2"
    log = cluster.logs / "sweep.log"
    seen = []  # every inet socket of the cluster and the driver, sampled while the sweep runs
    with log.open("w") as out:
        sweep = subprocess.Popen([str(DOCKER / "run-sweep.sh"), str(path), "--quiet", "--no-tables"],
                                 env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + 150
            while sweep.poll() is None and time.monotonic() < deadline:
                driver = psutil.Process(sweep.pid)
                procs = cluster_processes(cluster.temp_dir)
                try:
                    procs += [driver, *driver.children(recursive=True)]
                except psutil.Error:
                    pass
                seen += sockets(procs)
                time.sleep(0.5)
        finally:
            if sweep.poll() is None:
                stop([*psutil.Process(sweep.pid).children(recursive=True), psutil.Process(sweep.pid)])
    output = log.read_text()
    assert sweep.wait(timeout=10) == 0, output[-4000:]
    assert "run-sweep.sh: 2 node(s), 2 CPUs" in output
    assert "8 trials planned, 0 already finished (not rerun), 8 finished now" in output, output[-4000:]

    # Every row once, each finished, and the trials ran on both nodes of this cluster.
    out = tmp_path / "results" / "cluster"
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 8 and trials.config_hash.is_unique and set(trials.config_hash) == expected
    assert (trials.status == "ok").all(), trials[["config_hash", "status", "error"]]
    assert set(trials.node_id) == set(nodes), (trials.node_id.value_counts(), nodes)
    epochs = pd.read_parquet(out / "epochs.parquet")
    assert len(epochs) == 8 * 2 and set(epochs.config_hash) == expected
    # The teacher was trained once (phase 1) and every distilled trial read it from the cache.
    teachers = pd.read_parquet(out / "teachers.parquet")
    assert list(teachers.teacher) == ["lenet"]
    assert trials.loc[trials.teacher == "lenet", "teacher_cached"].all()

    # Every socket the cluster's processes and the driver held was on loopback: listening
    # sockets bound to it (none on a wildcard address), connections to it.
    assert {pid for pid, *_ in seen} & {p.pid for p in cluster_processes(cluster.temp_dir)}, "no sockets seen"
    listening = {(pid, name, local) for pid, name, local, remote in seen if not remote}
    workers = {name for _, name, _ in listening if name.startswith("ray::") and "Agent" not in name}
    assert workers, "no Ray worker's sockets seen"  # the trials' and the teacher's processes
    bad = {s for s in seen if (s[2] and not loopback(s[2])) or (s[3] and not loopback(s[3]))}
    assert not bad, f"non-loopback sockets: {sorted(bad)}"
    assert time.monotonic() - t0 < 150


def test_run_sweep_gives_up_on_an_address_that_does_not_answer(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHON=sys.executable,
               RAY_HEAD_ADDRESS=f"127.0.0.1:{free_port()}", RAY_WAIT_S="3")  # fmt: skip
    t0 = time.monotonic()
    done = subprocess.run([str(DOCKER / "run-sweep.sh"), "no-such-spec.yaml"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert "nothing answers at 127.0.0.1:" in done.stderr and "did not have 1 node(s)" in done.stderr
    assert time.monotonic() - t0 < 20
