"""Executed notebooks as HTML pages that read offline, from a copied folder or a CI artifact.

nbconvert's pages load MathJax, require.js and the widget manager from the internet. Here the
maths is typeset by the MathJax that the ``jupyter-server-mathjax`` package ships (installed
with the project's ``dev`` extra), copied once into the series folder and linked relatively;
the widgets are drawn from the state saved in the notebook as plain HTML (a progress bar as
``<progress>``, a slider as a disabled range input, an output area as its images and text),
so a saved widget shows without a widget manager; it does not react, as none does without a
kernel.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import Any

from cglib import files

MATHJAX_FOLDER = "mathjax"
#: The MathJax 2 configuration nbconvert's maths settings are written for, as shipped.
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

# nbconvert's lab page without the two scripts it fetches from the internet: require.js
# (needed only by the widget manager) and the widget manager itself; MathJax told to use the
# web font the package ships (STIX-Web) rather than look for its TeX fonts.
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web",
                                 imageFont: null}});
</script>
{{ super() }}
{%- endblock html_head_js_mathjax -%}
"""


def mathjax_source() -> Path:
    """The MathJax folder that ``jupyter-server-mathjax`` installs. Raises RuntimeError naming
    the package to install when it is missing."""
    try:
        import jupyter_server_mathjax
    except ModuleNotFoundError:
        raise RuntimeError(
            "the offline HTML pages need MathJax from the package jupyter-server-mathjax; "
            "install it with `pip install jupyter-server-mathjax` (or `pip install -e .[dev]`)"
        ) from None
    return Path(jupyter_server_mathjax.__file__).parent / "static"


def copy_mathjax(folder: Path) -> Path:
    """MathJax copied into ``folder/mathjax`` (once: an existing copy is kept)."""
    target = folder / MATHJAX_FOLDER
    if not (target / "MathJax.js").exists():
        shutil.copytree(mathjax_source(), target, dirs_exist_ok=True)
    return target


def export_html(executed: Path, page: Path | None = None) -> Path:
    """``executed`` (an executed notebook) as an HTML page, by default beside it, that loads
    nothing from the internet: MathJax from ``mathjax/`` beside the page (copied there by
    :func:`copy_mathjax`), the widgets drawn from their saved state. Returns the page."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    page = page or executed.with_suffix(".html")
    book = nbformat.read(executed, as_version=4)
    draw_widgets(book)
    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"offline.html.j2": _TEMPLATE})],
        template_file="offline.html.j2",
        mathjax_url=f"{MATHJAX_FOLDER}/MathJax.js?config={MATHJAX_CONFIG}",
    )
    body, _ = exporter.from_notebook_node(book, resources={"metadata": {"name": executed.stem}})
    return files.write_bytes(page, body.encode(), durable=False)


def draw_widgets(book: Any) -> int:
    """Replace each widget output of the notebook ``book`` (an nbformat node, changed in
    place) by HTML drawn from the widget state saved in its metadata, and drop that state;
    returns how many outputs were replaced. A widget whose state was not saved keeps its
    plain-text fallback."""
    saved = book.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    replaced = 0
    for cell in book.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            drawn = widget_html(saved, view["model_id"])
            fallback = output["data"].get("text/plain", "")
            output["data"] = {"text/html": drawn} if drawn else {"text/plain": fallback}
            replaced += 1
    return replaced


def widget_html(models: dict[str, dict], model_id: str) -> str:
    """One widget (and its children) of the saved state ``models`` (model id -> ``{"model_name",
    "state"}``) as static HTML; empty for a model that is not there or not drawn."""
    model = models.get(model_id)
    if model is None:
        return ""
    name, state = model["model_name"], model["state"]
    label = html.escape(str(state.get("description", "")))
    if "children" in state:
        direction = "row" if name == "HBoxModel" else "column"
        inner = "".join(widget_html(models, child.removeprefix("IPY_MODEL_"))
                        for child in state["children"])
        return (f"<div style='display:flex;flex-direction:{direction};gap:6px 12px;"
                f"flex-wrap:wrap;align-items:center'>{inner}</div>")
    if name == "OutputModel":
        return "".join(_output_html(output) for output in state.get("outputs", []))
    if name in ("FloatProgressModel", "IntProgressModel"):
        return (f"{label}<progress value='{state.get('value', 0)}' "
                f"max='{state.get('max', 100)}' style='width:20em'></progress>")
    if name.endswith("SliderModel"):
        return (f"<label>{label} <input type='range' disabled min='{state.get('min', 0)}' "
                f"max='{state.get('max', 100)}' step='{state.get('step', 1)}' "
                f"value='{state.get('value', 0)}'> {state.get('value', '')}</label>")
    if name == "DropdownModel":
        options = state.get("_options_labels", [])
        chosen = state.get("index")
        items = "".join(f"<option{' selected' if i == chosen else ''}>{html.escape(str(o))}"
                        "</option>" for i, o in enumerate(options))
        return f"<label>{label} <select disabled>{items}</select></label>"
    if name == "CheckboxModel":
        checked = " checked" if state.get("value") else ""
        return f"<label><input type='checkbox' disabled{checked}> {label}</label>"
    if name in ("ButtonModel", "FileUploadModel"):
        return f"<button disabled>{label}</button>"
    if name == "HTMLModel":
        return str(state.get("value", ""))
    if name == "LabelModel":
        return html.escape(str(state.get("value", "")))
    return ""


def _output_html(output: dict) -> str:
    """One saved output of an output area (nbformat's output dict) as HTML."""
    if output.get("output_type") == "stream":
        return f"<pre>{html.escape(''.join(output.get('text', '')))}</pre>"
    data = output.get("data", {})
    for kind in ("image/png", "image/jpeg"):
        if kind in data:
            encoded = "".join(data[kind]).replace("\n", "")
            return f"<img alt='a figure' src='data:{kind};base64,{encoded}'>"
    if "text/html" in data:
        return "".join(data["text/html"])
    if "text/plain" in data:
        return f"<pre>{html.escape(''.join(data['text/plain']))}</pre>"
    return ""

