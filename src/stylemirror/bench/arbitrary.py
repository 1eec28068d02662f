"""`stylemirror bench arbitrary`: photos x paintings through the arbitrary-style network, beside
a network trained for the same painting where there is one, each picture's style distance to
its painting under it (metrics.style_distance, lower is closer): one picture and its figures.
The arbitrary network's own predictor gives the distance, so it favours that network."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import arbitrary, registry
from ..arguments import positive_int
from ..errors import UserError
from ..images import claim_picture_output, fitted, open_picture, save_picture
from ..metrics import style_distance
from ..stylize import Options, Stylizer
from .common import DISTANCE_LABELS, SHARED, SKIMAGE_PHOTOS

HELP = "the arbitrary-style network on photos x paintings beside trained networks, with style distances: a picture"

# amber.jpg and stereo_motorcycle are in no training set here; astronaut and coffee are in bench quality's.
DEFAULT_PHOTOS = ("amber.jpg", "astronaut", "coffee", "stereo_motorcycle")
DEFAULT_PAINTINGS = ("great_wave.jpg", "the_scream.jpg", "shipwreck_of_the_minotaur.jpg", "udnie.jpg")
# ml5.js's published models, trained with fast-style-transfer on these two paintings.
DEFAULT_TRAINED = ("great_wave=" + str(SHARED / "ml5-models" / "wave"), "udnie=" + str(SHARED / "ml5-models" / "udnie"))
SKIMAGE_CHOICES = (*SKIMAGE_PHOTOS, "stereo_motorcycle")  # scikit-image's colour photos that load offline
TILE = 160  # the longer side of each cell, in pixels
GAP = 6
LABEL_HEIGHT = 34  # two lines of text under each cell
FONT_SIZE = 12


def picture_file(spec: str) -> Path | None:
    """A picture file as named, or by that name in the shared pictures; else None."""
    return next((path for path in (Path(spec), SHARED / "images" / spec) if path.is_file()), None)


def photo_picture(spec: str) -> Image.Image:
    """A photo: a picture file, a file in the shared pictures, or a scikit-image photo's name."""
    import skimage.data

    if path := picture_file(spec):
        return open_picture(path).convert("RGB")
    if spec not in SKIMAGE_CHOICES:
        raise UserError(f"--photos {spec}: not a picture file nor a scikit-image photo ({', '.join(SKIMAGE_CHOICES)})")
    pixels = getattr(skimage.data, spec)()
    pixels = pixels[0] if isinstance(pixels, tuple) else pixels  # a stereo pair: its left view
    return Image.fromarray(np.asarray(pixels)).convert("RGB")


def painting_path(spec: str) -> Path:
    if path := picture_file(spec):
        return path
    raise UserError(f"--paintings {spec}: no such picture (here or in {SHARED / 'images'})")


def trained_models(specs, paintings: list[str]) -> dict:
    """--trained PAINTING=MODEL ... -> {painting: [(label, network)]}; a model that is absent
    (ml5's published ones outside a checkout) is left out."""
    found = {name: [] for name in paintings}
    for spec in specs:
        name, equals, model = spec.partition("=")
        if not equals or name not in found:
            raise UserError(f"--trained {spec}: expected PAINTING=MODEL, PAINTING one of {', '.join(paintings)}")
        path = Path(model)
        if not path.exists():
            continue
        ml5 = (path / "manifest.json").is_file()
        found[name].append((f"ml5 {path.name}" if ml5 else path.stem, registry.open_model(path)))
    return found


def bench_arbitrary(photos, paintings, trained_specs, out, size: int = 256, tile: int = TILE) -> dict:
    """Every photo (at `size` px) through the arbitrary network in the style of every painting
    and through each trained network of it, as `stylemirror stylize` paints them (edge pad
    included); writes the grid (paintings along the top, photos down the left) to `out` and
    returns the style distances: {painting: {photo: {"photo", "arbitrary", LABEL...}}}."""
    claim_picture_output(out, [p for p in map(picture_file, [*photos, *paintings]) if p], "--out",
                         "one of the photos or paintings")
    pictures = {}
    for spec in photos:
        picture = photo_picture(spec)
        picture.thumbnail((size, size), Image.Resampling.LANCZOS)
        pictures[Path(spec).stem] = picture
    art = {Path(spec).stem: open_picture(painting_path(spec)).convert("RGB") for spec in paintings}
    trained = trained_models(trained_specs, list(art))
    net, predictor = arbitrary.ArbitraryNet.pretrained(), arbitrary.predictor()
    columns = [(None, None)]  # (painting, label): the photos' column, then each painting's
    cells = {}
    distances = {}
    for name, painting in art.items():
        styled = Stylizer(net.with_style(predictor(painting)), "cpu", Options())
        outputs = {"arbitrary": styled.pictures(list(pictures.values()))}
        outputs.update({label: Stylizer(model, "cpu", Options()).pictures(list(pictures.values()))
                        for label, model in trained[name]})
        columns += [(name, label) for label in outputs]
        distances[name] = {}
        for i, (photo_name, photo) in enumerate(pictures.items()):
            d = {"photo": style_distance(photo, painting, predictor)}
            d.update({label: style_distance(out_pictures[i], painting, predictor) for label, out_pictures in outputs.items()})
            distances[name][photo_name] = d
            for label, out_pictures in outputs.items():
                text = f"{d[label]:.2f} (photo {d['photo']:.2f})" if label == "arbitrary" else f"{d[label]:.2f}"
                cells[photo_name, name, label] = out_pictures[i], text
    draw_grid(pictures, art, trained, columns, cells, out, tile)
    return distances


def draw_grid(pictures: dict, art: dict, trained: dict, columns, cells: dict, out, tile: int):
    """The picture: a header row of the paintings (over their arbitrary column; a trained
    network's column says whose it is), then a row per photo; each cell's text under it."""
    width = GAP + len(columns) * (tile + GAP)
    height = GAP + (1 + len(pictures)) * (tile + LABEL_HEIGHT + GAP)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=FONT_SIZE)

    def put(column, row, picture, lines):
        left, top = GAP + column * (tile + GAP), GAP + row * (tile + LABEL_HEIGHT + GAP)
        if picture is not None:
            shown = picture.copy()
            shown.thumbnail((tile, tile), Image.Resampling.LANCZOS)
            canvas.paste(shown, (left + (tile - shown.width) // 2, top + (tile - shown.height) // 2))
        for i, line in enumerate(lines):
            y = top + tile + (i + 0.5) * LABEL_HEIGHT / 2 if picture is not None else top + tile / 2 + (i - 0.5) * 16
            draw.text((left + tile / 2, y), fitted(draw, line, font, tile), fill="black", font=font, anchor="mm")

    put(0, 0, None, ["style distance", "(lower: closer)"])
    for column, (name, label) in enumerate(columns[1:], 1):
        if label == "arbitrary":
            put(column, 0, art[name], [name, "arbitrary network" if trained[name] else "arbitrary (none trained)"])
        else:
            put(column, 0, None, [label, f"trained on {name}"])
    for row, (photo_name, photo) in enumerate(pictures.items(), 1):
        put(0, row, photo, [photo_name])
        for column, key in enumerate(columns[1:], 1):
            picture, text = cells[(photo_name, *key)]
            put(column, row, picture, [text])
    save_picture(canvas, out, quality=80)  # the README's picture: under 300 KB at 4 x 4


def add_arguments(p):
    p.add_argument("--photos", nargs="+", default=list(DEFAULT_PHOTOS),
                   help="photos, down the left: picture files or scikit-image photos' names")
    p.add_argument("--paintings", nargs="+", default=list(DEFAULT_PAINTINGS),
                   help="paintings, along the top: picture files (or names in the shared pictures)")
    p.add_argument("--trained", nargs="*", default=list(DEFAULT_TRAINED), metavar="PAINTING=MODEL",
                   help="networks trained on a painting, shown beside its arbitrary column (default: ml5.js's "
                        "published wave and udnie where the shared folder has them)")
    p.add_argument("--size", type=positive_int, default=256, help="the photos' longer side, stylized and scored")
    p.add_argument("--out", default="bench/quality/arbitrary-grid.jpg", help="the picture")


def run(args) -> dict:
    distances = bench_arbitrary(args.photos, args.paintings, args.trained, args.out, size=args.size)
    print(f"style distance to each painting (metrics.style_distance, lower is closer), "
          f"mean over {len(args.photos)} photos at {args.size} px:")
    for name, by_photo in distances.items():
        labels = next(iter(by_photo.values()))
        means = {label: float(np.mean([d[label] for d in by_photo.values()])) for label in labels}
        print(f"  {name}: " + ", ".join(f"{DISTANCE_LABELS.get(label, label)} {mean:.2f}"
                                        for label, mean in means.items()))
    print(f"picture: {args.out}")
    return {"size": args.size, "distances": distances}
