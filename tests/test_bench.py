"""`nas bench`: arch selection, the table file, a resumable build, rank correlations,
controllers on a table and a supernet's ranking against one."""
import csv
import json

import numpy as np
import pytest
from scipy import stats

import spaces
from launch import cli
from launch.bench import Table, controllers, load
from launch.bench import proxies as bench_proxies
from launch.bench import supernet as bench_supernet
from launch.bench.build import Recipe, build, select
from search import predictor

SMALL_MLP = {"max_depth": 2, "widths": (4, 8, 16), "activations": ("relu",)}


def _mlp():
    return spaces.get("mlp", **SMALL_MLP).bind((64,), 10)


def test_select_spreads_archs_evenly_over_log_params():
    space = spaces.get("cnn1d").bind((40, 1), 10)
    archs = select(space, 40)
    params = np.array([space.params(a) for a in archs])
    assert len({json.dumps(a) for a in archs}) == 40
    assert all(space.canonical(a) == a for a in archs)
    low, high, _ = space.extremes(space.params)
    assert params.min() == space.params(low) and params.max() == space.params(high)
    # Brute force: the networks closest to 40 log-spaced targets, one per target.
    logp = np.log(params)
    targets = np.linspace(np.log(params.min()), np.log(params.max()), 40)
    assert np.abs(np.sort(logp) - targets).max() < 0.25
    assert (params < 5000).sum() >= 15


def test_select_all_is_every_distinct_network_and_too_many_is_an_error():
    space = _mlp()
    assert len(select(space, None)) == space.distinct_size()
    with pytest.raises(ValueError, match="distinct networks"):
        select(space, space.distinct_size() + 1)


def _table(space, archs, accuracy, info=None):
    return Table(space, archs, np.array([space.params(a) for a in archs]),
                 np.array([space.flops(a) for a in archs]), np.asarray(accuracy, float),
                 np.ones(len(archs)), info or {"space": space.to_dict(), "data": {"name": "digits",
                                                                                  "options": {}},
                                               "seeds": list(range(np.shape(accuracy)[1]))})


def test_a_table_round_trips_and_finds_rows_by_network(tmp_path):
    space = _mlp()
    archs = select(space, 5)
    table = _table(space, archs, np.random.default_rng(0).random((5, 2)).round(4))
    table.save(tmp_path / "t.csv")
    again = load(tmp_path / "t.csv")
    assert again.archs == archs and again.space == space
    np.testing.assert_allclose(again.accuracy, table.accuracy)
    np.testing.assert_allclose(again.mean, table.accuracy.mean(1), atol=1e-9)
    odd = {**archs[0], "width_1": 16 if archs[0]["width_1"] != 16 else 8}
    if archs[0]["depth"] == 1:      # width_1 unused at depth 1: the same network
        assert again.lookup(odd) == 0
    with pytest.raises(FileNotFoundError, match="nas bench build"):
        load(tmp_path / "missing.csv")


def test_build_is_resumable_and_refuses_other_settings(tmp_path):
    out = tmp_path / "t.csv"
    space = spaces.get("mlp", **SMALL_MLP)
    recipe = Recipe(epochs=1, batch_size=64)
    table = build(space, out, data="digits", archs=3, seeds=2, recipe=recipe, workers=2, progress=False)
    assert len(table) == 3 and table.accuracy.shape == (3, 2)
    assert all(0.0 <= a <= 1.0 for a in table.accuracy.flat)
    # An interrupted build: drop one finished row; building again trains only that arch.
    with out.open(newline="") as f:
        rows = list(csv.reader(f))
    with out.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([rows[0], rows[1], rows[3]])
    assert len(load(out)) == 2
    again = build(space, out, data="digits", archs=3, seeds=2, recipe=recipe, workers=1, progress=False)
    assert again.archs == table.archs
    np.testing.assert_allclose(again.accuracy[[0, 2]], table.accuracy[[0, 2]], atol=5e-5)  # 4 decimals
    with pytest.raises(ValueError, match="recipe"):
        build(space, out, data="digits", archs=3, seeds=2, recipe=Recipe(epochs=2, batch_size=64),
              workers=1, progress=False)


def test_correlations_match_a_hand_computed_spearman_and_kendall():
    space = _mlp()
    archs = select(space, 6)
    accuracy = np.array([[0.1], [0.4], [0.3], [0.2], [0.6], [0.5]])
    table = _table(space, archs, accuracy)
    score = np.array([[1.0, 3.0, 2.0, 4.0, 6.0, 5.0]])
    result = bench_proxies.correlations(table, {"p": score})["p"]
    # Hand: ranks of accuracy 1 4 3 2 6 5, of score 1 3 2 4 6 5; d² = 0+1+1+4+0+0 = 6.
    assert result["rho"] == pytest.approx(1 - 6 * 6 / (6 * 35))
    concordant = sum(np.sign(score[0, i] - score[0, j]) == np.sign(accuracy[i, 0] - accuracy[j, 0])
                     for i in range(6) for j in range(i + 1, 6))
    assert result["tau"] == pytest.approx((2 * concordant - 15) / 15)


def test_table_space_moves_stay_in_the_table_at_the_nearest_network():
    space = _mlp()
    archs = select(space, 8)
    table_space = controllers.TableSpace(_table(space, archs, np.zeros((8, 1))))
    rng = np.random.default_rng(0)
    index = np.stack([table_space.index_vector(a) for a in archs])
    for _ in range(30):
        parent = archs[rng.integers(8)]
        child = table_space.mutate(parent, rng)
        assert child in archs and child != parent
        mixed = table_space.crossover(parent, archs[rng.integers(8)], rng)
        assert mixed in archs
    # Nearest by option steps, brute force.
    probe = {**archs[0], "width_0": 16}
    distance = np.abs(index - table_space.index_vector(probe)).sum(1)
    assert distance[archs.index(table_space._nearest(probe, rng))] == distance.min()


def test_regret_is_the_gap_to_the_best_mean_found_so_far():
    space = _mlp()
    archs = select(space, 10)
    accuracy = np.random.default_rng(1).random((10, 2))
    table = _table(space, archs, accuracy)
    curves = controllers.regret_curves(table, ["random", "aging"], runs=3, evaluations=10, progress=False)
    for curve in curves.values():
        assert np.all(np.diff(curve, axis=1) <= 1e-12) and np.all(curve >= 0)
    # Random search without repeats sees all 10 networks in 10 evaluations.
    assert np.allclose(curves["random"][:, -1], 0.0)
    text = controllers.report(curves, (5, 10))
    assert "random" in text and "±" in text


def test_bench_cli_errors_name_the_flag(tmp_path, capsys):
    assert cli.main(["bench", "proxies", str(tmp_path / "none.csv")]) == 2
    assert "nas bench build" in capsys.readouterr().err
    space = _mlp()
    archs = select(space, 4)
    _table(space, archs, np.zeros((4, 1))).save(tmp_path / "t.csv")
    assert cli.main(["bench", "controllers", str(tmp_path / "t.csv"), "--runs", "0"]) == 2
    assert "--runs must be ≥ 1" in capsys.readouterr().err


def test_params_proxy_ranks_a_table_ordered_by_params_perfectly(tmp_path, capsys):
    space = _mlp()
    archs = select(space, 6)
    accuracy = np.array([[space.params(a) / 1e4] for a in archs])
    table = _table(space, archs, accuracy)
    table.save(tmp_path / "t.csv")
    assert cli.main(["bench", "proxies", str(tmp_path / "t.csv"), "--proxies", "params",
                     "--seeds", "1", "--png", str(tmp_path / "p.png"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "params" in out and "1.000" in out
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_study_picks_and_correlations_against_brute_force():
    space = _mlp()
    archs = select(space, 6)
    truth = np.array([0.1, 0.5, 0.3, 0.9, 0.7, 0.2])
    table = _table(space, archs, truth[:, None])
    supernet = np.array([0.2, 0.4, 0.1, 0.3, 0.6, 0.5])
    gradsign = np.array([1.0, 2.0, 3.0, 6.0, 5.0, 4.0])
    within = np.array([True, True, False, True, True, True])
    result = bench_supernet.study(table, supernet, gradsign, within, k=2)
    assert result[("all", "supernet")]["top1"] == 0.7          # supernet's best is arch 4
    assert result[("all", "supernet")]["topk"] == 0.7          # top 2: archs 4 and 5
    assert result[("all", "gradsign")]["top1"] == 0.9
    largest = np.lexsort((-table.flops, -table.params))  # most FLOPs first among equal params
    assert result[("all", "params")]["top1"] == truth[largest[0]]
    assert result[("all", "params")]["topk"] == truth[largest[:2]].max()
    assert result[("budget", "supernet")]["archs"] == 5
    assert ("budget", "blend") not in bench_supernet.study(table, supernet, gradsign, within | True, k=2)
    assert result[("all", "supernet")]["tau"] == pytest.approx(stats.kendalltau(supernet, truth).statistic)
    blend = (stats.rankdata(supernet) + stats.rankdata(gradsign)) / 2
    assert result[("all", "blend")]["tau"] == pytest.approx(stats.kendalltau(blend, truth).statistic)


def test_predictor_row_plays_the_retrain_phase_on_the_table():
    # Six archs, accuracy rising with the one feature except the largest network, which is
    # weak: the baseline (k = 2) measures the two largest, the rounds go on from the better.
    space = _mlp()
    archs = select(space, 6)
    table = _table(space, archs, np.zeros((6, 1)))
    order = np.argsort(table.params, kind="stable")           # smallest first
    truth = np.empty(6)
    truth[order] = [0.1, 0.2, 0.3, 0.4, 0.9, 0.5]             # 2nd largest best, largest worse
    table = _table(space, archs, truth[:, None])
    feature = np.empty((6, 1))
    feature[order, 0] = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    row = bench_supernet.predictor_row(table, predictor.standardize(feature), np.zeros(6), np.ones(6, bool),
                                       2, 1, 0)
    # Measured: the two largest (0.5 and 0.9), then two more; the pick is the 0.9 one.
    assert row["top1"] == 0.9 and row["topk"] == 0.9 and row["best"] == 0.9 and row["archs"] == 6
    # Its last fit saw accuracy rise with the feature: τ is that of the feature's order.
    assert row["tau"] == pytest.approx(stats.kendalltau(feature[:, 0], truth).statistic)
    # k = 3: the baseline and the rounds measure all six, the weakest-looking one included.
    truth[order] = [0.9, 0.2, 0.3, 0.4, 0.5, 0.6]
    table = _table(space, archs, truth[:, None])
    result = bench_supernet.study(table, np.arange(6.0), np.array([3.0, 1, 4, 0, 5, 9]), np.ones(6, bool), 3,
                                  predictor.standardize(feature))
    assert result[("all", "predictor")]["top1"] == 0.9 == result[("all", "predictor")]["topk"]
    # k = 1: the largest, then (one measured: no fit yet) the search's best score, the smallest.
    score = np.zeros(6)
    score[order[0]] = 1.0
    row = bench_supernet.predictor_row(table, predictor.standardize(feature), score, np.ones(6, bool),
                                       1, 1, 0)
    assert row["top1"] == row["topk"] == 0.9
    text = bench_supernet.report([result, result], 2)
    assert "predictor" in text and "± 0.000" in text


def test_supernet_scores_are_the_runs_own_search_scores(tmp_path):
    import yaml
    body = {"seed": 0, "space": {"name": "cnn1d", "options": {"norm": "batch"}},
            "data": {"name": "mnist1d", "val_fraction": 0.2},
            "supernet": {"method": "sandwich", "epochs": 1},
            "search": {"controller": "random", "evaluations": 6, "generation": 3, "candidates": 1,
                       "max_params": 20000},
            "retrain": {"epochs": 1, "space_options": {"norm": "none"}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(body))
    run = tmp_path / "run"
    assert cli.main(["search", str(tmp_path / "c.yaml"), "--out", str(run), "--quiet"]) == 0
    history = json.loads((run / "search_state.json").read_text())["history"]
    space = spaces.get("cnn1d").bind((40, 1), 10)
    archs = [a for a, _ in history[:4]] + [space.extremes(space.params)[1]]
    table = _table(space, archs, np.arange(5.0)[:, None])
    accuracy, within, k, round_ = bench_supernet.supernet_scores(run, table, progress=False)
    np.testing.assert_allclose(accuracy[:4], [s[0] for _, s in history[:4]], atol=1e-9)
    assert within.tolist() == [True] * 4 + [False] and k == 1 and round_ == 2


def test_within_keeps_the_rows_in_the_params_window():
    space = _mlp()
    archs = select(space, 8)
    table = _table(space, archs, np.arange(16.0).reshape(8, 2))
    low, high = int(table.params[2]), int(table.params[5])
    part = table.within(low, high)
    assert part.archs == archs[2:6] and part.accuracy.tolist() == table.accuracy[2:6].tolist()
    assert len(table.within(max_params=int(table.params[0]))) == 1


def test_predictor_study_judges_each_ranking_on_the_held_out_archs(tmp_path, capsys):
    from launch.bench import predictor as bench_predictor
    space = _mlp()
    archs = select(space, 12)
    truth = np.linspace(0.5, 0.9, 12)
    table = _table(space, archs, truth[:, None])
    exact = truth[None] ** 3                      # monotone in the truth: τ 1 everywhere
    reversed_ = -truth[None]                      # τ −1
    columns = {"exact": exact, "log": np.log(truth)[None], "reversed": reversed_}
    result = bench_predictor.study(table, columns, ("ridge",), labels=4, draws=3,
                                   max_params=int(np.median(table.params)))
    assert np.allclose(result["exact"], 1.0) and np.allclose(result["reversed"], -1.0)
    assert np.allclose(result["vote"], 1.0)       # ranks r + r − r: the truth's order
    assert result["ridge"].shape == (3, 2) and np.all(result["ridge"][:, 0] > 0.9)
    text = bench_predictor.report(result, 4, 3, 100)
    assert "exact" in text and "≤ 100 params" in text
    table.save(tmp_path / "t.csv")
    assert cli.main(["bench", "predictor", str(tmp_path / "t.csv"), "--labels", "20", "--quiet"]) == 2
    assert "--labels must be in [2, 12)" in capsys.readouterr().err


def test_params_and_predictor_rows_against_hand_computed_searches():
    space = _mlp()
    archs = select(space, 12)
    params = np.array([space.params(a) for a in archs])
    accuracy = np.random.default_rng(2).random((12, 2))
    table = _table(space, archs, accuracy)
    best = table.mean.max()
    # The params row evaluates the largest networks first: its regret is that order's.
    largest_first = np.argsort(-params, kind="stable")
    expected = best - np.maximum.accumulate(table.mean[largest_first])
    curves = controllers.params_curves(table, runs=2, evaluations=14)
    if len(set(params)) == len(params):  # no ties: every run is that order
        np.testing.assert_allclose(curves[0], np.concatenate([expected, [expected[-1]] * 2]))
    # The predictor starts with the two largest and never repeats one (12 evaluations see all 12).
    features = np.stack([np.log(params), table.mean], axis=1)  # a feature that knows the answer
    curve = controllers.predictor_curves(table, features, runs=1, evaluations=12)[0]
    assert curve[1] == pytest.approx(best - table.mean[largest_first[:2]].max())
    assert curve[-1] == 0.0 and np.all(np.diff(curve) <= 1e-12)
