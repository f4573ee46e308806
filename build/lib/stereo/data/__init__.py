"""Data: image and PFM reading, dataset discovery (registered by name), the training/evaluation dataset."""

from stereo.data import sceneflow  # noqa: F401  (registers "sceneflow")
from stereo.data.registry import DATASETS, Sample, dataset_samples, register_dataset

__all__ = ["DATASETS", "Sample", "dataset_samples", "register_dataset"]
