#!/usr/bin/env python3
"""The PyTorch side of the side-by-side Flux transformer benchmark.

Times the same denoising step as `fluxkit bench flux` with PyTorch on the CPU:
the transformer of the same BFL-format safetensors file (Flux-mini: 5 double +
10 single blocks, or any other depth the file has), bf16 weights and
activations (the reference's CPU path), batch 1, (res/16)² image tokens and
--txt-len text tokens, one warm-up step that is not timed, then --steps timed
steps (forward + Euler update, as fluxkit times them). Two implementations:

  --impl diffusers  diffusers' FluxTransformer2DModel built from the file's
                    shapes, the weights converted to diffusers' key names by
                    diffusers' own converter (no network access). Needs torch
                    >= 2 and diffusers. The default where both are there.
  --impl bfl        tools/torch_flux_ref.py: a self-contained forward on the
                    file's BFL tensors as they are (torch.nn.functional only),
                    checked against fluxkit's fixtures (`python3
                    tools/torch_flux_ref.py --selftest`). Runs on torch 1.13
                    and 2.x; attention is F.scaled_dot_product_attention where
                    torch has it (>= 2.0), else softmax(q·kᵀ/√d)·v in bf16
                    (--attn explicit forces that on torch 2 as well). The
                    default without diffusers or torch 2.

This is a developer tool, not part of fluxkit's runtime: it needs python3 with
torch and safetensors (and diffusers for --impl diffusers).
tools/bench_compare.sh runs it next to fluxkit, with one or more Python
interpreters (TORCH_PYTHONS), and prints the ratios.

  python3 tools/bench_vs_torch.py --weights FILE [--impl diffusers|bfl]
                                  [--attn auto|sdpa|explicit] [--res 256,512]
                                  [--steps 1] [--threads 2] [--txt-len 512] [--json]
  python3 tools/bench_vs_torch.py --probe [--impl bfl]   # which CPU kernels torch runs
  /work/tmp/venv113/bin/python tools/bench_vs_torch.py --weights FILE --impl bfl   # torch 1.13

Output: a human table (or, with --json, one JSON object per resolution, and a
first object with "kind": "torch-info" describing torch's build, the
implementation and the kernels). Peak RSS per resolution: the kernel's
high-water mark reset through /proc/self/clear_refs before each resolution (as
fluxkit does) and read from /proc/self/status; "peak_rss_process_bytes" is
getrusage's whole-run peak, which includes loading the checkpoint.
"""

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import time

# Environment variables that steer BLAS/oneDNN CPU dispatch. bench_compare.sh
# unsets them for the torch run only; reported here so the output says so.
DISPATCH_VARS = re.compile(r"^(OPENBLAS_|GOTO_|NVPL_|MKL_|ONEDNN_|DNNL_|ATEN_CPU_CAPABILITY|KMP_)")


def flux_flops(hidden, mlp, ctx_dim, vec_dim, in_ch, out_ch, n_double, n_single, guidance, n_img, n_txt):
    """The analytic FLOP count of one transformer forward (matmuls + attention):
    the same formula as fk_flux_flops in src/model/flux.c, so GFLOP/s compare."""
    C, M, Li, Lt = float(hidden), float(mlp), float(n_img), float(n_txt)
    L = Li + Lt
    f = 2 * Li * in_ch * C + 2 * Lt * ctx_dim * C
    f += 2 * (256 * C + C * C) * (2 if guidance else 1)
    f += 2 * (vec_dim * C + C * C)
    dbl = 2 * 2 * C * 6 * C + 2 * L * C * 3 * C + 2 * L * C * C + 2 * 2 * L * C * M + 4 * L * L * C
    sgl = 2 * C * 3 * C + 2 * L * C * (3 * C + M) + 2 * L * (C + M) * C + 4 * L * L * C
    f += n_double * dbl + n_single * sgl
    f += 2 * C * 2 * C + 2 * Li * C * out_ch
    return f


def schedule(steps, n_img, shift=True):
    """BFL's get_schedule: linspace(1, 0) time-shifted with mu linear in the
    image token count (256 -> 0.5, 4096 -> 1.15). Only the values of t differ
    between steps; the work per step does not."""
    ts = [1.0 - i / steps for i in range(steps + 1)]
    if not shift:
        return ts
    mu = 0.5 + (1.15 - 0.5) / (4096 - 256) * (n_img - 256)
    out = []
    for t in ts:
        if t <= 0.0:
            out.append(0.0)
        else:
            out.append(math.exp(mu) / (math.exp(mu) + (1.0 / t - 1.0)))
    return out


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def vm_hwm_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_parts_bytes():
    """(anonymous, file-backed) resident bytes now: safetensors maps the file,
    so the weights the converter did not copy count as file pages."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out.get("RssAnon"), out.get("RssFile")


def process_peak_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def fmt_bytes(n):
    if n is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return "%.2f %s" % (n / scale, unit)
    return "%d B" % n


# ---- kernel probe --------------------------------------------------------------------------

def probe_main(attn):
    """Run one bf16 linear of the model's shape and one bf16 attention (the
    kind the benchmark runs: "sdpa" or "explicit") with ONEDNN_VERBOSE /
    MKL_VERBOSE set by the parent, so their logs show which library and ISA
    torch dispatches to. Prints a marker line between the two."""
    import math
    import torch
    torch.set_num_threads(1)
    with torch.inference_mode():
        x = torch.randn(1, 64, 3072, dtype=torch.bfloat16)
        w = torch.randn(3072, 3072, dtype=torch.bfloat16)
        b = torch.randn(3072, dtype=torch.bfloat16)
        print("PROBE linear", flush=True)
        torch.nn.functional.linear(x, w, b)
        torch.nn.functional.linear(x, w, b)
        q = torch.randn(1, 24, 128, 128, dtype=torch.bfloat16)
        print("PROBE attention", flush=True)
        if attn == "sdpa":
            torch.nn.functional.scaled_dot_product_attention(q, q, q)
        else:
            s = torch.matmul(q, q.transpose(-2, -1)).mul_(1.0 / math.sqrt(128))
            torch.matmul(torch.softmax(s, dim=-1), q)
        print("PROBE end", flush=True)


def probe_kernels(attn):
    """Which kernels does torch use for the bf16 matmul and attention? Runs
    probe_main in a child process with the libraries' verbose logs on."""
    env = dict(os.environ)
    env["ONEDNN_VERBOSE"] = "1"
    env["DNNL_VERBOSE"] = "1"
    env["MKL_VERBOSE"] = "1"
    try:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe-child", attn],
                           env=env, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    section, found = None, {"linear": [], "attention": []}
    isa = None
    for line in p.stdout.splitlines():
        if line.startswith("PROBE "):
            section = line.split()[1]
            continue
        if "_verbose" in line and ",info,cpu,isa:" in line:
            isa = line.split("isa:", 1)[1].strip()
        if section in found and line.startswith(("onednn_verbose", "dnnl_verbose")) and ",exec," in line:
            parts = line.split(",")
            # oneDNN 3: onednn_verbose,v1,[timestamp,]primitive|ukernel,exec,cpu,KIND,IMPL,...
            # oneDNN 2: onednn_verbose,exec,cpu,KIND,IMPL,...
            try:
                i = parts.index("exec")
                impl = parts[i + 3]
                what = "" if parts[i - 1].endswith("_verbose") else parts[i - 1] + " "
                desc = "oneDNN %s%s%s" % (what, parts[i + 2], " " + impl if impl else "")
            except (ValueError, IndexError):
                desc = "oneDNN " + line[:120]
            if desc not in found[section]:
                found[section].append(desc)
        elif section in found and line.startswith("MKL_VERBOSE") and "Intel(R) MKL" not in line:
            desc = "MKL " + line.split()[1].split("(")[0]
            if desc not in found[section]:
                found[section].append(desc)
    out = {"onednn_isa": isa}
    for k, v in found.items():
        out[k] = v if v else ["aten native kernel (no oneDNN/MKL call logged)"]
    out["sdpa"] = out["attention"]  # the key of earlier runs
    if p.returncode != 0:
        out["error"] = "probe exited %d: %s" % (p.returncode, p.stderr.strip()[-300:])
    return out


def cpu_capability(torch, lines):
    """ATen's vector ISA: torch.backends.cpu.get_cpu_capability() (torch >= 2.0),
    else the "CPU capability usage" line of torch's build config."""
    cpu = getattr(torch.backends, "cpu", None)
    if cpu is not None and hasattr(cpu, "get_cpu_capability"):
        return cpu.get_cpu_capability()
    for l in lines:
        if l.startswith("CPU capability usage:"):
            return l.split(":", 1)[1].strip()
    return None


def torch_major():
    import torch
    try:
        return int(torch.__version__.split(".")[0])
    except ValueError:
        return 0


def choose_impl(impl, attn="auto"):
    """--impl auto: bfl when --attn names an attention, else diffusers where
    torch >= 2 and diffusers import, else bfl. Returns (impl, reason)."""
    if impl != "auto":
        return impl, "--impl %s" % impl
    if attn != "auto":
        return "bfl", "--attn %s" % attn
    if torch_major() < 2:
        return "bfl", "torch < 2 (diffusers' Flux model needs torch 2)"
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return "bfl", "diffusers is not installed"
    return "diffusers", "default on torch >= 2 with diffusers"


def torch_info(threads, impl, attn, probe=True):
    import torch
    cfg = torch.__config__.show()
    lines = [l.strip(" -") for l in cfg.splitlines()]
    info = {
        "kind": "torch-info",
        "torch": torch.__version__,
        "python": sys.executable,
        "impl": impl,
        "attention": attn,
        "cpu_capability": cpu_capability(torch, lines),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "onednn": next((l for l in lines if "MKL-DNN" in l or "oneDNN" in l), None),
        "mkl": next((l for l in lines if "Math Kernel Library" in l), None),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "dispatch_env": {k: v for k, v in os.environ.items() if DISPATCH_VARS.match(k)},
    }
    try:
        import diffusers
        info["diffusers"] = diffusers.__version__
    except ImportError:
        info["diffusers"] = None
    if probe:
        info["kernels"] = probe_kernels("sdpa" if attn == "sdpa" else "explicit")
    return info


# ---- model ---------------------------------------------------------------------------------

def load_model_diffusers(path):
    """diffusers' FluxTransformer2DModel with the BFL file's weights, bf16.
    The config comes from the file's shapes; the model is built on the meta
    device and the converted tensors are assigned (no second copy)."""
    import torch
    from safetensors import safe_open
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    sd = {}
    with safe_open(path, framework="pt", device="cpu") as f:
        for k in f.keys():
            sd[k] = f.get_tensor(k)
    prefix = "model.diffusion_model."
    keys = [k[len(prefix):] if k.startswith(prefix) else k for k in sd]
    n_double = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("double_blocks."))
    n_single = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("single_blocks."))
    get = lambda name: sd[name] if name in sd else sd[prefix + name]
    hidden, in_ch = get("img_in.weight").shape
    ctx_dim = get("txt_in.weight").shape[1]
    vec_dim = get("vector_in.in_layer.weight").shape[1]
    head_dim = get("double_blocks.0.img_attn.norm.query_norm.scale").shape[0]
    mlp = get("double_blocks.0.img_mlp.0.weight").shape[0]
    out_ch = get("final_layer.linear.weight").shape[0]
    guidance = any(k.startswith("guidance_in.") for k in keys)
    if hidden != 3072:
        raise SystemExit("bench_vs_torch: diffusers' converter assumes hidden size 3072, got %d; use --impl bfl "
                         "(bench_compare.sh: TORCH_IMPL=bfl)" % hidden)
    cfg = dict(patch_size=1, in_channels=in_ch, out_channels=out_ch, num_layers=n_double,
               num_single_layers=n_single, attention_head_dim=head_dim,
               num_attention_heads=hidden // head_dim, joint_attention_dim=ctx_dim,
               pooled_projection_dim=vec_dim, guidance_embeds=guidance, axes_dims_rope=(16, 56, 56))
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in sd.values()})
    conv = convert_flux_transformer_checkpoint_to_diffusers(sd)
    del sd
    conv = {k: v.to(torch.bfloat16).contiguous() for k, v in conv.items()}
    with torch.device("meta"):
        model = FluxTransformer2DModel(**cfg)
    missing, unexpected = model.load_state_dict(conv, strict=False, assign=True)
    if missing or unexpected:
        raise SystemExit("bench_vs_torch: weights do not match the model: missing %s, unexpected %s"
                         % (missing[:5], unexpected[:5]))
    del conv
    meta = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if meta:
        raise SystemExit("bench_vs_torch: tensors left on the meta device: %s" % meta[:5])
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    shape = dict(hidden=hidden, mlp=mlp, ctx_dim=ctx_dim, vec_dim=vec_dim, in_ch=in_ch, out_ch=out_ch,
                 n_double=n_double, n_single=n_single, guidance=guidance)
    return model, shape, n_params, dtypes


def load_model_bfl(path, attn):
    """tools/torch_flux_ref.py's forward on the file's BFL tensors, bf16."""
    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_flux_ref as ref
    model = ref.load_flux(path, dtype=torch.bfloat16, attn=attn)
    c = model.cfg
    shape = dict(hidden=c["hidden"], mlp=c["mlp"], ctx_dim=c["ctx_dim"], vec_dim=c["vec_dim"], in_ch=c["in_ch"],
                 out_ch=c["out_ch"], n_double=c["n_double"], n_single=c["n_single"], guidance=c["guidance"])
    return model, shape, model.n_params(), ref.file_dtypes(path)


def model_name(shape):
    d, s = shape["n_double"], shape["n_single"]
    if (d, s) == (19, 38):
        return "flux-dev" if shape["guidance"] else "flux-schnell"
    if (d, s) == (5, 10):
        return "flux-mini"
    return "flux-%dd%ds" % (d, s)


def bench_res(model, impl, shape, res, steps, n_txt, seed, profile):
    import torch
    hp = wp = res // 16
    n_img = hp * wp
    g = torch.Generator().manual_seed(seed)
    dt = torch.bfloat16
    img = torch.randn(1, n_img, shape["in_ch"], generator=g).to(dt)
    txt = (0.5 * torch.randn(1, n_txt, shape["ctx_dim"], generator=g)).to(dt)
    y = (0.5 * torch.randn(1, shape["vec_dim"], generator=g)).to(dt)
    img_ids = torch.zeros(n_img, 3)
    img_ids[:, 1] = torch.arange(hp).repeat_interleave(wp).float()
    img_ids[:, 2] = torch.arange(wp).repeat(hp).float()
    txt_ids = torch.zeros(n_txt, 3)
    guidance = torch.full((1,), 3.5, dtype=dt) if shape["guidance"] else None
    ts = schedule(steps + 1, n_img, shape["guidance"])  # warm-up + timed steps

    def step(k):
        t = torch.full((1,), ts[k], dtype=dt)
        if impl == "diffusers":
            v = model(hidden_states=img, encoder_hidden_states=txt, pooled_projections=y, timestep=t,
                      img_ids=img_ids, txt_ids=txt_ids, guidance=guidance, return_dict=False)[0]
        else:  # BFL's signature: ids (B, L, 3)
            v = model(img, img_ids[None], txt, txt_ids[None], t, y, guidance)
        img.add_(v, alpha=ts[k + 1] - ts[k])  # Euler step in bf16, as the reference's latents

    reset_peak_rss()
    times = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        step(0)
        first = time.perf_counter() - t0
        for k in range(1, steps + 1):
            if profile and k == steps:
                from torch.profiler import profile as tprof, ProfilerActivity
                with tprof(activities=[ProfilerActivity.CPU]) as prof:
                    t0 = time.perf_counter()
                    step(k)
                    times.append(time.perf_counter() - t0)
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15),
                      file=sys.stderr)
            else:
                t0 = time.perf_counter()
                step(k)
                times.append(time.perf_counter() - t0)
    finite = bool(torch.isfinite(img).all())
    anon, filed = rss_parts_bytes()
    s = sum(times) / len(times)
    flops = flux_flops(shape["hidden"], shape["mlp"], shape["ctx_dim"], shape["vec_dim"], shape["in_ch"],
                       shape["out_ch"], shape["n_double"], shape["n_single"], shape["guidance"], n_img, n_txt)
    return dict(res=res, n_img=n_img, n_txt=n_txt, s_per_step=s, s_first_step=first,
                s_steps=times, gflops=flops / s * 1e-9, peak_rss_bytes=vm_hwm_bytes(),
                peak_rss_process_bytes=process_peak_bytes(), rss_anon_bytes=anon, rss_file_bytes=filed,
                finite=finite)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="BFL-format Flux safetensors file (the file fluxkit bench reads)")
    ap.add_argument("--impl", default="auto", choices=("auto", "diffusers", "bfl"),
                    help="diffusers' FluxTransformer2DModel or tools/torch_flux_ref.py (default auto: "
                         "diffusers on torch >= 2 with diffusers installed, else bfl)")
    ap.add_argument("--attn", default="auto", choices=("auto", "sdpa", "explicit"),
                    help="--impl bfl's attention: F.scaled_dot_product_attention or softmax(q·kᵀ/√d)·v "
                         "(default auto: sdpa where torch has it; naming one implies --impl bfl)")
    ap.add_argument("--res", default="256", help="comma-separated square sizes, multiples of 16")
    ap.add_argument("--steps", type=int, default=1, help="timed steps after the warm-up step (default 1)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--txt-len", type=int, default=512, help="text tokens (default 512)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="JSON lines instead of the table")
    ap.add_argument("--no-probe", action="store_true", help="skip the kernel probe")
    ap.add_argument("--profile", action="store_true", help="torch.profiler table of the last step on stderr")
    ap.add_argument("--probe", action="store_true", help="only print torch's build and kernels")
    ap.add_argument("--probe-child", choices=("sdpa", "explicit"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.probe_child:
        probe_main(a.probe_child)
        return 0
    try:
        res = [int(r) for r in a.res.split(",")]
    except ValueError:
        ap.error("--res: expected a comma-separated list of integers, got %r" % a.res)
    if any(r < 16 or r % 16 for r in res):
        ap.error("--res: sizes must be multiples of 16")
    if a.steps < 1 or a.threads < 1 or a.txt_len < 1:
        ap.error("--steps, --threads and --txt-len must be positive")

    import torch
    torch.set_num_threads(a.threads)
    impl, why = choose_impl(a.impl, a.attn)
    has_sdpa = hasattr(torch.nn.functional, "scaled_dot_product_attention")
    if impl == "diffusers":
        if torch_major() < 2:
            ap.error("--impl diffusers: diffusers' Flux model needs torch >= 2 (this is %s); use --impl bfl"
                     % torch.__version__)
        if a.attn != "auto":
            ap.error("--attn applies to --impl bfl only (diffusers runs its own attention processor)")
        attn = "sdpa"
    else:
        if a.attn == "sdpa" and not has_sdpa:
            ap.error("--attn sdpa: torch %s has no scaled_dot_product_attention" % torch.__version__)
        attn = a.attn if a.attn != "auto" else ("sdpa" if has_sdpa else "explicit")
    info = torch_info(a.threads, impl, attn, probe=not a.no_probe)
    info["impl_reason"] = why
    if a.probe:
        print(json.dumps(info, indent=1))
        return 0
    if not a.weights:
        ap.error("--weights is required")
    if not os.path.isfile(a.weights):
        ap.error("--weights: no such file: %s" % a.weights)
    t0 = time.perf_counter()
    if impl == "diffusers":
        model, shape, n_params, dtypes = load_model_diffusers(a.weights)
        what = "diffusers FluxTransformer2DModel"
    else:
        model, shape, n_params, dtypes = load_model_bfl(a.weights, attn)
        what = "tools/torch_flux_ref.py, attention %s" % model.attention_kind
    t_load = time.perf_counter() - t0
    name = model_name(shape)
    info.update(model=name, params=n_params, file_dtypes=dtypes, load_s=round(t_load, 3),
                rss_after_load_bytes=vm_hwm_bytes())
    if a.json:
        print(json.dumps(info), flush=True)
    else:
        print("bench torch: %s (%s, %.2fG parameters, file %s, bf16 compute), loaded in %.2f s"
              % (name, what, n_params / 1e9, "/".join(dtypes), t_load))
        print("torch %s (%s), --impl %s (%s), threads %d, cpu capability %s, kernels: linear %s; attention %s"
              % (info["torch"], sys.executable, impl, why, info["threads"], info["cpu_capability"],
                 "; ".join(info.get("kernels", {}).get("linear", ["?"])),
                 "; ".join(info.get("kernels", {}).get("attention", ["?"]))))
        print("%6s %7s %7s %10s %10s %10s %12s" % ("res", "n_img", "n_txt", "s/step", "s(first)", "GFLOP/s",
                                                  "peak RSS"), flush=True)
    rc = 0
    for r in res:
        br = bench_res(model, impl, shape, r, a.steps, a.txt_len, a.seed, a.profile)
        if a.json:
            rec = dict(component="flux", engine="torch", torch=torch.__version__, impl=impl, attention=attn,
                       model=name, steps=a.steps, threads=a.threads, dtype="bf16", **br)
            print(json.dumps(rec), flush=True)
        else:
            print("%6d %7d %7d %10.3f %10.3f %10.2f %12s%s" % (
                br["res"], br["n_img"], br["n_txt"], br["s_per_step"], br["s_first_step"], br["gflops"],
                fmt_bytes(br["peak_rss_bytes"]), "" if br["finite"] else "  NOT FINITE"), flush=True)
        if not br["finite"]:
            print("bench_vs_torch: the result at %d px is not finite" % r, file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
