"""Figures and tables for the notebooks: what a reader is told next to the numbers."""

from types import SimpleNamespace

import numpy as np

from cglib import metrics, runs, viz
from cglib.config import preset


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


def test_the_schedule_in_words_is_the_configs():
    config = preset("demo", init_epochs=3, init_decay_epochs=0, epochs=5, decay_epochs=2,
                    steps_per_epoch=7, image_size=64, batch_size=2)
    assert viz.describe_schedule(config) == (
        "3 + 0 initialization and 5 + 2 adversarial epochs (constant + decaying learning rate) "
        "of 7 steps, 70 steps at 64x64, batch 2")
    init_only = preset("paper", epochs=0, decay_epochs=0)
    assert viz.describe_schedule(init_only).startswith(
        "10 + 10 initialization epochs (constant + decaying learning rate), each one pass")


def test_a_feature_map_figure_carries_its_caption():
    import torch

    features = [torch.rand(8, 4, 4), torch.rand(8, 4, 4)]
    figure = viz.show_feature_maps(features, ["photo", "cartoon"], channels=2,
                                   caption="random VGG19 filters")
    assert figure._suptitle.get_text() == "random VGG19 filters"
    assert viz.show_feature_maps(features, ["photo", "cartoon"], channels=2)._suptitle is None


def test_the_patch_score_difference_is_drawn_less_its_mean():
    images = [np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 9, np.uint8)]
    first = np.arange(16, dtype=np.float32).reshape(4, 4)
    figure = viz.show_patch_scores(images, [first + 1.0, first * 0.5], ["c", "e"],
                                   difference=True)
    drawn = figure.axes[5].images[0].get_array()  # bottom right: first minus second
    delta = (first + 1.0) - first * 0.5
    assert np.allclose(drawn, delta - delta.mean())
    assert f"mean {delta.mean():+.3f}" in figure.axes[5].get_title()


def test_players_embed_their_media(tmp_path):
    photo = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    slider = viz.compare_slider(photo, photo, width=200).data
    assert slider.count("data:image/png;base64,") == 2 and 'type="range"' in slider
    (tmp_path / "v.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    player = viz.show_video(tmp_path / "v.mp4").data
    assert player.startswith("<video controls") and "data:video/mp4;base64," in player


def test_a_measure_is_drawn_from_the_epochs_read_back(tmp_path, capsys):
    folder = runs.RunFolder(tmp_path)
    folder.log({"step": 1, "phase": "init", "epoch": 0, "content": 2.0})
    grid = folder.save_samples(np.zeros((8, 16, 3), np.uint8), "init", 1)
    for phase, number, measures in (("init", 1, {"psnr_to_reference": 20.0}),
                                    ("adversarial", 1, {}),
                                    ("adversarial", 2, {"psnr_to_reference": 23.0})):
        folder.log_epoch({"phase": phase, "epoch": number, "step": number, "samples": grid,
                          "measures": measures})
    figure = viz.plot_measure(runs.read_run(tmp_path).epochs, lines={"photos": 18.0})
    drawn = {line.get_label(): list(line.get_ydata()) for line in figure.axes[0].lines}
    assert drawn == {"init phase": [20.0], "adversarial phase": [23.0],
                     "photos (18)": [18, 18]}
    trainer = SimpleNamespace(folder=folder,
                              progress=SimpleNamespace(step=2, phase="init", epoch=1))
    viz.LiveTraining()(trainer)
    assert capsys.readouterr().out.endswith("step 2, init phase, epoch 1\n")
