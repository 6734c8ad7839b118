"""What the camera does to an embedded scene (datasets/animals.py) once it is composed: focus and illumination."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def defocus(image: np.ndarray, radius: float) -> np.ndarray:
    """The scene as a camera out of focus by `radius` px would see it (through 8 bits, as a photo)."""
    pixels = Image.fromarray((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return np.asarray(pixels.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def illumination_gradient(rng: np.random.Generator, size: int, strength: float) -> np.ndarray:
    """A linear brightness ramp in a random direction, spanning 1 - strength/2 .. 1 + strength/2."""
    angle = rng.uniform(0.0, 2.0 * np.pi)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    ramp = np.cos(angle) * coords[None, :] + np.sin(angle) * coords[:, None]
    return 1.0 + rng.uniform(0.0, strength) * ramp / max(np.abs(ramp).max(), 1e-6) / 2.0
