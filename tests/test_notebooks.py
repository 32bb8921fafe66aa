"""Notebook hygiene: numbering, no outputs, one plain `parameters` cell, the Colab header,
papermill's view of the parameters, and one papermill run with an overridden parameter.

Every notebook is also executed under nbval by `make test` (profile smoke)."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cglib import env, series

NOTEBOOKS = series.notebooks(Path(__file__).resolve().parent.parent / "notebooks")
IDS = [p.name for p in NOTEBOOKS]


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell):
    return "".join(cell["source"])


def test_the_series_is_numbered_without_gaps():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(range(len(numbers))) and numbers


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_without_outputs(path):
    for cell in cells(path):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_one_parameters_cell_of_plain_literals(path):
    tagged = [c for c in cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    tree = ast.parse(source(tagged[0]))
    names = []
    for statement in tree.body:
        assert isinstance(statement, ast.Assign), f"{path.name}: only assignments allowed"
        ast.literal_eval(statement.value)  # raises on anything but a plain literal
        names.append(statement.targets[0].id)
    assert names[:2] == ["PROFILE", "SEED"]
    assert "PROFILE = \"auto\"" in source(tagged[0])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_starts_with_badge_and_colab_cell_and_imports_cglib(path):
    first, second = cells(path)[:2]
    assert first["cell_type"] == "markdown" and env.colab_badge(path.name) in source(first)
    assert source(first).startswith(f"# {path.name[:2]} ")
    assert second["cell_type"] == "code" and source(second) == env.colab_cell()
    code = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "code")
    assert "import cglib" in code or "from cglib import" in code
    assert "env.setup(PROFILE" in code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_papermill_sees_the_parameters(path):
    papermill = pytest.importorskip("papermill")
    found = papermill.inspect_notebook(str(path))
    assert {"PROFILE", "SEED"} <= set(found)
    assert found["PROFILE"]["default"] == '"auto"'


def test_sync_headers_repairs_a_stale_badge(tmp_path):
    copy = tmp_path / NOTEBOOKS[0].name
    book = json.loads(NOTEBOOKS[0].read_text())
    book["cells"][0]["source"] = source(book["cells"][0]).replace(env.REPOSITORY, "old/repo")
    book["cells"][1]["source"] = "print('stale')"
    copy.write_text(json.dumps(book))
    assert series.sync_headers(tmp_path) == [copy]
    assert source(cells(copy)[1]) == env.colab_cell()
    assert env.colab_badge(copy.name) in source(cells(copy)[0])
    assert series.sync_headers(tmp_path) == []


def test_papermill_override_takes_effect(tmp_path):
    pytest.importorskip("papermill")
    out = tmp_path / "out.ipynb"
    environment = {k: v for k, v in os.environ.items() if k != "CGLIB_PROFILE"}
    subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOKS[0]), str(out),
         "-p", "PROFILE", "smoke", "-p", "SEED", "5", "--cwd", str(tmp_path)],
        check=True, env=environment, capture_output=True,
    )
    printed = "".join(
        "".join(o.get("text", "")) for c in cells(out) for o in c.get("outputs", [])
    )
    assert "profile : smoke (set by the PROFILE parameter)" in printed
    assert "seed    : 5" in printed


def test_readme_links_every_notebook_with_its_badge():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f"(notebooks/{path.name})" in readme and env.colab_badge(path.name) in readme


def test_a_misspelt_papermill_parameter_fails(tmp_path):
    pytest.importorskip("papermill")
    environment = {k: v for k, v in os.environ.items() if k != "CGLIB_PROFILE"}
    result = subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOKS[0]), str(tmp_path / "out.ipynb"),
         "-p", "PROFILE", "smoke", "-p", "SEDE", "5", "--cwd", str(tmp_path)],
        env=environment, capture_output=True, text=True)
    assert result.returncode != 0
    assert "this notebook has no parameter SEDE" in result.stdout + result.stderr


def test_the_overview_lists_every_notebook_of_the_series():
    overview = "".join(source(cell) for cell in cells(NOTEBOOKS[0]))
    listed = {line.split()[1] for line in overview.splitlines()
              if line.startswith("| ") and line.split()[1][:2].isdigit()}
    assert listed == {path.name[:2] for path in NOTEBOOKS}


def rendered_outside_maths(markdown):
    """``markdown`` as nbconvert renders it to HTML (mistune with its maths parsers), with
    each piece of maths it recognized, and each code span or block, left out: what is left is
    what a reader sees as text. Text inside the maths (``\\text{...}``, ``\\texttt{...}``)
    stays, since MathJax shows it as written, backslashes included."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    class WithoutMaths(IPythonRenderer):
        def inline_math(self, body):
            texts = re.findall(r"\\text\w*\{([^}]*)\}", body)
            return f"<span class='maths'>{' '.join(texts)}</span>"

        block_math = inline_math

        def latex_environment(self, name, body):
            return self.inline_math(body)

    page = MarkdownWithMath(renderer=WithoutMaths(escape=False)).render(markdown)
    return re.sub(r"<code>.*?</code>|<pre>.*?</pre>", "", page, flags=re.DOTALL)


def test_rendered_text_keeps_no_raw_maths_markup():
    assert "<span class='maths'>conv4_4</span>" in rendered_outside_maths(
        "$l = \\texttt{conv4_4}$")
    seen = rendered_outside_maths("a $x$ and\n$$\\mathcal{L} = a\n+ w b$$\nthen `$HOME`")
    assert "$" not in seen and "maths" in seen
    assert "$" in rendered_outside_maths("$\\mathcal{L} = a\n+ w\\,b$")  # "+ w": a list
    assert "\\_" in rendered_outside_maths("the layer $\\texttt{conv4\\_4}$")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_markdown_renders_without_raw_dollars_or_escapes(path):
    for number, cell in enumerate(cells(path)):
        if cell["cell_type"] == "markdown":
            seen = rendered_outside_maths(source(cell))
            for raw in ("$", "\\_"):
                at = seen.find(raw)
                assert at < 0, (f"{path.name} cell {number}: {raw!r} shows as text in the "
                                f"rendered page: ...{seen[max(0, at - 80):at + 80]}...")
            # MathJax's web font draws an underscore in \text{} or \texttt{} as a dash:
            # code names go in backticks, outside the maths
            assert not re.search(r"<span class='maths'>[^<]*_", seen), (
                f"{path.name} cell {number}: an underscore in text inside maths")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_saving_an_unchanged_notebook_changes_no_byte(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    copy = tmp_path / path.name
    nbformat.write(nbformat.read(path, as_version=nbformat.NO_CONVERT), copy)
    assert copy.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_saved_as_nbformat_4_5_with_stable_cell_ids(path):
    book = json.loads(path.read_text(encoding="utf-8"))
    ids = [cell.get("id") for cell in book["cells"]]
    assert (book["nbformat"], book["nbformat_minor"]) >= (4, 5), path.name
    assert all(ids) and len(set(ids)) == len(ids), path.name
