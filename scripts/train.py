"""Train on Scene Flow (Hydra app over conf/train.yaml; the same as the console script ``stereo-train``).

python scripts/train.py model=ea_psmnet data.root=datasets/SceneFlow train.batch_size=8
torchrun --nproc_per_node=4 scripts/train.py data.root=datasets/SceneFlow     # DDP, 4 GPUs
"""

from stereo.apps import train_main

if __name__ == "__main__":
    train_main()
