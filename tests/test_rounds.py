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
from search import predictor


def _ctx(space, constraint=None, **search):
    cfg = configs.from_dict({"search": {"predictor": "ridge", **search}})
    return types.SimpleNamespace(space=space, constraint=constraint, cfg=cfg)


def test_largest_within_budget_is_the_k_largest_feasible_networks_most_flops_first():
    # cnn1d: a conv's params do not depend on its position, its FLOPs do (sequence length
    # halves per stage), so equal-size networks differ in FLOPs.
    space = spaces.get("cnn1d", channels=(4, 8), kernels=(3,), depths=(1, 2)).bind((16, 1), 3)
    ctx = _ctx(space, constraint=lambda a: space.params(a) <= 860)
    picks = rounds.largest_within_budget(ctx, None, 4, space.params)
    # Slow reference: every encoding, distinct networks, (params, FLOPs) sorted.
    sizes = sorted({tuple(space.canonical(a).items()): (space.params(a), space.flops(a))
                    for a in space.enumerate() if space.params(a) <= 860}.values(), reverse=True)
    assert sizes[0][0] == sizes[1][0] and sizes[0][1] > sizes[1][1]  # the case under test: a tie
    assert [(space.params(a), space.flops(a)) for a in picks] == sizes[:4]
    assert len({tuple(a.items()) for a in picks}) == 4


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


def test_next_round_stays_near_the_best_measured_network():
    # Six two-way decisions; accuracy grows with the number of large options (the feature).
    # The predictor's best guess is the all-large network, six decisions from the best
    # measured; the next pick changes one decision of it.
    space = spaces.get("cnn1d", channels=(4, 8), kernels=(3, 5), depths=(1,)).bind((16, 1), 3)
    archs = [space.canonical(a) for a in space.enumerate()]
    keys = [rounds.key(space, a) for a in archs]
    large = np.array([sum((a[f"channels_{s}"] == 8) + (a[f"kernel_{s}"] == 5) for s in range(3))
                      for a in archs], np.float64)
    ctx = _ctx(space, round=1, acquisition="ucb")
    smallest, one_large = int(np.flatnonzero(large == 0)[0]), int(np.flatnonzero(large == 1)[0])
    measured = {keys[smallest]: 0.5, keys[one_large]: 0.6}
    (picked, _), = rounds.next_round(ctx, archs, [0.0] * len(archs), large[:, None], measured,
                                     set(measured), 1)
    assert predictor.distance(space, picked, archs[one_large]) == 1 and large[archs.index(picked)] == 2
    many = rounds.next_round(ctx, archs, [0.0] * len(archs), large[:, None], measured, set(measured), 56)
    assert archs[int(np.argmax(large))] in [a for a, _ in many]  # 56 untaken: radius 5


def test_next_round_centres_on_the_first_measured_of_equal_best():
    # Two networks six decisions apart tie on validation accuracy; the retrain phase grows the
    # pool around the first measured, so the trust region is around it too, wherever the
    # pool lists it.
    space = spaces.get("cnn1d", channels=(4, 8), kernels=(3, 5), depths=(1,)).bind((16, 1), 3)
    archs = [space.canonical(a) for a in space.enumerate()]
    keys = [rounds.key(space, a) for a in archs]
    first, second = len(archs) - 1, 0                        # the pool lists `second` first
    measured = {keys[first]: 0.9, keys[second]: 0.9}
    ctx = _ctx(space, round=1, acquisition="ei")
    (picked, _), = rounds.next_round(ctx, archs, [0.0] * len(archs), np.zeros((len(archs), 1)), measured,
                                     set(measured), 1)
    assert predictor.distance(space, picked, archs[first]) == 1


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
    assert "neighbours of the best measured network join the pool" in out
