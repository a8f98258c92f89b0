"""The README and docs/ stay true: links land, the make targets, commands and overrides they show
exist, the Python API example runs as written, the layout names the real packages, and the
README stays short (the manual lives in docs/)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from omegaconf import DictConfig

from sweep.cli.runner import COMMANDS
from tests.conftest import ROOT, clean_env

README = ROOT / "README.md"
MARKDOWN = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 300
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
# The Makefile targets that call a Hydra command, and the Make variables they turn into overrides.
HYDRA_TARGETS = {"baseline", "sweep", "worker", "report"}
MAKE_VARS = {"JOBS": "search.jobs", "STUDY": "search.study_name"}


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code: where links and headings are."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def code(text: str) -> Iterator[str]:
    """Each line of every fenced block (continuations joined) and each inline code span."""
    for block in FENCE.findall(text):
        body = block.split("\n", 1)[1].rsplit("\n", 1)[0]
        yield from body.replace("\\\n", " ").splitlines()
    yield from INLINE_CODE.findall(FENCE.sub("", text))


def slug(title: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for _, title in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links() -> list[tuple[Path, str]]:
    """(file, link) for each link that is not a URL, in README.md and docs/*.md."""
    found = {}
    for path in MARKDOWN:
        for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
            if not re.match(r"[a-z][a-z+.-]*:", target):  # http:, https:, mailto:
                found[path, target] = None
    return list(found)


def broken(path: Path, target: str) -> str | None:
    """Why a link from `path` does not land, or None."""
    file, _, anchor = target.partition("#")
    dest = (path.parent / file).resolve() if file else path
    if not dest.exists():
        return f"{dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest} does not exist"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{dest.name} has no heading #{anchor}"
    return None


@pytest.mark.parametrize(
    ("path", "target"),
    relative_links(),
    ids=[f"{p.name}->{t}" for p, t in relative_links()],
)
def test_every_relative_link_lands_on_a_file_and_heading(path: Path, target: str):
    assert broken(path, target) is None, f"{path.name}: ({target}): {broken(path, target)}"


def test_a_broken_link_or_anchor_is_caught(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Two words: `here`\n", encoding="utf-8")
    assert broken(page, "#two-words-here") is None
    assert "no heading" in broken(page, "#nowhere")
    assert "does not exist" in broken(page, "missing.md")


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


def mentioned_make_targets() -> set[str]:
    """Every `make <target>` in the code of README.md and docs/*.md."""
    found = set()
    for path in MARKDOWN:
        for line in code(path.read_text(encoding="utf-8")):
            found |= set(re.findall(r"(?:^|[\s;&(])make ([a-z][a-z-]*)", line))
    return found


def test_every_make_target_mentioned_exists():
    assert mentioned_make_targets() >= {"sweep", "test", "ui", "report", "rerun"}
    assert mentioned_make_targets() <= make_targets(), mentioned_make_targets() - make_targets()


def test_every_python_m_sweep_command_mentioned_exists():
    mentioned = set()
    for path in MARKDOWN:
        for line in code(path.read_text(encoding="utf-8")):
            mentioned |= set(re.findall(r"python -m sweep ([a-z][a-z_-]*)", line))
    assert mentioned, "no `python -m sweep <command>` found: the pattern is out of date"
    assert mentioned <= set(COMMANDS), mentioned - set(COMMANDS)


def overrides_of(words: list[str]) -> list[str] | None:
    """The Hydra overrides of one command line, or None when it runs no Hydra command."""
    if "make" in words and words[words.index("make") + 1 :][:1] in [[t] for t in HYDRA_TARGETS]:
        overrides = []
        for word in words[words.index("make") + 2 :]:
            name, _, value = word.partition("=")
            if name == "ARGS":
                overrides += shlex.split(value)
            elif name in MAKE_VARS:
                overrides.append(f"{MAKE_VARS[name]}={value}")
        return overrides
    for i in range(len(words) - 2):
        if words[i : i + 2] == ["-m", "sweep"] and words[i + 2] in HYDRA_TARGETS:
            return [w for w in words[i + 3 :] if not w.startswith("-")]
    return None


def hydra_examples() -> list[list[str]]:
    """The overrides of each `make <hydra target> ...` / `python -m sweep <hydra command> ...`
    the README shows; a placeholder (`<id>`) is left out."""
    examples = {}
    for line in code(README.read_text(encoding="utf-8")):
        try:
            overrides = overrides_of(shlex.split(line, comments=True))
        except ValueError:  # an unbalanced quote: not a command line
            continue
        if overrides is not None:
            examples[tuple(o for o in overrides if "<" not in o)] = None
    return [list(e) for e in examples]


def test_the_readme_shows_hydra_examples():
    shown = [" ".join(e) for e in hydra_examples()]
    assert any("data=csv" in e for e in shown), shown  # the parser still finds the README's


@pytest.mark.parametrize("overrides", hydra_examples(), ids=lambda o: " ".join(o)[:60] or "none")
def test_every_hydra_override_the_readme_shows_composes(
    overrides: list[str], compose_cfg: Callable[..., DictConfig]
):
    compose_cfg(*overrides)


def api_example() -> str:
    """The first python block of the README's "Python API" section, as a reader copies it."""
    section = README.read_text(encoding="utf-8").split("\n## Python API\n", 1)[1]
    return re.search(r"^```python\n(.*?)^```", section, re.M | re.S).group(1)


def run_python(source: str, cwd: Path) -> subprocess.CompletedProcess:
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", source],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_api_example_runs_as_written_beside_a_default_study_and_again(tmp_path: Path):
    """In a folder where `make sweep` has left `sine-mlp` with other settings, twice."""
    made = run_python(
        "import sys; from sweep.cli.runner import main; "
        "sys.exit(main(['sweep', 'search.n_trials=1', 'trainer.epochs=1', 'tracking=none']))",
        tmp_path,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert "starting study 'sine-mlp'" in made.stdout, made.stdout
    counted = []
    for verb in ("starting", "resuming"):
        out = run_python(api_example(), tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"{verb} study 'api-demo'" in out.stdout, out.stdout
        assert "best val_mse = " in out.stdout
        assert "registered models:/api-demo@champion" in out.stdout
        counted += re.findall(r"^(\d+) trials in api-demo$", out.stdout, re.M)
    assert len(counted) == 2 and counted[0] == counted[1], counted  # the rerun adds no trial


def layout_names() -> set[str]:
    """The packages (`core/`) and top-level modules (`api.py`) the README's layout lists."""
    section = README.read_text(encoding="utf-8").split("\n## Layout\n", 1)[1]
    tree = re.search(r"^```\n(.*?)^```", section, re.M | re.S).group(1)
    below = tree.split("src/sweep/\n", 1)[1]
    return set(re.findall(r"^  (\w+(?:/|\.py))(?=\s)", below, re.M))


def test_the_layout_lists_every_package_and_top_module_and_no_other():
    src = ROOT / "src" / "sweep"
    real = {f"{p.parent.name}/" for p in src.glob("*/__init__.py")}
    real |= {p.name for p in src.glob("*.py") if p.name != "__init__.py"}
    assert layout_names() == real


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move the manual to docs/"
