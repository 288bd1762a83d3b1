#!/usr/bin/env python3
"""Generate the reference-noise fixtures (committed; CI never runs this).

  python3 tools/gen_noise_fixtures.py        # from the repository root

Reference: PyTorch's CPU generator, exactly as FLUX's sampling.get_noise calls it
(black-forest-labs/flux src/flux/sampling.py) with device "cpu":

  torch.randn(1, 16, 2 * ceil(H / 16), 2 * ceil(W / 16), dtype=torch.bfloat16,
              generator=torch.Generator("cpu").manual_seed(seed))

Writes tests/data/noise/noise.safetensors:
  noise.s{seed}.h{H}.w{W}     BF16 (1, 16, 2*ceil(H/16), 2*ceil(W/16)) for several seeds
                              (incl. seeds >= 2**32, where only the low 32 bits count) and
                              image sizes (incl. sizes that are not multiples of 16)
  randn.{dtype}.s{seed}.n{n}  torch.randn(n, dtype) for F32, BF16, F16 and n around the
                              16-element block size (n < 16 takes PyTorch's double
                              Box-Muller path; n % 16 != 0 the "recompute the tail" path)
  randn2.f32.s{seed}          two consecutive torch.randn(3) calls on one generator: the
                              second uses the cached second Box-Muller value
__metadata__ holds the torch version and the CPU capability it ran with (x86 AVX2 and
AVX-512 builds give identical results; ATEN_CPU_CAPABILITY=default does not).
"""
import math
import os

import torch
from safetensors.torch import save_file

OUT = "tests/data/noise/noise.safetensors"

SEEDS = [0, 1, 42, 2024, 4294967296 + 7, 18446744073709551615]
SIZES = [(16, 16), (64, 64), (48, 80), (24, 40), (100, 36), (256, 256), (256, 128)]
RANDN_N = [1, 2, 5, 15, 16, 17, 20, 31, 33, 100, 1000]
RANDN_SEEDS = [0, 7]


def noise(seed, h, w):
    g = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(1, 16, 2 * math.ceil(h / 16), 2 * math.ceil(w / 16), dtype=torch.bfloat16,
                       generator=g)


def main():
    tensors = {}
    for seed in SEEDS:
        for (h, w) in SIZES:
            if seed != 0 and (h, w) == (256, 256):
                continue  # one large case is enough
            tensors[f"noise.s{seed}.h{h}.w{w}"] = noise(seed, h, w).contiguous()
    for name, dt in [("f32", torch.float32), ("bf16", torch.bfloat16), ("f16", torch.float16)]:
        for seed in RANDN_SEEDS:
            for n in RANDN_N:
                g = torch.Generator("cpu").manual_seed(seed)
                tensors[f"randn.{name}.s{seed}.n{n}"] = torch.randn(n, dtype=dt, generator=g)
    for seed in RANDN_SEEDS:
        g = torch.Generator("cpu").manual_seed(seed)
        a = torch.randn(3, generator=g)
        b = torch.randn(3, generator=g)
        tensors[f"randn2.f32.s{seed}"] = torch.cat([a, b])
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "notes": "noise.s{seed}.h{H}.w{W} = torch.randn((1,16,2*ceil(H/16),2*ceil(W/16)), "
                 "dtype=bfloat16, generator=torch.Generator('cpu').manual_seed(seed)); "
                 "randn.{dtype}.s{seed}.n{n} = torch.randn(n, dtype, generator seeded with seed)",
    }
    save_file(tensors, OUT, metadata=meta)
    print(f"wrote {OUT}: {len(tensors)} tensors, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
