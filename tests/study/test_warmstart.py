"""Warm starts: an earlier study's finished trials that fit the new space, the rest named."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from sweep.cli import runner
from sweep.study.budget import COPIED_ATTR
from sweep.study.study import counts, load_existing
from sweep.study.warmstart import WARM_ATTR

TINY = ("experiment=tiny", "tracking=none", "search/pruner=none")
NARROW = "search.space.model.width='tag(log, int(interval(16, 24)))'"


def _earlier(store, n_trials=3):
    """A finished study `a` (run inside the test: Hydra's logging set-up and
    pytest's capture of a fixture's output do not mix)."""
    args = [
        "sweep",
        *TINY,
        f"search.n_trials={n_trials}",
        "search.study_name=a",
        f"paths.store={store}",
    ]
    assert runner.main(args) == 0
    return store


def _load(store, name):
    return load_existing(f"sqlite:///{store}/optuna.db", name)


def test_warm_start_copies_what_fits_and_names_what_it_skips(tmp_path, capsys):
    earlier = _earlier(tmp_path)
    args = [*TINY, "search.n_trials=1", f"paths.store={earlier}", NARROW]
    assert runner.main(["sweep", *args, "search.study_name=b", "search.warm_start_from=a"]) == 0
    source = _load(earlier, "a").get_trials(states=(TrialState.COMPLETE,))
    fits = {t.number for t in source if 16 <= t.params["model.width"] <= 24}
    assert 0 in fits and len(fits) < len(source)  # the baseline fits, a wider trial does not
    study = _load(earlier, "b")
    record = study.user_attrs[WARM_ATTR]
    assert set(record["copied"]) == fits
    assert {s["trial"] for s in record["skipped"]} == {t.number for t in source} - fits
    assert all(
        "model.width=" in s["reason"] and "outside" in s["reason"] for s in record["skipped"]
    )
    copies = [t for t in study.get_trials() if COPIED_ATTR in t.user_attrs]
    assert sorted(t.user_attrs[COPIED_ATTR] for t in copies) == sorted(f"a#{n}" for n in fits)
    assert counts(study)[0] == 1  # n_trials counts this study's own trials, not the copies
    out = capsys.readouterr().out
    assert f"copied {len(fits)} trial(s), skipped" in out and "is outside the space" in out


def test_warm_start_from_a_different_fixed_config_is_refused(tmp_path, capsys):
    earlier = _earlier(tmp_path, n_trials=1)
    capsys.readouterr()
    args = ["sweep", *TINY, "trainer.epochs=3", "search.study_name=c", "search.warm_start_from=a"]
    assert runner.main([*args, f"paths.store={earlier}"]) == 2
    err = capsys.readouterr().err
    assert "its fixed config differs (trainer.epochs: 4 -> 3)" in err
    with pytest.raises(Exception, match="no study 'c'"):
        _load(earlier, "c")
