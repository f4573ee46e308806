"""Data: PFM I/O, image reading, Scene Flow discovery and datasets, the generated sample."""
