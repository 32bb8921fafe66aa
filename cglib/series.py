"""The notebook series as a whole: listing it, keeping its headers in sync, running it headless.

``python -m cglib demo`` (``make demo``) executes every notebook with papermill into
``runs/<profile>-<timestamp>/``, saves each notebook's figures as PNG files beside it, an HTML
page of each that reads offline (:mod:`cglib.pages`), copies of the run reports the notebooks
wrote, and an ``index.html`` that links everything relatively, so the folder can be copied. A
notebook that fails is recorded as failed and the series goes on, so one broken step never
hides the rest; the command then exits non-zero.
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from cglib import env, files, pages

NOTEBOOK_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")


def notebook_folder() -> Path:
    """``notebooks/`` of the checkout; the series runs from a checkout only."""
    folder = env.paths().notebooks
    if folder is None:
        raise FileNotFoundError(
            "the notebook series runs from a clone of the repository; cglib is installed "
            f"without one. Clone {env.REPOSITORY_URL} and run `make demo` there"
        )
    return folder


def notebooks(folder: Path | None = None) -> list[Path]:
    """The numbered notebooks ``NN_name.ipynb`` in order."""
    folder = folder or notebook_folder()
    return sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))


def sync_headers(folder: Path | None = None) -> list[Path]:
    """Rewrite each notebook's Colab cell and badge from :mod:`cglib.env`; returns the notebooks
    that changed. Run it after changing :data:`cglib.env.REPOSITORY`."""
    changed = []
    for path in notebooks(folder):
        book = json.loads(path.read_text(encoding="utf-8"))
        cells = book["cells"]
        title_lines = "".join(cells[0]["source"]).splitlines()
        badge = env.colab_badge(path.name)
        new_title = [badge if "colab-badge.svg" in line else line for line in title_lines]
        new_cell = env.colab_cell()
        if new_title == title_lines and "".join(cells[1]["source"]) == new_cell:
            continue
        cells[0]["source"] = "\n".join(new_title)
        cells[1]["source"] = new_cell
        files.write_bytes(path, (json.dumps(book, indent=1, ensure_ascii=False) + "\n").encode())
        changed.append(path)
    return changed


#: How far a notebook's time may stray from its stated budget, either way, before the series
#: says so: a factor, and seconds that never count (starting a kernel and importing torch
#: alone take some).
BUDGET_TOLERANCE = 2.0
BUDGET_SLACK_SECONDS = 30.0


@dataclass
class NotebookResult:
    """How one notebook of a headless run went: its time and stated budget (None: it stated
    none), its error, what it said ran degraded (:func:`cglib.env.note_degraded`), its
    figures."""

    name: str
    seconds: float
    error: str
    figures: list[str]
    budget: float | None = None
    degraded: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """What went wrong or ran degraded: the error, or what fell back and a budget missed."""
        if self.error:
            return [self.error]
        return [*self.degraded, *filter(None, [budget_problem(self.budget, self.seconds)])]

    @property
    def kind(self) -> str:
        """``FAILED``, ``degraded`` (something fell back), ``off budget`` or ``ok``."""
        return ("FAILED" if self.error else "degraded" if self.degraded else
                "off budget" if self.problems else "ok")

    @property
    def status(self) -> str:
        """The kind, then the problems: "degraded: <what>: <why>; ..."."""
        return "; ".join([f"{self.kind}: {self.problems[0]}", *self.problems[1:]]
                         ) if self.problems else self.kind


def budget_problem(budget: float | None, seconds: float,
                   tolerance: float = BUDGET_TOLERANCE) -> str:
    """What is wrong with a notebook that took ``seconds`` against its stated ``budget``
    (seconds): empty when it took between budget / tolerance and budget x tolerance, or within
    :data:`BUDGET_SLACK_SECONDS` of it, or stated none."""
    if (budget is None or budget / tolerance <= seconds <= budget * tolerance
            or abs(seconds - budget) <= BUDGET_SLACK_SECONDS):
        return ""
    return (f"took {seconds:.0f} s, {seconds / budget:.1f}x its stated budget of "
            f"{budget:.0f} s")


def _stated(executed: Path, profile: str) -> tuple[float | None, list[str]]:
    """The budget an executed notebook stated for ``profile`` (:func:`cglib.env.state_budget`)
    and what it said ran degraded, each once, as "what: why"."""
    book = json.loads(executed.read_text(encoding="utf-8"))
    budget, degraded = None, []
    for cell in book["cells"]:
        for output in cell.get("outputs", []):
            metadata = output.get("metadata", {})
            stated = metadata.get(env.BUDGET_KEY, {})
            if stated.get("profile") == profile:
                budget = stated["seconds"]
            note = metadata.get(env.DEGRADED_KEY)
            if note and f"{note['what']}: {note['why']}" not in degraded:
                degraded.append(f"{note['what']}: {note['why']}")
    return budget, degraded


def _write_status(executed: Path, profile: str, result: NotebookResult) -> None:
    """Put how this run of the notebook went at its top, under the title: profile, time
    against the stated budget, the status and each problem (what ran degraded and why)."""
    import nbformat

    budget = ("no stated budget" if result.budget is None else
              f"stated budget {env.in_words(result.budget)}")
    text = (f"**This run:** profile {profile}, {result.seconds:.0f} s ({budget}); status: "
            f"**{result.kind}**")
    if result.problems:
        text += "\n\n" + "\n".join(f"- {problem}" for problem in result.problems)
    book = nbformat.read(executed, as_version=4)
    book.cells.insert(1, nbformat.v4.new_markdown_cell(text))
    files.write_bytes(executed, (nbformat.writes(book) + "\n").encode(), durable=False)


def _save_figures(executed: Path, folder: Path) -> list[str]:
    """Write every PNG output of an executed notebook to ``folder``; returns file names."""
    book = json.loads(executed.read_text(encoding="utf-8"))
    names = []
    for index, cell in enumerate(book["cells"]):
        for number, output in enumerate(cell.get("outputs", [])):
            data = output.get("data", {}).get("image/png")
            if data:
                name = f"{executed.stem}-cell{index:02d}-{number}.png"
                files.write_bytes(folder / name, base64.b64decode("".join(data)), durable=False)
                names.append(name)
    return names


def _reports_since(started: float, profile: str) -> list[Path]:
    """The run reports (``report.html``) written since ``started`` in the notebooks' run
    folders of ``profile`` (:meth:`cglib.env.Setup.run_folder`); a report removed meanwhile
    is left out."""
    found = []
    for path in env.paths().runs.glob(f"*-{profile}/**/report.html"):
        try:
            if path.stat().st_mtime >= started:
                found.append(path)
        except FileNotFoundError:
            continue
    return sorted(found)


def _copy_reports(reports: list[Path], folder: Path) -> dict[Path, str]:
    """Copy each run report into ``folder/reports/``, at its path under the runs folder (e.g.
    ``reports/06_ablations-demo/full/seed-0/report.html``), so that the series folder holds
    what it links; returns report -> its copy's path relative to ``folder``."""
    runs = env.paths().runs.resolve()
    copied = {}
    for report in reports:
        relative = Path("reports") / report.resolve().relative_to(runs)
        files.write_bytes(folder / relative, report.read_bytes(), durable=False)
        copied[report] = relative.as_posix()
    return copied


def _link_reports(executed: Path, copied: dict[Path, str]) -> None:
    """Point the executed notebook's links to run reports (absolute ``file:`` URIs, written by
    :func:`cglib.viz.report_link`) at their copies in the series folder, relatively."""
    text = executed.read_text(encoding="utf-8")
    linked = text
    for report, relative in copied.items():
        linked = linked.replace(report.resolve().as_uri(), relative)
    if linked != text:
        files.write_bytes(executed, linked.encode(), durable=False)


def _report_label(relative: str) -> str:
    """``reports/06_ablations-demo/full/seed-0/report.html`` -> ``06_ablations-demo: full,
    seed-0``: the notebook's run folder, then the run inside it."""
    parts = Path(relative).parts[1:-1]
    return parts[0] + (f": {', '.join(parts[1:])}" if len(parts) > 1 else "")


def _write_times(path: Path, profile: str, results: list[NotebookResult]) -> None:
    """Each notebook's time, stated budget and status, and the total, as JSON: what
    :func:`budget_problems` checks."""
    files.write_json(path, {
        "profile": profile, "seconds": sum(r.seconds for r in results),
        "notebooks": {r.name: {"seconds": r.seconds, "budget": r.budget, "status": r.status}
                      for r in results}})


def budget_problems(times: Path) -> list[str]:
    """The notebooks of a series run (its ``times.json``) whose time strayed from their stated
    budget by more than :data:`BUDGET_TOLERANCE`, each as "<notebook>: <problem>"."""
    recorded = json.loads(times.read_text(encoding="utf-8"))["notebooks"]
    return [f"{name}: {problem}" for name, row in recorded.items()
            if (problem := budget_problem(row["budget"], row["seconds"]))]


def _write_index(folder: Path, profile: str, results: list[NotebookResult],
                 reports: list[str]) -> Path:
    rows = []
    for result in results:
        colour = {"ok": "green", "FAILED": "red"}.get(result.kind, "darkorange")
        status = f"<span style='color:{colour}'>{html.escape(result.status)}</span>"
        budget = "" if result.budget is None else f" (budget {result.budget:.0f} s)"
        stem = Path(result.name).stem
        thumbs = "".join(
            f'<a href="figures/{f}"><img src="figures/{f}" height="120"></a> '
            for f in result.figures
        )
        rows.append(
            f"<tr><td><a href='{stem}.html'>{stem}</a> (<a href='{result.name}'>ipynb</a>)"
            f"</td><td>{result.seconds:.0f} s{budget}</td><td>{status}</td><td>{thumbs}</td></tr>"
        )
    page = (
        "<!doctype html><meta charset='utf-8'><title>cglib run</title>"
        f"<h1>cglib notebook series, profile {profile}</h1>"
        f"<p>{time.strftime('%Y-%m-%d %H:%M')}; {env.PROFILE_HELP[profile]}</p>"
        "<table border=1 cellpadding=4><tr><th>notebook</th><th>time</th><th>status</th>"
        f"<th>figures</th></tr>{''.join(rows)}</table>"
        f"<p>{sum(r.seconds for r in results):.0f} s in all.</p>"
        + ("<h2>Training runs</h2><ul>" + "".join(
            f"<li><a href='{html.escape(relative)}'>{html.escape(_report_label(relative))}</a>"
            "</li>" for relative in reports) + "</ul>"
           if reports else "")
    )
    index = folder / "index.html"
    files.write_bytes(index, page.encode())
    return index


def run_series(profile: str = "demo", only: list[str] | None = None,
               out: Path | None = None) -> Path:
    """Execute the series with papermill (``PROFILE`` set to ``profile``) into
    ``runs/<profile>-<timestamp>/``; ``only`` restricts it to notebook numbers such as "00".
    Returns the index page. Raises RuntimeError naming the notebooks that failed, after all of
    them ran."""
    import papermill

    if profile not in env.PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(env.PROFILES)}")
    selected = [p for p in notebooks() if only is None or p.name[:2] in only]
    if not selected:
        raise FileNotFoundError(f"no notebook numbered {only} in {notebook_folder()}")
    out = out or env.paths().runs / f"{profile}-{time.strftime('%Y%m%d-%H%M%S')}"
    (out / "figures").mkdir(parents=True, exist_ok=True)
    pages.copy_mathjax(out)  # before any work: it names the package to install when missing
    results, reports = [], {}
    for source in selected:
        print(f"== {source.name} (profile {profile})", flush=True)
        executed = out / source.name
        start, started = time.perf_counter(), time.time()
        error = ""
        try:
            papermill.execute_notebook(
                str(source), str(executed), parameters={"PROFILE": profile},
                cwd=str(source.parent), progress_bar=True,
            )
        except Exception as exc:  # a failed notebook is reported; the series goes on
            error = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            print(f"   failed: {error}", flush=True)
        seconds = time.perf_counter() - start
        figures = _save_figures(executed, out / "figures") if executed.exists() else []
        reports |= _copy_reports(_reports_since(started, profile), out)
        result = NotebookResult(source.name, seconds, error, figures)
        if executed.exists():
            result.budget, result.degraded = _stated(executed, profile)
            _write_status(executed, profile, result)
            _link_reports(executed, reports)
            pages.export_html(executed)
        results.append(result)
        print(f"   {seconds:.0f} s, {len(figures)} figures; {result.status}", flush=True)
    _write_times(out / "times.json", profile, results)
    index = _write_index(out, profile, results, sorted(reports.values()))
    print(f"index: {index}")
    failed = [r.name for r in results if r.error]
    if failed:
        raise RuntimeError(f"{len(failed)} notebook(s) failed: {', '.join(failed)}; see {index}")
    return index
