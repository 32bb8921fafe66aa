"""The run report: one offline page per run, the run folder read back, the pick rule."""

import base64
import dataclasses
import html
import json
import re
import warnings

import cv2
import numpy as np
import pytest
from conftest import write_dataset

from cglib import files, images, report, runs, train
from cglib.__main__ import main
from cglib.config import TrainConfig, preset


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A real smoke run (init 1 epoch, adversarial 2 epochs of 2 steps), trained once."""
    root = tmp_path_factory.mktemp("smoke")
    config = preset("smoke", data=str(write_dataset(root / "data")), out=str(root / "run"),
                          image_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random VGG filters, on purpose
        train.Trainer(config).fit(progress_bar=False)
    return root / "run"


def epoch(phase, number, exported=True, **measures):
    """A line of epochs.jsonl with made-up measures."""
    name = f"{phase}-epoch{number:03d}"
    return {"phase": phase, "epoch": number, "seconds": 5.0, "images_per_second": 16.0,
            "samples": f"samples/{name}.png",
            "generator": f"generators/{name}.pt" if exported else None, "measures": measures}


def write_run(folder, records, metrics=None, grid=None, **settings):
    """A run folder as the trainer writes it, without training: config.json, a metric line per
    epoch (unless ``metrics``), ``records`` as epochs.jsonl with steps 10, 20, ..., a sample
    grid per epoch (``grid`` or a tiny one) and a stand-in file per exported generator."""
    config = TrainConfig(**{"init_epochs": 1, "init_decay_epochs": 1, "epochs": 2,
                                  "decay_epochs": 2, "description": "made up", **settings})
    files.write_json(folder / "config.json", dataclasses.asdict(config))
    lines = []
    for index, record in enumerate(records):
        record["step"] = 10 * (index + 1)
        images.write_image(folder / record["samples"], grid if grid is not None else
                           np.full((8, 16, 3), 40 * index % 256, np.uint8))
        if record["generator"]:
            files.write_bytes(folder / record["generator"], b"weights")
        lines.append({"step": record["step"], "phase": record["phase"],
                      "epoch": record["epoch"] - 1, "lr": 1e-5, "content": 1 / (index + 1),
                      "images_per_second": 16.0, "seconds": 5.0 * (index + 1)})
    (folder / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    metrics = lines if metrics is None else metrics
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    return folder


# ----------------------------------------------------------------------------------------------
# The page of a real run


def test_page_shows_every_epoch_offline_and_states_the_rule(smoke_run, tmp_path):
    page = report.render(smoke_run, tmp_path / "page.html").read_text()
    grids = sorted((smoke_run / "samples").glob("*.png"))
    assert [g.name for g in grids] == ["adversarial-epoch001.png", "adversarial-epoch002.png",
                                       "init-epoch001.png"]
    for grid in grids:
        phase, number = re.fullmatch(r"(\w+)-epoch(\d+)\.png", grid.name).groups()
        assert f"{phase} epoch {int(number)} (step " in page
        assert base64.b64encode(grid.read_bytes()).decode() in page
    assert page.count('<img class="grid"') == len(grids)
    assert page.count('src="data:image/') == len(grids) + page.count('<img class="figure"')
    assert "http://" not in page and "https://" not in page
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))
    assert "href=" not in page and "url(" not in page
    # without JavaScript the last grid is the one shown
    assert re.findall(r"<figure( hidden)?>", page) == [" hidden", " hidden", ""]
    assert html.escape(report.RULE) in page


def test_command_line_writes_the_page_and_prints_its_path(smoke_run, tmp_path, capsys):
    out = tmp_path / "pages" / "run.html"
    assert main(["report", str(smoke_run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text().startswith("<!DOCTYPE html>")


# ----------------------------------------------------------------------------------------------
# The checkpoint the rule picks, branch by branch


def picked_path(page):
    return re.search(r"--style (\S+) --out cartoons/", page).group(1)


def test_pick_by_closeness_to_the_released_generator(tmp_path):
    folder = write_run(tmp_path / "run", [
        epoch("init", 1, psnr_to_reference=40.0, ssim_to_photo=0.9),
        epoch("adversarial", 1, psnr_to_reference=20.0, edge_strength=9.0, ssim_to_photo=0.9),
        epoch("adversarial", 2, exported=False, psnr_to_reference=30.0),
        epoch("adversarial", 3, psnr_to_reference=25.0, edge_strength=1.0, ssim_to_photo=0.1),
        epoch("adversarial", 4, psnr_to_reference=21.0)])
    pick = report.pick_checkpoint(runs.read_run(folder).epochs)
    assert pick.branch == "reference"
    assert pick.epoch.generator == "generators/adversarial-epoch003.pt"
    page = report.render(folder).read_text()
    assert picked_path(page) == str(folder / "generators/adversarial-epoch003.pt")
    assert "(1) decided" in page
    assert '<tr class="marked"><td>adversarial</td><td>3</td>' in page


def test_pick_keeps_the_content_then_takes_the_clearest_edges(tmp_path):
    folder = write_run(tmp_path / "run", [
        epoch("init", 1, edge_strength=1.0, ssim_to_photo=0.6),
        epoch("init", 2, edge_strength=1.0, ssim_to_photo=0.8),  # floor: 0.9 x 0.8 = 0.72
        epoch("adversarial", 1, edge_strength=5.0, ssim_to_photo=0.75),
        epoch("adversarial", 2, edge_strength=9.0, ssim_to_photo=0.71),  # content lost
        epoch("adversarial", 3, exported=False, edge_strength=8.0, ssim_to_photo=0.9),
        epoch("adversarial", 4, edge_strength=7.0, ssim_to_photo=0.73),
        epoch("adversarial", 5, edge_strength=6.0, ssim_to_photo=0.95)])
    pick = report.pick_checkpoint(runs.read_run(folder).epochs)
    assert (pick.branch, pick.epoch.generator) == ("edges", "generators/adversarial-epoch004.pt")
    page = report.render(folder).read_text()
    assert picked_path(page) == str(folder / "generators/adversarial-epoch004.pt")
    assert "(2) decided" in page and "0.720" in page


@pytest.mark.parametrize("init_ssim", [None, 0.99])
def test_pick_falls_back_to_the_last_exported_generator(tmp_path, init_ssim):
    measures = {} if init_ssim is None else {"ssim_to_photo": init_ssim}
    folder = write_run(tmp_path / "run", [
        epoch("init", 1, **measures),
        epoch("adversarial", 1, edge_strength=9.0, ssim_to_photo=0.5),
        epoch("adversarial", 2, edge_strength=3.0, ssim_to_photo=0.6),
        epoch("adversarial", 3, exported=False, edge_strength=1.0, ssim_to_photo=0.7)])
    pick = report.pick_checkpoint(runs.read_run(folder).epochs)
    assert (pick.branch, pick.epoch.generator) == ("last", "generators/adversarial-epoch002.pt")
    page = report.render(folder).read_text()
    assert picked_path(page) == str(folder / "generators/adversarial-epoch002.pt")
    assert "(3) decided" in page


# ----------------------------------------------------------------------------------------------
# Partial runs, odd folders, large grids


def test_partial_run_without_an_adversarial_phase_renders(tmp_path):
    folder = write_run(tmp_path / "run", [epoch("init", 1, edge_strength=2.0,
                                                ssim_to_photo=0.8)])
    with (folder / "metrics.jsonl").open("a") as file:
        file.write('{"step": 11, "phase": "init", "epo')  # cut short by a killed process
    page = report.render(folder).read_text()
    assert "Nothing to pick yet" in page
    assert "init phase: 1 of 2 epochs finished" in page
    assert "adversarial phase: 0 of 4 epochs finished" in page
    assert "still running, in the init phase" in page
    assert "1 unreadable line(s) of metrics.jsonl were skipped" in page
    assert page.count('<img class="grid"') == 1


def test_strings_from_the_run_folder_are_escaped(tmp_path):
    folder = write_run(tmp_path / "run", [epoch("init", 1)],
                       description='<script>alert("x")</script>')
    page = report.render(folder).read_text()
    assert '<script>alert("x")</script>' not in page
    assert html.escape('<script>alert("x")</script>') in page


def test_large_grids_are_embedded_as_smaller_jpegs(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (256, 2048, 3), dtype=np.uint8)
    folder = write_run(tmp_path / "run", [epoch("init", 1)], grid=noise)
    assert (folder / "samples/init-epoch001.png").stat().st_size > report.GRID_BYTES
    page = report.render(folder).read_text()
    uri = re.search(r'<img class="grid"[^>]*src="data:image/jpeg;base64,([^"]+)"', page)
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(uri.group(1)), np.uint8), 1)
    assert decoded.shape[:2] == (128, report.GRID_WIDTH)


@pytest.mark.parametrize("make", ["empty folder", "missing"])
def test_a_folder_without_a_run_is_a_one_line_error(tmp_path, capsys, make):
    folder = tmp_path / "not-a-run"
    if make == "empty folder":
        folder.mkdir()
        (folder / "notes.txt").write_text("hello")
    assert main(["report", str(folder)]) != 0
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(folder) in error and "config.json" in error
    assert not (folder / "report.html").exists()


def test_a_config_that_is_not_the_settings_is_a_note_not_a_traceback(tmp_path, capsys):
    folder = write_run(tmp_path / "run", [epoch("init", 1)])
    (folder / "config.json").write_text("[1, 2]\n")
    assert main(["report", str(folder)]) == 0
    assert capsys.readouterr().out == f"{folder / 'report.html'}\n"
    page = (folder / "report.html").read_text()
    assert "The config.json holds a list, not the run&#x27;s settings; the settings are " \
           "unknown" in page


def test_a_page_that_cannot_be_written_is_named_as_given(tmp_path, capsys):
    """The name is one the file system takes (255 bytes), and the folder one that exists:
    the errors name them, never the hidden temporary the page is written to first."""
    folder = write_run(tmp_path / "run", [epoch("init", 1)])
    longest, taken = tmp_path / ("r" * 250 + ".html"), tmp_path / "taken.html"
    taken.mkdir()
    for out, fix in ((longest, "the name is too long; choose a shorter path"),
                     (taken, "it is a folder; give a file name")):
        assert main(["report", str(folder), "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"error: {fix} ({out})\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "taken.html"]
