"""Once per run, in a measuring process of its own: this machine's idle power draw and
its peak matrix-multiply throughput per precision.

The idle draw is what an energy window would read with nothing running, so it is
subtracted from every row's window. The GEMM peak is the best this machine's kernels
reach on a large square product (torch: MKL / oneDNN for float, fbgemm's int8 GEMM),
so a row's GMAC/s can be read as a fraction of what the hardware can do.
"""

from __future__ import annotations

import time

from bench.child.energy import EnergyWindow

GEMM_N = 1024  # 1024^3 = 1.07 GMAC per product: tens of ms, well above timer noise


def idle_power_w(seconds: float) -> dict:
    """Mean power codecarbon reads over `seconds` of sleep, and where it came from."""
    window = EnergyWindow(seconds)
    with window:
        time.sleep(seconds)
    watts = window.joules() / max(window.duration_s(), 1e-9)
    return {"idle_w": watts, "idle_window_s": window.duration_s()}


def gemm_peak_gmacs(threads: int, device: str = "cpu", repeats: int = 8) -> dict[str, float]:
    """Best GMAC/s of an N x N x N product per precision (fp32, bf16, int8; fp16 on CUDA).

    CPU fp16 is left out: without AVX512-FP16 torch emulates it (0.5 GMAC/s measured
    here), which is no peak of anything.
    """
    import torch

    torch.set_num_threads(threads)
    n = GEMM_N
    gen = torch.Generator().manual_seed(0)
    products = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if name == "fp16" and device != "cuda":
            continue
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        products[name] = (lambda a=a, b=b: a @ b)
    if device == "cpu":
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen)
        products["int8"] = lambda: torch._int_mm(a, b)
    out = {}
    for name, product in products.items():
        try:
            out[name] = n ** 3 / _best_seconds(product, repeats, device) / 1e9
        except (RuntimeError, NotImplementedError):  # no kernel for it here: no peak
            continue
    return out


#: time a precision's products may take after the first two: a precision with no fast
#: kernel (int8 without VNNI or AMX) takes seconds a product, and its best of eight cost
#: the probe most of a minute; the best of what fits is its peak all the same
BUDGET_S = 1.0


def _best_seconds(product, repeats: int, device: str, budget_s: float = BUDGET_S) -> float:
    """The fastest of up to `repeats` timed products after one warm-up, at least two timed,
    stopping once they took `budget_s` in all."""
    import torch

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    product()
    sync()
    best, spent = float("inf"), 0.0
    for i in range(repeats):
        start = time.perf_counter()
        product()
        sync()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
        if i >= 1 and spent > budget_s:
            break
    return best
