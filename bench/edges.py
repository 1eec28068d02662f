"""Edge handling measured (issue 15): the edge score (stylemirror.metrics.edge_score) of a flat
grey wall (metrics.flat_wall, 8 of them with different noise, scored together) stylized with
each way of padding the picture, for ml5's published styles and any models given on the command
line (e.g. one from `stylemirror train`), at 320x240, with the work each way costs (pixels the
network runs over, against the picture's) at 320x240 and 640x480. Prints a Markdown table
(bench/README.md).

    .venv/bin/python bench/edges.py [--no-published] [MODEL ...]
"""

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stylemirror import network, registry
from stylemirror.metrics import edge_score, flat_wall
from stylemirror.padding import reflect_pad
from stylemirror.stylize import Options, Stylizer

ML5_MODELS = Path(__file__).resolve().parents[2] / "shared" / "ml5-models"
SIZE = (320, 240)
WALLS = 8
WORK_SIZES = ((320, 240), (640, 480))


@dataclass
class Padding:
    mode: str = "reflect"  # or "replicate"
    pixels: int = 0
    right_bottom_only: bool = False
    inside: bool = False  # every conv of the network pads by reflection instead of zeros

    def sides(self):
        """(pixels before, pixels after) on each axis."""
        return (0 if self.right_bottom_only else self.pixels), self.pixels

    def work(self, w, h):
        before, after = self.sides()
        return (w + before + after) * (h + before + after) / (w * h)

    def run(self, stylizer, x):
        h, w = x.shape[-2:]
        before, after = self.sides()
        if self.mode == "reflect" and before == after:
            x = reflect_pad(x, before)
        else:
            x = F.pad(x, (before, after, before, after), mode=self.mode)
        y = self.run_inside(stylizer.net, x) if self.inside else stylizer.network(x)
        return y[..., before:before + h, before:before + w]

    @staticmethod
    def run_inside(net, x):
        """A changed network: ml5.js and the page's Net class would need the same change."""
        net = copy.deepcopy(net)
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d) and module.padding != (0, 0):
                module.padding_mode = "reflect"
        original = network.same_pad_stride2
        network.same_pad_stride2 = lambda t, kernel=3: original(t, kernel, mode="reflect")
        try:
            return net(x)
        finally:
            network.same_pad_stride2 = original


VARIANTS = {
    "off (as ml5.js)": Padding(),
    **{f"reflect {p}": Padding(pixels=p) for p in (16, 24, 32, 48, 64)},
    "replicate 32": Padding("replicate", 32),
    "replicate 64": Padding("replicate", 64),
    "reflect 32, right/bottom only": Padding(pixels=32, right_bottom_only=True),
    "reflect 64, right/bottom only": Padding(pixels=64, right_bottom_only=True),
    "reflection inside the convs": Padding(inside=True),
    "reflection inside the convs + reflect 16": Padding(pixels=16, inside=True),
}


@torch.inference_mode()
def main(extra_models, published=True):
    models = {name: ML5_MODELS / name for name in ("wave", "udnie", "la_muse") if published}
    models.update({Path(m).stem: Path(m) for m in extra_models})
    stylizers = {name: Stylizer(registry.open_model(path), options=Options(edge_pad=0)) for name, path in models.items()}
    w, h = SIZE
    walls = torch.from_numpy(np.stack([flat_wall(w, h, seed) for seed in range(WALLS)])).permute(0, 3, 1, 2).float()
    header = ["padding"] + list(models) + [f"work {w}x{h}" for w, h in WORK_SIZES]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, padding in VARIANTS.items():
        scores = []
        for stylizer in stylizers.values():
            y = padding.run(stylizer, walls).round().clamp(0, 255).permute(0, 2, 3, 1).to(torch.uint8).numpy()
            assert y.shape == (WALLS, h, w, 3)
            scores.append(edge_score(y))
        costs = [padding.work(*size) for size in WORK_SIZES]
        print(f"| {name} | " + " | ".join(f"{s:.1f}" for s in scores) + " | " +
              " | ".join(f"{c:.2f}x" for c in costs) + " |", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main([a for a in args if a != "--no-published"], published="--no-published" not in args)
