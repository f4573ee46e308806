import os

import pytest
import torch

from stereo.data.synthetic import generate_sceneflow_sample

# Tests run on CPU with few threads: the suite's numbers must not depend on the machine's core count.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """A tiny generated Scene Flow sample in the official layout: 12 train pairs, 4 test pairs."""
    root = tmp_path_factory.mktemp("sceneflow") / "SceneFlow"
    generate_sceneflow_sample(root, height=64, width=128, train_pairs=12, test_pairs=4, seed=7, progress=False)
    return root
