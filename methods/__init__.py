"""Semi-supervised segmentation methods behind one interface (see methods/base.py)."""
