"""`stylemirror bench stylize`: ms per frame of the stylize path beside plain eager fp32 `net(x)`."""

import numpy as np
import torch
from PIL import Image

from ..devices import pick_device
from .common import machine, timed_in_turns


def bench_stylize(width=640, height=480, device="auto", repeats=5, arch="standard"):
    """ms per frame of `stylemirror stylize`'s path (uint8 frame in, uint8 frame out) and of
    the plain eager fp32 reference `net(x)`, side by side, and how far apart they are."""
    from ..network import TransformNet
    from ..stylize import Stylizer

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
