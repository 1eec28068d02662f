"""`stylemirror fetch coco DIR` and `stylemirror fetch vgg19 [DIR]`: the training pictures and the
loss network's weights that the classic tutorial's setup script downloads, fetched so that a
rented machine can be preempted or cut off at any moment: downloads resume where they stopped
(HTTP Range, into NAME.part), are checked against the MD5 sums their publishers' users have
checked for years, and appear under their final name only complete and verified."""

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from . import atomic
from .errors import UserError

# Where the files come from unless STYLEMIRROR_FETCH_URL names another folder (a mirror, a
# local server in the tests) holding files of the same names.
BASE_URL_VARIABLE = "STYLEMIRROR_FETCH_URL"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    url: str
    md5: str  # as published beside the file's users (no SHA-256 is published for either)
    what: str

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def location(self) -> str:
        base = os.environ.get(BASE_URL_VARIABLE)
        return f"{base.rstrip('/')}/{self.name}" if base else self.url


SOURCES = {
    # COCO 2014 training images: 82,783 JPEGs, a 13 GB zip.
    "coco": Source("http://images.cocodataset.org/zips/train2014.zip", "0da8c0bd3d6becc4dcb32757491aca88",
                   "COCO train2014 (13 GB)"),
    # MatConvNet's VGG19, the "beta16" file (510 MB) that the original recipe reads: `layers`
    # with `weights`, `normalization` at the top. The newer file at models/ (MD5 106118b7...)
    # nests them differently and does not load.
    "vgg19": Source("http://www.vlfeat.org/matconvnet/models/beta16/imagenet-vgg-verydeep-19.mat",
                    "8ee3263992981a1d26e73b3ca028a123", "MatConvNet's imagenet-vgg-verydeep-19.mat (510 MB)"),
}


def hash_file(path: Path, digest, label: str):
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=f"checking {label}", leave=False) as bar:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))


def total_size(response, already: int) -> int | None:
    """The whole file's size: Content-Range's total on a 206, else Content-Length (+ what we had)."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return already + int(length) if length and length.isdigit() else None


def download(url: str, dest: Path, md5: str) -> Path:
    """dest, downloaded from url into dest.part (resumed from where an earlier run stopped),
    renamed into place only once its MD5 is md5. A damaged download is deleted, not kept."""
    dest = Path(dest)
    if dest.exists():
        return dest  # only ever renamed into place verified
    atomic.check_parent(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.md5()
    have = part.stat().st_size if part.exists() else 0
    if have:
        hash_file(part, digest, part.name)
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    total = None
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if have and response.status != 206:  # the server ignored the range: start over
                have, digest = 0, hashlib.md5()
            total = total_size(response, have)
            with open(part, "ab" if have else "wb") as out, \
                    tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=dest.name, dynamic_ncols=True) as bar:
                if have:
                    print(f"resuming {dest.name} at {have:,} bytes", flush=True)
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:  # 416: nothing after `have`, the part may be whole already
            raise UserError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        got = part.stat().st_size if part.exists() else 0
        raise UserError(f"download of {url} stopped at {got:,} bytes ({getattr(e, 'reason', e)}); "
                        "rerun the same command to resume") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise UserError(f"download of {url} stopped at {size:,} of {total:,} bytes; rerun the same command to resume")
    if digest.hexdigest() != md5:
        part.unlink()
        raise UserError(f"{url}: checksum mismatch (MD5 {digest.hexdigest()}, published {md5}): "
                        "the download was damaged or is another file, and was deleted; rerun to download it again")
    os.replace(part, dest)
    return dest


def unzip(archive: Path, dest: Path):
    """Extract archive's single top folder as dest, atomically (a cut-off extraction leaves
    nothing at dest); refuses members that would land outside it."""
    try:
        with zipfile.ZipFile(archive) as zf, atomic.atomic_dir(dest) as tmp:
            members = zf.infolist()
            for member in tqdm(members, unit="file", desc=f"unzipping {archive.name}", dynamic_ncols=True):
                parts = Path(member.filename).parts
                if not parts or parts[0] != dest.name or ".." in parts or Path(member.filename).is_absolute():
                    raise UserError(f"{archive}: unexpected entry {member.filename!r} (expected {dest.name}/...)")
                if len(parts) > 1 and not member.is_dir():
                    target = tmp.joinpath(*parts[1:])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, open(target, "wb") as out:
                        while chunk := src.read(CHUNK):
                            out.write(chunk)
    except zipfile.BadZipFile as e:
        raise UserError(f"{archive}: not a readable zip ({e}); delete it and rerun") from None


def fetch_coco(folder, keep_zip=False) -> Path:
    """DIR/train2014 with COCO's training pictures (the zip is deleted once extracted, unless
    keep_zip). Rerunning skips what is done."""
    folder = Path(folder)
    pictures = folder / "train2014"
    if pictures.is_dir():
        print(f"{pictures} is there already", flush=True)
        return pictures
    source = SOURCES["coco"]
    archive = download(source.location(), folder / source.name, source.md5)
    for leftover in folder.glob(f".{pictures.name}.*"):  # an extraction killed outright (SIGKILL) left its temporary
        shutil.rmtree(leftover, ignore_errors=True)
    unzip(archive, pictures)
    if not keep_zip:
        archive.unlink()
    return pictures


def fetch_vgg19(folder=None) -> Path:
    from .cache import cache_dir

    source = SOURCES["vgg19"]
    folder = Path(folder) if folder else cache_dir() / "vgg"
    return download(source.location(), folder / source.name, source.md5)
