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
