"""Depth in the browser (Hydra app over conf/app.yaml; console script ``stereo-app``; needs ``.[app]``).

python scripts/app.py [checkpoint=best.pt] [port=7860]
"""

from stereo.apps import app_main

if __name__ == "__main__":
    app_main()
