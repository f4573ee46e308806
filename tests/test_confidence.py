"""Sparsification curves: checked on rankings whose curves are known."""

import numpy as np
import pytest

from stereo.confidence import sparsification


def test_perfect_random_and_inverted_confidences():
    rng = np.random.default_rng(0)
    err = rng.exponential(size=10000)
    perfect = sparsification(err, -err)
    assert perfect["confidence"] == perfect["oracle"] and perfect["relative"] == pytest.approx(0)
    assert perfect["confidence"][-1] < perfect["confidence"][0] == pytest.approx(err.mean())
    chance = sparsification(err, rng.random(err.size))
    assert chance["relative"] == pytest.approx(1, abs=0.1)
    worst = sparsification(err, err)  # most confident where the error is largest
    assert worst["relative"] > 1.5 and worst["confidence"][-1] > err.mean()
    # The area of a flat curve over kept fractions 1.0 .. 0.1 is the mean error times 0.9.
    assert chance["auc_random"] == pytest.approx(err.mean() * 0.9)


def test_sizes_must_match():
    with pytest.raises(ValueError, match="one size"):
        sparsification(np.ones(3), np.ones(4))


def test_shipped_confidence_beats_chance_on_generated_pairs(sample_root):
    from stereo.confidence import measure

    r = measure(None, sample_root, "clean", limit=2, max_disp=32, progress=False)
    assert r["pairs"] == 2 and r["auc_oracle"] <= r["auc"] < r["auc_random"] and r["relative"] < 0.8
