"""The README and docs/ point only at files that exist, and speak of the product."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOPS = ("mpitrain/", "csrc/", "bench/", "docs/", "tests/", "examples/", "hostfiles/")
# paths the pages give inside the package (comm/peer_workspace.py is mpitrain/comm/peer_workspace.py)
INSIDE = ("comm/", "parallel/", "kernels/", "train/", "data/", "models/", "checkpoint/",
          "cluster/")
PATH = re.compile(r"(?<![\w/.-])((?:" + "|".join(map(re.escape, TOPS + INSIDE)) + r")[\w./*-]*)")


def mentioned_paths(text):
    for match in PATH.findall(text):
        path = match.rstrip(".,:;)")
        if path.endswith("/"):
            path = path[:-1]
        yield path


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_path_a_page_names_exists(page):
    text = page.read_text()
    missing = []
    for path in mentioned_paths(text):
        if "*" in path:
            if not list(ROOT.glob(path)):
                missing.append(path)
        elif not (ROOT / path).exists() and not (ROOT / "mpitrain" / path).exists():
            missing.append(path)
    assert not missing, f"{page.name} names files that are not here: {sorted(set(missing))}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_speak_of_the_product(page):
    text = page.read_text().lower()
    for word in ("session", "next time", "anchors.md", "architecture.md in", "../shared"):
        assert word not in text, f"{page.name}: {word!r}"


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_code_points_at_no_file_outside_the_repository():
    """Code, examples and benchmark scripts cite files of the repository or a public source,
    never the notes the project was built from (which a user does not have)."""
    outside = ("anchors.md", "pitfalls.md", "style.md", "../shared")
    files = [f for top in ("mpitrain", "examples", "bench", "csrc") for f in (ROOT / top).rglob("*")
             if f.suffix in (".py", ".sh", ".c", ".cu", ".h") and "__pycache__" not in f.parts]
    assert files, "the scan found no files"
    found = [(f.relative_to(ROOT), word) for f in files for word in outside
             if word in f.read_text(errors="replace").lower()]
    assert not found, found
