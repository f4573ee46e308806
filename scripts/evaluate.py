"""Evaluate a checkpoint on Scene Flow's test split (Hydra app over conf/eval.yaml; console script ``stereo-eval``).

python scripts/evaluate.py checkpoint=runs/train/.../checkpoints/best.pt data.root=datasets/SceneFlow
"""

from stereo.apps import eval_main

if __name__ == "__main__":
    eval_main()
