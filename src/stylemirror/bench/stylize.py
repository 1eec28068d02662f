"""`stylemirror bench stylize`: ms per frame of the stylize path beside plain eager fp32 `net(x)`,
and the peak memory of one frame through it, measured in a child process."""

import multiprocessing
import resource
import time

import numpy as np
import torch
from PIL import Image

from ..arguments import frame_size
from ..devices import pick_device
from .common import machine, timed_in_turns


def bench_frame(width, height) -> np.ndarray:
    return np.array(Image.effect_mandelbrot((width, height), (-2, -1.2, 1, 1.2), 64).convert("RGB"))


def _stylize_once(width, height, device, arch):
    """In a fresh process: (seconds, peak RSS in MB, RSS in MB before it) of one frame through
    the stylize path, so that the peak is this stylize's own."""
    from ..network import TransformNet
    from ..stylize import Stylizer

    torch.manual_seed(0)
    frame = bench_frame(width, height)
    stylizer = Stylizer(TransformNet.named(arch).eval(), device)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    start = time.perf_counter()
    stylizer.frames([frame])
    seconds = time.perf_counter() - start
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, before


def stylize_in_child(width, height, device, arch):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_stylize_once, (width, height, str(device), arch))


def bench_stylize(width=640, height=480, device="auto", repeats=5, arch="standard"):
    """ms per frame of `stylemirror stylize`'s path (uint8 frame in, uint8 frame out) and of
    the plain eager fp32 reference `net(x)`, side by side, and how far apart they are; the peak
    RSS of one frame in a child process. Above Options.max_pixels the frame is tiled, and only
    the child's one run is timed (the untiled reference would not fit)."""
    from ..network import TransformNet
    from ..stylize import Options, Stylizer

    device = pick_device(device)
    seconds, peak_mb, before_mb = stylize_in_child(width, height, device, arch)
    memory = {"peak_rss_mb": peak_mb, "rss_before_stylize_mb": before_mb, "size": f"{width}x{height}",
              "arch": arch, "device": str(device), "machine": machine()}
    if width * height > Options().max_pixels:
        # Tiled (tiling.py): the untiled reference would not fit in memory. One run, in the child.
        return {"ms_per_frame": 1000 * seconds, "tiled": True, "engine": "torch", **memory,
                **against_untiled(width, height, seconds, device, arch)}
    torch.manual_seed(0)
    net = TransformNet.named(arch).eval()
    frame = bench_frame(width, height)
    # The reference's function: no edge padding (it costs more pixels; timed on its own below).
    stylizer = Stylizer(net, device, Options(edge_pad=0))
    padded = Stylizer(net, device)
    ref_net = TransformNet.named(arch).to(device).eval()
    ref_net.load_state_dict(net.state_dict())
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().to(device)

    def reference():
        with torch.no_grad():
            return ref_net(x)
    seconds = timed_in_turns({"ours": lambda: stylizer.frames([frame]), "reference": reference,
                              "edge_pad": lambda: padded.frames([frame])}, device, repeats)
    ours_s, ref_s = seconds["ours"], seconds["reference"]
    want = reference()[0].permute(1, 2, 0).round().clamp(0, 255).cpu().numpy()
    levels = int(np.abs(stylizer.frames([frame])[0].astype(int) - want.astype(int)).max())
    return {"ms_per_frame": 1000 * ours_s, "reference_ms_per_frame": 1000 * ref_s, "speedup": ref_s / ours_s,
            "max_level_difference": levels, "tiled": False, "edge_pad": padded.options.edge_pad,
            "edge_pad_ms_per_frame": 1000 * seconds["edge_pad"],
            "engine": "onnxruntime" if stylizer.session else "torch", **memory}


def against_untiled(width, height, seconds, device, arch, pixels=2_000_000, tile_pixels=None):
    """A tiled frame's time as a multiple of one untiled pass over as many pixels (the stylize
    path's time a pixel on a frame of `pixels` of the same shape, which fits), and how far
    tiles are from one pass on that frame, with the slots held as the big frame's are
    (float16, in files), in tiles of `tile_pixels` (default: a quarter of the usual, so that it tiles)."""
    from .. import padding, tiling
    from ..network import TransformNet
    from ..stylize import Stylizer

    scale = (pixels / (width * height)) ** 0.5
    w, h = max(8, round(width * scale)), max(8, round(height * scale))
    torch.manual_seed(0)
    stylizer = Stylizer(TransformNet.named(arch).eval(), device)
    frame = bench_frame(w, h)
    untiled = timed_in_turns({"untiled": lambda: stylizer.frames([frame])}, stylizer.device, 3)["untiled"]
    pad = padding.bounded(stylizer.options.edge_pad, h, w)
    per_pixel = untiled / ((h + 2 * pad) * (w + 2 * pad))
    big_pad = padding.bounded(stylizer.options.edge_pad, height, width)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].to(stylizer.device)
    out = torch.empty_like(x)
    tiling.stylize_tiled(stylizer.net, x, tile_pixels or tiling.TILE_PIXELS // 4, pad, stylizer.finish, out, slot_memory=0)
    diff = np.abs(out[0].permute(1, 2, 0).cpu().numpy().astype(int) - stylizer.frames([frame])[0].astype(int))
    return {"untiled_size": f"{w}x{h}", "untiled_ms_per_megapixel": 1e9 * per_pixel,
            "times_untiled": seconds / (per_pixel * (height + 2 * big_pad) * (width + 2 * big_pad)),
            "tiles_mean_level_difference": float(diff.mean()), "tiles_max_level_difference": int(diff.max())}


HELP = "ms per frame of `stylemirror stylize` beside plain eager fp32, and its peak memory"


def add_arguments(p):
    from ..train import add_arguments as train_flags

    p.add_argument("--size", type=frame_size, default="640x480", help="frame size WxH")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    train_flags(p, only=("arch",))


def run(args) -> dict:
    w, h = args.size
    result = bench_stylize(w, h, args.device, arch=args.arch)
    if result["tiled"]:
        print(f"stylize {result['size']} ({args.arch}), in tiles: {result['ms_per_frame'] / 1000:.1f} s, "
              f"{result['times_untiled']:.2f}x one untiled pass over as many pixels "
              f"({result['untiled_ms_per_megapixel']:.0f} ms a megapixel at {result['untiled_size']}), "
              f"peak RSS {result['peak_rss_mb']:.0f} MB ({result['device']}, {result['machine']})")
        print(f"tiles against one pass at {result['untiled_size']} (quarter-size tiles, slots as above): "
              f"mean {result['tiles_mean_level_difference']:.3f} level(s), max {result['tiles_max_level_difference']}")
    else:
        print(f"stylize {result['size']} ({args.arch}): {result['ms_per_frame']:.1f} ms/frame ({result['engine']}); "
              f"plain eager fp32 reference {result['reference_ms_per_frame']:.1f} ms: {result['speedup']:.2f}x, "
              f"max difference {result['max_level_difference']} level(s), peak RSS {result['peak_rss_mb']:.0f} MB "
              f"({result['device']}, {result['machine']})")
        print(f"with the default --edge-pad {result['edge_pad']} (clean edges): {result['edge_pad_ms_per_frame']:.1f} "
              f"ms/frame, {result['edge_pad_ms_per_frame'] / result['ms_per_frame']:.2f}x the time without")
    return result
