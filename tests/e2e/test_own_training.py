"""The README's own-CNN and own-training-step example runs as written: copied into a `mylab`
package, its `make baseline` command trains, and the same ARGS sweep with pruning."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from sweep.cli import runner
from tests.conftest import ROOT

SECTION = "\n### Your own model and training step\n"


def example() -> tuple[str, list[str]]:
    """The section's python block (the module) and its `make baseline` command's overrides."""
    text = (ROOT / "README.md").read_text(encoding="utf-8").split(SECTION, 1)[1]
    source = re.search(r"^```python\n(.*?)^```", text, re.M | re.S).group(1)
    command = re.search(r"^make baseline ARGS=(\".*\")$", text, re.M).group(1)
    return source, shlex.split(shlex.split(command)[0])


@pytest.fixture
def mylab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The README's module saved as mylab/cnn.py on the path; the command's overrides."""
    source, overrides = example()
    package = tmp_path / "lab" / "mylab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cnn.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path / "lab"))
    return overrides


@pytest.mark.slow
def test_the_readme_own_training_step_runs_as_written_and_sweeps(mylab, tmp_path, capsys):
    store = f"paths.store={tmp_path / 'store'}"
    assert runner.main(["baseline", *mylab, "trainer.epochs=2", store]) == 0, capsys.readouterr()
    sweep = [
        "sweep",
        *mylab,
        "+search.space.model.filters='choice(4, 8, 16)'",
        "search.study_name=digits-own",
        "search.n_trials=4",
        "trainer.epochs=4",
        "search/sampler=tpe_tiny",
        "search/pruner=median_tiny",
        store,
    ]
    assert runner.main(sweep) == 0, capsys.readouterr().err
    import optuna

    study = optuna.load_study(
        study_name="digits-own", storage=f"sqlite:///{tmp_path / 'store'}/optuna.db"
    )
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4 and all(t.intermediate_values for t in finished)
    assert {t.params["model.filters"] for t in finished} <= {4, 8, 16}
