"""Joining a Ray cluster: --ray-address, else $RAY_ADDRESS, else a Ray instance started
for this run on this machine (on a loopback address, no dashboard).

Authenticated by default: a cluster that answers without a token is refused (unless
--allow-unauthenticated-ray), and a wrong or missing token is one line, within seconds
(bench.cluster.auth). A Ray instance the bench starts itself gets token authentication
too, with the user's token where there is one, else a fresh one held in this process's
environment only (never written to a file).

Ray's usage statistics are switched off before Ray is imported (RAY_USAGE_STATS_ENABLED=0),
in this process and, through the job's runtime environment, in every task's worker,
together with the other runtimes' telemetry switches (bench.backends.telemetry).
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from dataclasses import dataclass

from bench.cluster import auth
from bench.progress import log

#: seconds to wait for a TCP answer from the address before calling it wrong
CONNECT_TIMEOUT_S = 5.0

#: where a Ray instance the bench starts registers its node. Ray rewrites exactly
#: 127.0.0.1, localhost and ::1 to the machine's network address ("a remotely reachable
#: IP", ray._private.services.resolve_ip_for_localhost), but takes any other loopback
#: address as given; macOS configures only 127.0.0.1, and Ray keeps it there
LOOPBACK_NODE_IP = "127.0.0.1" if sys.platform == "darwin" else "127.0.0.2"


@dataclass(frozen=True)
class Joined:
    where: str  # for the log and the manifest
    authenticated: bool
    tls: bool


def worker_env() -> dict:
    """The environment variables every task's worker gets (Ray's and the runtimes'
    telemetry off, as in the bench's own measuring processes). Never the token: workers
    get theirs from their own node."""
    return {"RAY_USAGE_STATS_ENABLED": "0", "ORT_DISABLE_TELEMETRY": "1", "NNCF_CI": "1",
            "CI": "true", "PYTHONWARNINGS": "ignore", "TORCH_CPP_LOG_LEVEL": "ERROR"}


def connect(address: str | None, allow_unauthenticated: bool = False) -> Joined:
    """Join the cluster at `address` (host:port of its head), or start a local instance
    when there is none; a one-line ValueError where the cluster may not be joined."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # read when ray is imported and started
    address = address or os.environ.get("RAY_ADDRESS") or None
    tls = os.environ.get("RAY_USE_TLS", "").lower() in ("1", "true")
    if address == "auto":  # Ray's name for the cluster last started on this machine
        from ray._private.services import canonicalize_bootstrap_address_or_die

        address = canonicalize_bootstrap_address_or_die("auto")
    if address:
        _check_reachable(address)
        answer = auth.ask(address)
        refused = auth.refusal(address, answer, allow_unauthenticated)
        if refused:
            raise ValueError(refused)
        authenticated = not answer.open
        if not authenticated:
            log(f"WARNING: joining {address} WITHOUT AUTHENTICATION ({auth.OPT_OUT}): anyone "
                "who can reach the cluster can run code on it and read the images, models "
                "and predictions of this run")
        auth.set_auth_mode("token" if authenticated else "disabled")
        _init(address=address)
        return Joined(address, authenticated, tls)
    authenticated = _local_auth(allow_unauthenticated)
    # "local": always a new instance (address=None would join a cluster `ray start` left in
    # /tmp/ray on this machine, unchecked)
    _init(address="local", _node_ip_address=LOOPBACK_NODE_IP, include_dashboard=False)
    return Joined(f"a local Ray instance on {LOOPBACK_NODE_IP}", authenticated, tls)


def _local_auth(allow_unauthenticated: bool) -> bool:
    """Token authentication for the bench's own Ray instance (its ports listen on every
    interface): the user's token if there is one, else a fresh one in this process's
    environment, which the instance's processes inherit."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        if not allow_unauthenticated:
            raise ValueError("RAY_AUTH_MODE=disabled: the bench's own Ray instance would run "
                             "without authentication; unset it, or pass "
                             f"{auth.OPT_OUT} for a throwaway instance")
        log(f"WARNING: starting a Ray instance WITHOUT AUTHENTICATION ({auth.OPT_OUT})")
        return False
    if not auth.has_token():
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    auth.set_auth_mode("token")
    return True


def _init(**where) -> None:
    import ray

    ray.init(**where, runtime_env={"env_vars": worker_env()}, log_to_driver=True,
             configure_logging=True, logging_level="warning")


def _check_reachable(address: str) -> None:
    """A one-line error for an address nothing answers at (ray.init would retry for a
    minute and then print a traceback)."""
    if address.startswith("ray://"):
        raise ValueError(f"--ray-address {address}: a Ray Client address; give the head's own "
                         "HOST:PORT (the --port of `ray start --head`, 6379 by default)")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--ray-address {address!r}: expected HOST:PORT of the cluster's head")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ValueError(f"--ray-address {address}: no Ray head answers there ({exc.strerror or exc}); "
                         "start one with `ray start --head`") from None
