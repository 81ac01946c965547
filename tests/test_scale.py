"""A whole `nas search` on eight (fake CPU) devices, and on two processes joined by
`jax.distributed` on localhost, ends on the same architecture with the same metrics as on
one device in one process; supernet losses agree within 1e-5. A run stopped on one process
resumes on two."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

# No BatchNorm: a bias in front of BatchNorm has a zero gradient in exact arithmetic, and
# AdamW turns its rounding noise (which depends on the summation order, so on the device
# count) into full learning-rate steps; the runs would then drift apart for that alone.
TINY = {
    "seed": 0, "space": {"name": "mlp"}, "data": {"name": "digits", "val_fraction": 0.2},
    "supernet": {"method": "sandwich", "epochs": 2, "batch_size": 64},
    "search": {"controller": "aging", "evaluations": 16, "generation": 4, "population": 8,
               "sample": 4, "candidates": 2},
    "retrain": {"epochs": 2, "batch_size": 64},
}


def _env(devices: int) -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _nas(*args) -> list[str]:
    return [sys.executable, "-m", "launch.cli", *args]


def _outcome(run):
    info = json.loads((run / "best" / "arch.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return info, rows


def _assert_same_search(run, reference):
    info, rows = _outcome(run)
    ref_info, ref_rows = _outcome(reference)
    assert info["choices"] == ref_info["choices"]
    assert info["metrics"] == ref_info["metrics"]
    assert [c["choices"] for c in info["search"]["candidates"]] == \
        [c["choices"] for c in ref_info["search"]["candidates"]]
    assert [(r["phase"], r["step"]) for r in rows] == [(r["phase"], r["step"]) for r in ref_rows]
    for row, ref in zip(rows, ref_rows):
        for key, value in ref.items():
            if key.endswith("seconds"):  # timings
                continue
            if key == "loss":
                assert row[key] == pytest.approx(value, abs=1e-5), (row, ref)
            else:
                assert row[key] == value, (key, row, ref)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    directory = tmp_path_factory.mktemp("one-device")
    config = directory / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run = directory / "run"
    done = subprocess.run(_nas("search", str(config), "--out", str(run), "--quiet"), env=_env(1),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "data parallel over 1 cpu device(s)" in done.stdout
    return config, run


def test_eight_devices_search_like_one(reference, tmp_path):
    config, one = reference
    run = tmp_path / "run"
    done = subprocess.run(_nas("search", str(config), "--out", str(run), "--quiet"), env=_env(8),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "data parallel over 8 cpu device(s)" in done.stdout
    _assert_same_search(run, one)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_search_like_one(reference, tmp_path):
    config, one = reference
    run = tmp_path / "run"
    coordinator = f"127.0.0.1:{_free_port()}"
    processes = [subprocess.Popen(_nas("search", str(config), "--out", str(run), "--quiet",
                                       "--coordinator", coordinator, "--num-processes", "2",
                                       "--process-id", str(i)),
                                  env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err
    assert "data parallel over 2 cpu device(s) over 2 processes" in outputs[0][0]
    ours = [line for line in outputs[1][0].splitlines() if not line.startswith("[Gloo]")]
    assert ours == []  # only process 0 prints and writes
    _assert_same_search(run, one)


def test_a_one_process_run_resumes_on_two_processes(reference, tmp_path):
    """The batch stream's position does not depend on the process count: a run stopped on
    one process continues on two (each reading its own rows) and ends like the reference."""
    _, one = reference
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "checkpoint": {"every_steps": 3, "every_seconds": None}}))
    run = tmp_path / "run"
    first = subprocess.Popen(_nas("search", str(config), "--out", str(run), "--quiet"), env=_env(1),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while first.poll() is None and not (run / "checkpoints" / "4").exists():
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0 and "nas resume" in out, err
    coordinator = f"127.0.0.1:{_free_port()}"
    processes = [subprocess.Popen(_nas("resume", str(run), "--quiet", "--coordinator", coordinator,
                                       "--num-processes", "2", "--process-id", str(i)),
                                  env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err
    assert "over 2 processes" in outputs[0][0] and "resumed the supernet phase" in outputs[0][0]
    _assert_same_search(run, one)
