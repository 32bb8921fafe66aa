"""Figures and tables for the notebooks: what a reader is told next to the numbers."""

import numpy as np

from cglib import metrics, viz


def test_a_measure_column_says_which_way_is_better():
    page = viz.show_table({"full": {"edge_strength": (2.0, 0.5), "colour_flatness": 7.0,
                                    "train_seconds": 3.0}}).data
    assert "edge_strength<br>(higher is better)" in page
    assert "colour_flatness<br>(lower is better)" in page
    assert "<th>train_seconds</th>" in page  # not a measure of the outputs: no direction
    assert "<td>2.000 ± 0.500</td>" in page


def test_every_measure_the_trainer_records_has_a_direction():
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    recorded = metrics.epoch_measures(photos, photos, reference=photos)
    measured = metrics.measure(photos, photos, reference=photos)
    assert set(recorded) <= set(metrics.HIGHER_IS_BETTER)
    assert set(measured) - {"photos"} <= set(metrics.HIGHER_IS_BETTER)
