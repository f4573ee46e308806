"""Cost-volume stereo depth estimation with efficient attention.

The Python API (:mod:`stereo.api`): ``stereo.load_model()`` and ``model.predict(left, right)``;
``stereo.rectify(left, right, calib)`` undistorts and rectifies a raw pair (:mod:`stereo.rectification`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Prediction", "StereoModel", "load_model", "rectify"]


def __getattr__(name: str) -> Any:  # the API is imported on first use: `import stereo` stays light
    if name == "rectify":
        from stereo.rectification import rectify

        return rectify
    if name in __all__:
        from stereo import api

        return getattr(api, name)
    raise AttributeError(f"module 'stereo' has no attribute {name!r}")
