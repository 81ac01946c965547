"""The `nas search` YAML config: defaults, overrides and one-line errors."""
import pytest

from launch import config


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
