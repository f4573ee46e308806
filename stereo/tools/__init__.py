"""Tools behind ``scripts/*.py`` (sample generation, comparisons, studies, weights export, checks): each
module has a ``main(argv)`` that speaks ``key=value`` overrides with ``--help``
(:func:`stereo.cli.parse_overrides`); ``scripts/`` runs it under the apps' error policy
(:func:`stereo.apps.run_tool`: a :class:`~stereo.errors.StereoError` is one ``error:`` line)."""

from __future__ import annotations

from dataclasses import dataclass

from stereo.config import rng


@dataclass
class AnalysisToolConfig:
    """The keys of the analysis tools that run a checkpoint over a generated benchmark's test split
    (:func:`stereo.evaluate.predictions_on_test_split`)."""

    checkpoint: str | None = None  # null = the shipped weights
    root: str = "datasets/generated-v1/272x480"
    render_pass: str = rng("clean", pattern="clean|final", expect="clean or final")
    limit: int = rng(-1, ge=-1)  # the first N test pairs; -1 = all
    device: str = "cpu"
