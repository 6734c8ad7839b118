"""The colour map of palettized masks (shared by the catalogue and the embedded generator)."""
from __future__ import annotations


def voc_palette(n: int = 256) -> list[int]:
    """The Pascal VOC colour map (bit-interleaved), flat [r0, g0, b0, r1, ...] as PIL's putpalette wants."""
    palette = []
    for label in range(n):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette
