"""Helpers for tests that start Ray nodes: every node at a loopback address, and checks
that every address a node registered (or the bench reported) is in 127.0.0.0/8."""

import ipaddress
import json
import re
import socket
import subprocess
import sys

#: the test clusters' node address: Ray rewrites 127.0.0.1 itself to the machine's network
#: address, but keeps any other loopback address (bench.cluster.connect.LOOPBACK_NODE_IP)
NODE_IP = "127.0.0.2"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def assert_loopback(addresses) -> None:
    """Every address a node registered (or the bench reported) is a loopback one."""
    addresses = list(addresses)
    assert addresses and all(ipaddress.ip_address(a) in LOOPBACK for a in addresses), addresses


def node_addresses(address: str, env: dict) -> list[str]:
    """What every node of the cluster at `address` registered as its address, alive or
    dead, asked of the cluster itself."""
    out = subprocess.run(
        [sys.executable, "-c", f"import json, ray; ray.init(address={address!r}); print(json.dumps("
         "[n['NodeManagerAddress'] for n in ray.nodes()]))"],
        env=env, check=True, timeout=120, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def logged_node_addresses(log: str) -> list[str]:
    """The node addresses in the bench's `ray: joined ...` line."""
    line = next(ln for ln in log.splitlines() if "ray: joined " in ln)
    return re.findall(r"(\d+\.\d+\.\d+\.\d+) \{", line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((NODE_IP, 0))
        return s.getsockname()[1]
