"""How an embedded animal's fill tells its class (datasets/animals.py, `SceneParams.class_cue`).

The coat (v4 on): a two-colour pattern per class whose layout the recipe's strong view keeps (colour jitter and
grayscale change the colours, not which pixel has which); v5 mutes its colours towards grey. v2-v3's luminance
band, which the strong view's brightness and contrast jitter moves into another class's band, is kept for the
older scenes.
"""
from __future__ import annotations

import numpy as np


# A coat's layout as a function of its pattern coordinates (u, v), in periods: True where the second colour lies.
COAT_PATTERNS = {
    "stripes": lambda u, v: (u % 1.0) < 0.5,
    "spots": lambda u, v: (u % 1.0 - 0.5) ** 2 + (v % 1.0 - 0.5) ** 2 < 0.3 ** 2,
    "checks": lambda u, v: (np.floor(u) + np.floor(v)) % 2 == 1,
}
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)   # the weights of the strong view's grayscale (ITU-R 601)


def coat_fill(rng: np.random.Generator, side: int, pattern: str, period: tuple[float, float], contrast: float,
              saturation: float) -> np.ndarray:
    """A two-colour coat (HxWx3 in [0, 1]): the class's pattern at a random orientation, period and phase, in two
    random colours whose luma differs by at least `contrast`; below 1, `saturation` mutes them (each keeps a
    uniform share in [0, saturation] of its distance from its grey). Its layout is what tells the class: colour
    jitter and grayscale change the two colours but keep which pixel has which."""
    angle, scale = rng.uniform(0.0, np.pi), rng.uniform(*period)
    coords = np.arange(side, dtype=np.float32) + 0.5
    x, y = coords[None, :], coords[:, None]
    u = (np.cos(angle) * x + np.sin(angle) * y) / scale + rng.uniform()
    v = (np.cos(angle) * y - np.sin(angle) * x) / scale + rng.uniform()
    first, second = _contrasting_colours(rng, contrast, saturation)
    return np.where(COAT_PATTERNS[pattern](u, v)[..., None], second, first).astype(np.float32)


def _contrasting_colours(rng: np.random.Generator, contrast: float, saturation: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Two uniform random RGB colours whose luma differs by at least `contrast` (rejection sampling), moved
    towards their grey when `saturation` < 1. Moving along the grey axis keeps the luma, hence the contrast."""
    while True:
        first, second = rng.uniform(size=(2, 3)).astype(np.float32)
        if abs(float(LUMA @ (first - second))) >= contrast:
            break
    if saturation < 1.0:
        first, second = (_towards_grey(colour, rng.uniform(0.0, saturation)) for colour in (first, second))
    return first, second


def _towards_grey(colour: np.ndarray, share: float) -> np.ndarray:
    """The colour keeping `share` of its distance from the grey of its own luma."""
    grey = float(LUMA @ colour)
    return np.clip(grey + share * (colour - grey), 0.0, 1.0).astype(np.float32)


def luminance_fill(texture: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """The texture's luminance pattern stretched into `band` (grey, HxWx1): brightness tells the class."""
    luminance = texture.mean(axis=2, keepdims=True)
    spread = max(float(luminance.max() - luminance.min()), 1e-6)
    return band[0] + (band[1] - band[0]) * (luminance - luminance.min()) / spread
