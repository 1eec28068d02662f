"""What a name or path that came from outside must be before it is used: a style name that a
model file carries or a picture's file name gives (it becomes a folder in an ml5 export and a
NAME in `--style NAME:W`), and a file that is read (a regular one: a pipe or a device named
like a picture would block the reader for ever)."""

import re
import stat
from pathlib import Path

from .errors import UserError

# Path separators, and the separators of `--style a:0.7,b:0.3`; control characters.
NOT_IN_A_NAME = re.compile(r"[/\\:,\x00-\x1f\x7f]")


def style_name_problem(name) -> str | None:
    """Why `name` cannot name a style (None: it can). A plain, non-empty name: no path
    separator, no `..`, no `:` or `,` (which `--style` splits on), no control character,
    no space at either end (`--style` strips them)."""
    if not isinstance(name, str) or not name:
        return "an empty name"
    if NOT_IN_A_NAME.search(name) or ".." in name or name == ".":
        return "no /, \\, .., : or , and no control characters"
    if name != name.strip():
        return "no spaces at either end"
    return None


def check_style_name(name, where: str):
    if (problem := style_name_problem(name)) is not None:
        raise UserError(f"{where}: the style name {name!r} is not a plain name ({problem})")


def is_special(path) -> bool:
    """`path` exists and is neither a regular file nor a folder (a pipe, a socket, a device)."""
    try:
        mode = Path(path).stat().st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def regular_file(path) -> Path:
    """`path`, refused in one line when it is a pipe, socket or device: reading one waits for a
    writer that never comes. A missing path is left to the reader to report."""
    if is_special(path):
        raise UserError(f"{path}: not a regular file (a pipe, socket or device); refusing to read it")
    return Path(path)
