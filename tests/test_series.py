"""The headless series: which run reports its index page links."""

import os
import time

from cglib import series


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
