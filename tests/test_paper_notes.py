"""The paper notes the code cites, docs/paper.md: they are in the repository, they hold every
section cited as ``docs/paper.md#<section>``, and nothing cites notes from outside it."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTES = ROOT / "docs" / "paper.md"

#: The sections the code relies on: the method, the losses with their equations, the networks,
#: the training settings, the authors' code against the paper, the released files.
SECTIONS = ("the-method", "the-losses", "the-edge-promoting-data", "the-architecture",
            "the-generator", "the-discriminator", "the-normalization", "the-training-settings",
            "where-the-authors-code-differs-from-the-paper", "the-data-and-the-experiments",
            "the-released-generators")


def anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to
    hyphens ("Where the authors' code differs" -> "where-the-authors-code-differs")."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def repository_files() -> list[Path]:
    """The repository's files (tracked, or new and not ignored), docs/ aside."""
    try:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others",
                                 "--exclude-standard"], capture_output=True, text=True,
                                check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"needs a git checkout of the repository to list its files ({error})")
    return [ROOT / name for name in listed
            if name and not name.startswith("docs/") and (ROOT / name).is_file()]


def test_the_notes_hold_the_sections_the_code_relies_on():
    text = NOTES.read_text(encoding="utf-8")
    headings = {anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    assert set(SECTIONS) <= headings, sorted(set(SECTIONS) - headings)
    for equation in (r"\mathcal{L}_{adv}", r"\mathcal{L}_{con}", r"\mathcal{L}_D"):
        assert equation in text
    assert "11,129,667" in text and "94" in text  # the generator's size, the file's tensors


def test_every_citation_names_a_section_of_the_notes():
    cited = {}
    for path in repository_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for section in re.findall(r"docs/paper\.md#([\w-]+)", text):
            cited.setdefault(section, path.relative_to(ROOT))
    assert cited, "no file cites docs/paper.md#<section>"
    missing = {section: str(path) for section, path in cited.items() if section not in SECTIONS}
    assert not missing, f"cited sections that docs/paper.md does not hold: {missing}"


def test_no_file_cites_notes_from_outside_the_repository():
    this = Path(__file__).resolve()  # it names the file to look for it
    citing = [str(path.relative_to(ROOT)) for path in repository_files() if path != this
              and "PAPER.md" in path.read_text(encoding="utf-8", errors="replace")]
    assert not citing, f"cite docs/paper.md instead of PAPER.md in: {citing}"
