"""`stylemirror fetch`: resumable, checked, atomic downloads, against a local HTTP server that
serves small fake files (and can cut a response off halfway)."""

import hashlib
import io
import os
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stylemirror import data, fetch
from stylemirror.errors import UserError


class FakeMirror:
    """Files by name; `cut` cuts the next response off after that many bytes; `ranges` False
    makes it ignore Range headers, as some servers do. Records each request's Range."""

    def __init__(self):
        self.files, self.cut, self.ranges, self.seen = {}, None, True, []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = mirror.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                wanted = self.headers.get("Range")
                mirror.seen.append(wanted)
                start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted and mirror.ranges else 0
                if start >= len(body) and start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                rest = body[start:]
                if mirror.cut is not None:
                    rest, mirror.cut = rest[:mirror.cut], None
                    self.close_connection = True
                self.wfile.write(rest)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def mirror(monkeypatch):
    served = FakeMirror()
    monkeypatch.setenv(fetch.BASE_URL_VARIABLE, served.url)
    yield served
    served.server.shutdown()


def md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


BODY = os.urandom(3 * fetch.CHUNK + 12345)  # several chunks, so that a cut lands mid-file


def test_a_download_cut_off_halfway_resumes_where_it_stopped(mirror, tmp_path):
    mirror.files["w.mat"] = BODY
    mirror.cut = len(BODY) // 2
    dest = tmp_path / "w.mat"
    with pytest.raises(UserError, match="rerun the same command to resume"):
        fetch.download(f"{mirror.url}/w.mat", dest, md5(BODY))
    part = tmp_path / "w.mat.part"
    assert not dest.exists() and part.stat().st_size == len(BODY) // 2  # only the .part, never a half file
    assert fetch.download(f"{mirror.url}/w.mat", dest, md5(BODY)) == dest
    assert dest.read_bytes() == BODY and not part.exists()
    assert mirror.seen == [None, f"bytes={len(BODY) // 2}-"]  # the second request asked for the rest only
    fetch.download(f"{mirror.url}/w.mat", dest, md5(BODY))  # done: no request at all
    assert len(mirror.seen) == 2


def test_a_part_that_is_whole_already_is_checked_and_put_in_place(mirror, tmp_path):
    mirror.files["w.mat"] = BODY
    (tmp_path / "w.mat.part").write_bytes(BODY)  # killed between the last byte and the rename
    fetch.download(f"{mirror.url}/w.mat", tmp_path / "w.mat", md5(BODY))
    assert (tmp_path / "w.mat").read_bytes() == BODY and mirror.seen == [f"bytes={len(BODY)}-"]


def test_a_server_that_ignores_ranges_gives_the_whole_file_again(mirror, tmp_path):
    mirror.files["w.mat"], mirror.ranges = BODY, False
    (tmp_path / "w.mat.part").write_bytes(BODY[:1000])
    fetch.download(f"{mirror.url}/w.mat", tmp_path / "w.mat", md5(BODY))
    assert (tmp_path / "w.mat").read_bytes() == BODY


def test_a_corrupted_download_is_refused_and_not_left_in_place(mirror, tmp_path):
    damaged = bytearray(BODY)
    damaged[len(BODY) // 3] ^= 1
    mirror.files["w.mat"] = bytes(damaged)
    with pytest.raises(UserError, match="checksum mismatch"):
        fetch.download(f"{mirror.url}/w.mat", tmp_path / "w.mat", md5(BODY))
    assert list(tmp_path.iterdir()) == []


def test_fetch_vgg19_command_refuses_a_file_that_is_not_the_published_one(mirror, tmp_path):
    mirror.files[fetch.SOURCES["vgg19"].name] = b"not the VGG19 weights"
    result = subprocess.run([sys.executable, "-m", "stylemirror", "fetch", "vgg19", str(tmp_path / "w")],
                            capture_output=True, text=True, env={**os.environ, fetch.BASE_URL_VARIABLE: mirror.url})
    assert result.returncode == 2 and "checksum mismatch" in result.stderr and "Traceback" not in result.stderr
    assert fetch.SOURCES["vgg19"].md5 in result.stderr
    assert list((tmp_path / "w").iterdir()) == []
    missing = subprocess.run([sys.executable, "-m", "stylemirror", "fetch", "vgg19", str(tmp_path / "w")],
                             capture_output=True, text=True, env={**os.environ, fetch.BASE_URL_VARIABLE: mirror.url + "/no"})
    assert missing.returncode == 2 and "HTTP 404" in missing.stderr


def fake_coco_zip(names=("COCO_train2014_000000000009.jpg", "COCO_train2014_000000000025.jpg")) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("train2014/", b"")
        for i, name in enumerate(names):
            picture = io.BytesIO()
            Image.new("RGB", (64, 48), (40 * i, 90, 200)).save(picture, "JPEG")
            zf.writestr(name if "/" in name else f"train2014/{name}", picture.getvalue())
    return buffer.getvalue()


def test_fetch_coco_downloads_unzips_and_train_path_takes_it(mirror, tmp_path, monkeypatch, capsys):
    from stylemirror.cli import main

    body = fake_coco_zip()
    mirror.files["train2014.zip"] = body
    monkeypatch.setitem(fetch.SOURCES, "coco", fetch.Source(fetch.SOURCES["coco"].url, md5(body), "fake COCO"))
    (tmp_path / "coco" / ".train2014.x1y2").mkdir(parents=True)  # what a SIGKILLed extraction leaves
    main(["fetch", "coco", str(tmp_path / "coco")])
    pictures = tmp_path / "coco" / "train2014"
    assert sorted(p.name for p in data.find_images(pictures)) == ["COCO_train2014_000000000009.jpg",
                                                                  "COCO_train2014_000000000025.jpg"]
    assert os.listdir(tmp_path / "coco") == ["train2014"]  # the zip went once unzipped; no temporary left
    assert f"--train-path {pictures}" in capsys.readouterr().out
    main(["fetch", "coco", str(tmp_path / "coco")])  # done already: nothing fetched again
    assert len(mirror.seen) == 1


def test_a_zip_with_an_entry_outside_train2014_leaves_nothing(mirror, tmp_path, monkeypatch):
    body = fake_coco_zip(("train2014/a.jpg", "../evil.jpg"))
    mirror.files["train2014.zip"] = body
    monkeypatch.setitem(fetch.SOURCES, "coco", fetch.Source(fetch.SOURCES["coco"].url, md5(body), "fake COCO"))
    with pytest.raises(UserError, match="unexpected entry '../evil.jpg'"):
        fetch.fetch_coco(tmp_path / "coco")
    assert os.listdir(tmp_path / "coco") == ["train2014.zip"] and not (tmp_path / "evil.jpg").exists()
