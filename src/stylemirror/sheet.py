"""`stylemirror sheet`: one photo through every model the mirror would list (each style of a
multi-style model too), as one labelled grid picture: the original first, then a tile per
style, its name under it."""

import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from .errors import UserError
from .images import fitted

TILE = 256  # the longer side of each tile, in pixels
GAP = 8  # white space between tiles and around the sheet
LABEL_HEIGHT = 24  # the band under each tile that holds its name
FONT_SIZE = 14


def entries(folders) -> list[tuple[str, object]]:
    """(label, network) for every style of every model the mirror lists in `folders` (a
    multi-style model's styles labelled "MODEL: STYLE"). A model that cannot stylize (damaged,
    NaN weights) is left out with a note, as the mirror leaves it out."""
    from . import mirror, registry

    found = []
    for name, model in mirror.find_models(folders).items():
        try:
            net = registry.open_model(model)
        except UserError as e:
            tqdm.write(f"stylemirror: leaving out {name}: {e}", file=sys.stderr)
            continue
        for style, single in net.each_style():
            found.append((f"{name}: {style}" if net.styles > 1 else name, single.eval()))
    return found


def tile_boxes(count: int, size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The (left, top, right, bottom) of each of `count` tiles of `size` on the sheet, row by
    row in a near-square grid; each tile's label lies in the LABEL_HEIGHT band below it."""
    columns = math.ceil(math.sqrt(count))
    w, h = size
    boxes = []
    for i in range(count):
        row, column = divmod(i, columns)
        left, top = GAP + column * (w + GAP), GAP + row * (h + LABEL_HEIGHT + GAP)
        boxes.append((left, top, left + w, top + h))
    return boxes


def sheet_size(count: int, size: tuple[int, int]) -> tuple[int, int]:
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    w, h = size
    return GAP + columns * (w + GAP), GAP + rows * (h + LABEL_HEIGHT + GAP)


def make_sheet(photo_path, out, folders, tile: int = TILE) -> list[str]:
    """Write the sheet of `photo_path` through the models in `folders` to `out`; return the
    tiles' labels in order (the original's first)."""
    from .images import claim_picture_output, open_picture, save_picture
    from .stylize import Options, Stylizer

    claim_picture_output(out, [photo_path])
    photo = open_picture(photo_path).convert("RGB")
    photo.thumbnail((tile, tile), Image.Resampling.LANCZOS)
    models = entries(folders)
    if not models:
        raise UserError("no models to show: pull one (`stylemirror models pull wave`), train one, "
                        "or name folders that hold models with --models")
    labels, pictures = ["original"], [photo]
    for label, net in tqdm(models, desc="sheet", unit="style"):
        pictures.append(Stylizer(net, "cpu", Options()).picture(photo))
        labels.append(label)

    canvas = Image.new("RGB", sheet_size(len(pictures), photo.size), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=FONT_SIZE)
    for (left, top, right, bottom), picture, label in zip(tile_boxes(len(pictures), photo.size), pictures, labels):
        canvas.paste(picture, (left, top))
        text = fitted(draw, label, font, right - left)
        draw.text(((left + right) / 2, bottom + LABEL_HEIGHT / 2), text, fill="black", font=font, anchor="mm")
    save_picture(canvas, out)
    return labels
