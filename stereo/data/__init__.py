"""Data: image and PFM reading, dataset discovery (registered by name), the training/evaluation dataset."""

from stereo.data import real, sceneflow  # noqa: F401  (register "sceneflow", "middlebury", "eth3d", "kitti")
from stereo.data.registry import DATASETS, Sample, dataset_samples, register_dataset

__all__ = ["DATASETS", "Sample", "dataset_samples", "register_dataset"]
