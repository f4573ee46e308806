"""Package discovery for setuptools (the rest of the metadata is in pyproject.toml).

Every package under ``stereo/`` is found, so a new subpackage cannot be left out of the wheel; ``conf/``
stays at the top level of the checkout and ships inside the package as ``stereo.conf``. pyproject.toml
alone cannot express both (``packages.find`` does not combine with an extra mapped package).
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["stereo", "stereo.*"]), "stereo.conf"],
    package_dir={"stereo.conf": "conf"},
)
