"""Any painting as a style (paintings.py): `stylemirror style`'s model file, `stylize
--style-image`, and such a model through stylize, export, tiling, video and sheet."""

import hashlib
import math
import shutil

import av
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import IMAGES, make_video, photo, stylemirror
from stylemirror import arbitrary, cli, formats, paintings, registry, sheet
from stylemirror.errors import UserError
from stylemirror.stylize import Options, Stylizer, run


def painting(name: str):
    path = IMAGES / f"{name}.jpg"
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared pictures live in the shared folder beside the repo")
    return path


@pytest.fixture(scope="module")
def wave_file(tmp_path_factory):
    return paintings.write_style_file(painting("great_wave"), tmp_path_factory.mktemp("style") / "great_wave.safetensors")


@pytest.fixture(scope="module")
def wave(wave_file):
    return registry.open_model(wave_file)


def pixels(picture) -> np.ndarray:
    return np.asarray(picture, dtype=np.int16)


def one_line_error(argv, capsys) -> str:
    """cli.main(argv) in this process: it must exit 2 with one line on stderr."""
    with pytest.raises(SystemExit) as exit_:
        cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    return err


@pytest.mark.slow  # a fresh process or three: 20 to 30 s on 2 busy cores
def test_style_writes_the_painting_s_vector(tmp_path):
    source = painting("great_wave")
    done = stylemirror("style", source, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    path = tmp_path / "great_wave.safetensors"  # the default: the painting's name, here
    meta = formats.stylemirror_metadata(path)
    assert meta["format"] == formats.SAFETENSORS_FORMAT and meta["arch"] == "arbitrary"
    assert meta["name"] == "great_wave" and meta["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    tensors = load_file(path)
    assert list(tensors) == ["style"] and tensors["style"].dtype == torch.float32
    np.testing.assert_array_equal(tensors["style"].numpy(), arbitrary.StylePredictor()(photo_of(source)))
    again = stylemirror("style", source, "-o", path)  # an earlier style file is replaced
    assert again.returncode == 0, again.stderr
    (tmp_path / "keep.safetensors").write_bytes(b"someone's weights")
    refused = stylemirror("style", source, "-o", tmp_path / "keep.safetensors")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert (tmp_path / "keep.safetensors").read_bytes() == b"someone's weights"


def photo_of(path):
    from PIL import Image
    return Image.open(path).convert("RGB")


@pytest.mark.slow  # a fresh process or three: 20 to 30 s on 2 busy cores
def test_the_file_and_style_image_paint_the_same(tmp_path, wave):
    picture = photo((96, 64))
    picture.save(tmp_path / "photo.png")
    done = stylemirror("stylize", tmp_path / "photo.png", "--style-image", painting("great_wave"),
                       "-o", tmp_path / "out.png")
    assert done.returncode == 0, done.stderr
    from_file = Stylizer(wave).picture(picture)
    difference = np.abs(pixels(photo_of(tmp_path / "out.png")) - pixels(from_file))
    assert difference.max() <= 1, difference.max()
    assert np.abs(pixels(from_file) - pixels(picture)).mean() > 10  # it did paint


def test_strength_moves_the_vector_towards_the_photo_s(wave):
    picture = photo((96, 64))
    own = Stylizer(wave.net.with_style(arbitrary.StylePredictor()(picture))).picture(picture)
    at = {s: pixels(Stylizer(wave, options=Options(strength=s)).picture(picture)) for s in (0.0, 0.5, 1.0)}
    assert np.abs(at[0.0] - pixels(own)).max() <= 1
    assert np.abs(at[0.0] - pixels(picture)).mean() > 3  # not a fade to the photo: its own style painted
    assert np.abs(at[0.0] - at[1.0]).mean() > 10
    assert np.abs(at[0.5] - at[0.0]).mean() > 3 and np.abs(at[0.5] - at[1.0]).mean() > 3


def test_a_blend_with_weight_zero_is_the_painting_alone(tmp_path):
    wave_path, udnie_path = painting("great_wave"), painting("udnie")
    alone = paintings.painting_net(str(wave_path))
    blended = paintings.painting_net(f"{wave_path}:1,{udnie_path}:0")
    torch.testing.assert_close(blended.style, alone.style, atol=0, rtol=0)
    half = paintings.painting_net(f"{wave_path}:0.5,{udnie_path}:0.5")
    assert not torch.allclose(half.style, alone.style)
    picture = photo((64, 48))
    assert np.array_equal(pixels(Stylizer(blended).picture(picture)), pixels(Stylizer(alone).picture(picture)))
    colon = tmp_path / "wave:0.5"  # a path that holds ':' and exists is a path
    shutil.copy(wave_path, colon)
    assert paintings.painting_specs(str(colon)) == [(colon, 1.0)]


@pytest.mark.parametrize("spec", ["a.jpg:-1", "a.jpg:nan", "a.jpg:inf", "a.jpg:0,b.jpg:0", ":1"])
def test_bad_blend_specs_are_one_line(spec):
    with pytest.raises(UserError) as error:
        paintings.painting_specs(spec)
    assert "\n" not in str(error.value) and spec in str(error.value)


def test_onnx_export_matches_torch(tmp_path, wave):
    import onnxruntime

    formats.export_onnx(wave, tmp_path / "wave.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "wave.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and session.get_outputs()[0].name == "stylized"
    for w, h in [(96, 64), (61, 45)]:  # dynamic height and width, odd sizes too
        x = torch.from_numpy(pixels(photo((w, h))).astype(np.float32)).permute(2, 0, 1)[None]
        with torch.no_grad():
            ours = wave(x).numpy()
        theirs = session.run(None, {"image": x.numpy()})[0]
        assert theirs.shape == ours.shape and np.abs(theirs - ours).max() <= 1.0


def test_export_writes_the_vector_again_and_refuses_ml5(tmp_path, wave_file, capsys):
    cli.main(["export", str(wave_file), "--format", "safetensors", "-o", str(tmp_path / "again.safetensors")])
    assert formats.stylemirror_metadata(tmp_path / "again.safetensors") == formats.stylemirror_metadata(wave_file)
    assert torch.equal(load_file(tmp_path / "again.safetensors")["style"], load_file(wave_file)["style"])
    err = one_line_error(["export", wave_file, "--format", "ml5", "-o", tmp_path / "ml5"], capsys)
    assert "painting" in err and not (tmp_path / "ml5").exists()


@pytest.mark.parametrize("vector, problem", [(math.nan, "NaN"), (1e38, "NaN or infinite")])
def test_a_non_finite_style_is_refused(tmp_path, vector, problem):
    """A NaN vector is refused as it is read; a huge one makes the norms infinite, which
    open_model's check of every weight refuses."""
    path = tmp_path / "bad.safetensors"
    formats.save_painting_style(np.full(arbitrary.STYLE_DIM, vector, np.float32), {"name": "bad"}, path)
    with pytest.raises(UserError, match=problem) as error:
        registry.open_model(path)
    assert "\n" not in str(error.value)


def test_a_video_keeps_its_first_frame_s_vector(tmp_path, wave, monkeypatch):
    make_video(tmp_path / "clip.mp4", frames=4, size=(64, 48), audio=False)
    calls = []
    monkeypatch.setattr(arbitrary, "predictor", lambda real=arbitrary.predictor: calls.append(1) or real())
    stylizer = Stylizer(wave, options=Options(strength=0.5, batch_size=2))
    run(stylizer, [tmp_path / "clip.mp4"], tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3)
    assert len(calls) == 1  # one vector for the whole video, in two batches


@pytest.mark.slow
def test_a_big_picture_goes_through_tiles(wave):
    """A picture over max_pixels in tiles (the arbitrary network's norms tiled as a
    TransformNet's), against one pass; 20 to 70 s on 2 busy cores (14 passes of 10 tiles)."""
    frame = pixels(photo((637, 63))).astype(np.uint8)  # odd sizes: the grid must line up at any size
    tiled = Stylizer(wave, options=Options(max_pixels=40_000, edge_pad=0)).frames([frame])[0]
    whole = Stylizer(wave, options=Options(edge_pad=0)).frames([frame])[0]
    assert np.abs(pixels(tiled) - pixels(whole)).max() <= 2


def test_sheet_lists_a_painting_s_file(tmp_path, wave_file):
    shutil.copy(wave_file, tmp_path / "great_wave.safetensors")
    labels = [label for label, _ in sheet.entries([tmp_path])]
    assert labels == ["great_wave"]


def test_style_image_errors_are_one_line(tmp_path, capsys):
    photo((32, 24)).save(tmp_path / "photo.png")
    (tmp_path / "notes.txt").write_text("not a picture")
    out = ["-o", tmp_path / "out.png"]
    assert "no such file" in one_line_error(["stylize", tmp_path / "photo.png", "--style-image", tmp_path / "gone.jpg", *out], capsys)
    assert "not a readable picture" in one_line_error(
        ["stylize", tmp_path / "photo.png", "--style-image", tmp_path / "notes.txt", *out], capsys)
    assert "exactly one" in one_line_error(["stylize", tmp_path / "photo.png", *out], capsys)
    assert "exactly one" in one_line_error(
        ["stylize", tmp_path / "photo.png", "--model", "wave", "--style-image", tmp_path / "photo.png", *out], capsys)
    assert not (tmp_path / "out.png").exists()
