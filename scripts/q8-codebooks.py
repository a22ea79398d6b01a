#!/usr/bin/env python3
"""The int8 NormalFloat codebooks of the int8-activation kernels (lq_q8.h), computed independently of
lqlora with numpy and scipy: the NF-k codebook built as bitsandbytes' create_normal_map builds NF4
(normal quantiles at float32 linspace points, divided by the largest), then the scale s = i/256 in
[64, 127.5) whose C_k = round(c_k · s / max|c|) give the least squared error, ties to the larger s.
Int8ActivationTests.codebooksAreTheLeastSquaresScaling holds what this prints."""
import numpy as np
from scipy.stats import norm


def linspace32(a, b, n):
    # torch.linspace in float32 as current PyTorch computes it (in double, up from a, down from b)
    step = (b - a) / (n - 1)
    return np.array([a + step * i if i < n // 2 else b - step * (n - i - 1) for i in range(n)], dtype=np.float32)


def codebook(bits):
    offset, half = np.float32(0.9677083), 1 << (bits - 1)
    positive = [np.float32(norm.ppf(float(v))) for v in linspace32(float(offset), 0.5, half + 1)[:-1]]
    negative = [-np.float32(norm.ppf(float(v))) for v in linspace32(float(offset), 0.5, half)[:-1]]
    values = np.sort(np.array(positive + [0] + negative, dtype=np.float32))
    return values / values.max()


for bits in (2, 3, 4, 8):
    c = codebook(bits).astype(np.float64)
    m = np.abs(c).max()
    best = None
    for i in range(127 * 256 + 127, 64 * 256 - 1, -1):
        s = i / 256
        e = np.sum((c - np.round(c / m * s) * (m / s)) ** 2)
        if best is None or e < best[0]:
            best = (e, s)
    s = best[1]
    q = np.round(c / m * s).astype(int)
    print(f"NF{bits}: s = {s}, RMS error {np.sqrt(best[0] / len(c)):.3e} (s = 127: "
          f"{np.sqrt(np.mean((c - np.round(c * 127) / 127) ** 2)):.3e}), largest {np.abs(c - q / s).max():.3e}")
    if bits <= 4:
        print("  values", list(map(int, q)))
