"""The documentation cannot drift from the code: every ```python block of docs/**/*.md and README.md runs here.

Blocks of one page run in order in one namespace (a later block may use what an earlier one made), in a
temporary working folder with ``MPLBACKEND=Agg`` and a fresh ``SPARSEVIT_CACHE``.  A block that needs what a
test machine lacks (a GPU, the network, a pretrained download, minutes of work) is marked by the line
``<!-- no-test -->`` right above its fence and is only shown; a page whose blocks together take more than a
few seconds says ``<!-- docs-test: slow -->`` on a line of its own and is tested under ``-m slow`` only.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NO_TEST = "<!-- no-test -->"
SLOW_PAGE = re.compile(r"^<!-- docs-test: slow -->$", re.M)  # on a line of its own
README_MAX_LINES = 150
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line, code) of each ```python block not marked ``<!-- no-test -->`` on the line above its fence."""
    blocks = []
    for match in FENCE.finditer(text):
        if match.group(1) != "python":
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        if before != NO_TEST:
            blocks.append((text.count("\n", 0, match.start()) + 2, match.group(2)))
    return blocks


def _page_params() -> list:
    params = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        if not python_blocks(text):
            continue
        marks = [pytest.mark.slow] if SLOW_PAGE.search(text) else []
        params.append(pytest.param(page, marks=marks, id=str(page.relative_to(ROOT))))
    return params


def test_blocks_are_found() -> None:
    """The collector sees what a reader sees: a plain block runs, a marked one does not."""
    text = "intro\n```python\nx = 1\n```\n\n<!-- no-test -->\n```python\nimport cuda_only\n```\n```bash\nls\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n")]


@pytest.mark.parametrize("page", _page_params())
def test_page_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("SPARSEVIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for line, code in python_blocks(page.read_text(encoding="utf-8")):
        try:
            exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)
        except Exception as error:  # say which block failed, where a reader would look
            raise AssertionError(f"the ```python block at {page.relative_to(ROOT)}:{line} fails: {error!r}") from error


def test_readme_is_a_front_door() -> None:
    """README.md stays short, and its two commands are exactly the ones CI runs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES, f"README.md has {len(readme.splitlines())} lines"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    bash = [code for lang, code in FENCE.findall(readme) if lang == "bash"]
    commands = [line.strip() for line in bash[0].splitlines() if line.strip()]
    assert len(commands) == 2, commands
    install, quickstart = commands[0].split(" && ")
    assert install in ci and quickstart.startswith("python examples/quickstart.py")
    assert commands[1] in ci, f"{commands[1]!r} is not what .ci/run runs"


def test_readme_links_resolve() -> None:
    """Relative links in the README (to docs/*.md and the repository's files) point at files that exist."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in t]
    missing = [t for t in targets if t and not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


@pytest.mark.slow
def test_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict` (the line in .ci/run): a warning (a broken link, a docstring that does not parse)
    fails the build."""
    pytest.importorskip("mkdocs")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{shlex.join(command)} failed:\n{done.stderr[-4000:]}"
