"""benchmarks/device.py: the prepared accelerator check runs (`--quick`, on CPU) and its numbers
are there and sensible; peak FLOP/s, MFU and device counts."""
import json
from types import SimpleNamespace

import pytest

from benchmarks import device


def test_quick_run_writes_every_section(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = device.main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    printed = capsys.readouterr().out
    assert "MFU" in printed and "examples/s" in printed and str(out) in printed
    assert result["quick"] is True and result["device"]["platform"] == "cpu"
    assert result["device"]["peak_flops"] == {"float32": None, "bfloat16": None}   # a CPU: unknown
    steps = result["supernet_steps"]
    assert [(r["space"], r["dtype"]) for r in steps] == [
        ("vit", "float32"), ("vit", "bfloat16"), ("convnet", "float32"), ("convnet", "bfloat16")]
    for r in steps:
        assert r["step_ms"] > 0 and r["flops_per_step"] > 0 and r["mfu"] is None
        assert r["achieved_flops"] == pytest.approx(r["flops_per_step"] / (r["step_ms"] / 1e3))
    assert [r["chunk"] for r in result["population"]] == list(device.CHUNKS[:2])
    assert all(r["archs_per_second"] > 0 for r in result["population"])
    split, = result["splits"]
    assert split["sub_supernets"] == 2 and split["joint_steps_per_second"] > 0
    assert split["joint_over_sequential"] == pytest.approx(
        split["joint_steps_per_second"] / split["sequential_steps_per_second"])
    first = result["devices"][0]
    assert first["devices"] == 1 and first["steps_per_second"] > 0 and first["vs_one"] == 1.0
    pipeline, = result["input_pipeline"]
    assert pipeline["workers"] == 0 and pipeline["examples_per_second"] > 0
    assert set(result["seconds"]) == {"supernet_steps", "population", "splits", "devices", "input_pipeline"}


def test_peak_flops_by_device_kind_and_mfu():
    def kind(name):
        return SimpleNamespace(device_kind=name)
    assert device.peak_flops(kind("NVIDIA H100 80GB HBM3"))["bfloat16"] == 989e12
    assert device.peak_flops(kind("NVIDIA H100 PCIe"))["bfloat16"] == 756e12
    assert device.peak_flops(kind("NVIDIA H200"))["float32"] == 494.5e12
    assert device.peak_flops(kind("NVIDIA A100-SXM4-80GB"))["bfloat16"] == 312e12
    assert device.peak_flops(kind("TPU v4")) == {"bfloat16": 275e12, "float32": None}
    assert device.peak_flops(kind("TPU v5 lite"))["bfloat16"] == 197e12
    assert device.peak_flops(kind("cpu")) == {"float32": None, "bfloat16": None}
    assert device.mfu(989e12, 2.0, 989e12) == 0.5
    assert device.mfu(1e12, 1.0, None) is None


def test_device_counts_double_up_to_every_device():
    assert device.device_counts(1) == [1]
    assert device.device_counts(8) == [1, 2, 4, 8]
    assert device.device_counts(6) == [1, 2, 4, 6]
