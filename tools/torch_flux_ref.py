#!/usr/bin/env python3
"""A self-contained PyTorch FLUX transformer forward on BFL-format weights.

Developer tool for tools/bench_vs_torch.py (--impl bfl): the PyTorch side of
the fluxkit benchmark without diffusers, so that it runs on torch 1.13 as well
as on torch 2.x. Not part of fluxkit's runtime, tests or CI.

It reads the tensors of a BFL safetensors file as they are named there
(`img_in.weight`, `double_blocks.0.img_attn.qkv.weight`,
`single_blocks.0.linear1.weight`, `final_layer.adaLN_modulation.1.weight`, ...,
also under the "model.diffusion_model." prefix) and computes the forward with
torch.nn.functional, written from the architecture:

  img_in / txt_in linears; vec = time_in(emb(t)) [+ guidance_in(emb(g))]
  + vector_in(y), emb = 256-d sinusoidal embedding of 1000·t (cos half first);
  RoPE table over the concatenated [txt; img] ids, 3 axes (axes_dim from the
  file's "config" metadata, else the fluxkit default: head dim 128 -> 16/56/56),
  theta 10000, rotating adjacent pairs (2i, 2i+1);
  double blocks: per stream (1+scale)·LayerNorm(x) + shift (eps 1e-6, no
  affine), qkv, RMSNorm(q), RMSNorm(k) with learned scales, joint attention with
  the text tokens first, proj, gated residual, then the same modulation around
  an MLP with tanh-GELU; single blocks: linear1 -> [qkv | mlp], attention,
  linear2 on [attn | gelu(mlp)], gated residual; final layer: LayerNorm with
  adaLN shift/scale, linear.

Precision follows the BFL reference: activations in the weights' dtype, the
timestep embedding, RoPE and RMSNorm statistics in float32 (float64 when the
model runs in float64, as the f64 fixtures were made). Attention is
torch.nn.functional.scaled_dot_product_attention when torch has it (>= 2.0),
otherwise the explicit softmax(q·kᵀ/√d)·v in the activation dtype (what a
torch 1.13 user writes); `attn="explicit"` forces the latter.

Check it against fluxkit's tiny fixtures (relative L2 of the output; f64 runs
must match the f64 fixtures to 1e-9, measured ~3e-14), and against diffusers'
FluxTransformer2DModel in f32 on the first blocks of a full-width file (needs
torch 2 + diffusers; measured 0 with sdpa, 4e-7 with the explicit attention):

  python3 tools/torch_flux_ref.py --selftest [--data tests/data/flux]
  python3 tools/torch_flux_ref.py --vs-diffusers /work/tmp/flux-mini.safetensors [--blocks 2]

Use it from Python:

  from torch_flux_ref import load_flux
  model = load_flux("flux-mini.safetensors", dtype=torch.bfloat16)
  v = model(img, img_ids, txt, txt_ids, timesteps, y, guidance)   # (B, L_img, out_ch)
"""

import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

PREFIX = "model.diffusion_model."
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
LN_EPS = 1e-6
RMS_EPS = 1e-6


def default_axes(head_dim):
    """fluxkit's default RoPE axes (fk_flux_default_axes): head dim 128 ->
    [16, 56, 56]; otherwise axes[1] = axes[2] = 2·floor(7·head_dim/32)."""
    a = 2 * ((7 * head_dim) // 32)
    return [head_dim - 2 * a, a, a]


def infer_config(w, metadata):
    """The model's shape from the tensor shapes (and the file's "config"
    metadata for axes_dim / theta, which shapes do not tell)."""
    def has(name):
        return name in w

    for need in ("img_in.weight", "txt_in.weight", "time_in.in_layer.weight", "vector_in.in_layer.weight",
                 "final_layer.linear.weight", "double_blocks.0.img_attn.norm.query_norm.scale"):
        if not has(need):
            raise ValueError("not a BFL FLUX transformer: tensor '%s' is missing" % need)
    hidden, in_ch = w["img_in.weight"].shape
    head_dim = w["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0]
    if hidden % head_dim:
        raise ValueError("hidden size %d is not a multiple of the head dim %d" % (hidden, head_dim))
    n_double = 1 + max(int(k.split(".")[1]) for k in w if k.startswith("double_blocks."))
    n_single = 1 + max((int(k.split(".")[1]) for k in w if k.startswith("single_blocks.")), default=-1)
    cfg = dict(hidden=int(hidden), in_ch=int(in_ch), head_dim=int(head_dim), heads=int(hidden // head_dim),
               ctx_dim=int(w["txt_in.weight"].shape[1]), vec_dim=int(w["vector_in.in_layer.weight"].shape[1]),
               mlp=int(w["double_blocks.0.img_mlp.0.weight"].shape[0]),
               out_ch=int(w["final_layer.linear.weight"].shape[0]), n_double=n_double, n_single=n_single,
               guidance=has("guidance_in.in_layer.weight"), qkv_bias=has("double_blocks.0.img_attn.qkv.bias"),
               axes=default_axes(int(head_dim)), theta=10000.0)
    try:
        meta_cfg = json.loads((metadata or {}).get("config", "{}"))
    except ValueError:
        meta_cfg = {}
    axes = meta_cfg.get("axes_dim", meta_cfg.get("axes_dims_rope"))
    if axes is not None:
        cfg["axes"] = [int(a) for a in axes]
    if "theta" in meta_cfg:
        cfg["theta"] = float(meta_cfg["theta"])
    if sum(cfg["axes"]) != head_dim or any(a % 2 for a in cfg["axes"]):
        raise ValueError("RoPE axes %s do not split the head dim %d into even parts" % (cfg["axes"], head_dim))
    return cfg


# ---- the pieces of the forward ------------------------------------------------------------

def timestep_embedding(t, hi, dim=256, max_period=10000.0, time_factor=1000.0):
    """(B,) -> (B, dim): [cos(1000·t·f_j), sin(1000·t·f_j)], f_j = max_period^(-j/half).
    1000·t is taken in t's dtype, the arguments in `hi`, the result cast back
    to t's dtype (as BFL)."""
    t = time_factor * t
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=hi) / half)
    args = t[:, None].to(hi) * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(t.dtype)


def rope_tables(ids, axes, theta, hi):
    """ids (B, L, 3) -> cos, sin (B, 1, L, head_dim/2) in `hi`: the angle of
    rotated pair i is position[axis] · theta^(-2j/axes[axis]), axes concatenated
    in id-column order. Angles in float64, as BFL."""
    parts = []
    for a, d in enumerate(axes):
        omega = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
        parts.append(ids[..., a].to(torch.float64)[..., None] * omega)          # (B, L, d/2)
    ang = torch.cat(parts, dim=-1)
    return torch.cos(ang).to(hi)[:, None], torch.sin(ang).to(hi)[:, None]


def apply_rope(x, cos, sin, hi):
    """x (B, H, L, D): rotate the adjacent pairs (x[2i], x[2i+1]) by angle i,
    in `hi`, result in x's dtype."""
    xf = x.to(hi).reshape(*x.shape[:-1], -1, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack([cos * x0 - sin * x1, sin * x0 + cos * x1], dim=-1)
    return out.reshape(x.shape).to(x.dtype)


def rms_norm(x, scale, hi):
    """x·rsqrt(mean(x²) + 1e-6) over the last dim in `hi`, cast back, times the learned scale."""
    xf = x.to(hi)
    r = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + RMS_EPS)
    return (xf * r).to(x.dtype) * scale


def layer_norm(x):
    return F.layer_norm(x, (x.shape[-1],), eps=LN_EPS)


def attention(q, k, v, cos, sin, hi, explicit):
    """q, k, v (B, H, L, D) -> (B, L, H·D), RoPE applied to q and k."""
    q = apply_rope(q, cos, sin, hi)
    k = apply_rope(k, cos, sin, hi)
    if explicit:
        s = torch.matmul(q, k.transpose(-2, -1)).mul_(1.0 / math.sqrt(q.shape[-1]))  # (B, H, L, L)
        o = torch.matmul(torch.softmax(s, dim=-1), v)
    else:
        o = F.scaled_dot_product_attention(q, k, v)
    b, h, n, d = o.shape
    return o.transpose(1, 2).reshape(b, n, h * d)


class FluxRef:
    """The transformer: a dict of tensors (BFL names, no prefix) and the config."""

    def __init__(self, w, cfg, attn="auto"):
        self.w, self.cfg = w, cfg
        if attn not in ("auto", "sdpa", "explicit"):
            raise ValueError("attn: expected auto, sdpa or explicit, got %r" % attn)
        if attn == "sdpa" and not HAS_SDPA:
            raise ValueError("attn=sdpa: this torch (%s) has no scaled_dot_product_attention" % torch.__version__)
        self.explicit = attn == "explicit" or (attn == "auto" and not HAS_SDPA)
        self.dtype = w["img_in.weight"].dtype
        self.hi = torch.float64 if self.dtype == torch.float64 else torch.float32

    @property
    def attention_kind(self):
        return "explicit softmax(q·kᵀ/√d)·v" if self.explicit else "F.scaled_dot_product_attention"

    def n_params(self):
        return sum(t.numel() for t in self.w.values())

    def _lin(self, name, x):
        return F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias"))

    def _embed(self, name, x):  # MLPEmbedder: out_layer(silu(in_layer(x)))
        return self._lin(name + ".out_layer", F.silu(self._lin(name + ".in_layer", x)))

    def _qkv(self, x, norm):
        """x (B, L, 3C) -> q, k, v (B, H, L, D) with q and k RMS-normalised."""
        b, n, _ = x.shape
        q, k, v = x.reshape(b, n, 3, self.cfg["heads"], self.cfg["head_dim"]).permute(2, 0, 3, 1, 4)
        q = rms_norm(q, self.w[norm + ".query_norm.scale"], self.hi).to(v.dtype)
        k = rms_norm(k, self.w[norm + ".key_norm.scale"], self.hi).to(v.dtype)
        return q, k, v

    def _mlp(self, prefix, x):
        return self._lin(prefix + ".2", F.gelu(self._lin(prefix + ".0", x), approximate="tanh"))

    def double_block(self, i, img, txt, vec_act, cos, sin):
        p = "double_blocks.%d." % i
        im = self._lin(p + "img_mod.lin", vec_act)[:, None, :].chunk(6, dim=-1)  # shift, scale, gate x2
        tm = self._lin(p + "txt_mod.lin", vec_act)[:, None, :].chunk(6, dim=-1)
        iq, ik, iv = self._qkv(self._lin(p + "img_attn.qkv", (1 + im[1]) * layer_norm(img) + im[0]),
                               p + "img_attn.norm")
        tq, tk, tv = self._qkv(self._lin(p + "txt_attn.qkv", (1 + tm[1]) * layer_norm(txt) + tm[0]),
                               p + "txt_attn.norm")
        a = attention(torch.cat((tq, iq), dim=2), torch.cat((tk, ik), dim=2), torch.cat((tv, iv), dim=2),
                      cos, sin, self.hi, self.explicit)
        nt = txt.shape[1]
        ta, ia = a[:, :nt], a[:, nt:]
        img = img + im[2] * self._lin(p + "img_attn.proj", ia)
        img = img + im[5] * self._mlp(p + "img_mlp", (1 + im[4]) * layer_norm(img) + im[3])
        txt = txt + tm[2] * self._lin(p + "txt_attn.proj", ta)
        txt = txt + tm[5] * self._mlp(p + "txt_mlp", (1 + tm[4]) * layer_norm(txt) + tm[3])
        return img, txt

    def single_block(self, i, x, vec_act, cos, sin):
        p = "single_blocks.%d." % i
        c = self.cfg["hidden"]
        m = self._lin(p + "modulation.lin", vec_act)[:, None, :].chunk(3, dim=-1)  # shift, scale, gate
        h = self._lin(p + "linear1", (1 + m[1]) * layer_norm(x) + m[0])
        qkv, mlp = torch.split(h, [3 * c, h.shape[-1] - 3 * c], dim=-1)
        q, k, v = self._qkv(qkv, p + "norm")
        a = attention(q, k, v, cos, sin, self.hi, self.explicit)
        out = self._lin(p + "linear2", torch.cat((a, F.gelu(mlp, approximate="tanh")), dim=2))
        return x + m[2] * out

    def __call__(self, img, img_ids, txt, txt_ids, timesteps, y, guidance=None):
        """img (B, L_img, in_ch), img_ids (B, L_img, 3), txt (B, L_txt, ctx_dim),
        txt_ids (B, L_txt, 3), timesteps (B,), y (B, vec_dim), guidance (B,) or
        None -> velocity (B, L_img, out_ch) in the model's dtype."""
        cfg, dt = self.cfg, self.dtype
        img = self._lin("img_in", img.to(dt))
        vec = self._embed("time_in", timestep_embedding(timesteps.to(dt), self.hi))
        if cfg["guidance"]:
            if guidance is None:
                raise ValueError("this model has a guidance embedding: pass guidance")
            vec = vec + self._embed("guidance_in", timestep_embedding(guidance.to(dt), self.hi))
        vec = vec + self._embed("vector_in", y.to(dt))
        txt = self._lin("txt_in", txt.to(dt))
        cos, sin = rope_tables(torch.cat((txt_ids, img_ids), dim=1), cfg["axes"], cfg["theta"], self.hi)
        vec_act = F.silu(vec)  # every modulation's input
        for i in range(cfg["n_double"]):
            img, txt = self.double_block(i, img, txt, vec_act, cos, sin)
        x = torch.cat((txt, img), dim=1)
        for i in range(cfg["n_single"]):
            x = self.single_block(i, x, vec_act, cos, sin)
        x = x[:, txt.shape[1]:]
        shift, scale = self._lin("final_layer.adaLN_modulation.1", vec_act).chunk(2, dim=1)
        x = (1 + scale[:, None, :]) * layer_norm(x) + shift[:, None, :]
        return self._lin("final_layer.linear", x)


def load_flux(path, dtype=torch.bfloat16, attn="auto"):
    """Read a BFL-format safetensors file (transformer tensors, optionally under
    "model.diffusion_model."); tensors not already in `dtype` are converted."""
    from safetensors import safe_open

    w = {}
    with safe_open(path, framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        keys = list(f.keys())
        prefixed = any(k.startswith(PREFIX) for k in keys)
        for k in keys:
            if prefixed and not k.startswith(PREFIX):
                continue  # a full checkpoint: the VAE / text encoders
            t = f.get_tensor(k)
            w[k[len(PREFIX):] if prefixed else k] = t if t.dtype == dtype else t.to(dtype)
    return FluxRef(w, infer_config(w, metadata), attn=attn)


def file_dtypes(path):
    from safetensors import safe_open
    out = set()
    with safe_open(path, framework="pt", device="cpu") as f:
        for k in f.keys():
            out.add(str(f.get_slice(k).get_dtype()).lower())
    return sorted(out)


# ---- self-test against fluxkit's fixtures ----------------------------------------------------

def rel_l2(a, b):
    a, b = a.double(), b.double()
    return float(torch.linalg.norm((a - b).flatten()) / torch.linalg.norm(b.flatten()))


def selftest(data):
    """Run the tiny fixtures (tiny-dev, tiny-schnell) in f64, f32 and bf16 with
    each attention kind torch has; print the relative L2 of the output against
    the fixture's `output` (same dtype). Returns the number of failures:
    f64 must be within 1e-9 (the f64 fixture is exact up to summation order),
    f32 within 1e-5, bf16 within 2e-2 (the bf16 fixture's attention ran in f32)."""
    from safetensors import safe_open

    tol = {"f64": 1e-9, "f32": 1e-5, "bf16": 2e-2}
    dtypes = {"f64": torch.float64, "f32": torch.float32, "bf16": torch.bfloat16}
    attns = ["explicit"] + (["sdpa"] if HAS_SDPA else [])
    fails = 0
    print("torch %s; fixtures in %s" % (torch.__version__, data))
    for model in ("tiny-dev", "tiny-schnell"):
        for dn in ("f64", "f32", "bf16"):
            wfile = os.path.join(data, "%s.weights.%s.safetensors" % (model, "bf16" if dn == "bf16" else "f32"))
            iofile = os.path.join(data, "%s.io.%s.safetensors" % (model, dn))
            if not (os.path.isfile(wfile) and os.path.isfile(iofile)):
                print("  %s %s: fixture missing (%s, %s)" % (model, dn, wfile, iofile))
                fails += 1
                continue
            io = {}
            with safe_open(iofile, framework="pt", device="cpu") as f:
                for k in f.keys():
                    io[k] = f.get_tensor(k)
            exact = None  # the f64 fixture's output: the distance of each dtype from the exact function
            f64file = os.path.join(data, "%s.io.f64.safetensors" % model)
            if os.path.isfile(f64file):
                with safe_open(f64file, framework="pt", device="cpu") as f:
                    exact = f.get_tensor("output")
            for attn in attns:
                m = load_flux(wfile, dtype=dtypes[dn], attn=attn)
                with torch.inference_mode():
                    out = m(io["img"], io["img_ids"].float(), io["txt"], io["txt_ids"].float(), io["timesteps"],
                            io["y"], io.get("guidance"))
                r = rel_l2(out, io["output"])
                ok = r <= tol[dn] and bool(torch.isfinite(out).all())
                fails += not ok
                print("  %-12s %-4s attention %-8s rel L2 vs the %s fixture's output %.3e (limit %.0e) %s;"
                      " vs f64 output %s (the %s fixture's own: %s)"
                      % (model, dn, attn, dn, r, tol[dn], "ok" if ok else "FAIL",
                         "%.3e" % rel_l2(out, exact) if exact is not None else "?", dn,
                         "%.3e" % rel_l2(io["output"], exact) if exact is not None else "?"))
    print("%d passed, %d failed" % (2 * 3 * len(attns) - fails, fails))
    return fails


def vs_diffusers(path, blocks=2, attn="auto"):
    """Compare with diffusers' FluxTransformer2DModel in float32 on a file's
    weights cut to `blocks` double + `blocks` single blocks (diffusers' converter
    needs hidden size 3072, so a full-width file such as Flux-mini), 8x12 image
    tokens, 40 text tokens. Prints the relative L2 of the outputs; returns it."""
    from safetensors import safe_open
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    def keep(k):
        return not (k.startswith(("double_blocks.", "single_blocks.")) and int(k.split(".")[1]) >= blocks)

    with safe_open(path, framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        sd = {(k[len(PREFIX):] if k.startswith(PREFIX) else k): f.get_tensor(k).float() for k in f.keys()}
    sd = {k: v for k, v in sd.items() if keep(k)}
    model = FluxRef(dict(sd), infer_config(sd, metadata), attn=attn)
    c = model.cfg
    conv = convert_flux_transformer_checkpoint_to_diffusers(sd)
    with torch.device("meta"):
        dm = FluxTransformer2DModel(patch_size=1, in_channels=c["in_ch"], out_channels=c["out_ch"],
                                    num_layers=c["n_double"], num_single_layers=c["n_single"],
                                    attention_head_dim=c["head_dim"], num_attention_heads=c["heads"],
                                    joint_attention_dim=c["ctx_dim"], pooled_projection_dim=c["vec_dim"],
                                    guidance_embeds=c["guidance"], axes_dims_rope=tuple(c["axes"]))
    dm.load_state_dict(conv, strict=True, assign=True)
    dm.eval()
    g = torch.Generator().manual_seed(3)
    hp, wp, n_txt = 8, 12, 40
    img = torch.randn(1, hp * wp, c["in_ch"], generator=g)
    txt = 0.5 * torch.randn(1, n_txt, c["ctx_dim"], generator=g)
    y = 0.5 * torch.randn(1, c["vec_dim"], generator=g)
    img_ids = torch.zeros(hp * wp, 3)
    img_ids[:, 1] = torch.arange(hp).repeat_interleave(wp).float()
    img_ids[:, 2] = torch.arange(wp).repeat(hp).float()
    txt_ids = torch.zeros(n_txt, 3)
    t, gd = torch.tensor([0.734375]), torch.tensor([3.5]) if c["guidance"] else None
    with torch.inference_mode():
        a = dm(hidden_states=img, encoder_hidden_states=txt, pooled_projections=y, timestep=t, img_ids=img_ids,
               txt_ids=txt_ids, guidance=gd, return_dict=False)[0]
        b = model(img, img_ids[None], txt, txt_ids[None], t, y, gd)
    r = rel_l2(b, a)
    print("f32, %s cut to %d double + %d single blocks, %d image + %d text tokens, attention %s: "
          "rel L2 vs diffusers %.3e" % (os.path.basename(path), c["n_double"], c["n_single"], hp * wp, n_txt,
                                        model.attention_kind, r))
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--selftest", action="store_true", help="compare with fluxkit's tiny fixtures")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                                   "data", "flux"), help="fixture folder (tests/data/flux)")
    ap.add_argument("--vs-diffusers", metavar="WEIGHTS",
                    help="compare with diffusers' FluxTransformer2DModel in f32 on this (hidden 3072) file's "
                         "weights cut to --blocks double + single blocks")
    ap.add_argument("--blocks", type=int, default=2, help="blocks of each kind kept for --vs-diffusers (2)")
    ap.add_argument("--attn", default="auto", choices=("auto", "sdpa", "explicit"), help="attention for --vs-diffusers")
    a = ap.parse_args()
    if not a.selftest and not a.vs_diffusers:
        ap.print_help()
        return 0
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    rc = 0
    if a.selftest:
        rc |= 1 if selftest(os.path.normpath(a.data)) else 0
    if a.vs_diffusers:
        rc |= 1 if not vs_diffusers(a.vs_diffusers, a.blocks, a.attn) <= 1e-5 else 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
