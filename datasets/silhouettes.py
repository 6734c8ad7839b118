"""The class shapes of the embedded dataset: animal silhouettes of the `animal-shape-mnist` package.

The package ships them as gzip'd pickles. A pickle may run code on load, so the unpickler here resolves
only what a plain ndarray needs, and the package is located without importing (running) it.
"""
from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np

from datasets.errors import DataError

# Label order of the package's label file (alphabetical; checked by eye against the silhouettes).
PACKAGE_ANIMALS = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
SILHOUETTE_DIR = ("data", "Animal Shape")
SILHOUETTE_FILES = ("animal_data_version_3.gz", "animal_label_version_3.gz")


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct   # numpy >= 2 moved it
    except ImportError:
        from numpy.core.multiarray import _reconstruct    # numpy 1.x
    return _reconstruct


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: any other global is refused before it can be called."""
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)


def load_numpy_pickle(path: str | Path) -> np.ndarray:
    """Reads a gzip'd pickle that must hold a single numpy array; anything else raises DataError."""
    try:
        with gzip.open(path, "rb") as f:
            obj = NumpyOnlyUnpickler(f).load()
    except FileNotFoundError:
        raise DataError(f"silhouette file missing: {path}") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"cannot read {path} as a pickled numpy array: {e}") from None
    if not isinstance(obj, np.ndarray) or obj.dtype == object:
        raise DataError(f"{path} does not hold a numeric numpy array (found {type(obj).__name__})")
    return obj


def silhouette_dir() -> Path:
    spec = importlib.util.find_spec("animal_shape_mnist")   # locates the package without running its code
    if spec is None or not spec.submodule_search_locations:
        raise DataError("package animal-shape-mnist is not installed (pip install animal-shape-mnist==0.39)")
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*SILHOUETTE_DIR)


def load_silhouettes(directory: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns (shapes uint8[N,28,28], labels int[N]) with labels indexing PACKAGE_ANIMALS."""
    directory = silhouette_dir() if directory is None else Path(directory)
    shapes, labels = (load_numpy_pickle(directory / name) for name in SILHOUETTE_FILES)
    if shapes.ndim != 3 or shapes.dtype != np.uint8 or labels.shape != shapes.shape[:1] \
            or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"unexpected silhouette arrays in {directory}: shapes {shapes.dtype}{list(shapes.shape)},"
                        f" labels {labels.dtype}{list(labels.shape)}")
    found = sorted(set(np.unique(labels).tolist()))
    if found != list(range(len(PACKAGE_ANIMALS))):
        raise DataError(f"unexpected silhouette labels in {directory}: {found}")
    return shapes, labels
