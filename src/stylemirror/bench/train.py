"""`stylemirror bench train`: images/s of the training step beside the plain eager fp32 reference;
with --e2e, of `stylemirror train` itself on JPEG files beside the step alone."""

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file

from .. import loss_network
from ..arguments import positive_int
from ..devices import pick_device
from ..errors import UserError
from .common import machine, timed_in_turns
from .data import coco_like_jpegs


def random_vgg_weights(upto="conv5_4", seed=0):
    g = torch.Generator().manual_seed(seed)
    weights, cin = {}, 3
    for name in loss_network.VGG19_LAYERS[: loss_network.VGG19_LAYERS.index(upto) + 1]:
        if name.startswith("conv"):
            cout = loss_network.VGG19_WIDTHS[name[4]]
            weights[name] = (torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5, torch.zeros(cout))
            cin = cout
    return weights


class ReferenceVGG19(torch.nn.Module):
    """The plain way: all of VGG19's features, every step, fp32, eager."""

    def __init__(self, weights):
        super().__init__()
        layers = []
        for name in loss_network.VGG19_LAYERS:
            if name.startswith("conv"):
                kernel, bias = weights[name]
                conv = torch.nn.Conv2d(kernel.shape[1], kernel.shape[0], 3, padding=1)
                conv.weight.data.copy_(kernel)
                conv.bias.data.copy_(bias)
                layers.append(conv)
            elif name.startswith("relu"):
                layers.append(torch.nn.ReLU())
            else:
                layers.append(torch.nn.MaxPool2d(2, 2))
        self.features = torch.nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(loss_network.CAFFE_MEAN).view(1, 3, 1, 1))

    def forward(self, x):
        out, x = {}, x - self.mean
        for name, layer in zip(loss_network.VGG19_LAYERS, self.features):
            x = layer(x)
            out[name] = x
        return out


def reference_step(net, vgg, style_grams, optimizer, x, weights=(7.5, 100.0, 200.0)):
    y = net(x)
    fy, fx = vgg(y), vgg(x)
    content = weights[0] * ((fy["relu4_2"] - fx["relu4_2"]) ** 2).mean()
    style = weights[1] * sum(((loss_network.gram(fy[k]) - g) ** 2).mean() for k, g in style_grams.items())
    tv = weights[2] * (((y[..., 1:] - y[..., :-1]) ** 2).mean() + ((y[..., 1:, :] - y[..., :-1, :]) ** 2).mean())
    optimizer.zero_grad()
    (content + style + tv).backward()
    optimizer.step()


# Dense bf16 tensor-core peaks (TFLOP/s) of the GPUs a run is likely to meet, for "share of
# peak"; matched against torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989, "H100 SXM": 989, "H100 80GB HBM3": 989, "H100 NVL": 835, "H100 PCIe": 756,
                    "A100": 312, "L40S": 362, "L4": 121, "RTX 4090": 165, "A10G": 70}


def peak_tflops(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


STEP_VARIANTS = {  # cumulative, as `bench train --variants` lists them
    "fp32 eager": {},
    "+ channels_last": {"channels_last": True},
    "+ bf16": {"channels_last": True, "bf16": True},
    "+ compile": {"channels_last": True, "bf16": True, "compile": True},
    "+ CUDA graphs": {"channels_last": True, "bf16": True, "cuda_graphs": True},
}


def bench_train(image_size=256, batch_size=4, steps=3, device="auto", compile_=True, arch="standard", variants=False):
    """images/s of `stylemirror train`'s step (VGG19 recipe, random weights, synthetic data),
    as a run long enough to compile it runs it, and of the plain eager fp32 reference,
    measured in turns (compiling happens in the untimed warm-up). With `variants`, each of
    STEP_VARIANTS too, with the FLOP/s it reaches and, on a known GPU, its share of peak."""
    from ..network import TransformNet
    from ..train import StepOptions, adam, forward_backward, prepare, step_unless, tune

    device = pick_device(device)
    tune(device)
    weights = random_vgg_weights()
    style = torch.rand(1, 3, image_size, image_size) * 255
    batch = (torch.rand(batch_size, 3, image_size, image_size) * 255).to(torch.uint8)

    def our_step(options, stability_weight=0.0, grid_weight=0.0):
        torch.manual_seed(0)
        net = TransformNet.named(arch).to(device)
        vgg = loss_network.VGG19(weights, (*loss_network.STYLE_LAYERS, loss_network.CONTENT_LAYER), loss_network.CAFFE_MEAN)
        model, criterion = prepare(net, loss_network.PerceptualLoss(vgg, style).to(device), device, options=options)
        optimizer = adam(net, 1e-3)
        terms = loss_network.ExtraTerms(grid_weight, stability_weight)

        def step():
            losses = forward_backward(model, criterion, optimizer, batch, device, options, terms)
            step_unless(optimizer, ~torch.isfinite(losses["total"].detach()))
        return step

    torch.manual_seed(0)
    ref_net = TransformNet.named(arch).to(device)
    ref_vgg = ReferenceVGG19(weights).to(device).requires_grad_(False)
    with torch.no_grad():
        fs = ref_vgg(style.to(device))
    grams = {k: loss_network.gram(fs[k]) for k in loss_network.STYLE_LAYERS}
    ref_optimizer = torch.optim.Adam(ref_net.parameters(), 1e-3)
    x = batch.to(device).float()
    # "ours" does the reference's work; train's default step adds the grid term; the steadiness
    # term (off by default) one more pass of the style network.
    options = StepOptions.for_device(device, compile_)
    steps_to_time = {"reference": lambda: reference_step(ref_net, ref_vgg, grams, ref_optimizer, x),
                     "ours": our_step(options), "train's default": our_step(options, 0.0, loss_network.GRID_WEIGHT),
                     "with the steadiness term": our_step(options, loss_network.STABILITY_WEIGHT, loss_network.GRID_WEIGHT)}
    if variants:
        for name, options in STEP_VARIANTS.items():
            if not options.get("cuda_graphs") or device.type == "cuda":
                steps_to_time[name] = our_step(StepOptions(**options))
    seconds = timed_in_turns(steps_to_time, device, steps, warmup=2 if device.type == "cuda" else 1)
    result = {"images_per_s": batch_size / seconds["ours"], "reference_images_per_s": batch_size / seconds["reference"],
              "speedup": seconds["reference"] / seconds["ours"], "image_size": image_size, "batch_size": batch_size,
              "default_images_per_s": batch_size / seconds["train's default"],
              "steadiness_images_per_s": batch_size / seconds["with the steadiness term"],
              "compiled": compile_, "arch": arch, "device": str(device), "machine": machine()}
    if variants:
        result.update(variant_figures(steps_to_time["fp32 eager"], seconds, batch_size, device))
    return result


def variant_figures(step, seconds: dict, batch_size, device) -> dict:
    """Each variant's images/s and FLOP/s (its share of the GPU's peak, where known), from the
    FLOPs of one `step` counted as it runs."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops, peak = counter.get_total_flops(), peak_tflops(device)
    return {"tflops_per_step": flops / 1e12, "variants": {
        name: {"images_per_s": batch_size / seconds[name], "speedup": seconds["reference"] / seconds[name],
               "tflops": flops / seconds[name] / 1e12,
               "share_of_peak": flops / seconds[name] / 1e12 / peak if peak else None}
        for name in STEP_VARIANTS if name in seconds}}


COCO_TRAIN2014_PICTURES = 82_783


def bench_e2e(train_path=None, image_size=256, batch_size=4, steps=3, device="auto", compile_=True, arch="standard",
              workers=None):
    """images/s of `stylemirror train` itself: its loader decoding and cropping JPEG files
    (COCO-like 640x480 ones, generated, unless train_path is given), its loop, its log; random
    VGG19 weights, the default recipe. Two log rows of `steps` steps each: the first pays for
    start-up and compiling, the second is the figure."""
    from ..train import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_file({f"features.{loss_network.VGG19_LAYERS.index(name)}.{part}": tensor.contiguous()
                   for name, pair in random_vgg_weights().items() for part, tensor in zip(("weight", "bias"), pair)},
                  tmp / "vgg19.safetensors")
        Image.effect_mandelbrot((image_size, image_size), (-2, -1.2, 1, 1.2), 48).convert("RGB").save(tmp / "style.png")
        # As many pictures as two windows take, up to 600: further epochs decode them again, at the same cost.
        pictures = train_path or coco_like_jpegs(tmp / "jpegs", count=min(2 * steps * batch_size, 600))
        cfg = TrainConfig(style=str(tmp / "style.png"), checkpoint_dir=str(tmp / "ckpt"), train_path=str(pictures),
                          vgg_path=str(tmp / "vgg19.safetensors"), model_dir=str(tmp / "model"), epochs=10**6,
                          batch_size=batch_size, checkpoint_iterations=10**9, image_size=image_size, arch=arch,
                          device=device, compile=compile_, workers=workers, max_steps=2 * steps, log_interval=steps)
        with contextlib.redirect_stdout(sys.stderr):  # its messages: not the figures
            try:
                train(cfg)
            except ImportError as e:  # a bare GPU machine may lack the loss plot's matplotlib: the rows came before it
                print(f"bench train --e2e: the run's end failed ({e}); its log rows were written before", file=sys.stderr)
        rows = [json.loads(line) for line in (tmp / "ckpt" / "train_log.jsonl").read_text().splitlines()]
    if len(rows) != 2:
        raise UserError(f"bench train --e2e: the run logged {len(rows)} rows, not the 2 windows it times")
    images_per_s = rows[-1]["images_per_s"]
    return {"images_per_s": images_per_s, "steps": steps, "train_path": str(train_path) if train_path else None,
            # the classic recipe: two epochs of COCO train2014's 82,783 pictures
            "coco_two_epochs_minutes": 2 * COCO_TRAIN2014_PICTURES / images_per_s / 60}


HELP = "images/s of the training step beside a plain reference; --e2e: of `stylemirror train` itself"


def add_arguments(p):
    from ..train import add_arguments as train_flags

    p.add_argument("--image-size", type=positive_int, default=256, help="crop size")
    p.add_argument("--batch-size", type=positive_int, default=4, help="pictures a step")
    p.add_argument("--steps", type=positive_int, default=3, help="timed steps (with --e2e: steps of each log row)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    train_flags(p, only=("arch",))
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="torch.compile the step, as long runs do")
    p.add_argument("--variants", action="store_true",
                   help="also fp32 eager, + channels_last, + bf16, + compile, + CUDA graphs, with FLOP/s")
    p.add_argument("--e2e", action="store_true",
                   help="also the real `stylemirror train` loop on JPEG files, its images/s against the step's")
    p.add_argument("--train-path", help="--e2e: a folder of pictures (default: generated 640x480 JPEGs)")


def run(args) -> dict:
    result = bench_train(args.image_size, args.batch_size, args.steps, args.device,
                         compile_=args.compile, arch=args.arch, variants=args.variants)
    print(f"train step ({args.arch}{', compiled' if result['compiled'] else ''}): {result['images_per_s']:.3f} images/s; "
          f"plain eager fp32 reference "
          f"{result['reference_images_per_s']:.3f} images/s: {result['speedup']:.2f}x "
          f"({result['image_size']}px, batch {result['batch_size']}, {result['device']}, {result['machine']})")
    print(f"with train's default grid term: {result['default_images_per_s']:.3f} images/s "
          f"({result['images_per_s'] / result['default_images_per_s']:.2f}x the time of a step without); with the "
          f"steadiness term too (--stability-weight {loss_network.STABILITY_WEIGHT:g}): "
          f"{result['steadiness_images_per_s']:.3f} images/s "
          f"({result['images_per_s'] / result['steadiness_images_per_s']:.2f}x)")
    if "variants" in result:
        print(f"variants ({result['tflops_per_step']:.3f} TFLOP a step; x: against the reference):")
        for name, v in result.get("variants", {}).items():
            peak = f", {100 * v['share_of_peak']:.1f}% of the bf16 peak" if v["share_of_peak"] else ""
            print(f"  {name:16s} {v['images_per_s']:8.2f} images/s  {v['speedup']:5.2f}x  {v['tflops']:7.2f} TFLOP/s{peak}")
    if args.e2e:
        e2e = bench_e2e(args.train_path, result["image_size"], result["batch_size"], args.steps,
                        args.device, compile_=args.compile, arch=args.arch)
        result["e2e"] = {**e2e, "ratio": e2e["images_per_s"] / result["images_per_s"]}
        print(f"end to end (`stylemirror train` on {args.train_path or 'generated 640x480 JPEGs'}): "
              f"{e2e['images_per_s']:.3f} images/s, {100 * result['e2e']['ratio']:.0f}% of the step alone; "
              f"two epochs of COCO train2014 at this rate: {e2e['coco_two_epochs_minutes']:.1f} minutes")
    return result
