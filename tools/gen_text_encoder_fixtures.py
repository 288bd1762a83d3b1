#!/usr/bin/env python3
"""Generate the CLIP and T5 text-encoder test fixtures (committed; CI never runs this).

  python3 tools/gen_text_encoder_fixtures.py        # from the repository root

Reference: Hugging Face transformers' CLIPTextModel and T5EncoderModel (the modules FLUX's
HFEmbedder runs), eager attention, on the CPU, with tiny random configurations of the real
architectures. Weight values are bf16-representable (so the f32, bf16 and f16 files hold the
same numbers) and norm scales are 1 + N(0, 0.1), not ones, so a forgotten scale fails.

Writes (tests/data/clip/ and tests/data/t5/)
  tiny-clip.weights.f32        HF key names ("text_model." prefix, like clip_l.safetensors),
                               config JSON in __metadata__["config"]
  tiny-clip-hf/                a Hugging Face folder: config.json + model.safetensors (bf16)
  tiny-clip.io.{f64,f32}       input_ids (2, 77) I64; last_hidden_state (2, 77, 64);
                               pooler_output (2, 64); dbg.embeddings (2, 77, 64)
  tiny-t5.weights.f32          HF T5EncoderModel keys (shared.weight, encoder.block.N...),
                               config JSON in __metadata__["config"]
  tiny-t5-hf/                  config.json + a 2-shard bf16 checkpoint with
                               model.safetensors.index.json (like FLUX's text_encoder_2/)
  tiny-t5.weights.f8_scaled    ComfyUI "scaled fp8" layout: linear weights F8_E4M3 with a
                               per-tensor F32 `<layer>.scale_weight`, a `scaled_fp8` marker,
                               everything else F16, no config (heads come from the shape
                               of relative_attention_bias)
  tiny-t5.io.{f64,f32}         input_ids (2, 136) I64, last_hidden_state (2, 136, 64),
                               dbg.relative_buckets (1201) I64 = HF's
                               _relative_position_bucket(-600..600, bidirectional, 32, 128)
  tiny-t5-f8.io.{f64,f32}      the same inputs through the dequantized fp8 weights

The f64 files run the same modules in float64 with the places where transformers forces
float32 (CLIP's softmax(dtype=float32), T5LayerNorm's float32 variance) patched to stay in
float64, so they are the exact function of the stored weights; the f32 files are what the
reference computes in float32. T5's bucket computation uses float32 logs in both (the
reference calls .float() on the positions), and so does fluxkit.
"""
import json
import math
import os

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel
from transformers.models.t5 import modeling_t5

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP_DIR = os.path.join(ROOT, "tests", "data", "clip")
T5_DIR = os.path.join(ROOT, "tests", "data", "t5")

SEED = 20240917


def bf16_round(t):
    return t.to(torch.bfloat16).to(torch.float32)


def randomize(model, gen, embed_std):
    """Fill every parameter with bf16-representable random values by role."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
            elif "norm" in name and name.endswith("bias"):
                v = 0.1 * torch.randn(p.shape, generator=gen)
            elif "embedding" in name or "embed_tokens" in name or name.startswith("shared"):
                v = embed_std * torch.randn(p.shape, generator=gen)
            elif name.endswith("bias"):
                v = 0.1 * torch.randn(p.shape, generator=gen)
            else:  # linear weight (out, in)
                v = torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1])
            p.copy_(bf16_round(v))


class F64Patches:
    """Keep the float64 reference in float64 where transformers forces float32."""

    def __enter__(self):
        self.softmax = torch.nn.functional.softmax
        orig = self.softmax

        def softmax64(x, dim=None, _stacklevel=3, dtype=None):
            if x.dtype == torch.float64:
                return orig(x, dim=dim)
            return orig(x, dim=dim, dtype=dtype)

        torch.nn.functional.softmax = softmax64
        self.t5norm = modeling_t5.T5LayerNorm.forward

        def t5norm64(mod, h):
            var = h.pow(2).mean(-1, keepdim=True)
            return mod.weight * (h * torch.rsqrt(var + mod.variance_epsilon))

        modeling_t5.T5LayerNorm.forward = t5norm64
        return self

    def __exit__(self, *a):
        torch.nn.functional.softmax = self.softmax
        modeling_t5.T5LayerNorm.forward = self.t5norm


def run(model, ids, dtype):
    m = model.to(dtype)
    with torch.no_grad():
        if dtype == torch.float64:
            with F64Patches():
                out = m(input_ids=ids, output_hidden_states=True)
        else:
            out = m(input_ids=ids, output_hidden_states=True)
    return out


def np_of(t, dtype):
    return t.detach().to(dtype).contiguous()


def save(path, tensors, meta):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
    print(f"{os.path.relpath(path, ROOT)}: {os.path.getsize(path)} bytes")


# ---- CLIP ----------------------------------------------------------------------------------

CLIP_CFG = dict(
    vocab_size=1000,
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    # Like openai/clip-vit-large-patch14 (FLUX's text_encoder/config.json): the legacy
    # eos_token_id 2 makes CLIPTextModel pool at argmax(input_ids), which is the first
    # end-of-text token because it has the highest id.
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
    projection_dim=64,
)
CLIP_BOS, CLIP_EOT = 998, 999  # play the roles of 49406 / 49407 (EOT = highest id)


def clip_inputs(gen):
    L = CLIP_CFG["max_position_embeddings"]
    ids = torch.full((2, L), CLIP_EOT, dtype=torch.int64)
    # row 0: a short prompt padded with EOT (FLUX pads CLIP with the end-of-text token);
    # it also holds id 997, which a non-legacy config with eos 997 would pool at.
    ids[0, 0] = CLIP_BOS
    ids[0, 1:12] = torch.randint(3, 997, (11,), generator=gen)
    ids[0, 5] = 997
    # row 1: a full-length prompt, EOT only at the last position
    ids[1, 0] = CLIP_BOS
    ids[1, 1:L - 1] = torch.randint(0, 997, (L - 2,), generator=gen)
    return ids


def gen_clip():
    gen = torch.Generator().manual_seed(SEED)
    cfg = CLIPTextConfig(**CLIP_CFG)
    cfg._attn_implementation = "eager"
    model = CLIPTextModel(cfg).eval()
    randomize(model, gen, embed_std=0.5)
    sd = {"text_model." + k: v.detach().clone() for k, v in model.state_dict().items()
          if not k.endswith("position_ids")}
    config_json = json.dumps({"model_type": "clip_text_model", **CLIP_CFG})
    meta = {"config": config_json, "format": "hf-clip-text", "seed": str(SEED),
            "notes": "tiny CLIPTextModel, bf16-representable values"}
    save(os.path.join(CLIP_DIR, "tiny-clip.weights.f32.safetensors"),
         {k: v.float() for k, v in sd.items()}, meta)
    hf = os.path.join(CLIP_DIR, "tiny-clip-hf")
    os.makedirs(hf, exist_ok=True)
    with open(os.path.join(hf, "config.json"), "w") as f:
        json.dump({"architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
                   "torch_dtype": "bfloat16", **CLIP_CFG}, f, indent=2)
        f.write("\n")
    save(os.path.join(hf, "model.safetensors"), {k: v.to(torch.bfloat16) for k, v in sd.items()},
         {"format": "pt"})

    ids = clip_inputs(gen)
    for dt, tdt, name in ((torch.float64, torch.float64, "f64"), (torch.float32, torch.float32, "f32")):
        out = run(model, ids, dt)
        t = {
            "input_ids": ids,
            "last_hidden_state": np_of(out.last_hidden_state, tdt),
            "pooler_output": np_of(out.pooler_output, tdt),
            "dbg.embeddings": np_of(out.hidden_states[0], tdt),
        }
        save(os.path.join(CLIP_DIR, f"tiny-clip.io.{name}.safetensors"), t,
             {"config": config_json, "dtype": name, "seed": str(SEED),
              "notes": "CLIPTextModel(input_ids) without attention mask; pooler_output at "
                       "argmax(input_ids) (legacy eos_token_id 2)"})
    model.float()


# ---- T5 ------------------------------------------------------------------------------------

T5_CFG = dict(
    vocab_size=320,
    d_model=64,
    d_kv=16,
    d_ff=160,
    num_layers=3,
    num_heads=4,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6,
    dropout_rate=0.0,
    is_encoder_decoder=False,
    use_cache=False,
    tie_word_embeddings=False,
)
T5_LEN = 136  # > max_distance: exact buckets, log buckets and the clamped last bucket occur


def t5_inputs(gen):
    ids = torch.zeros((2, T5_LEN), dtype=torch.int64)  # pad id 0 (FLUX pads T5 to 256/512)
    ids[0, :20] = torch.randint(2, 320, (20,), generator=gen)
    ids[0, 20] = 1  # </s>
    ids[1, :T5_LEN - 1] = torch.randint(2, 320, (T5_LEN - 1,), generator=gen)
    ids[1, T5_LEN - 1] = 1
    return ids


def t5_state(model):
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sd.pop("encoder.embed_tokens.weight", None)  # tied to shared.weight; stored once
    return sd


def t5_io(model, ids, relb, path_fmt, config_json, note):
    for dt, name in ((torch.float64, "f64"), (torch.float32, "f32")):
        out = run(model, ids, dt)
        t = {
            "input_ids": ids,
            "last_hidden_state": np_of(out.last_hidden_state, dt),
            "dbg.relative_buckets": relb,
        }
        save(path_fmt.format(name), t, {"config": config_json, "dtype": name, "seed": str(SEED),
                                        "notes": note})
    model.float()


def gen_t5():
    gen = torch.Generator().manual_seed(SEED + 1)
    cfg = T5Config(**T5_CFG)
    cfg._attn_implementation = "eager"
    model = T5EncoderModel(cfg).eval()
    randomize(model, gen, embed_std=1.0)
    with torch.no_grad():  # tie the encoder's embedding to shared (as T5EncoderModel does)
        model.encoder.embed_tokens.weight.copy_(model.shared.weight)
    sd = t5_state(model)
    config_json = json.dumps({"model_type": "t5", "dense_act_fn": "gelu_new", **T5_CFG})
    meta = {"config": config_json, "format": "hf-t5-encoder", "seed": str(SEED + 1),
            "notes": "tiny T5EncoderModel (v1.1 layout, gated-GELU), bf16-representable values"}
    save(os.path.join(T5_DIR, "tiny-t5.weights.f32.safetensors"), {k: v.float() for k, v in sd.items()}, meta)

    # Hugging Face folder, sharded like text_encoder_2/
    hf = os.path.join(T5_DIR, "tiny-t5-hf")
    os.makedirs(hf, exist_ok=True)
    with open(os.path.join(hf, "config.json"), "w") as f:
        json.dump({"architectures": ["T5EncoderModel"], "model_type": "t5", "torch_dtype": "bfloat16",
                   "dense_act_fn": "gelu_new", "is_gated_act": True, **T5_CFG}, f, indent=2)
        f.write("\n")
    names = sorted(sd)
    shard1 = {k: sd[k].to(torch.bfloat16) for k in names if k.startswith("encoder.block.0.") or k == "shared.weight"}
    shard2 = {k: sd[k].to(torch.bfloat16) for k in names if k not in shard1}
    files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save(os.path.join(hf, files[0]), shard1, {"format": "pt"})
    save(os.path.join(hf, files[1]), shard2, {"format": "pt"})
    total = sum(v.numel() * 2 for v in sd.values())
    index = {"metadata": {"total_size": total},
             "weight_map": {k: files[0] if k in shard1 else files[1] for k in names}}
    with open(os.path.join(hf, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")

    ids = t5_inputs(gen)
    rel = torch.arange(-600, 601, dtype=torch.int64)
    relb = modeling_t5.T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=32,
                                                              max_distance=128).to(torch.int64)
    t5_io(model, ids, relb, os.path.join(T5_DIR, "tiny-t5.io.{}.safetensors"), config_json,
          "T5EncoderModel(input_ids) without attention mask (as FLUX runs it)")

    # ComfyUI-style scaled fp8 file: w ≈ fp8(w / s) · s with s ≈ max|w| / 448 per tensor.
    f8 = {}
    with torch.no_grad():
        for k in names:
            v = sd[k]
            is_linear = v.ndim == 2 and ".layer." in k and "relative_attention_bias" not in k
            if is_linear:
                # s is bf16-representable, so float(q)·s (4 + 8 significant bits) is exact
                # in f32 and the C side's s·(x·qᵀ) is the same function
                s = bf16_round(torch.tensor(float(v.abs().max()) * 1.01 / 448.0, dtype=torch.float32))
                q = (v.float() / s).to(torch.float8_e4m3fn)
                f8[k] = q
                f8[k[:-len("weight")] + "scale_weight"] = s
                deq = q.float() * s
                dict(model.named_parameters())[k].copy_(deq)
            else:
                f8[k] = v.to(torch.float16)
        model.encoder.embed_tokens.weight.copy_(model.shared.weight)
    f8["scaled_fp8"] = torch.zeros((0,), dtype=torch.float8_e4m3fn)
    save(os.path.join(T5_DIR, "tiny-t5.weights.f8_scaled.safetensors"), f8, {"format": "pt"})
    t5_io(model, ids, relb, os.path.join(T5_DIR, "tiny-t5-f8.io.{}.safetensors"), config_json,
          "T5EncoderModel on the dequantized weights of tiny-t5.weights.f8_scaled "
          "(weight = float(fp8) * scale_weight)")


if __name__ == "__main__":
    torch.manual_seed(0)
    gen_clip()
    gen_t5()
