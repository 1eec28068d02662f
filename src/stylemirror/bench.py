"""`stylemirror bench ...`: measured figures, each beside a plain reference from the same run."""

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import formats, loss_network
from .devices import pick_device
from .errors import UserError
from .stylize import picture_tensor

# Real photos that scikit-image ships (no download): a small real training set.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry",
                  "hubble_deep_field", "retina", "camera", "page")
QUALITY_LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def write_skimage_photos(folder: Path, names=SKIMAGE_PHOTOS) -> Path:
    try:
        import skimage.data
    except ImportError:
        raise UserError("bench quality needs scikit-image (pip install scikit-image): its photos are the training set") from None
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        image.thumbnail((512, 512))
        image.save(folder / f"{name}.jpg", quality=95)
    return folder


def style_score(net, vgg, photo: Image.Image, style: Image.Image):
    """(Gram distance(stylized, style) / Gram distance(photo, style) over the style layers,
    content drift: relative squared change of the relu3_1 features). Score < 1: the
    stylized photo is closer to the style than the photo was."""
    x, s = picture_tensor(photo), picture_tensor(style)
    with torch.no_grad():
        y = net(x)
        fx, fy, fs = vgg(x), vgg(y), vgg(s)
        def distance(f):
            return sum(((loss_network.gram(f[k]) - loss_network.gram(fs[k])) ** 2).mean().item() for k in QUALITY_LAYERS)
        drift = ((fy["relu3_1"] - fx["relu3_1"]) ** 2).sum() / (fx["relu3_1"] ** 2).sum()
    stylized = Image.fromarray(y[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy())
    return distance(fy) / distance(fx), drift.item(), stylized


def quality(style_path, photo_path, vgg_path, out_dir, steps=300, image_size=128, batch_size=4,
            style_weight=4000.0, learning_rate=1e-3, style_size=256, workers=None, arch="standard"):
    """Train on scikit-image's photos with real VGG19 weights, then score a photo the run
    never saw. Returns the figures; writes a side-by-side picture into out_dir."""
    from .train import TrainConfig, train

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = write_skimage_photos(tmp / "photos")
        cfg = TrainConfig(style=str(style_path), checkpoint_dir=str(tmp / "ckpt"), train_path=str(photos),
                          vgg_path=str(vgg_path), model_dir=str(tmp / "model"), epochs=10**6, batch_size=batch_size,
                          checkpoint_iterations=10**9, style_weight=style_weight, learning_rate=learning_rate,
                          image_size=image_size, style_size=style_size, style_layers=QUALITY_LAYERS,
                          content_layer="relu3_1", max_steps=steps, workers=workers, log_interval=max(1, steps // 10),
                          arch=arch)
        start = time.perf_counter()
        train(cfg)
        seconds = time.perf_counter() - start
        net = formats.load_model(tmp / "model" / "model.safetensors")
        log = [json.loads(line) for line in (tmp / "ckpt" / "train_log.jsonl").read_text().splitlines()]
    vgg = loss_network.load_vgg(vgg_path, QUALITY_LAYERS)
    photo = Image.open(photo_path).convert("RGB")
    photo.thumbnail((256, 256))
    style = Image.open(style_path).convert("RGB")
    style.thumbnail((style_size, style_size))
    score, drift, stylized = style_score(net, vgg, photo, style)
    side = Image.new("RGB", (photo.width * 2, photo.height))
    side.paste(photo, (0, 0))
    side.paste(stylized, (photo.width, 0))
    name = "quality" if arch == "standard" else f"quality-{arch}"
    side.save(out_dir / f"{name}.png")
    result = {"style_score": score, "content_drift": drift, "arch": arch, "steps": steps, "image_size": image_size,
              "batch_size": batch_size, "style_weight": style_weight, "train_seconds": seconds,
              "first_loss": log[0]["total"], "last_loss": log[-1]["total"]}
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2))
    return result


# --- speed -------------------------------------------------------------------------------

def machine() -> str:
    import platform
    import os
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_in_turns(fns: dict, device, repeats, warmup=1) -> dict:
    """{name: median seconds of fns[name]()}, the functions run in turns so that a machine
    that slows down or speeds up meanwhile weighs on all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


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
    from torch.utils.flop_counter import FlopCounterMode

    from .network import TransformNet
    from .train import StepOptions, forward_backward, prepare

    device = pick_device(device)
    weights = random_vgg_weights()
    style = torch.rand(1, 3, image_size, image_size) * 255
    batch = (torch.rand(batch_size, 3, image_size, image_size) * 255).to(torch.uint8)

    def our_step(options):
        torch.manual_seed(0)
        net = TransformNet.named(arch).to(device)
        vgg = loss_network.VGG19(weights, (*loss_network.STYLE_LAYERS, loss_network.CONTENT_LAYER), loss_network.CAFFE_MEAN)
        model, criterion = prepare(net, loss_network.PerceptualLoss(vgg, style).to(device), device, options=options)
        optimizer = torch.optim.Adam(net.parameters(), 1e-3)

        def step():
            forward_backward(model, criterion, optimizer, batch, device, options)
            optimizer.step()
        return step

    torch.manual_seed(0)
    ref_net = TransformNet.named(arch).to(device)
    ref_vgg = ReferenceVGG19(weights).to(device).requires_grad_(False)
    with torch.no_grad():
        fs = ref_vgg(style.to(device))
    grams = {k: loss_network.gram(fs[k]) for k in loss_network.STYLE_LAYERS}
    ref_optimizer = torch.optim.Adam(ref_net.parameters(), 1e-3)
    x = batch.to(device).float()
    steps_to_time = {"reference": lambda: reference_step(ref_net, ref_vgg, grams, ref_optimizer, x),
                     "ours": our_step(StepOptions.for_device(device, compile_))}
    if variants:
        for name, options in STEP_VARIANTS.items():
            if not options.get("cuda_graphs") or device.type == "cuda":
                steps_to_time[name] = our_step(StepOptions(**options))
    seconds = timed_in_turns(steps_to_time, device, steps, warmup=2 if device.type == "cuda" else 1)
    result = {"images_per_s": batch_size / seconds["ours"], "reference_images_per_s": batch_size / seconds["reference"],
              "speedup": seconds["reference"] / seconds["ours"], "image_size": image_size, "batch_size": batch_size,
              "compiled": compile_, "arch": arch, "device": str(device), "machine": machine()}
    if variants:
        counter = FlopCounterMode(display=False)
        with counter:
            steps_to_time["fp32 eager"]()
        flops, peak = counter.get_total_flops(), peak_tflops(device)
        result["tflops_per_step"] = flops / 1e12
        result["variants"] = {
            name: {"images_per_s": batch_size / seconds[name], "speedup": seconds["reference"] / seconds[name],
                   "tflops": flops / seconds[name] / 1e12,
                   "share_of_peak": flops / seconds[name] / 1e12 / peak if peak else None}
            for name in STEP_VARIANTS if name in seconds}
    return result


def bench_stylize(width=640, height=480, device="auto", repeats=5, arch="standard"):
    """ms per frame of `stylemirror stylize`'s path (uint8 frame in, uint8 frame out) and of
    the plain eager fp32 reference `net(x)`, side by side, and how far apart they are."""
    from .network import TransformNet
    from .stylize import Stylizer

    device = pick_device(device)
    torch.manual_seed(0)
    net = TransformNet.named(arch).eval()
    frame = np.array(Image.effect_mandelbrot((width, height), (-2, -1.2, 1, 1.2), 64).convert("RGB"))
    stylizer = Stylizer(net, device)
    ref_net = TransformNet.named(arch).to(device).eval()
    ref_net.load_state_dict(net.state_dict())
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().to(device)

    def reference():
        with torch.no_grad():
            return ref_net(x)
    seconds = timed_in_turns({"ours": lambda: stylizer.frames([frame]), "reference": reference}, device, repeats)
    ours_s, ref_s = seconds["ours"], seconds["reference"]
    want = reference()[0].permute(1, 2, 0).round().clamp(0, 255).cpu().numpy()
    levels = int(np.abs(stylizer.frames([frame])[0].astype(int) - want.astype(int)).max())
    return {"ms_per_frame": 1000 * ours_s, "reference_ms_per_frame": 1000 * ref_s, "speedup": ref_s / ours_s,
            "max_level_difference": levels, "size": f"{width}x{height}", "arch": arch, "device": str(device),
            "engine": "onnxruntime" if stylizer.session else "torch", "machine": machine()}


def coco_like_jpegs(folder: Path, count=240, size=(640, 480)):
    """Photo-like 640x480 JPEGs (COCO's typical size) made from scikit-image's photos, or
    from a fractal where scikit-image is absent."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import skimage.data
        sources = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in SKIMAGE_PHOTOS[:6]]
    except ImportError:
        sources = [Image.effect_mandelbrot(size, (-2, -1.2, 1, 1.2), 32 + i).convert("RGB") for i in range(6)]
    for i in range(count):
        sources[i % len(sources)].resize(size).rotate(i * 7).save(folder / f"{i:04d}.jpg", quality=90)
    return folder


def bench_data(train_path=None, image_size=256, batch_size=4, pictures=240, workers=None, repeats=3):
    """images/s of the training data pipeline (after its first batch: start-up is paid once
    a run) and of the naive way: decode the whole JPEG and resize, in one thread. Timed in
    turns, medians compared."""
    from . import data

    def ours():
        order = data.TrainingOrder(len(files), batch_size, 1, seed=0)
        seen, start = 0, None
        for batch, _ in data.loader(files, image_size, batch_size, order, workers):
            if start is None:
                start = time.perf_counter()
            else:
                seen += len(batch)
        return seen, seen / (time.perf_counter() - start)

    def naive(count):
        start = time.perf_counter()
        for path in files[:count]:
            with Image.open(path) as image:
                np.asarray(image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR))
        return count / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        files = data.find_images(train_path or coco_like_jpegs(Path(tmp) / "jpegs", count=pictures))[:pictures]
        rates = []
        for _ in range(repeats):
            seen, rate = ours()
            rates.append((rate, naive(seen)))
    fast, slow = (float(np.median(r)) for r in zip(*rates))
    return {"images_per_s": fast, "reference_images_per_s": slow, "speedup": fast / slow,
            "image_size": image_size, "pictures": seen, "machine": machine()}


def write_y4m(path, picture: Image.Image, frames=30):
    """A fake camera for Chromium (--use-file-for-fake-video-capture): 4:2:0 ('C420jpeg')
    YUV frames of a slowly turning picture."""
    w, h = picture.size
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            ycc = np.asarray(picture.rotate(i * 3).convert("YCbCr"))
            f.write(b"FRAME\n" + ycc[..., 0].tobytes())
            for c in (1, 2):
                f.write(np.asarray(Image.fromarray(ycc[..., c]).resize((w // 2, h // 2))).tobytes())


CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
]


def page_fps(context, url, frames):
    """(frames per second, backend) of the mirror page at url, after its first two frames."""
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.mirror.frames >= 2", timeout=600000, polling=500)
    start = page.evaluate("[window.mirror.frames, performance.now()]")
    page.wait_for_function(f"window.mirror.frames >= {start[0] + frames}", timeout=600000, polling=500)
    end = page.evaluate("[window.mirror.frames, performance.now(), window.mirror.backend]")
    page.close()
    return 1000 * (end[0] - start[0]) / (end[1] - start[1]), end[2]


def bench_mirror(model_dir, width=320, height=240, frames=10, ml5_frames=2, chromium="/usr/bin/chromium"):
    """Frames per second of the mirror page and of ml5.js 0.12.2 (the classic sketch, on its
    only correct backend, WebGL) on the same ml5 model, in the same headless Chromium, with a
    fake camera; and of the page on the lite network (random weights: speed does not depend
    on them), which ml5.js cannot run."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise UserError("bench mirror needs Playwright (pip install playwright) and Debian's chromium") from None
    from . import mirror
    from .network import TransformNet

    model_dir = Path(model_dir)
    if not (model_dir / "manifest.json").is_file():
        raise UserError(f"{model_dir}: not an ml5 model folder (the benchmark runs it in ml5.js too)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        camera = Image.effect_mandelbrot((width, height), (-2, -1.2, 1, 1.2), 64).convert("RGB")
        write_y4m(tmp / "camera.y4m", camera)
        (tmp / "lite").mkdir()
        formats.save_safetensors(TransformNet.named("lite"), tmp / "lite" / "lite-random.safetensors")
        folders = [model_dir.parent, tmp / "lite"]
        srv = mirror.Mirror(folders).serve(port=0)
        base = f"http://127.0.0.1:{srv.server_address[1]}/"
        found = mirror.find_models(folders)
        name = next(n for n, p in found.items() if p.resolve() == model_dir.resolve())
        lite = next(n for n, p in found.items() if p.name == "lite-random.safetensors")
        args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                f"--use-file-for-fake-video-capture={(tmp / 'camera.y4m').resolve()}"]
        try:
            with sync_playwright() as p:
                context = p.chromium.launch_persistent_context(tmp / "profile", executable_path=chromium,
                                                               headless=True, args=args)
                ours, backend = page_fps(context, f"{base}?model={name}&size={width}x{height}", frames)
                lite_fps, _ = page_fps(context, f"{base}?model={lite}&size={width}x{height}", frames)
                page = context.new_page()
                page.goto(f"{base}examples/ml5/?model={name}&size={width}x{height}&frames={ml5_frames + 1}")
                # The first ml5 frame compiles its shaders: time the ones after it.
                first = page.wait_for_function("window.ml5Frames >= 1 && performance.now()", timeout=900000,
                                               polling=1000).json_value()
                last = page.wait_for_function(f"window.ml5Frames >= {ml5_frames + 1} && performance.now()",
                                              timeout=900000, polling=1000).json_value()
                theirs = 1000 * ml5_frames / (last - first)
                context.close()
        finally:
            srv.shutdown()
    return {"fps": ours, "ml5_fps": theirs, "speedup": ours / theirs, "backend": backend,
            "ml5_backend": "webgl", "lite_fps": lite_fps, "lite_vs_standard": lite_fps / ours,
            "size": f"{width}x{height}", "model": name, "machine": machine()}
