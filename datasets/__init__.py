"""Data layer: dataset catalogue, split lists, reading, augmentation, the embedded dataset, real-dataset prep."""
