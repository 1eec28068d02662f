"""One GPU session's probes, beside bench/gpu.sh: where the training step's time goes (a
torch.profiler table of the compiled default step), what cheaper forms of the step and of the
steadiness term cost, stylize variants at 1080p, and single `bench quality` runs for the
steadiness term's decision over seeds (run several at once: each is launch-bound).

    python3 bench/gpu_probe.py step --out DIR                 # step.json, profile.txt
    python3 bench/gpu_probe.py stylize --out DIR              # stylize.json
    python3 bench/gpu_probe.py quality --seed 42 --stability 20000 --out DIR --assets A
    TINY=1 .venv/bin/python bench/gpu_probe.py step --out /tmp/p   # toy sizes on a CPU
"""

import argparse
import contextlib
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

TINY = bool(os.environ.get("TINY"))


def timed(fn, device, steps, warmup):
    """Median seconds of fn() (bench's own timer, for one function)."""
    from stylemirror.bench.common import timed_in_turns
    return timed_in_turns({"fn": fn}, device, steps, warmup)["fn"]


def step_probe(args):
    from torch.utils.flop_counter import FlopCounterMode

    from stylemirror import loss_network
    from stylemirror.bench.train import peak_tflops, random_vgg_weights
    from stylemirror.network import TransformNet
    from stylemirror.train import StepOptions, adam, prepare, step_unless

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True  # as train's setup_device
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    size, batch_size = (32, 2) if TINY else (256, 16)
    weights = random_vgg_weights()
    style = torch.rand(1, 3, size, size) * 255

    def make(options, batch_size=batch_size, stability=0.0, grid=0.0, transform_bf16=False, sub_batch=None):
        torch.manual_seed(0)
        net = TransformNet.named("standard").to(device)
        vgg = loss_network.VGG19(weights, (*loss_network.STYLE_LAYERS, loss_network.CONTENT_LAYER), loss_network.CAFFE_MEAN)
        model, criterion = prepare(net, loss_network.PerceptualLoss(vgg, style).to(device), device, options=options)
        grid_term = loss_network.ExtraTerms(grid_weight=grid)
        optimizer = adam(net, 1e-3)
        batch = (torch.rand(batch_size, 3, size, size) * 255).to(torch.uint8).to(device)

        def step():
            x = batch.float()
            if options.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=transform_bf16):
                y = model(x).float()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.bf16):
                losses = grid_term.add_to(criterion(y, x), model, x, y)
            if stability:
                xs, ys = (x, y) if sub_batch is None else (x[:sub_batch], y[:sub_batch])
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=transform_bf16):
                    losses["total"] = losses["total"] + stability * loss_network.stability_loss(model, xs, ys)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            step_unless(optimizer, ~torch.isfinite(losses["total"].detach()))
        return step

    cuda = device.type == "cuda"
    eager = StepOptions(channels_last=cuda, bf16=True)
    compiled = StepOptions(channels_last=cuda, bf16=True, compile=True)
    S, G = loss_network.STABILITY_WEIGHT, loss_network.GRID_WEIGHT
    variants = {  # name: (options, make's keywords)
        "eager: ours (bf16 loss net, channels_last)": (eager, {}),
        "eager: + grid term": (eager, {"grid": G}),
        "eager: + grid + steadiness term": (eager, {"grid": G, "stability": S}),
        "eager: + grid + steadiness on 1/4 of the batch": (eager, {"grid": G, "stability": S, "sub_batch": max(1, batch_size // 4)}),
        "eager: transform net in bf16 too": (eager, {"transform_bf16": True}),
        "eager: no channels_last": (StepOptions(bf16=True), {}),
        "eager: batch x2": (eager, {"batch_size": 2 * batch_size}),
        "compiled: ours": (compiled, {}),
        "compiled: + grid + steadiness term": (compiled, {"grid": G, "stability": S}),
        "compiled: transform net in bf16 too": (compiled, {"transform_bf16": True}),
    }
    if os.environ.get("SECOND"):  # a short follow-up: where the eager step's time goes, one combined compiled variant
        variants = {"eager: ours + grid": (eager, {"grid": G}),
                    "compiled: no channels_last, transform bf16, + grid": (StepOptions(bf16=True, compile=True),
                                                                          {"grid": G, "transform_bf16": True})}
    counter = FlopCounterMode(display=False)
    with counter:
        make(StepOptions(), batch_size=1)()
    flops_per_image = counter.get_total_flops()
    peak = peak_tflops(device)
    result = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__, "image_size": size,
              "batch_size": batch_size, "tflop_per_image_plain": flops_per_image / 1e12, "variants": {}}
    out = Path(args.out)
    made = {}
    if os.environ.get("SECOND"):
        profile(make(eager, grid=G), device, out)
    for name, (options, kw) in variants.items():
        if TINY and "compiled" in name and name != "compiled: ours":
            continue
        t0 = time.perf_counter()
        try:
            step = made[name] = make(options, **kw)
            seconds = timed(step, device, 2 if TINY else 20, 1 if TINY else 3)
        except Exception as e:  # report and go on: one variant must not cost the rest
            result["variants"][name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
            continue
        images = kw.get("batch_size", batch_size)
        tflops = flops_per_image * images / seconds / 1e12
        result["variants"][name] = {"images_per_s": images / seconds, "ms_per_step": 1000 * seconds,
                                    "plain_tflops": tflops, "share_of_peak": tflops / peak if peak else None,
                                    "wall_s_with_warmup": time.perf_counter() - t0}
        print(f"{name:55s} {images / seconds:9.1f} images/s", flush=True)
        (out / "step.json").write_text(json.dumps(result, indent=1))
    # Where the compiled default step's time goes, by kernel.
    if not os.environ.get("SECOND"):
        profile(made.get("compiled: + grid + steadiness term") or made["eager: + grid + steadiness term"],
                device, out)
    (out / "step.json").write_text(json.dumps(result, indent=1))


def profile(step, device, out):
    """Where one step's time goes, by kernel: OUT/profile.txt."""
    cuda = device.type == "cuda"
    for _ in range(3):
        step()
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(5):
            step()
        if cuda:
            torch.cuda.synchronize()
    key = "cuda_time_total" if cuda else "cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=45, max_name_column_width=90)
    (out / "profile.txt").write_text(table)
    print(table[:6000], flush=True)


def stylize_probe(args):
    from stylemirror.network import InferenceNet, TransformNet

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    w, h = (64, 48) if TINY else (1920, 1080)
    torch.manual_seed(0)
    net = TransformNet.named("standard")
    with torch.no_grad():  # a trained network's norms are not the init's: spread them
        for name, p in net.named_parameters():
            if name.endswith("scale"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("shift"):
                p.uniform_(-0.5, 0.5)
    net = net.eval().to(device)
    frame = (torch.rand(1, 3, h, w, device=device) * 255).round()
    import torch.nn.functional as F
    frame = F.interpolate(F.avg_pool2d(frame, 8), size=(h, w), mode="bilinear")  # smooth, photo-like levels

    def run(model, dtype=None, channels_last=False):
        x = frame.contiguous(memory_format=torch.channels_last) if channels_last else frame

        def go():
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                return model(x).float()
        return go

    plain = net.plain()
    variants = {
        "eager fp32 (reference)": run(net),
        "eager fp32 plain kernels": run(plain),
        "eager fp16 autocast (Stylizer today)": run(net, torch.float16),
        "eager fp16 plain kernels": run(plain, torch.float16),
        "eager bf16 autocast": run(net, torch.bfloat16),
        "eager fp16 channels_last": run(plain.to(memory_format=torch.channels_last), torch.float16, True),
        "InferenceNet fp16": run(InferenceNet(net).to(device).eval(), torch.float16),
        "InferenceNet fp32": run(InferenceNet(net).to(device).eval()),
    }
    half_plain = copy.deepcopy(plain).half().eval()
    variants["fp16 weights (.half(), no autocast)"] = lambda: half_plain(frame.half()).float()
    if not TINY:
        variants["compiled fp16 plain"] = run(torch.compile(plain), torch.float16)
        variants["compiled fp32 plain"] = run(torch.compile(plain))
        variants["compiled max-autotune-no-cudagraphs fp16"] = run(torch.compile(plain, mode="max-autotune-no-cudagraphs"), torch.float16)
    result = {"device": torch.cuda.get_device_name() if cuda else "cpu", "size": f"{w}x{h}", "variants": {}}
    reference = variants["eager fp32 (reference)"]()
    ref_ms = None
    for name, fn in variants.items():
        try:
            with torch.no_grad():
                y = fn()
                seconds = timed(fn, device, 3 if TINY else 30, 1 if TINY else 5)
        except Exception as e:
            result["variants"][name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
            continue
        diff = (y.round() - reference.round()).abs()
        ms = 1000 * seconds
        ref_ms = ref_ms or ms
        result["variants"][name] = {"ms": ms, "speedup": ref_ms / ms, "max_levels": diff.max().item(),
                                    "mean_levels": diff.mean().item()}
        print(f"{name:45s} {ms:8.2f} ms {ref_ms / ms:5.2f}x  max {diff.max().item():.0f} mean {diff.mean().item():.4f}", flush=True)
    try:
        import onnxruntime
        result["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        result["onnxruntime_providers"] = None
    (Path(args.out) / "stylize.json").write_text(json.dumps(result, indent=1))


def quality_probe(args):
    """One `bench quality` run (no reference), eager, plus bench flicker --steady of its network;
    one JSON line appended to OUT/quality.jsonl."""
    from stylemirror import formats, loss_network
    from stylemirror.bench.flicker import bench_flicker
    from stylemirror.bench.quality import quality
    from stylemirror.stylize import Stylizer

    if args.eager:
        torch.compile = lambda model, **kw: model  # many runs share one GPU: no compile storms
    if args.sub_batch:  # the steadiness term on the first `sub_batch` pictures of each batch only
        whole = loss_network.stability_loss
        loss_network.stability_loss = lambda model, x, y, generator=None: whole(model, x[:args.sub_batch], y[:args.sub_batch], generator)
    assets = Path(args.assets)
    out = Path(tempfile.gettempdir()) / f"q-{args.tag}"  # its pictures: only the JSON line comes back
    start = time.perf_counter()
    steps, size = (4, 32) if TINY else (args.steps, 256)
    with contextlib.redirect_stdout(sys.stderr):
        result = quality(assets / "udnie.jpg", assets / "amber.jpg", assets / "vgg19.mat", out, steps=steps,
                         image_size=size, batch_size=4, style_weight=args.style_weight, reference=False,
                         stability_weight=args.stability, grid_weight=args.grid, seed=args.seed, steadiness=False)
    net = formats.read_model(next(out.glob("*.safetensors")))
    device = "cuda" if torch.cuda.is_available() else "cpu"  # fp16 there: within a level of the CPU's fp32
    flicker = bench_flicker({"net": Stylizer(net, device)}, steady=True)
    result.update(tag=args.tag, sub_batch=args.sub_batch, eager=args.eager, wall_s=time.perf_counter() - start,
                  flicker=flicker["net"], steady_flicker=flicker["net +steady"], flicker_device=device)
    with open(Path(args.out) / "quality.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps({k: result[k] for k in ("tag", "style_score", "content_drift", "grid_shifted", "train_seconds")}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("step", "stylize", "quality"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--assets", default="../shared")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--style-weight", type=float, default=4000.0)
    parser.add_argument("--stability", type=float, default=20000.0)
    parser.add_argument("--grid", type=float, default=1e7)
    parser.add_argument("--sub-batch", type=int, default=0)
    parser.add_argument("--eager", action="store_true")
    parser.add_argument("--tag", default="run")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    {"step": step_probe, "stylize": stylize_probe, "quality": quality_probe}[args.what](args)


if __name__ == "__main__":
    main()
