
import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import make_video, ml5_model, photo, random_net, stylemirror
from stylemirror import formats
from stylemirror.stylize import Options, Stylizer, run

NET = random_net(seed=7)


def stylizer(**options):
    return Stylizer(NET, "cpu", Options(**options))


DEFAULT = stylizer()


cli = stylemirror


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_picture_formats_keep_size(tmp_path, ext):
    photo((50, 34)).save(tmp_path / f"in{ext}")
    [dest] = run(stylizer(), [tmp_path / f"in{ext}"], tmp_path / f"out{ext}")
    with Image.open(dest) as out:
        assert out.size == (50, 34) and out.format == Image.open(tmp_path / f"in{ext}").format


def test_exif_orientation_is_honoured(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: a 40x30 file shows as 30x40
    photo((40, 30)).save(tmp_path / "in.jpg", exif=exif)
    run(stylizer(), [tmp_path / "in.jpg"], tmp_path / "out.jpg")
    assert Image.open(tmp_path / "out.jpg").size == (30, 40)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "I;16", "CMYK"])
def test_modes_are_handled_and_alpha_kept(tmp_path, mode):
    image = photo((24, 20)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype("<u2") * 257)
        assert image.mode == "I;16"
    if "A" in mode:
        alpha = Image.linear_gradient("L").resize(image.size)
        image.putalpha(alpha)
    ext = ".jpg" if mode == "CMYK" else ".png"
    image.save(tmp_path / f"in{ext}")
    run(stylizer(), [tmp_path / f"in{ext}"], tmp_path / "out.png")
    out = Image.open(tmp_path / "out.png")
    assert out.size == (24, 20)
    # What the network sees is the picture in 8-bit RGB (16-bit scaled down, not clipped).
    seen, _ = stylizer().prepare(Image.open(tmp_path / f"in{ext}"))
    if mode == "I;16":
        want = np.asarray(photo((24, 20)).convert("L").convert("RGB"))
    else:
        want = np.asarray(Image.open(tmp_path / f"in{ext}").convert("RGB"))
    assert np.abs(seen.astype(int) - want.astype(int)).max() <= 1
    if "A" in mode:
        assert out.mode == "RGBA"
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(image.getchannel("A")))
    else:
        assert out.mode == "RGB"


def test_max_size_downscales(tmp_path):
    photo((120, 60)).save(tmp_path / "in.png")
    run(stylizer(max_size=40), [tmp_path / "in.png"], tmp_path / "out.png")
    assert Image.open(tmp_path / "out.png").size == (40, 20)


def test_strength_zero_is_the_original_and_half_is_between():
    picture = photo((32, 24))
    original = np.asarray(picture).astype(int)
    assert np.abs(np.asarray(stylizer(strength=0.0).picture(picture)).astype(int) - original).max() <= 1
    full = np.asarray(stylizer().picture(picture)).astype(int)
    half = np.asarray(stylizer(strength=0.5).picture(picture)).astype(int)
    assert np.abs(half - (full + original) / 2).max() <= 1


def test_preserve_colors_keeps_chroma_and_takes_stylized_luma():
    picture = photo((32, 24))
    full = stylizer().picture(picture)
    kept = stylizer(preserve_colors=True).picture(picture)
    ycc = lambda im: np.asarray(im.convert("YCbCr")).astype(int)  # noqa: E731
    # Where nothing clipped, the chroma is the original's and the luma the stylized one's.
    ok = (np.asarray(kept) > 2).all(-1) & (np.asarray(kept) < 253).all(-1)
    assert ok.mean() > 0.5
    assert np.abs(ycc(kept)[..., 1:] - ycc(picture)[..., 1:])[ok].max() <= 2
    assert np.abs(ycc(kept)[..., 0] - ycc(full)[..., 0])[ok].max() <= 2


def test_folder_is_mirrored(tmp_path):
    (tmp_path / "album" / "trip").mkdir(parents=True)
    photo((20, 16)).save(tmp_path / "album" / "a.png")
    photo((20, 16)).save(tmp_path / "album" / "b.png")
    photo((18, 16)).save(tmp_path / "album" / "trip" / "c.jpg")
    (tmp_path / "album" / "notes.txt").write_text("not a picture")
    run(stylizer(batch_size=2), [tmp_path / "album"], tmp_path / "out")
    found = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert found == ["album/a.png", "album/b.png", "album/trip/c.jpg"]


@pytest.mark.slow
def test_batched_equals_one_by_one():
    pictures = [photo((20, 16)), photo((20, 16)).rotate(180), photo((16, 20))]
    batched = stylizer(batch_size=3).pictures(pictures)
    single = [stylizer(batch_size=1).picture(p) for p in pictures]
    for a, b in zip(batched, single):
        assert np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).max() <= 1


def test_video_keeps_frame_rate_frames_and_audio(tmp_path):
    make_video(tmp_path / "in.mp4")
    run(stylizer(batch_size=5), [tmp_path / "in.mp4"], tmp_path / "out.mp4")
    with av.open(str(tmp_path / "in.mp4")) as src, av.open(str(tmp_path / "out.mp4")) as out:
        assert out.streams.video[0].average_rate == src.streams.video[0].average_rate
        frames = [f.to_ndarray(format="rgb24") for f in out.decode(video=0)]
        assert len(frames) == 12 and frames[0].shape == (48, 64, 3)
        assert len(out.streams.audio) == 1
        assert out.streams.audio[0].codec_context.name == "aac"
    with av.open(str(tmp_path / "in.mp4")) as src, av.open(str(tmp_path / "out.mp4")) as out:
        audio_in = [bytes(p) for p in src.demux(audio=0) if p.size]
        audio_out = [bytes(p) for p in out.demux(audio=0) if p.size]
        assert audio_out == audio_in and len(audio_in) > 5  # copied, not re-encoded
    # The frames were stylized: they are far from the original's.
    assert np.abs(frames[0].astype(int) - np.asarray(photo((64, 48))).astype(int)).mean() > 10


def video_frames(path):
    with av.open(str(path)) as v:
        return np.stack([f.to_ndarray(format="rgb24") for f in v.decode(video=0)]).astype(float)


@pytest.mark.slow
def test_a_still_noisy_video_is_steadied_unless_told_not_to(tmp_path):
    make_video(tmp_path / "still.mp4", frames=16, audio=False, move=0, noise=4)
    for steady in (True, False):
        run(stylizer(steady=steady), [tmp_path / "still.mp4"], tmp_path / f"steady-{steady}.mp4")
    spread = {steady: video_frames(tmp_path / f"steady-{steady}.mp4")[4:].std(axis=0).mean() for steady in (True, False)}
    assert spread[True] < 0.6 * spread[False]
    formats.save_safetensors(NET, tmp_path / "net.safetensors")
    result = cli("stylize", "--model", tmp_path / "net.safetensors", "--no-steady", tmp_path / "still.mp4",
                 "-o", tmp_path / "cli.mp4")
    assert result.returncode == 0, result.stderr
    assert np.abs(video_frames(tmp_path / "cli.mp4") - video_frames(tmp_path / "steady-False.mp4")).mean() < 1


def test_newcomer_command(tmp_path):
    """README: `stylemirror stylize --model ../shared/ml5-models/wave photo.jpg -o out.jpg`."""
    photo((90, 61)).save(tmp_path / "photo.jpg")
    result = cli("stylize", "--model", ml5_model("wave"), tmp_path / "photo.jpg", "-o", tmp_path / "out.jpg")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out.jpg").size == (90, 61)


@pytest.mark.parametrize("make_bad,message", [
    (lambda d: None, "missing.jpg: no such file"),
    (lambda d: (d / "missing.jpg").write_text("hello"), "missing.jpg: not a readable picture"),
])
def test_bad_picture_is_one_line_exit_2(tmp_path, make_bad, message):
    formats.write_ml5(NET, tmp_path / "m")
    make_bad(tmp_path)
    result = cli("stylize", "--model", tmp_path / "m", tmp_path / "missing.jpg", "-o", tmp_path / "o.jpg")
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "o.jpg").exists()


def test_video_without_video_stream_is_one_line_exit_2(tmp_path):
    formats.write_ml5(NET, tmp_path / "m")
    with av.open(str(tmp_path / "sound.mp4"), "w") as out:
        sound = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        frame.sample_rate = 16000
        for packet in list(sound.encode(frame)) + list(sound.encode()):
            out.mux(packet)
    result = cli("stylize", "--model", tmp_path / "m", tmp_path / "sound.mp4", "-o", tmp_path / "o.mp4")
    assert result.returncode == 2 and "has no video stream" in result.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_failed_run_keeps_existing_output(tmp_path):
    (tmp_path / "out.png").write_bytes(b"precious")
    (tmp_path / "in.png").write_text("not a picture")
    result = cli("stylize", "--model", "wave", tmp_path / "in.png", "-o", tmp_path / "out.png")
    assert result.returncode == 2
    assert (tmp_path / "out.png").read_bytes() == b"precious"


@pytest.mark.parametrize("flag", [["--strength", "1.5"], ["--max-size", "-3"], ["--batch-size", "0"]])
def test_impossible_flag_values_exit_2(tmp_path, flag):
    result = cli("stylize", "--model", "wave", "x.png", "-o", "y.png", *flag)
    assert result.returncode == 2 and "Traceback" not in result.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w=st.integers(1, 40), h=st.integers(1, 40), mode=st.sampled_from(["RGB", "L", "RGBA", "P"]))
def test_any_size_and_mode_gives_the_same_size(w, h, mode):
    image = Image.fromarray(np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    out = DEFAULT.picture(image)
    assert out.size == (w, h)
