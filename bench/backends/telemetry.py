"""Switch off the usage telemetry of ONNX Runtime, OpenVINO, NNCF and their tools, from
inside the bench.

Called before those runtimes are imported, in the bench process and in every worker, so
it does not depend on the user's environment:
  * ONNX Runtime writes a device id and an event database under
    ~/.cache/Microsoft/DeveloperTools/.onnxruntime unless ORT_DISABLE_TELEMETRY is set
    (seen here with onnxruntime 1.31; a test runs the bench with an empty HOME).
  * NNCF replaces its telemetry with a stub when NNCF_CI is set (nncf/definitions.py).
  * OpenVINO's converter falls back to its bundled telemetry stub when the
    `openvino_telemetry` package cannot be imported; marking it absent in sys.modules
    does that without touching the user's home directory (its opt-out command would
    write a consent file there).
  * OpenVINO's `benchmark_app`, a separate program, is run with CI=true, which its
    telemetry treats as "disabled in CI".
"""

from __future__ import annotations

import os
import sys


def switch_off() -> None:
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    os.environ["NNCF_CI"] = "1"
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # import now raises ImportError -> stubs


def subprocess_env(base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    env.update({"ORT_DISABLE_TELEMETRY": "1", "NNCF_CI": "1", "CI": "true"})
    return env
