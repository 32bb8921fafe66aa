"""Notebook 07's app in a real browser: JupyterLab serves the notebook (smoke profile), headless
Chromium runs it all, uploads a photo through the file chooser, picks a style, sees the cartoon
and saves it. Skips, saying why, where Playwright or a Chromium cannot be had (CI installs
both: .ci/run)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cglib import demodata

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")

#: True in the page when the notebook's kernel is idle and no cell waits to run.
IDLE = ("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'"
        " && ![...document.querySelectorAll('.jp-InputArea-prompt')]"
        ".some(prompt => prompt.textContent.includes('*'))")


def chromium() -> str:
    """The path of a Chromium on this machine; the test is skipped without one."""
    for name in CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium here: install Debian's chromium package (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def notebook_in(folder: Path, out: Path) -> Path:
    """Notebook 07 copied into ``folder``, its outputs going to ``out``."""
    notebook = json.loads((ROOT / "notebooks" / "07_cartoonize.ipynb").read_text())
    for cell in notebook["cells"]:
        if "parameters" in cell["metadata"].get("tags", []):
            cell["source"] = "".join(cell["source"]).replace('OUT_DIR = ""',
                                                             f"OUT_DIR = {str(out)!r}")
    path = folder / "07_cartoonize.ipynb"
    path.write_text(json.dumps(notebook))
    return path


@pytest.fixture
def browser_api():
    """(Playwright's sync API, the path of a Chromium); skips, saying why, without either."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright "
                                   "(pip install playwright; its browser download is not "
                                   "needed, the system's Chromium is used)")
    return sync_api, chromium()


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a copy of notebook 07 (smoke profile, everything it writes under
    tmp_path): (url of the notebook, its output folder)."""
    port, token, out = free_port(), "cglib-test", tmp_path / "out"
    notebook_in(tmp_path, out)
    log = (tmp_path / "lab.log").open("w")
    environment = {**os.environ, "CGLIB_PROFILE": "smoke", "HOME": str(tmp_path / "home"),
                   "CGLIB_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT),
                   "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter"),
                   "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
                   "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
                   "XDG_CACHE_HOME": str(tmp_path / "cache")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.news_url=", "--allow-root"],
        env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(360):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not start in 3 minutes; see {tmp_path / 'lab.log'}")
        yield f"{base}/lab/tree/07_cartoonize.ipynb?token={token}&reset", out
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_the_app_cartoonizes_an_upload_and_saves_it_in_a_browser(browser_api, lab, tmp_path):
    sync_api, executable = browser_api
    url, out = lab
    photo = tmp_path / "kitten.png"
    shutil.copy(demodata.source_path("skimage", "data/chelsea.png"), photo)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget "
                               "&& window.jupyterapp.shell.currentWidget.sessionContext"
                               ".session?.kernel?.status === 'idle'", timeout=60_000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        upload = page.locator(".widget-upload")
        upload.wait_for(timeout=300_000)
        page.wait_for_function(IDLE, timeout=300_000)
        errors = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']"
                              ":has-text('Error')")
        assert errors.count() == 0, errors.first.inner_text()
        with page.expect_file_chooser() as chooser:
            upload.click()
        chooser.value.set_files(str(photo))
        app = page.locator(".widget-vbox").filter(has=upload)
        app.locator(".widget-output img").wait_for(timeout=120_000)
        styles = app.locator(".widget-dropdown select option").all_inner_texts()
        style = styles[-1]
        app.locator(".widget-dropdown select").select_option(label=style)
        page.wait_for_timeout(300)  # the kernel takes the change, then draws
        page.wait_for_function(IDLE, timeout=120_000)
        app.locator(".widget-output img").wait_for(timeout=60_000)
        app.locator("button.widget-button:has-text('save')").click()
        app.locator(".widget-output:has-text('saved')").wait_for(timeout=60_000)
        browser.close()
    label = "-".join(style.split())
    saved = out / f"kitten_{label}.png"
    assert saved.is_file() and saved.stat().st_size > 1000
