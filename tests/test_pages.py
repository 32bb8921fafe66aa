"""Executed notebooks as HTML pages that read offline: MathJax linked relatively, widgets drawn
from their saved state, nothing fetched from the internet."""

import re

import nbformat
import pytest

from cglib import pages

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJ"
       "RU5ErkJggg==")


def model(name, **state):
    return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}


def view(model_id, fallback="a widget"):
    return nbformat.v4.new_output("display_data", data={
        pages.WIDGET_VIEW: {"model_id": model_id, "version_major": 2, "version_minor": 0},
        "text/plain": fallback})


def notebook_with_widgets():
    """An explorer (sliders and a menu over an output area holding a figure), a finished
    progress bar, and a widget whose state was not saved."""
    state = {
        "explorer": model("VBoxModel", children=["IPY_MODEL_controls", "IPY_MODEL_output"]),
        "controls": model("HBoxModel", children=["IPY_MODEL_low", "IPY_MODEL_blur"]),
        "low": model("IntSliderModel", description="Canny low", min=0, max=500, step=10,
                     value=120),
        "blur": model("DropdownModel", description="blur", _options_labels=["gaussian", "box"],
                      index=1),
        "output": model("OutputModel", outputs=[
            {"output_type": "display_data", "data": {"image/png": PNG, "text/plain": "fig"}}]),
        "bar": model("HBoxModel", children=["IPY_MODEL_label", "IPY_MODEL_progress"]),
        "label": model("HTMLModel", value="full, seed 2"),
        "progress": model("FloatProgressModel", value=24.0, max=24.0),
    }
    book = nbformat.v4.new_notebook()
    book.metadata["widgets"] = {pages.WIDGET_STATE: {"state": state, "version_major": 2,
                                                     "version_minor": 0}}
    book.cells = [
        nbformat.v4.new_markdown_cell("The loss: $\\mathcal{L} = a + w\\,b$"),
        nbformat.v4.new_code_cell("explorer", outputs=[view("explorer")]),
        nbformat.v4.new_code_cell("bar", outputs=[view("bar"), view("lost", "Lost(...)")]),
    ]
    return book


def test_widgets_are_drawn_from_their_saved_state():
    book = notebook_with_widgets()
    assert pages.draw_widgets(book) == 3
    assert "widgets" not in book.metadata
    explorer = book.cells[1].outputs[0].data["text/html"]
    assert re.search(r"Canny low <input type='range' disabled min='0' max='500' step='10' "
                     r"value='120'> 120", explorer)
    assert "<option>gaussian</option><option selected>box</option>" in explorer
    assert f"<img alt='a figure' src='data:image/png;base64,{PNG}'>" in explorer
    bar, lost = (output.data for output in book.cells[2].outputs)
    assert "full, seed 2" in bar["text/html"]
    assert "<progress value='24.0' max='24.0'" in bar["text/html"]
    assert lost == {"text/plain": "Lost(...)"}  # no state saved: its text fallback stays


def test_the_page_loads_mathjax_beside_it_and_nothing_from_the_internet(tmp_path):
    executed = tmp_path / "01_example.ipynb"
    nbformat.write(notebook_with_widgets(), executed)
    page = pages.export_html(executed).read_text(encoding="utf-8")
    sources = re.findall(r"<script[^>]*\bsrc=\"([^\"]*)\"", page)
    assert sources == [f"mathjax/MathJax.js?config={pages.MATHJAX_CONFIG}"]
    assert "html-manager" not in page and "require.min.js" not in page
    assert pages.WIDGET_VIEW not in page  # no widget left for a manager to draw
    assert re.search(r"<progress max=.24.0. [^>]*value=.24.0.", page)
    assert "$\\mathcal{L} = a + w\\,b$" in page  # for MathJax to typeset


def test_mathjax_is_copied_from_the_installed_package(tmp_path):
    pytest.importorskip("jupyter_server_mathjax",
                        reason="the offline pages' MathJax comes from jupyter-server-mathjax "
                               "(the dev extra); not installed here")
    copied = pages.copy_mathjax(tmp_path)
    assert copied == tmp_path / "mathjax"
    config = pages.MATHJAX_CONFIG.split(",")
    assert (copied / "MathJax.js").is_file()
    assert all((copied / "config" / f"{name}.js").is_file() for name in config)
    assert (copied / "fonts" / "HTML-CSS" / "STIX-Web").is_dir()


def test_without_mathjax_the_error_names_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "jupyter_server_mathjax", None)
    with pytest.raises(RuntimeError, match="pip install jupyter-server-mathjax"):
        pages.mathjax_source()
