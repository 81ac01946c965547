"""The `nas search` YAML config: defaults, overrides and one-line errors."""
import dataclasses

import pytest
import yaml

from launch import config
from search import controllers


def test_defaults_and_overrides():
    cfg = config.from_dict({"space": "mlp", "data": "digits"},
                           ["search.max_params=5000", "supernet.method=gdas", "retrain.epochs=3"])
    assert cfg.space.name == "mlp" and cfg.data.name == "digits"
    assert cfg.search.max_params == 5000 and cfg.supernet.method == "gdas"
    assert cfg.retrain.epochs == 3 and cfg.supernet.epochs == 30
    again = config.from_dict(config.Config().to_dict())
    assert again == config.Config()


@pytest.mark.parametrize("raw, overrides, message", [
    ({"serch": {}}, [], r"unknown config key 'serch' \(did you mean 'search'\?\)"),
    ({"search": {"max_param": 5}}, [], r"'search.max_param' \(did you mean 'search.max_params'\?\)"),
    ({}, ["supernet.epoch=3"], r"did you mean 'supernet.epochs'"),
    ({"supernet": {"method": "dart"}}, [], r"supernet.method = 'dart' is not allowed.*'darts'"),
    ({"supernet": {"epochs": "ten"}}, [], r"supernet.epochs = 'ten': expected int"),
    ({"supernet": {"epochs": 0}}, [], r"supernet.epochs = 0: must be ≥ 1"),
    ({"retrain": {"learning_rate": -1.0}}, [], r"retrain.learning_rate = -1.0: must be ≥ 0"),
    ({"search": {"controller": "argmax"}}, [], r"'argmax' needs a gradient supernet.method"),
    ({"data": {"val_fraction": 0.0}}, [], r"needs a validation split"),
    ({"search": {"objectives": ["params"]}}, [], r"'accuracy' first"),
    ({"search": {"min_params": 10, "max_params": 5}}, [], r"min_params = 10 exceeds"),
    ({}, ["search.max_params"], r"expected key=value"),
    ({"search": 3}, [], r"config.search: expected a mapping"),
    ({"retrain": {"mode": "finetune", "space_options": {"norm": "none"}}}, [],
     r"space_options needs retrain.mode = 'scratch'"),
    ({"search": {"controller": "agin"}}, [], r"search.controller = 'agin' is not allowed.*'aging'"),
    ({"search": {"population": 5}}, [],
     r"search.controller = 'aging': aging: sample \(10\) must be ≤ population"),
    ({"sparse": {"method": "rigll"}}, [], r"sparse.method = 'rigll' is not allowed.*'rigl'"),
    ({"sparse": {"allocation": "dpp"}}, [], r"sparse.allocation = 'dpp' is not allowed.*'dp'"),
    ({"data": "mnist"}, [], r"data.name = 'mnist' is not allowed.*'mnist1d'"),
    ({"space": {"options": {"nrom": "batch"}}}, [],
     r"space.options: space 'cnn1d' has no option 'nrom' \(did you mean 'norm'\?\)"),
    ({"space": {"options": {"norm": "group"}}}, [], r"space.options = .*norm must be 'none' or 'batch'"),
    ({"sparse": {"sparsity": 0.5, "method": "nm", "options": {"mm": 8}}}, [],
     r"sparse.method = 'nm': .*no option 'mm' \(did you mean 'm'\?\)"),
])
def test_bad_configs_name_the_field(raw, overrides, message):
    with pytest.raises(ValueError, match=message):
        config.from_dict(raw, overrides)


def test_load_reports_missing_files_and_bad_yaml(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        config.load(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        config.load(listed)


def test_dump_round_trips(tmp_path):
    cfg = config.from_dict({"search": {"max_params": 123}})
    path = tmp_path / "c.yaml"
    path.write_text(config.dump(cfg))
    assert config.load(path) == cfg


def test_names_are_checked_against_the_registries(monkeypatch):
    # `nm` is a registered sparse updater (the README offers it); a hand-kept list once refused it.
    cfg = config.from_dict({"sparse": {"method": "nm", "sparsity": 0.5, "options": {"m": 8}}})
    assert config.updater(cfg, 0.5, total_steps=10).m == 8
    assert config.from_dict({"sparse": {"method": "nm"}}).sparse.method == "nm"

    @controllers.register("greedy")
    class Greedy(controllers.Controller):
        def __init__(self, space, seed=0, population: int = 5, **kw):
            super().__init__(space, seed, **kw)
    monkeypatch.setitem(controllers._REGISTRY, "greedy", Greedy)
    cfg = config.from_dict({"search": {"controller": "greedy", "population": 7}})
    assert config.controller(cfg) == ("greedy", {"population": 7})  # aging's sample ≤ 7 not asked
    assert "greedy" in config.choices()["search.controller"]
    assert config.controller(config.from_dict({"supernet": {"method": "drnas"}})) == ("argmax", {})
    assert config.controller(config.Config()) == ("aging", {"population": 50, "sample": 10})


@pytest.mark.parametrize("method, learning_rate, weight_decay", [
    ("sandwich", 0.01, 1e-4), ("uniform", 0.01, 1e-4), ("gdas", 0.025, 3e-4), ("darts", 0.025, 3e-4)])
def test_method_defaults_are_filled_in_and_dumped(method, learning_rate, weight_decay):
    cfg = config.from_dict({"supernet": {"method": method}})
    assert (cfg.supernet.learning_rate, cfg.supernet.weight_decay) == (learning_rate, weight_decay)
    dumped = yaml.safe_load(config.dump(cfg))["supernet"]
    assert (dumped["learning_rate"], dumped["weight_decay"]) == (learning_rate, weight_decay)
    given = config.from_dict({"supernet": {"method": method, "learning_rate": 0.5}})
    assert given.supernet.learning_rate == 0.5 and given.supernet.weight_decay == weight_decay


def test_every_field_has_help_and_describe_is_a_valid_config():
    for cls in (config.Config, config.SpaceConfig, config.DataConfig, config.SupernetConfig,
                config.SearchConfig, config.RetrainConfig, config.SparseConfig):
        helps = config.field_help(cls)
        assert set(helps) == {f.name for f in dataclasses.fields(cls)}
        assert all(helps.values()), [k for k, v in helps.items() if not v]
    assert config.field_help(config.SearchConfig)["objectives"] == "nsga2; also flops, nonzero"
    text = config.describe()
    assert config.from_dict(yaml.safe_load(text)) == config.Config()
    assert "  learning_rate: null" in text and "gradient 0.025" in text
    assert "one of: gmp, granet, lamp, magnitude, nm," in text
    section = config.describe("supernet")
    assert section.startswith("supernet:") and "retrain:" not in section
    with pytest.raises(ValueError, match=r"unknown config section 'superne' \(did you mean 'supernet'"):
        config.describe("superne")
