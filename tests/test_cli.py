"""Every command: bad input is one line on stderr and exit status 2, never a traceback."""

import json
import socket

import pytest

from helpers import random_net, stylemirror
from stylemirror import formats


@pytest.fixture
def broken(tmp_path):
    """Model folders broken in different ways, a picture and a non-picture."""
    for name in ("bad_json", "short_variable", "wrong_shape"):
        formats.write_ml5(random_net(), tmp_path / name)
    (tmp_path / "bad_json" / "manifest.json").write_text("{")
    (tmp_path / "short_variable" / "Variable_12").write_bytes(b"\0" * 100)
    manifest = json.loads((tmp_path / "wrong_shape" / "manifest.json").read_text())
    manifest["Variable_45"]["shape"] = [9, 9, 3, 32]
    (tmp_path / "wrong_shape" / "manifest.json").write_text(json.dumps(manifest))
    formats.write_ml5(random_net(), tmp_path / "good")
    formats.save_safetensors(random_net(arch="lite"), tmp_path / "lite.safetensors")
    from helpers import photo
    photo((20, 16)).save(tmp_path / "photo.png")
    (tmp_path / "notes.txt").write_text("hello")
    return tmp_path


CASES = [
    (["export", "{d}/bad_json", "--format", "onnx", "-o", "{d}/x.onnx"],
     "bad_json/manifest.json: not valid JSON"),
    (["export", "{d}/short_variable", "--format", "ml5", "-o", "{d}/x"], "Variable_12: 100 bytes, expected 589824"),
    (["stylize", "--model", "{d}/wrong_shape", "{d}/photo.png", "-o", "{d}/o.png"],
     "Variable_45 has shape [9, 9, 3, 32]"),
    (["stylize", "--model", "{d}/missing", "{d}/photo.png", "-o", "{d}/o.png"],
     "missing: no such model file or folder"),
    (["stylize", "--model", "{d}/good", "{d}/notes.txt", "-o", "{d}/o.png"], "notes.txt: not a readable picture"),
    (["stylize", "--model", "{d}/good", "{d}/nothing.png", "-o", "{d}/o.png"],
     "nothing.png: no such file or folder"),
    (["stylize", "--model", "{d}/good", "{d}/photo.png", "-o", "{d}/photo.png"], "refusing to overwrite the input"),
    (["export", "{d}/notes.txt", "--format", "onnx", "-o", "{d}/x.onnx"], "notes.txt: unknown model file"),
    (["models", "pull", "mona_lisa"], "unknown style 'mona_lisa'"),
    (["train", "--style", "{d}/notes.txt", "--train-path", "{d}", "--checkpoint-dir", "{d}/c"],
     "notes.txt: not a readable picture"),
    (["train", "--style", "{d}/photo.png", "--train-path", "{d}/nowhere", "--checkpoint-dir", "{d}/c"],
     "--train-path must be a folder"),
    (["train", "--style", "{d}/photo.png", "--train-path", "{d}", "--checkpoint-dir", "{d}/c", "--epochs", "0"],
     "must be positive"),
    (["bench", "stylize", "--size", "64by48"], "expected WIDTHxHEIGHT"),
    (["bench", "mirror", "--drops", "5"], "must be between 1 and 4"),
    (["bench", "mirror", "--edge-pads", "-1"], "must be 0 or more"),
    (["stylize", "--model", "{d}/good", "{d}/photo.png", "-o", "{d}/o.png", "--device", "gpu2"],
     "--device gpu2: not a device name"),
    (["train", "--style", "{d}/photo.png", "--train-path", "{d}", "--checkpoint-dir", "{d}/c", "--arch", "huge"],
     "invalid choice: 'huge'"),
    (["export", "{d}/lite.safetensors", "--format", "ml5", "-o", "{d}/lite-ml5"], "ml5.js runs only the standard network"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_is_one_clear_line(broken, args, message):
    result = stylemirror(*[a.format(d=broken) for a in args])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_mirror_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = stylemirror("mirror", "--no-browser", "--port", port, "--models", tmp_path, cwd=tmp_path,
                             timeout=120)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


def test_failed_export_keeps_the_existing_output(broken):
    (broken / "x.onnx").write_bytes(b"precious")
    result = stylemirror("export", broken / "bad_json", "--format", "onnx", "-o", broken / "x.onnx")
    assert result.returncode == 2 and (broken / "x.onnx").read_bytes() == b"precious"
