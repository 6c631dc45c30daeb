"""Every ```python block of the documentation pages runs, page by page in
order, and its assertions hold: the docs cannot drift from the code."""

import importlib.util
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PAGES = sorted(
    p for p in DOCS.rglob("*.md") if "_build" not in p.parts and BLOCK.search(p.read_text())
)


def test_the_pages_have_examples():
    assert sum(len(BLOCK.findall(p.read_text())) for p in PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_examples_run(page, capsys):
    blocks = BLOCK.findall(page.read_text())
    for framework in ("torch", "jax"):
        uses = any(re.search(rf"^import .*\b{framework}\b", b, re.M) for b in blocks)
        if uses and importlib.util.find_spec(framework) is None:
            pytest.skip(f"{framework} is not installed")
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)


def test_readme_ten_lines_run(capsys):
    text = (DOCS.parent / "README.md").read_text()
    section = text[text.index("## Ten lines") :]
    (block,) = BLOCK.findall(section)[:1]
    exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
