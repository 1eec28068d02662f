"""Any painting as a style, with no training: its style vector from the arbitrary-style
network's predictor (arbitrary.py), as a model file (`stylemirror style`: write_style_file)
or on the fly (`stylize --style-image`: painting_net, which also blends several)."""

import math
from pathlib import Path

from . import arbitrary, atomic, formats, images
from .errors import UserError
from .paths import check_style_name

SPEC_HELP = "expected PAINTING or PAINTING:WEIGHT,PAINTING:WEIGHT,... with finite weights of 0 or more"


def painting_specs(spec: str) -> list[tuple[Path, float]]:
    """`--style-image` PAINTING or PAINTING:WEIGHT,... -> (path, weight) pairs. The text after a
    part's last ':' is its weight only where it reads as a number and the whole part is no file."""
    pairs = []
    for part in (p.strip() for p in spec.split(",")):
        path, colon, value = part.rpartition(":")
        try:
            weight = float(value) if colon and not Path(part).exists() else None
        except ValueError:
            weight = None
        if weight is None:
            path, weight = part, 1.0
        if not path or not math.isfinite(weight) or weight < 0:
            raise UserError(f"--style-image {spec}: {SPEC_HELP}")
        pairs.append((Path(path), weight))
    if sum(weight for _, weight in pairs) <= 0:
        raise UserError(f"--style-image {spec}: the weights add up to 0; give one more than 0")
    return pairs


def painting_vector(path):
    """(style vector, {"name", "sha256"}) of a painting file."""
    return picture_vector(images.open_picture(path)), images.style_record(path)


def picture_vector(picture):
    """The style vector of an opened picture (any mode)."""
    return arbitrary.predictor()(picture.convert("RGB"))


def painting_net(spec: str) -> arbitrary.StyledNet:
    """The ready network of `--style-image`: one painting's vector, or the paper's blend of
    several (weights normalised to sum 1)."""
    pairs = painting_specs(spec)
    found = [painting_vector(path) for path, _ in pairs]
    vector = arbitrary.blend([v for v, _ in found], [w for _, w in pairs])
    record = found[0][1] if len(found) == 1 else {"name": "+".join(r["name"] for _, r in found), "sha256": None}
    return arbitrary.ArbitraryNet.pretrained().with_style(vector, (record,))


def is_style_file(path) -> bool:
    """A painting's style file that `stylemirror style` wrote (told by its content)."""
    return (formats.stylemirror_metadata(path) or {}).get("arch") == "arbitrary"


def write_style_file(painting, out=None) -> Path:
    """`stylemirror style`: the painting's model file (its vector, name and SHA-256) at `out`,
    default NAME.safetensors in the current folder."""
    painting = Path(painting)
    name = images.style_name(painting)
    check_style_name(name, str(painting))
    dest = Path(out) if out is not None else Path.cwd() / f"{name}.safetensors"
    if dest.suffix != ".safetensors":
        raise UserError(f"-o {dest}: a style file ends in .safetensors")
    atomic.claim_file(dest, is_style_file, "a painting's style file", hint="choose another -o")
    vector, record = painting_vector(painting)
    formats.save_painting_style(vector, record, dest)
    return dest
