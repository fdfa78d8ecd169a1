"""An eSIM's activation code as a QR code in the terminal, and as an image file.

Two rows of modules per line with half-block characters, so a code of an LPA string
(version 3 or 4: 29–33 modules, 37–41 with its quiet zone) is about 40 columns wide and 20
lines high: a phone's camera reads it from a terminal at 80 columns in a normal font.

With colour, the code is drawn dark on light whatever the terminal's theme (black on white,
as cameras expect). Without colour, light modules are drawn as blocks, which reads right
on the usual dark terminal (segno's convention); ``--png``/``--svg`` are always right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: (upper module dark, lower module dark) -> the character drawing the DARK modules.
_DARK_AS_INK = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
#: The same with the LIGHT modules drawn as ink (no colour: a dark terminal's background
#: shows through as the dark modules).
_LIGHT_AS_INK = {(False, False): "█", (False, True): "▀", (True, False): "▄", (True, True): " "}

BORDER = 2


def make(lpa: str) -> Any:
    import segno

    return segno.make(lpa, error="m", micro=False)


def matrix(lpa: str, border: int = BORDER) -> list[list[bool]]:
    """The code's modules, True for dark, with ``border`` light modules around."""
    return [[bool(v) for v in row] for row in make(lpa).matrix_iter(scale=1, border=border)]


def lines(lpa: str, *, color: bool) -> list[str]:
    """The code as text lines (Rich markup when ``color``)."""
    m = matrix(lpa)
    if len(m) % 2:
        m.append([False] * len(m[0]))
    ink = _DARK_AS_INK if color else _LIGHT_AS_INK
    out = []
    for top, bottom in zip(m[0::2], m[1::2], strict=True):
        text = "".join(ink[(a, b)] for a, b in zip(top, bottom, strict=True))
        out.append(f"[black on white]{text}[/]" if color else text)
    return out


def save(lpa: str, path: Path, kind: str) -> None:
    """Write the code as an image, ``kind`` ``png`` or ``svg``, atomically (0600: it is
    as good as the eSIM itself)."""
    import io

    from esimctl.paths import atomic_write

    buf = io.BytesIO()
    make(lpa).save(buf, kind=kind, scale=8, border=4)
    atomic_write(path, buf.getvalue())
