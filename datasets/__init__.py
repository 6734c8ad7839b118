"""Data layer: dataset catalogue, split lists, reading, augmentation, the embedded dataset, real-dataset prep."""
from pathlib import Path

# The checkout this code runs from: catalogue default roots and shipped config paths are relative to it.
REPO_ROOT = Path(__file__).resolve().parent.parent

# The mask value no class has (void borders, crop padding, pixels a method leaves out): losses and metrics skip it.
IGNORE_INDEX = 255
