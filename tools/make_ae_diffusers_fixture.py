#!/usr/bin/env python3
"""Make tests/data/ae-diffusers/: the tiny autoencoder fixture in diffusers
AutoencoderKL form, with outputs computed by diffusers itself.

The BFL-layout weights of tests/data/ae/ae-tiny.weights.f32.safetensors are
converted with diffusers' own convert_ldm_vae_checkpoint (so the key mapping
under test is diffusers', not ours), loaded strictly into an AutoencoderKL
(block_out_channels [32, 64], layers_per_block 1, latent 16, no quant convs,
scaling 0.3611, shift 0.1159) and run in float64:

  encode.z      = (latent_dist.mode() - shift) * scale
  decode.output = decode(decode.input / scale + shift).sample

Outputs (the weights are bf16-representable, so the bf16 file holds exactly
the fixture's values):
  tests/data/ae-diffusers/vae/diffusion_pytorch_model.safetensors  (bf16)
  tests/data/ae-diffusers/vae/config.json
  tests/data/ae-diffusers/ae-tiny-diffusers.io.f64.safetensors

Usage: python3 tools/make_ae_diffusers_fixture.py   (from the repository root;
needs torch, diffusers, safetensors, numpy)
"""
import json
import os

import numpy as np
import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from safetensors.numpy import save_file
from safetensors.torch import load_file, save_file as save_torch

SRC = "tests/data/ae/ae-tiny.weights.f32.safetensors"
OUT = "tests/data/ae-diffusers"
SCALE, SHIFT = 0.3611, 0.1159
H, W = 32, 48  # image; latent 16 x 24 (tiny AE downsamples by 2)


def main():
    bfl = load_file(SRC)
    cfg = dict(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        block_out_channels=[32, 64],
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=32,
        scaling_factor=SCALE,
        shift_factor=SHIFT,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    sd = convert_ldm_vae_checkpoint(bfl, cfg)
    vae = AutoencoderKL(**cfg)
    vae.load_state_dict(sd, strict=True)
    vae = vae.double().eval()

    g = torch.Generator().manual_seed(2024)
    img = torch.rand((1, 3, H, W), generator=g, dtype=torch.float64) * 2 - 1
    zin = torch.randn((1, 16, H // 2, W // 2), generator=g, dtype=torch.float64)
    with torch.no_grad():
        mean = vae.encode(img).latent_dist.mode()
        z = (mean - SHIFT) * SCALE
        out = vae.decode(zin / SCALE + SHIFT).sample

    os.makedirs(f"{OUT}/vae", exist_ok=True)
    weights = {k: v.to(torch.bfloat16).contiguous() for k, v in vae.state_dict().items()}
    for k, v in weights.items():  # bf16-representable: no rounding happened
        assert torch.equal(v.double(), vae.state_dict()[k]), k
    save_torch(weights, f"{OUT}/vae/diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
    with open(f"{OUT}/vae/config.json", "w") as f:
        json.dump({"_class_name": "AutoencoderKL", **cfg}, f, indent=2)
        f.write("\n")
    meta = {
        "note": "tiny AE (ch 32, ch_mult [1,2], 1 res block, z 16) in diffusers AutoencoderKL form; "
        "weights converted from ae-tiny.weights.f32 by diffusers convert_ldm_vae_checkpoint; "
        "computed by diffusers in float64",
        "config": json.dumps(cfg),
        "encode": "z = (latent_dist.mode() - shift) * scale",
        "decode": "decode(z / scale + shift).sample",
    }
    import diffusers

    meta["diffusers_version"] = diffusers.__version__
    meta["torch_version"] = torch.__version__
    save_file(
        {
            "encode.input": img.numpy(),
            "encode.z": z.numpy(),
            "decode.input": zin.numpy(),
            "decode.output": out.numpy(),
        },
        f"{OUT}/ae-tiny-diffusers.io.f64.safetensors",
        metadata=meta,
    )
    print("wrote", OUT, "z", tuple(z.shape), "image", tuple(out.shape), "std", float(np.std(out.numpy())))


if __name__ == "__main__":
    main()
