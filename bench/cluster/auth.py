"""Does the Ray cluster at an address authenticate, and does it take our token?

Ray 2.60 has token authentication (RAY_AUTH_MODE=token; the token from RAY_AUTH_TOKEN,
RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), but a driver in token mode joins a cluster
without authentication silently, and a wrong token makes `ray.init` retry for about 20 s
and end in a traceback. So before joining, the bench asks the head's GCS twice, through
Ray's own client (ray._raylet.GcsClient), in a child process (Ray caches its
authentication mode per process, and its C++ client logs to stderr):

1. with authentication off: answered means anyone who reaches the port is answered;
2. with the token (only if 1 was refused): answered means the token is right.

The token travels to the child through the environment or Ray's token file, never on a
command line, and nothing here prints or stores it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

#: seconds the child may take (a head that speaks TLS to a client that does not, or the
#: reverse, never answers: Ray's client gives up after about 40 s)
PROBE_TIMEOUT_S = 20.0

#: the flag that lets the bench join a cluster without authentication
OPT_OUT = "--allow-unauthenticated-ray"

HOW_TO_ENABLE = ("start every node with RAY_AUTH_MODE=token and one token (`ray "
                 "get-auth-token --generate`; docs/cluster.md)")


@dataclass(frozen=True)
class Answer:
    open: bool  # answered without a token: the cluster has no authentication
    has_token: bool | None = None  # a token was found here (asked only when not open)
    token_ok: bool | None = None  # the cluster accepted it


def ask(address: str) -> Answer:
    """Ask the head at `address` (host:port) in a child process; a one-line ValueError
    where it does not answer in time."""
    env = {**os.environ, "RAY_BACKEND_LOG_LEVEL": "fatal", "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        out = subprocess.run([sys.executable, "-m", "bench.cluster.auth", address], env=env,
                             capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ValueError(f"--ray-address {address}: the head did not answer Ray's protocol in "
                         f"{PROBE_TIMEOUT_S:g} s (does the cluster use TLS? then set "
                         "RAY_USE_TLS=1 and its RAY_TLS_* certificates here too)") from None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"--ray-address {address}: could not ask the head whether it "
                         f"authenticates: {last}")
    return Answer(**json.loads(lines[-1]))


def refusal(address: str, answer: Answer, allow_open: bool) -> str | None:
    """The one-line reason not to join, or None."""
    if answer.open:
        if allow_open:
            return None
        return (f"--ray-address {address}: this Ray cluster has no authentication: anyone who "
                "can reach its port can run code on it and read what it holds (patient "
                f"images, models, predictions); {HOW_TO_ENABLE}, or pass {OPT_OUT} for a "
                "throwaway cluster")
    if not answer.has_token:
        return (f"--ray-address {address}: the cluster requires a token and none was found "
                "here: set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, or put it in "
                "~/.ray/auth_token")
    if not answer.token_ok:
        return (f"--ray-address {address}: the cluster refused this token (authentication "
                "failed): use the token its nodes were started with (RAY_AUTH_TOKEN, "
                "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")
    return None


def _answered(address: str) -> bool:
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        GcsClient(address=address).internal_kv_get(b"session_name", namespace=b"session",
                                                   timeout=5)
        return True
    except AuthenticationError:
        return False


def set_auth_mode(mode: str) -> None:
    """RAY_AUTH_MODE for this process and what it starts; Ray caches its configuration and
    token when first imported, so it is told to read both again (as Ray's own token setup
    does)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    os.environ["RAY_AUTH_MODE"] = mode
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def has_token() -> bool:
    """A token in Ray's usual places (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token),
    as Ray's own loader finds it."""
    from ray._raylet import AuthenticationTokenLoader

    return AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True)


def main(address: str) -> None:
    set_auth_mode("disabled")
    answer = {"open": _answered(address)}
    if not answer["open"]:
        set_auth_mode("token")
        answer["has_token"] = has_token()
        answer["token_ok"] = _answered(address) if answer["has_token"] else None
    print(json.dumps(answer))


if __name__ == "__main__":
    main(sys.argv[1])
