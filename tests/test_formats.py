import json
import pickle

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import ml5_model, random_net
from stylemirror import formats
from stylemirror.errors import UserError


def files_of(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_ml5_safetensors_ml5_is_bit_exact(tmp_path):
    src = ml5_model("wave")
    net = formats.read_ml5(src)
    formats.save_safetensors(net, tmp_path / "wave.safetensors")
    formats.write_ml5(formats.read_model(tmp_path / "wave.safetensors"), tmp_path / "again")
    original, again = files_of(src), files_of(tmp_path / "again")
    for name, data in original.items():
        if name.startswith("Variable"):
            assert again[name] == data, name
    assert json.loads(again["manifest.json"]) == json.loads(original["manifest.json"])


def test_onnx_matches_torch_on_any_size(tmp_path):
    net = random_net(seed=5)
    formats.write_ml5(net, tmp_path / "m")
    formats.export_onnx(formats.read_model(tmp_path / "m"), tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    for shape in [(1, 3, 48, 64), (2, 3, 37, 29), (1, 3, 5, 3)]:
        x = torch.rand(*shape) * 255
        with torch.no_grad():
            want = net(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=0.05)  # a twentieth of a level


def test_safetensors_carries_metadata_and_loads(tmp_path):
    net = random_net(seed=1)
    formats.save_safetensors(net, tmp_path / "m.safetensors", {"style": "udnie.jpg"})
    from safetensors import safe_open
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as f:
        assert f.metadata()["format"] == formats.SAFETENSORS_FORMAT
        assert f.metadata()["style"] == "udnie.jpg"
        assert f.metadata()["decoder"] == "deconv4"  # the resize decoder, stored as the transposed conv it is
        assert f.metadata()["encoder"] == "conv5"  # the blur encoder, stored as the 5x5 conv it is
    loaded = formats.read_model(tmp_path / "m.safetensors")
    for (k, a), b in zip(net.plain().state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


class Exploit:
    def __reduce__(self):
        return (exec, ("open('/tmp/stylemirror-pwned', 'w').write('x')",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"conv1.conv.weight": Exploit()}))
    with pytest.raises(UserError, match="evil.pt: refused"):
        formats.read_model(path)
    import os
    assert not os.path.exists("/tmp/stylemirror-pwned")


@pytest.mark.parametrize("encoder", ["conv3", "conv5"])
@pytest.mark.parametrize("decoder", ["resize", "deconv4", "deconv3"])
def test_plain_state_dict_pt_loads(tmp_path, decoder, encoder):
    """A state dict of any decoder and plain encoder is recognised by its shapes and computes
    the same function (a "blur" encoder's 3x3 weights read as "conv3": formats.py says so)."""
    net = random_net(seed=2, decoder=decoder, encoder=encoder)
    torch.save(net.state_dict(), tmp_path / "m.pt")
    loaded = formats.read_model(tmp_path / "m.pt")
    assert (loaded.decoder, loaded.encoder) == (decoder, encoder)
    x = torch.rand(1, 3, 21, 30) * 255
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


@pytest.mark.parametrize("encoder,down", [("blur", 5), ("conv5", 5), ("conv3", 3)])
@pytest.mark.parametrize("decoder,kernel", [("resize", 4), ("deconv4", 4), ("deconv3", 3)])
def test_every_decoder_round_trips_through_ml5_and_safetensors(tmp_path, decoder, kernel, encoder, down):
    """Files hold the decoder as a transposed conv (the resize decoder as its 4x4 kernel) and
    the encoder as plain convs (the blur encoder as its 5x5 kernel): ml5 -> safetensors -> ml5
    is bit-exact, and the function is kept."""
    net = random_net(seed=8, decoder=decoder, encoder=encoder)
    formats.write_ml5(net, tmp_path / "a")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["Variable_39"]["shape"] == [kernel, kernel, 64, 128]
    assert manifest["Variable_3"]["shape"] == [down, down, 32, 64] and manifest["Variable_6"]["shape"][0] == down
    loaded = formats.read_model(tmp_path / "a")
    formats.save_safetensors(loaded, tmp_path / "a.safetensors")
    formats.write_ml5(formats.read_model(tmp_path / "a.safetensors"), tmp_path / "b")
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    x = torch.rand(2, 3, 37, 29) * 255
    with torch.no_grad():
        assert (loaded(x) - net(x)).abs().max() < 0.01


@pytest.fixture
def model_copy(tmp_path):
    dest = tmp_path / "model"
    formats.write_ml5(random_net(), dest)
    return dest


def edit_manifest(folder, change):
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("breakage,message", [
    (lambda d: (d / "manifest.json").write_text("{not json"), r"manifest.json: not valid JSON"),
    (lambda d: (d / "manifest.json").unlink(), r"manifest.json: missing"),
    (lambda d: edit_manifest(d, lambda m: m.pop("Variable_7")), r"manifest.json: variable Variable_7 is missing"),
    (lambda d: edit_manifest(d, lambda m: m["Variable_3"].update(shape=[3, 3, 64, 32])),
     r"Variable_3 has shape \[3, 3, 64, 32\], expected \[3, 3, 32, 64\]"),
    (lambda d: (d / "Variable_5").write_bytes(b"\0" * 12), r"Variable_5: 12 bytes, expected 256"),
    (lambda d: (d / "Variable_9").unlink(), r"Variable_9: cannot read variable Variable_9"),
    (lambda d: edit_manifest(d, lambda m: m["Variable"].update(filename="../../etc/passwd")), r"outside the model folder"),
    (lambda d: (d / "Variable_1").write_bytes(np.full(32, np.nan, "<f4").tobytes()), r"NaN"),
])
def test_broken_ml5_folder_fails_with_one_clear_line(model_copy, breakage, message):
    breakage(model_copy)
    with pytest.raises(UserError, match=message) as info:
        formats.read_ml5(model_copy)
    assert "\n" not in str(info.value) and str(model_copy) in str(info.value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_reader_never_crashes_on_damaged_files(model_copy, data):
    """Random truncations of any file and random manifests: a UserError or a valid model."""
    names = sorted(p.name for p in model_copy.iterdir())
    name = data.draw(st.sampled_from(names))
    original = (model_copy / name).read_bytes()
    if name == "manifest.json" and data.draw(st.booleans()):
        damaged = json.dumps(data.draw(st.recursive(
            st.none() | st.integers() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
            max_leaves=8))).encode()
    else:
        damaged = original[: data.draw(st.integers(0, max(0, len(original) - 1)))]
    (model_copy / name).write_bytes(damaged)
    try:
        formats.read_ml5(model_copy)
    except UserError:
        pass
    finally:
        (model_copy / name).write_bytes(original)


def test_failed_write_keeps_existing_model(tmp_path, monkeypatch):
    dest = tmp_path / "model"
    formats.write_ml5(random_net(seed=1), dest)
    before = files_of(dest)

    def explode(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(formats, "_to_ml5", explode)
    with pytest.raises(OSError):
        formats.write_ml5(random_net(seed=2), dest)
    assert files_of(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary left behind


@pytest.mark.slow
def test_cli_export_chain_ml5_safetensors_ml5_onnx(tmp_path):
    import subprocess
    import sys
    src = ml5_model("udnie")
    run = lambda *a: subprocess.run([sys.executable, "-m", "stylemirror", "export", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True)
    assert run(src, "--format", "safetensors", "-o", tmp_path / "u.safetensors").returncode == 0
    assert run(tmp_path / "u.safetensors", "--format", "ml5", "-o", tmp_path / "u").returncode == 0
    result = run(tmp_path / "u", "--format", "onnx", "-o", tmp_path / "u.onnx")
    assert result.returncode == 0, result.stderr
    for name in json.loads((src / "manifest.json").read_text()):
        assert (tmp_path / "u" / name).read_bytes() == (src / name).read_bytes()
    x = torch.rand(1, 3, 30, 41) * 255
    with torch.no_grad():
        want = formats.read_ml5(src)(x).numpy()
    got = ort.InferenceSession(str(tmp_path / "u.onnx")).run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=0.05)


def test_lite_network_round_trips_through_safetensors_and_onnx(tmp_path):
    net = random_net(seed=3, arch="lite")
    formats.save_safetensors(net, tmp_path / "lite.safetensors")
    loaded = formats.read_model(tmp_path / "lite.safetensors")
    assert loaded.arch == "lite" and (loaded.widths, loaded.blocks) == ((16, 32, 64), 3)
    x = torch.rand(1, 3, 37, 29) * 255
    with torch.no_grad():
        want = net(x)
        assert torch.equal(loaded(x), want)
    formats.export_onnx(loaded, tmp_path / "lite.onnx")
    got = ort.InferenceSession(str(tmp_path / "lite.onnx")).run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, want.numpy(), atol=0.05)


def test_ml5_export_of_a_lite_network_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match="ml5.js runs only the standard network, and this one is lite"):
        formats.write_ml5(random_net(arch="lite"), tmp_path / "ml5")
    assert not (tmp_path / "ml5").exists()
