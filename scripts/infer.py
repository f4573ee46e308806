"""Disparity for your own pairs (Hydra app over conf/infer.yaml; console script ``stereo-infer``).

python scripts/infer.py checkpoint=best.pt left=pairs/left right=pairs/right output_dir=out
"""

from stereo.apps import infer_main

if __name__ == "__main__":
    infer_main()
