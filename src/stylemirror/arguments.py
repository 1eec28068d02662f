"""The argparse types the commands' flags share. Each number type carries its rule (`accept`,
`why`), so a config made in Python is checked by the same rule as the command line."""

import argparse
import math


def number(kind, accept, why):
    """An argparse type: text -> kind(text), kept where accept(value) holds, else `why`."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{why}, got {text}")
        return value
    parse.accept, parse.why = accept, why
    return parse


positive_int = number(int, lambda v: v > 0, "must be positive")
non_negative_int = number(int, lambda v: v >= 0, "must be 0 or more")
unit_float = number(float, lambda v: 0.0 <= v <= 1.0, "must be between 0 and 1")
non_negative_float = number(float, lambda v: 0.0 <= v < float("inf"), "must be a finite number >= 0")
positive_float = number(float, lambda v: math.isfinite(v) and v > 0, "must be a positive number")
weight = number(float, lambda v: math.isfinite(v) and v >= 0, "must be a number, 0 or more")
workers_count = number(int, lambda v: v >= 0, "must be 0 (decode on the main thread) or more")
# A training crop or style picture side: past this a batch of crops no longer fits a machine's memory.
crop_size = number(int, lambda v: 0 < v <= 4096, "must be between 1 and 4096 pixels")
zoom_factor = number(float, lambda v: 1.0 <= v <= 8.0, "must be between 1 and 8")


def frame_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 640x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return w, h


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def layer_list(text: str) -> tuple:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def path_text(text: str) -> str:
    """A path on the command line: never empty ("" would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty one")
    return text
