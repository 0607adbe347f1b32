"""What several test modules share: a tiny model every method can handle, state
snapshots, a quantization step with overrides, a station without the machine probe, and
the columns every row must have. Imported by tests; fixtures stay in conftest.py."""

import torch
from torch import nn


class TinyNet(nn.Module):
    """Conv-BN-ReLU x2, pool, Linear: enough structure for every method, runs in ms."""

    def __init__(self, num_outputs=2, width=16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width * 2, 3, padding=1, stride=2), nn.BatchNorm2d(width * 2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(width * 2, num_outputs)

    def forward(self, x):
        return self.classifier(self.features(x))


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


def assert_unchanged(module, before):
    after = module.state_dict()
    assert before.keys() == {k for k, v in after.items() if isinstance(v, torch.Tensor)}
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"{k} was mutated"


def quantized(parent, ctx, method, **overrides):
    """`method` (e.g. quant.static) applied to `parent` with its default parameters, but
    `overrides`."""
    import methods

    (chain,) = methods.expand(method)
    return methods.get(method)().apply(parent, ctx, **{**dict(chain[0].params), **overrides})


class UnprobedStation:
    """The local station without the machine probe (idle power, GEMM peaks: seconds of
    measuring), for the measuring-plan tests that fake or fault their processes."""

    def __new__(cls, threads: int = 1):
        from bench.measuring.station import LocalStation

        station = LocalStation(threads)
        station.probe = lambda *args: {}
        return station



#: columns every row of a run must have
REQUIRED = ["model", "method", "backend", "params", "params_nonzero", "weights_mib", "file_mib",
            "file_gz_mib", "compression_ratio", "macs", "latency_ms_p50", "latency_ms_p90",
            "latency_n", "speedup", "peak_rss_mib", "energy_mj_per_inference", "energy_source",
            "auc_roc", "accuracy", "status", "error", "precision", "parity_max_abs", "parity_agree",
            "threads"]
