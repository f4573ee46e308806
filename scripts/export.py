"""Export a checkpoint to ONNX (Hydra app over conf/export.yaml; the same as ``stereo-export``).

python scripts/export.py checkpoint=runs/ea/checkpoints/best.pt output=ea_psmnet.onnx
"""

from stereo.apps import export_main

if __name__ == "__main__":
    export_main()
