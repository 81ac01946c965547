"""The retrain phase's plan (launch.rounds): the params baseline, the predictor's rounds,
and a search that retrains both and compares them in arch.json and the report."""
import json
import re
import types

import numpy as np
import pytest
import yaml

import spaces
from launch import cli, rounds
from launch import config as configs


def _ctx(space, constraint=None, **search):
    cfg = configs.from_dict({"search": {"predictor": "ridge", **search}})
    return types.SimpleNamespace(space=space, constraint=constraint, cfg=cfg)


def test_largest_within_budget_is_the_k_largest_feasible_networks():
    space = spaces.get("mlp", max_depth=2, widths=(4, 8, 16), activations=("relu",)).bind((8,), 3)
    ctx = _ctx(space, constraint=lambda a: space.params(a) <= 200)
    picks = rounds.largest_within_budget(ctx, None, 3, space.params)
    # Slow reference: every encoding, distinct networks, sizes sorted.
    sizes = sorted({tuple(space.canonical(a).items()): space.params(a) for a in space.enumerate()
                    if space.params(a) <= 200}.values(), reverse=True)
    assert [space.params(a) for a in picks] == sizes[:3]
    assert len({tuple(a.items()) for a in picks}) == 3


def test_next_round_ranks_by_score_until_two_are_measured_then_by_the_predictor():
    space = spaces.get("mlp", max_depth=1, widths=(4, 8, 16, 32), activations=("relu",)).bind((8,), 3)
    archs = [space.canonical(a) for a in space.enumerate()]
    ctx = _ctx(space, round=1, acquisition="ucb")
    keys = [rounds.key(space, a) for a in archs]
    scores = [4.0, 3.0, 2.0, 1.0]                 # the search prefers small networks
    matrix = np.arange(4, dtype=np.float64)[:, None]  # one feature: the width index
    first = rounds.next_round(ctx, archs, scores, matrix, {}, set(), 2)
    assert first == [(archs[0], 4.0), (archs[1], 3.0)]
    # Measured: accuracy grows with the feature; the predictor extrapolates to the widest.
    measured = {keys[0]: 0.5, keys[1]: 0.6}
    picked = rounds.next_round(ctx, archs, scores, matrix, measured, set(keys[:2]), 1)
    assert picked == [(archs[3], 1.0)]


@pytest.mark.parametrize("override, message", [
    ("search.predictor=ridg", "search.predictor = 'ridg' is not allowed; choose one of "
                              "['none', 'forest', 'gp', 'ridge'] (did you mean 'ridge'?)"),
    ("search.features=[naswot, nasw]", "search.features: 'nasw' is not a feature"),
    ("search.features=[]", "at least one of"),
    ("search.acquisition=pi", "search.acquisition = 'pi' is not allowed"),
    ("search.round=0", "search.round = 0: must be ≥ 1"),
])
def test_bad_predictor_config_names_the_field(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        configs.from_dict({}, [override])


def test_a_search_with_baseline_and_predictor_retrains_both_and_compares_them(tmp_path, capsys):
    body = {"space": {"name": "cnn1d", "options": {"norm": "batch"}},
            "search": {"controller": "aging", "evaluations": 8, "generation": 4, "population": 8,
                       "sample": 4, "candidates": 2, "evaluator": "params", "baseline": True,
                       "predictor": "ridge", "round": 1, "proxy_examples": 16,
                       "features": ["params", "score", "encoding"], "max_params": 3000},
            "retrain": {"epochs": 1, "space_options": {"norm": "none"}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(body))
    run = tmp_path / "run"
    assert cli.main(["search", str(tmp_path / "c.yaml"), "--out", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    info = json.loads((run / "best" / "arch.json").read_text())
    sources = [c["source"] for c in info["search"]["candidates"]]
    assert sources[:2] == ["baseline", "baseline"] and sources[2:] == ["predictor", "predictor"]
    baseline = info["baseline"]
    assert baseline["retrained"] == 2 and [p["params"] for p in baseline["picks"]] == \
        sorted((p["params"] for p in baseline["picks"]), reverse=True)
    measured = [c["val_accuracy"] for c in info["search"]["candidates"]]
    assert baseline["best_val_accuracy"] == max(measured[:2])
    assert baseline["search_best_val_accuracy"] == max(measured[2:])
    assert info["metrics"]["val_accuracy"] == max(measured)
    assert baseline["pick_minus_baseline"] == pytest.approx(max(measured) - max(measured[:2]))
    assert "params baseline (the 2 largest networks within the budget" in out
    assert "training the pick once" in out
