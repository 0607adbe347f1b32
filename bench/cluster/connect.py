"""Joining a Ray cluster: --ray-address, else $RAY_ADDRESS, else a Ray instance started
for this run on this machine (on 127.0.0.1, no dashboard).

Ray's usage statistics are switched off before Ray is imported (RAY_USAGE_STATS_ENABLED=0),
in this process and, through the job's runtime environment, in every task's worker,
together with the other runtimes' telemetry switches (bench.backends.telemetry).
"""

from __future__ import annotations

import os
import socket

#: seconds to wait for a TCP answer from the address before calling it wrong
CONNECT_TIMEOUT_S = 5.0


def worker_env() -> dict:
    """The environment variables every task's worker gets (Ray's and the runtimes'
    telemetry off, as in the bench's own measuring processes)."""
    return {"RAY_USAGE_STATS_ENABLED": "0", "ORT_DISABLE_TELEMETRY": "1", "NNCF_CI": "1",
            "CI": "true", "PYTHONWARNINGS": "ignore", "TORCH_CPP_LOG_LEVEL": "ERROR"}


def connect(address: str | None) -> str:
    """Join the cluster at `address` (host:port of its head), or start a local instance
    when there is none; return what was joined, for the log and the manifest."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # read when ray is imported and started
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "auto":
        _check_reachable(address)
    import ray

    env = {"env_vars": worker_env()}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=True,
                 configure_logging=True, logging_level="warning")
        return address
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, runtime_env=env,
             log_to_driver=True, configure_logging=True, logging_level="warning")
    return "a local Ray instance on 127.0.0.1"


def _check_reachable(address: str) -> None:
    """A one-line error for an address nothing answers at (ray.init would retry for a
    minute and then print a traceback)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--ray-address {address!r}: expected HOST:PORT of the cluster's head")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ValueError(f"--ray-address {address}: no Ray head answers there ({exc.strerror or exc}); "
                         "start one with `ray start --head`") from None
