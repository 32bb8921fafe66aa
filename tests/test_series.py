"""The headless series: which run reports its index page links, and how."""

import json
import os
import time

from cglib import series, viz


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
