"""`stylemirror bench mirror`: frames per second of the mirror page beside ml5.js 0.12.2 in headless Chromium."""

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .. import formats
from ..arguments import frame_size, positive_int
from ..errors import UserError
from .common import CHROMIUM_ARGS, SHARED, machine


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


def bench_mirror(model_dir, width=320, height=240, frames=10, ml5_frames=2, chromium="/usr/bin/chromium",
                 edge_pads=(0, 16, 48)):
    """Frames per second of the mirror page and of ml5.js 0.12.2 (the classic sketch, on its
    only correct backend, WebGL) on the same ml5 model, in the same headless Chromium, with a
    fake camera; and of the page on the lite network (random weights: speed does not depend
    on them), which ml5.js cannot run; of the page with each of `edge_pads` (?edgepad=N:
    the mirrored pixels around each frame) in place of its camera's default; and of the page
    without its steadier (?steady=off)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise UserError("bench mirror needs Playwright (pip install playwright) and Debian's chromium") from None
    from .. import mirror
    from ..network import TransformNet

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
                unsteady_fps, _ = page_fps(context, f"{base}?model={name}&size={width}x{height}&steady=off", frames)
                lite_fps, _ = page_fps(context, f"{base}?model={lite}&size={width}x{height}", frames)
                by_pad = {pad: page_fps(context, f"{base}?model={name}&size={width}x{height}&edgepad={pad}", frames)[0]
                          for pad in edge_pads}
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
            "ml5_backend": "webgl", "lite_fps": lite_fps, "edge_pad_fps": by_pad,
            "unsteady_fps": unsteady_fps, "steady_cost": unsteady_fps / ours, "lite_vs_standard": lite_fps / ours,
            "size": f"{width}x{height}", "model": name, "machine": machine()}


HELP = "frames per second of the mirror page beside ml5.js 0.12.2, in headless Chromium"


def add_arguments(p):
    p.add_argument("--model", default=str(SHARED / "ml5-models" / "wave"), help="an ml5 model folder")
    p.add_argument("--size", type=frame_size, default="320x240", help="camera frame size WxH")
    p.add_argument("--frames", "--steps", type=positive_int, default=10, help="frames timed")


def run(args) -> dict:
    w, h = args.size
    result = bench_mirror(args.model, w, h, frames=args.frames)
    print(f"mirror page {result['size']}: {result['fps']:.3f} fps ({result['backend']}); ml5.js 0.12.2: "
          f"{result['ml5_fps']:.4f} fps ({result['ml5_backend']}): {result['speedup']:.1f}x; "
          f"lite network {result['lite_fps']:.2f} fps ({result['lite_vs_standard']:.1f}x the standard one; "
          f"ml5.js cannot run it) ({result['machine']}, headless Chromium)")
    print(f"without the steadier (?steady=off): {result['unsteady_fps']:.3f} fps, "
          f"{result['steady_cost']:.2f}x the page's default")
    print("the page with N mirrored pixels around each frame (?edgepad=N; the figure above: its default): " + ", ".join(
        f"{pad}: {fps:.3f} fps ({fps / result['ml5_fps']:.1f}x)" for pad, fps in result["edge_pad_fps"].items()))
    return result
