#!/usr/bin/env python3
"""Make tests/data/flux-diffusers/tiny-dev/: the tiny-dev fixture transformer
(tests/data/flux/tiny-dev.weights.f32.safetensors, BFL keys) converted to the
diffusers layout and saved by diffusers itself (FluxTransformer2DModel,
save_pretrained, sharded so the *.safetensors.index.json path is exercised).

The key mapping is diffusers' convert_flux_transformer_checkpoint_to_diffusers
(loaders/single_file_utils.py), which hard-codes the 3072 width; the same
mapping is applied here with the width read from the checkpoint. Before saving,
the converted model is run with diffusers' own forward on the fixture inputs
and must reproduce the BFL reference output, so the folder is a faithful
diffusers checkpoint of the same model.

Needs: torch (CPU), diffusers, safetensors, numpy. Run from the repository root:
    python3 tools/gen_flux_diffusers_fixture.py
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import load_file

import diffusers
from diffusers import FluxTransformer2DModel

SRC = "tests/data/flux/tiny-dev.weights.f32.safetensors"
IO = "tests/data/flux/tiny-dev.io.f32.safetensors"
OUT = "tests/data/flux-diffusers/tiny-dev"


def bfl_to_diffusers(sd):
    out = {}
    C = sd["img_in.weight"].shape[0]
    M = sd["double_blocks.0.img_mlp.0.weight"].shape[0]
    nd = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("double_blocks."))
    ns = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("single_blocks."))

    def lin(dst, src):
        out[dst + ".weight"] = sd[src + ".weight"]
        out[dst + ".bias"] = sd[src + ".bias"]

    lin("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer")
    lin("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer")
    lin("time_text_embed.text_embedder.linear_1", "vector_in.in_layer")
    lin("time_text_embed.text_embedder.linear_2", "vector_in.out_layer")
    if "guidance_in.in_layer.weight" in sd:
        lin("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer")
        lin("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer")
    lin("context_embedder", "txt_in")
    lin("x_embedder", "img_in")
    for i in range(nd):
        b, s = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        lin(b + "norm1.linear", s + "img_mod.lin")
        lin(b + "norm1_context.linear", s + "txt_mod.lin")
        for stream, names in (("img", ("to_q", "to_k", "to_v")),
                              ("txt", ("add_q_proj", "add_k_proj", "add_v_proj"))):
            ws = torch.chunk(sd[s + f"{stream}_attn.qkv.weight"], 3, dim=0)
            bs = torch.chunk(sd[s + f"{stream}_attn.qkv.bias"], 3, dim=0)
            for n, w_, b_ in zip(names, ws, bs):
                out[b + f"attn.{n}.weight"] = w_.clone()
                out[b + f"attn.{n}.bias"] = b_.clone()
        out[b + "attn.norm_q.weight"] = sd[s + "img_attn.norm.query_norm.scale"]
        out[b + "attn.norm_k.weight"] = sd[s + "img_attn.norm.key_norm.scale"]
        out[b + "attn.norm_added_q.weight"] = sd[s + "txt_attn.norm.query_norm.scale"]
        out[b + "attn.norm_added_k.weight"] = sd[s + "txt_attn.norm.key_norm.scale"]
        lin(b + "ff.net.0.proj", s + "img_mlp.0")
        lin(b + "ff.net.2", s + "img_mlp.2")
        lin(b + "ff_context.net.0.proj", s + "txt_mlp.0")
        lin(b + "ff_context.net.2", s + "txt_mlp.2")
        lin(b + "attn.to_out.0", s + "img_attn.proj")
        lin(b + "attn.to_add_out", s + "txt_attn.proj")
    for i in range(ns):
        b, s = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        lin(b + "norm.linear", s + "modulation.lin")
        split = (C, C, C, M)
        ws = torch.split(sd[s + "linear1.weight"], split, dim=0)
        bs = torch.split(sd[s + "linear1.bias"], split, dim=0)
        for n, w_, b_ in zip(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), ws, bs):
            out[b + n + ".weight"] = w_.clone()
            out[b + n + ".bias"] = b_.clone()
        out[b + "attn.norm_q.weight"] = sd[s + "norm.query_norm.scale"]
        out[b + "attn.norm_k.weight"] = sd[s + "norm.key_norm.scale"]
        lin(b + "proj_out", s + "linear2")
    lin("proj_out", "final_layer.linear")

    def swap_scale_shift(w):  # BFL [shift | scale] -> diffusers [scale | shift]
        shift, scale = w.chunk(2, dim=0)
        return torch.cat([scale, shift], dim=0)

    out["norm_out.linear.weight"] = swap_scale_shift(sd["final_layer.adaLN_modulation.1.weight"])
    out["norm_out.linear.bias"] = swap_scale_shift(sd["final_layer.adaLN_modulation.1.bias"])
    return out


def main():
    from safetensors import safe_open
    with safe_open(SRC, "pt") as f:
        cfg = json.loads(f.metadata()["config"])
    sd = load_file(SRC)
    model = FluxTransformer2DModel(
        patch_size=1, in_channels=cfg["in_channels"], out_channels=cfg["out_channels"],
        num_layers=cfg["depth"], num_single_layers=cfg["depth_single_blocks"],
        attention_head_dim=cfg["hidden_size"] // cfg["num_heads"],
        num_attention_heads=cfg["num_heads"], joint_attention_dim=cfg["context_in_dim"],
        pooled_projection_dim=cfg["vec_in_dim"], guidance_embeds=cfg["guidance_embed"],
        axes_dims_rope=tuple(cfg["axes_dim"]))
    missing, unexpected = model.load_state_dict(bfl_to_diffusers(sd), strict=True)
    assert not missing and not unexpected
    model.eval()

    io = load_file(IO)
    with torch.no_grad():
        got = model(hidden_states=io["img"], encoder_hidden_states=io["txt"],
                    pooled_projections=io["y"], timestep=io["timesteps"],
                    img_ids=io["img_ids"][0], txt_ids=io["txt_ids"][0],
                    guidance=io["guidance"], return_dict=False)[0]
    ref = io["output"]
    rel = float(torch.linalg.norm(got - ref) / torch.linalg.norm(ref))
    print(f"diffusers forward vs BFL reference output: rel L2 {rel:.3g}")
    if not rel < 1e-5:
        sys.exit("mapping check failed")

    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    model = model.to(torch.bfloat16)  # the fixture weights are bf16-representable: exact
    model.save_pretrained(OUT, max_shard_size="300KB", safe_serialization=True)
    print("diffusers", diffusers.__version__, "torch", torch.__version__, "->", OUT)
    for n in sorted(os.listdir(OUT)):
        print(" ", n, os.path.getsize(os.path.join(OUT, n)))


if __name__ == "__main__":
    main()
