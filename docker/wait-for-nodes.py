"""Wait until a Ray cluster has enough alive nodes that offer CPUs (run-sweep.sh runs it).

    python wait-for-nodes.py HOST:PORT NODES SECONDS

Exit 0 once the cluster at HOST:PORT has NODES alive nodes with CPUs (printing
them), 3 when it has not within SECONDS. Until the GCS port accepts connections
it only knocks on it (ray.init would wait a minute on a dead address).
"""

from __future__ import annotations

import socket
import sys
import time


def answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return True
    except OSError:
        return False


def main(address: str, expect: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    nodes: list[dict] = []
    error = ""
    while time.monotonic() < deadline:
        if answers(address):
            import ray  # noqa: PLC0415

            try:
                if not ray.is_initialized():
                    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
                nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
            except Exception as exc:  # not ready yet: try again until the deadline
                error = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                ray.shutdown()
            if len(nodes) >= expect:
                cpus = sum(n["Resources"]["CPU"] for n in nodes)
                names = ", ".join(f"{n['NodeManagerAddress']} {n['NodeID']}" for n in nodes)
                print(f"run-sweep.sh: {len(nodes)} node(s), {cpus:g} CPUs: {names}", flush=True)
                ray.shutdown()
                return 0
        else:
            error = f"nothing answers at {address}"
        time.sleep(1)
    print(f"run-sweep.sh: {len(nodes)} of {expect} node(s) with CPUs" + (f" ({error})" if error else ""),
          file=sys.stderr)  # fmt: skip
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
