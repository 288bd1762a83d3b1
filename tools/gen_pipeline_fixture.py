#!/usr/bin/env python3
"""Generate the end-to-end pipeline fixtures (committed; CI never runs this).

  python3 tools/gen_pipeline_fixture.py --bfl PATH/TO/flux/src    # from the repository root

Reference: black-forest-labs/flux (commit 802fb471, `src/flux`: sampling.get_noise,
prepare, get_schedule, denoise, unpack; model.Flux; modules.autoencoder.AutoEncoder;
modules.conditioner.HFEmbedder's forward) with transformers' CLIPTextModel /
T5EncoderModel and the real FLUX tokenizers (data/tokenizers: transformers' CLIPTokenizer; the
slow T5Tokenizer(legacy=True) that BFL's HFEmbedder uses, reproduced with SentencePiece
because transformers 5 no longer has it), everything in float32 on the CPU. BFL's
package imports OpenCV and imwatermark at module level for features not used here; the
script stubs those two imports. Needs: torch, transformers, sentencepiece, einops,
safetensors, numpy, pillow.

Models: the tiny FLUX transformers of tests/data/flux (tiny-dev: guidance embedding, shift;
tiny-schnell: neither), the tiny autoencoder tests/data/ae/ae-tiny (ch_mult [1, 2]: one
latent pixel is 2x2 image pixels), and two new tiny text encoders whose widths fit those
transformers (vec_in_dim 24, context_in_dim 32) with the real vocabulary sizes so the real
tokenizers' ids are valid:
  tiny-clip-l.safetensors   CLIPTextModel: vocab 49408, width 24, 2 layers, 2 heads, MLP 48,
                            77 positions, quick_gelu, eos_token_id 2 (pool at argmax id, as
                            CLIP-L); HF keys (text_model.*), like clip_l.safetensors
  tiny-t5xxl.safetensors    T5EncoderModel (v1.1, gated-GELU): vocab 32128, d_model 32,
                            4 heads x 8, d_ff 48, 2 layers; HF keys (shared.weight,
                            encoder.*), like t5xxl_fp16.safetensors
  Token embeddings are stored as F8_E4M3 (values e4m3-representable, which keeps the files
  small), everything else as BF16 (bf16-representable values); norm scales 1 + N(0, 0.1).
  The HF configs are in __metadata__["config"].

Writes tests/data/pipeline/:
  tiny-clip-l.safetensors, tiny-t5xxl.safetensors, init-24x32.png (img2img input)
  pipeline-e2e.io.f32.safetensors with, per case C in {dev, schnell, cfg, img2img}:
    C.clip_ids (77) I64, C.t5_ids (T5 length) I64        tokenizer output
    C.vec (1, 24), C.txt (1, L, 32)                       HFEmbedder outputs (bf16-rounded
                                                          by HFEmbedder, stored as f32)
    C.neg_vec, C.neg_txt                                  cfg: the negative prompt's
    C.noise (1, 16, h, w) BF16                            get_noise(seed)
    C.timesteps (n + 1) F32                               get_schedule
    C.x0 (1, h*w/4, 64)                                   packed start latent
    C.final (1, h*w/4, 64), C.latent (1, 16, h, w)        after denoise; unpacked
    C.decode.output (1, 3, 2h, 2w)                        ae.decode(latent)
    C.image_u8 (2h, 2w, 3) U8                             clamp, 127.5*(x+1), truncated
    img2img.init_u8 (24, 32, 3) U8, img2img.init_z        init image, ae encode (mean)
  and __metadata__["cases"]: JSON with each case's parameters (prompt, seed, size, steps,
  guidance, shift, t5 length, negative prompt, cfg scale, strength, t_start).

Case notes
  cfg      true classifier-free guidance (not in BFL's repo; diffusers FluxPipeline's
           formula): per step v = v_neg + cfg * (v_pos - v_neg), two transformer passes.
  img2img  diffusers FluxImg2ImgPipeline's start point on BFL's schedule:
           t_start = int(max(n - min(n * strength, n), 0)); x = t * noise + (1 - t) * z
           with t = timesteps[t_start] (f32), then BFL's denoise over timesteps[t_start:].
           The image is preprocessed as BFL does for conditioning images
           (u8 / 127.5 - 1) and encoded with the posterior mean (no sampling).
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import types

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

OUT = "tests/data/pipeline"
FLUX_DEV = "tests/data/flux/tiny-dev.weights.f32.safetensors"
FLUX_SCHNELL = "tests/data/flux/tiny-schnell.weights.f32.safetensors"
AE = "tests/data/ae/ae-tiny.weights.f32.safetensors"

CLIP_CFG = {
    "model_type": "clip_text_model", "vocab_size": 49408, "hidden_size": 24, "intermediate_size": 48,
    "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 77,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "bos_token_id": 0, "eos_token_id": 2,
    "pad_token_id": 1, "projection_dim": 24,
}
T5_CFG = {
    "model_type": "t5", "dense_act_fn": "gelu_new", "vocab_size": 32128, "d_model": 32, "d_kv": 8,
    "d_ff": 48, "num_layers": 2, "num_heads": 4, "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128, "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-06, "dropout_rate": 0.0, "is_encoder_decoder": False,
    "use_cache": False, "tie_word_embeddings": False,
}

CASES = [
    dict(name="dev", flux="dev", prompt="a photo of a red fox sitting in the snow, golden hour",
         seed=42, height=96, width=128, steps=4, guidance=3.5, shift=True, t5_len=512),
    dict(name="schnell", flux="schnell", prompt="isometric pixel art of a tiny lighthouse on a rock",
         seed=7, height=64, width=80, steps=4, guidance=3.5, shift=False, t5_len=256),
    dict(name="cfg", flux="dev", prompt="a bowl of ramen, studio photograph", negative="blurry, low quality",
         cfg_scale=2.5, seed=3, height=96, width=96, steps=3, guidance=3.5, shift=True, t5_len=512),
    dict(name="img2img", flux="dev", prompt="an oil painting of a harbour at dusk", seed=11,
         height=96, width=128, steps=4, guidance=3.5, shift=True, t5_len=512, strength=0.6),
]


def import_bfl(src):
    sys.path.insert(0, src)
    stub = types.ModuleType("flux.modules.image_embedders")  # imports cv2; unused here
    for n in ("CannyImageEncoder", "DepthImageEncoder", "ReduxImageEncoder"):
        setattr(stub, n, object)
    sys.modules["flux.modules.image_embedders"] = stub
    wm = types.ModuleType("imwatermark")  # util.py imports it; watermarking is not used
    wm.WatermarkEncoder = type("WatermarkEncoder", (), {"set_watermark": lambda self, *a: None})
    sys.modules["imwatermark"] = wm
    import flux.sampling as sampling
    from flux.model import Flux, FluxParams
    from flux.modules.autoencoder import AutoEncoder, AutoEncoderParams
    from flux.modules.conditioner import HFEmbedder
    return sampling, Flux, FluxParams, AutoEncoder, AutoEncoderParams, HFEmbedder


def bf16(t):
    return t.to(torch.bfloat16).to(torch.float32)


def e4m3(t):
    return t.to(torch.float8_e4m3fn).to(torch.float32)


def tiny_text_weights(model, seed):
    """Random bf16-representable weights (embeddings e4m3-representable) for an HF model."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if k == "encoder.embed_tokens.weight" and "shared.weight" in sd:
            w = sd["shared.weight"]  # tied
        elif ("embed" in k and "position" not in k) or k == "shared.weight":
            w = e4m3(torch.randn(v.shape, generator=g))
        elif k.endswith("relative_attention_bias.weight") or "position_embedding" in k:
            w = bf16(torch.randn(v.shape, generator=g) * 0.5)
        elif v.ndim == 1 and ("layer_norm" in k or "layernorm" in k or "final_layer_norm" in k):
            if k.endswith(".bias"):
                w = bf16(torch.randn(v.shape, generator=g) * 0.02)
            else:
                w = bf16(1 + 0.1 * torch.randn(v.shape, generator=g))
        elif v.ndim == 2:
            w = bf16(torch.randn(v.shape, generator=g) / math.sqrt(v.shape[1]))
        elif v.ndim == 1:
            w = bf16(torch.randn(v.shape, generator=g) * 0.02)
        else:
            raise SystemExit(f"unexpected tensor {k} {tuple(v.shape)}")
        sd[k] = w
    model.load_state_dict(sd, strict=True)
    return sd


def save_text_model(sd, path, cfg, skip=()):
    out = {}
    for k, v in sd.items():
        if k in skip:
            continue
        is_emb = ("token_embedding" in k) or k == "shared.weight"
        out[k] = v.to(torch.float8_e4m3fn) if is_emb else v.to(torch.bfloat16)
        out[k] = out[k].contiguous()
    save_file(out, path, metadata={"config": json.dumps(cfg), "format": "pt",
                                   "notes": "tiny random-weight text encoder for fluxkit's pipeline test "
                                            "(tools/gen_pipeline_fixture.py); not a real model"})


class SlowT5Tokenizer:
    """transformers' slow T5Tokenizer(legacy=True) as BFL's HFEmbedder calls it, for plain text:
    SentencePiece encode, truncated to max_length - 1, then </s> (1), padded with <pad> (0).
    (transformers 5 replaced the slow class by a tokenizers-based one; this is the original
    behaviour, see tests/data/tokenizers and the shared tokenizer README.)"""

    def __init__(self, model_file):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=model_file)

    def __call__(self, text, truncation=True, max_length=512, padding="max_length", return_tensors="pt", **kw):
        texts = [text] if isinstance(text, str) else list(text)
        rows = []
        for t in texts:
            ids = self.sp.encode(t)[: max_length - 1] + [1]
            rows.append(ids + [0] * (max_length - len(ids)))
        return {"input_ids": torch.tensor(rows, dtype=torch.int64)}


def make_embedder(HFEmbedder, tokenizer, model, max_length, is_clip):
    e = HFEmbedder.__new__(HFEmbedder)
    torch.nn.Module.__init__(e)
    e.is_clip = is_clip
    e.max_length = max_length
    e.output_key = "pooler_output" if is_clip else "last_hidden_state"
    e.tokenizer = tokenizer
    e.hf_module = model.eval().requires_grad_(False)
    return e


def load_flux(Flux, FluxParams, path):
    sd = load_file(path)
    meta = json.loads(__import__("safetensors").safe_open(path, "pt").metadata()["config"])
    params = FluxParams(in_channels=meta["in_channels"], out_channels=meta["out_channels"],
                        vec_in_dim=meta["vec_in_dim"], context_in_dim=meta["context_in_dim"],
                        hidden_size=meta["hidden_size"], mlp_ratio=meta["mlp_ratio"],
                        num_heads=meta["num_heads"], depth=meta["depth"],
                        depth_single_blocks=meta["depth_single_blocks"], axes_dim=meta["axes_dim"],
                        theta=meta["theta"], qkv_bias=meta["qkv_bias"], guidance_embed=meta["guidance_embed"])
    m = Flux(params).to(torch.float32)
    m.load_state_dict(sd, strict=True)
    return m.eval()


def load_ae(AutoEncoder, AutoEncoderParams, path):
    sd = load_file(path)
    meta = json.loads(__import__("safetensors").safe_open(path, "pt").metadata()["config"])
    params = AutoEncoderParams(resolution=meta["resolution"], in_channels=meta["in_channels"], ch=meta["ch"],
                               out_ch=meta["out_ch"], ch_mult=meta["ch_mult"],
                               num_res_blocks=meta["num_res_blocks"], z_channels=meta["z_channels"],
                               scale_factor=meta["scale_factor"], shift_factor=meta["shift_factor"])
    ae = AutoEncoder(params).to(torch.float32)
    ae.load_state_dict(sd, strict=True)
    return ae.eval()


def to_u8(x):
    """BFL util.save_image without the watermark: clamp, HWC, 127.5 (x + 1), truncating .byte()."""
    x = x.clamp(-1, 1)
    x = x[0].permute(1, 2, 0)
    return (127.5 * (x + 1.0)).byte()


def init_image():
    """A deterministic 24x32 RGB test picture (gradients, a disc, a stripe)."""
    h, w = 24, 32
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / (w - 1)
    g = 255 * y / (h - 1)
    b = 128 + 127 * np.sin(x / 3.0) * np.cos(y / 4.0)
    disc = (x - 20) ** 2 + (y - 10) ** 2 < 36
    r[disc], g[disc], b[disc] = 250, 240, 30
    b[:, 5:7] = 10
    return np.clip(np.stack([r, g, b], -1).round(), 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bfl", default=os.environ.get("FLUX_SRC", "/tmp/bfl-flux/src"),
                    help="black-forest-labs/flux src/ folder (commit 802fb471)")
    args = ap.parse_args()
    sampling, Flux, FluxParams, AutoEncoder, AutoEncoderParams, HFEmbedder = import_bfl(args.bfl)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel
    torch.set_grad_enabled(False)
    os.makedirs(OUT, exist_ok=True)

    clip_model = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in CLIP_CFG.items() if k != "model_type"}),
                               ).to(torch.float32)
    clip_model.config._attn_implementation = "eager"
    clip_sd = tiny_text_weights(clip_model, 20250101)
    save_text_model(clip_sd, f"{OUT}/tiny-clip-l.safetensors", CLIP_CFG,
                    skip=("text_model.embeddings.position_ids",))
    t5_model = T5EncoderModel(T5Config(**{k: v for k, v in T5_CFG.items() if k != "model_type"})).to(torch.float32)
    t5_model.config._attn_implementation = "eager"
    t5_sd = tiny_text_weights(t5_model, 20250102)
    t5_sd = {k: v for k, v in t5_sd.items() if k != "encoder.embed_tokens.weight"}  # tied to shared.weight
    save_text_model(t5_sd, f"{OUT}/tiny-t5xxl.safetensors", T5_CFG)

    clip_dir = tempfile.mkdtemp()
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(f"data/tokenizers/clip/{f}", clip_dir)
    clip_tok = CLIPTokenizer.from_pretrained(clip_dir)
    t5_tok = SlowT5Tokenizer("data/tokenizers/t5/spiece.model")

    flux = {"dev": load_flux(Flux, FluxParams, FLUX_DEV), "schnell": load_flux(Flux, FluxParams, FLUX_SCHNELL)}
    ae = load_ae(AutoEncoder, AutoEncoderParams, AE)

    init_u8 = init_image()
    Image.fromarray(init_u8).save(f"{OUT}/init-24x32.png")
    init_u8 = np.array(Image.open(f"{OUT}/init-24x32.png").convert("RGB"))

    tensors, cases_meta = {}, {}
    for c in CASES:
        n = c["name"]
        model = flux[c["flux"]]
        clip = make_embedder(HFEmbedder, clip_tok, clip_model, 77, True)
        t5 = make_embedder(HFEmbedder, t5_tok, t5_model, c["t5_len"], False)
        H, W = c["height"], c["width"]
        noise = sampling.get_noise(1, H, W, device=torch.device("cpu"), dtype=torch.bfloat16, seed=c["seed"])
        inp = sampling.prepare(t5, clip, noise.float(), c["prompt"])
        txt, vec = inp["txt"].float(), inp["vec"].float()
        tensors[f"{n}.clip_ids"] = clip_tok(c["prompt"], truncation=True, max_length=77, padding="max_length",
                                            return_tensors="pt")["input_ids"][0].to(torch.int64)
        tensors[f"{n}.t5_ids"] = t5_tok(c["prompt"], truncation=True, max_length=c["t5_len"], padding="max_length",
                                        return_tensors="pt")["input_ids"][0].to(torch.int64)
        tensors[f"{n}.vec"], tensors[f"{n}.txt"] = vec, txt
        tensors[f"{n}.noise"] = noise.contiguous()
        seq = inp["img"].shape[1]
        ts = sampling.get_schedule(c["steps"], seq, shift=c["shift"])
        tensors[f"{n}.timesteps"] = torch.tensor(ts, dtype=torch.float32)
        img, img_ids, txt_ids = inp["img"], inp["img_ids"], inp["txt_ids"]
        meta = dict(c)
        if n == "img2img":
            x = torch.from_numpy(init_u8).float() / 127.5 - 1.0
            x = x.permute(2, 0, 1)[None]
            mean = torch.chunk(ae.encoder(x), 2, dim=1)[0]
            z = ae.scale_factor * (mean - ae.shift_factor)
            tensors[f"{n}.init_u8"] = torch.from_numpy(init_u8).contiguous()
            tensors[f"{n}.init_z"] = z
            steps = c["steps"]
            init_timestep = min(steps * c["strength"], steps)
            t_start = int(max(steps - init_timestep, 0))
            sigma = torch.tensor(ts[t_start], dtype=torch.float32)
            zp = sampling.rearrange(z, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2)
            img = sigma * img + (1.0 - sigma) * zp
            ts_run = ts[t_start:]
            meta["t_start"] = t_start
        else:
            ts_run = ts
        tensors[f"{n}.x0"] = img
        if n == "cfg":
            neg = sampling.prepare(t5, clip, noise.float(), c["negative"])
            ntxt, nvec = neg["txt"].float(), neg["vec"].float()
            tensors[f"{n}.neg_vec"], tensors[f"{n}.neg_txt"] = nvec, ntxt
            g = torch.full((1,), c["guidance"], dtype=img.dtype)
            for t_curr, t_prev in zip(ts_run[:-1], ts_run[1:]):
                tv = torch.full((1,), t_curr, dtype=img.dtype)
                vp = model(img=img, img_ids=img_ids, txt=txt, txt_ids=txt_ids, y=vec, timesteps=tv, guidance=g)
                vn = model(img=img, img_ids=img_ids, txt=ntxt, txt_ids=neg["txt_ids"], y=nvec, timesteps=tv,
                           guidance=g)
                pred = vn + c["cfg_scale"] * (vp - vn)
                img = img + (t_prev - t_curr) * pred
        else:
            img = sampling.denoise(model, img=img, img_ids=img_ids, txt=txt, txt_ids=txt_ids, vec=vec,
                                   timesteps=ts_run, guidance=c["guidance"])
        tensors[f"{n}.final"] = img
        latent = sampling.unpack(img.float(), H, W)
        tensors[f"{n}.latent"] = latent
        out = ae.decode(latent)
        tensors[f"{n}.decode.output"] = out
        tensors[f"{n}.image_u8"] = to_u8(out).contiguous()
        cases_meta[n] = meta
        print(f"{n}: seq {seq}, timesteps {ts}, image {tuple(tensors[f'{n}.image_u8'].shape)}")

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, f"{OUT}/pipeline-e2e.io.f32.safetensors", metadata={
        "cases": json.dumps(cases_meta),
        "flux_dev": FLUX_DEV, "flux_schnell": FLUX_SCHNELL, "ae": AE,
        "clip": f"{OUT}/tiny-clip-l.safetensors", "t5": f"{OUT}/tiny-t5xxl.safetensors",
        "upstream_commits": json.dumps({"bfl": "802fb4713906133fcbd0d8dc5351620ca4773036"}),
        "torch": torch.__version__,
        "notes": "BFL sampling (get_noise, prepare, get_schedule, denoise, unpack) in float32 on the CPU; "
                 "text embeddings bf16-rounded by HFEmbedder; image_u8 = clamp(-1,1), (127.5*(x+1)).byte()",
    })
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {OUT}: {total} bytes")


if __name__ == "__main__":
    main()
