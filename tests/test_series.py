"""The headless series: which run reports its index page links, and how."""

import json
import os
import time
from pathlib import Path

import pytest

from cglib import env, series, viz


def test_the_index_links_the_reports_of_this_profile_written_during_the_series(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("CGLIB_RUNS_DIR", str(tmp_path))
    started = time.time()
    wanted = [tmp_path / "05_training-demo" / "report.html",
              tmp_path / "06_ablations-demo" / "full" / "seed-0" / "report.html"]
    other_profile = tmp_path / "05_training-smoke" / "report.html"
    older = tmp_path / "04_initialization-demo" / "report.html"
    for path in [*wanted, other_profile, older]:
        path.parent.mkdir(parents=True)
        path.write_text("<html></html>")
    os.utime(older, (started - 60, started - 60))
    assert series._reports_since(started, "demo") == sorted(wanted)


def test_reports_are_copied_into_the_series_folder_and_linked_relatively(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("CGLIB_RUNS_DIR", str(tmp_path / "runs"))
    report = tmp_path / "runs" / "06_ablations-demo" / "full" / "seed-0" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>the report</html>")
    out = tmp_path / "runs" / "demo-20260101-000000"
    out.mkdir()
    executed = out / "06_ablations.ipynb"
    link = viz.report_link(report, "the report of full, seed 0").data
    executed.write_text(json.dumps({"cells": [{"outputs": [{"data": {"text/html": link}}]}]}))

    copied = series._copy_reports([report], out)
    series._link_reports(executed, copied)
    index = series._write_index(out, "demo", [], sorted(copied.values())).read_text()

    relative = "reports/06_ablations-demo/full/seed-0/report.html"
    assert copied == {report: relative}
    assert (out / relative).read_text() == "<html>the report</html>"
    linked = json.loads(executed.read_text())["cells"][0]["outputs"][0]["data"]["text/html"]
    assert f'href="{relative}"' in linked and "file:" not in linked
    assert f"<a href='{relative}'>06_ablations-demo: full, seed-0</a>" in index
    assert "file:" not in index


def test_a_budget_holds_within_a_factor_of_two_either_way():
    assert series.budget_problem(240, 236) == ""
    assert series.budget_problem(240, 479) == "" and series.budget_problem(240, 121) == ""
    assert series.budget_problem(480, 1680) == "took 1680 s, 3.5x its stated budget of 480 s"
    assert series.budget_problem(120, 20) == "took 20 s, 0.2x its stated budget of 120 s"
    assert series.budget_problem(10, 35) == ""  # 3.5x, but within the slack of 30 s
    assert series.budget_problem(None, 1e6) == ""  # no budget stated, nothing to hold


def executed_notebook(path, outputs):
    """A minimal executed notebook: a title, then one code cell with ``outputs``."""
    import nbformat

    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_markdown_cell("# 03 · Losses"),
                  nbformat.v4.new_code_cell("work()", outputs=outputs)]
    nbformat.write(book, path)
    return path


def said(metadata, text="a line"):
    import nbformat

    return nbformat.v4.new_output("display_data", data={"text/plain": text},
                                  metadata=metadata)


def test_the_status_says_what_ran_degraded_and_a_budget_missed(tmp_path):
    executed = executed_notebook(tmp_path / "03_losses.ipynb", [
        said({env.BUDGET_KEY: {"profile": "demo", "seconds": 60.0}}),
        said({env.BUDGET_KEY: {"profile": "smoke", "seconds": 5.0}}),
        said({env.DEGRADED_KEY: {"what": "content network", "why": "random VGG19 filters"}}),
        said({env.DEGRADED_KEY: {"what": "content network", "why": "random VGG19 filters"}}),
    ])
    budget, degraded = series._stated(executed, "demo")
    assert budget == 60.0 and degraded == ["content network: random VGG19 filters"]
    result = series.NotebookResult(executed.name, 236.0, "", [], budget, degraded)
    assert result.kind == "degraded"
    assert result.status == ("degraded: content network: random VGG19 filters; took 236 s, "
                             "3.9x its stated budget of 60 s")

    series._write_status(executed, "demo", result)
    top = json.loads(executed.read_text())["cells"][1]
    assert top["cell_type"] == "markdown" and "".join(top["source"]) == (
        "**This run:** profile demo, 236 s (stated budget about a minute); status: "
        "**degraded**\n\n- content network: random VGG19 filters\n"
        "- took 236 s, 3.9x its stated budget of 60 s")
    index = series._write_index(tmp_path, "demo", [
        result, series.NotebookResult("00_overview.ipynb", 3.0, "", [], 10.0)], []).read_text()
    assert "<td>236 s (budget 60 s)</td><td><span style='color:darkorange'>degraded: " in index
    assert "<span style='color:green'>ok</span>" in index and "239 s in all" in index


def test_the_recorded_times_are_what_the_budget_check_reads(tmp_path):
    results = [series.NotebookResult("03_losses.ipynb", 236.0, "", [], 240.0),
               series.NotebookResult("06_ablations.ipynb", 1680.0, "", [], 480.0),
               series.NotebookResult("00_overview.ipynb", 2.0, "", [], None)]
    results[1].degraded = ["content network: random VGG19 filters"]
    assert [r.kind for r in results] == ["ok", "degraded", "ok"]
    results[1].degraded = []
    assert results[1].kind == "off budget"
    series._write_times(tmp_path / "times.json", "demo", results)
    assert json.loads((tmp_path / "times.json").read_text())["seconds"] == 1918.0
    assert series.budget_problems(tmp_path / "times.json") == [
        "06_ablations.ipynb: took 1680 s, 3.5x its stated budget of 480 s"]


def test_the_last_demo_run_kept_every_stated_budget():
    """Reads the newest `make demo` run's times.json (CGLIB_SERIES_RUN names another run's
    folder): each notebook took between half and twice the budget it stated."""
    chosen = os.environ.get("CGLIB_SERIES_RUN")
    recorded = ([Path(chosen) / "times.json"] if chosen else
                sorted(env.paths().runs.glob("demo-*/times.json")))
    if not recorded:
        pytest.skip("no recorded demo run of the series (make demo writes runs/demo-*/); "
                    "set CGLIB_SERIES_RUN to a run's folder to check it")
    assert series.budget_problems(recorded[-1]) == []
