"""Proxy-driven search: the G-REA controller, zero-training search (a proxy as the
evaluator, no supernet), G-REA with a supernet, and the config rules around them."""
import json

import numpy as np
import pytest
import yaml

import spaces
from launch import cli
from launch import config as configs
from search import controllers, proxies

TINY = {
    "seed": 0, "space": {"name": "cnn1d", "options": {"norm": "batch"}},
    "data": {"name": "mnist1d", "val_fraction": 0.2},
    "supernet": {"method": "sandwich", "epochs": 1, "batch_size": 128},
    "search": {"controller": "aging", "evaluations": 12, "generation": 4, "population": 8,
               "sample": 4, "candidates": 2, "proxy_examples": 16},
    "retrain": {"epochs": 1, "space_options": {"norm": "none"}},
}


def test_grea_proposes_the_best_scored_of_its_parents_mutants():
    space = spaces.get("cnn1d")
    calls = []

    def scorer(archs):
        calls.append([dict(a) for a in archs])
        return [space.params(a) for a in archs]

    ctrl = controllers.get("grea", space, seed=3, population=6, sample=3, mutants=10, scorer=scorer)
    for _ in range(8):
        arch = ctrl.ask(1)[0]
        if len(ctrl.history) >= 6:
            # Evolution: the proposal is a one-decision mutant of a member, and no mutant
            # scored for it beats it (ties aside: scores are cached across cycles).
            members = [a for a, _ in ctrl.population]
            assert any(sum(arch[k] != m[k] for k in arch) == 1 for m in members)
            assert space.params(arch) >= max(space.params(a) for a in calls[-1])
            assert 1 <= len(calls[-1]) <= 10
        ctrl.tell([arch], [-space.params(arch) / 1e5])
    assert len(calls) >= 2   # the first six asks were random, no scorer involved


def test_grea_without_a_scorer_says_what_to_pass():
    ctrl = controllers.get("grea", spaces.get("cnn1d"), seed=0, population=2, sample=1)
    ctrl.tell(ctrl.ask(2), [0.1, 0.2])
    with pytest.raises(ValueError, match="scorer="):
        ctrl.ask(1)


@pytest.mark.parametrize("override, message", [
    ({"search": {"evaluator": "gradsing"}}, "did you mean 'gradsign'"),
    ({"search": {"evaluator": "gradsign"}, "retrain": {"mode": "finetune", "space_options": {}}},
     "retrain.mode = 'finetune'"),
    ({"search": {"evaluator": "snip"}, "sparse": {"sparsity": 0.5}}, "sparse.sparsity"),
    ({"search": {"evaluator": "gradsign", "controller": "argmax"}}, "argmax"),
    ({"search": {"proxy": "nope", "controller": "grea"}}, "search.proxy"),
])
def test_proxy_configs_that_need_a_supernet_are_refused(override, message):
    raw = yaml.safe_load(yaml.safe_dump(TINY))
    for section, body in override.items():
        raw[section] = {**raw.get(section, {}), **body}
    with pytest.raises(ValueError, match=message):
        configs.from_dict(raw)


def test_auto_controller_under_a_proxy_evaluator_is_aging_even_for_a_gradient_method():
    cfg = configs.from_dict({**TINY, "supernet": {"method": "darts"},
                             "search": {**TINY["search"], "controller": "auto", "evaluator": "gradsign"}})
    assert configs.controller(cfg)[0] == "aging"


def test_zero_training_search_retrains_the_best_scored_archs(tmp_path, capsys):
    run = tmp_path / "run"
    body = {**TINY, "search": {**TINY["search"], "evaluator": "gradsign"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(body))
    assert cli.main(["search", str(tmp_path / "c.yaml"), "--out", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "no supernet training" in out and "gradsign score at init" in out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert not [r for r in rows if r["phase"] == "supernet"]
    history = json.loads((run / "search_state.json").read_text())["history"]
    assert len(history) == 12
    # The told scores are GradSign at init on the configured examples, recomputed here.
    cfg = configs.load(run / "config.yaml")
    data = configs.dataset(cfg)
    x, y = data.train.sample(16, 0)
    space = spaces.get("cnn1d", norm="batch").bind(data.input_shape, data.num_classes)
    archs = [a for a, _ in history[:3]]
    expected = proxies.score_population("gradsign", space, archs, x, y)
    np.testing.assert_allclose([s[0] for _, s in history[:3]], expected, rtol=1e-6)
    # The retrained candidates are the two best-scored networks.
    ranked = sorted(history, key=lambda item: -item[1][0])
    retrained = [json.loads((run / "retrain" / str(i) / "arch.json").read_text())["choices"] for i in (0, 1)]
    assert retrained == [ranked[0][0], ranked[1][0]]


def test_grea_search_with_a_supernet_runs_end_to_end(tmp_path):
    run = tmp_path / "run"
    body = {**TINY, "search": {**TINY["search"], "controller": "grea", "mutants": 4,
                               "proxy": "synflow" if "synflow" in proxies.names() else "gradsign"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(body))
    assert cli.main(["search", str(tmp_path / "c.yaml"), "--out", str(run), "--quiet"]) == 0
    state = json.loads((run / "search_state.json").read_text())
    assert state["name"] == "grea" and len(state["history"]) == 12
    info = json.loads((run / "best" / "arch.json").read_text())
    assert info["metrics"]["test_accuracy"] > 0.1


def test_a_proxy_score_that_is_not_a_number_ranks_worst(monkeypatch):
    from launch.phases import search as search_phase
    evaluator = object.__new__(search_phase.ProxyEvaluator)
    evaluator.name, evaluator.space, evaluator.seed, evaluator.chunk = "naswot", None, 0, 1
    evaluator.dtype = "float32"
    evaluator.x = evaluator.y = None
    monkeypatch.setattr(proxies, "score_population",
                        lambda *a, **k: np.array([1.0, np.nan, -np.inf, np.inf]))
    assert evaluator.evaluate([{}] * 4) == [1.0, -1e30, -1e30, 1e30]
