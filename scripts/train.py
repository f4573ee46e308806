"""Train a stereo network on Scene Flow (Hydra app over conf/train.yaml; console script ``stereo-train``).

python scripts/train.py model=ea_psmnet data.root=datasets/SceneFlow train.batch_size=8
torchrun --nproc_per_node=4 scripts/train.py data.root=...       # DDP on 4 GPUs
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from stereo.config import CONF_DIR
from stereo.data.sceneflow import SceneFlowError
from stereo.train import TrainingStopped, train


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base=None)
def main(cfg: DictConfig) -> None:
    logging.getLogger("stereo").setLevel(logging.INFO)
    try:
        summary = train(cfg, HydraConfig.get().runtime.output_dir)
    except (SceneFlowError, TrainingStopped, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    val = summary["val"]
    line = f"{summary['status']} after {summary['step']} steps"
    if val:
        line += f"; val EPE {val['epe']:.3f} px, bad3 {val['bad3']:.2f}%, D1 {val['d1']:.2f}% ({val['images']} pairs)"
    print(line)
    print(f"checkpoint: {summary['checkpoint']}")
    print(f"TensorBoard: tensorboard --logdir {summary['run_dir']}/tensorboard")


if __name__ == "__main__":
    main()
