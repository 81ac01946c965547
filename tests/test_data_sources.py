"""Data sources and the streamed pipeline on data the tests write: scikit-learn's digits as
an image folder of PNGs, the same converted to ArrayRecord shards, and saved as a Hugging
Face dataset. Each source reads the same examples; streams are the same for 0 and 2
workers and for one process or two; augmentation matches a per-record reference; broken
inputs are named on one line (exit 2) before anything is written."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DIGITS_TRAIN, digits_uint8

from launch import data as datasets
from launch.data import ArraySource, Augment, Batches, Split, record_keys, tools


def _file_order(y: np.ndarray) -> np.ndarray:
    """The order an image folder lists examples in: by class, then by file name (index)."""
    return np.lexsort((np.arange(len(y)), y))


@pytest.fixture(scope="module")
def digits():
    """{"train"/"test": (x float32 [n, 8, 8, 1] in [0, 1], y)} in an image folder's order."""
    pixels, labels = digits_uint8()
    out = {}
    for split, rows in (("train", np.arange(DIGITS_TRAIN)), ("test", np.arange(DIGITS_TRAIN, len(labels)))):
        order = rows[_file_order(labels[rows])]
        out[split] = (pixels[order][..., None].astype(np.float32) / 255, labels[order])
    return out


@pytest.fixture(scope="module")
def shards(digit_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ar") / "digits"
    spec = tools.convert(None, str(digit_folder), {}, out, shard_records=500, progress=False)
    assert spec["dtype"] == "uint8"
    assert spec["splits"]["train"]["shards"][-1].endswith("-of-00003.array_record")
    return out


def _sources(name: str, path) -> datasets.Sources:
    return datasets.loader(name)(path=str(path))


def _assert_same_examples(found: datasets.Sources, digits) -> None:
    assert found.num_classes == 10 and found.input_shape == (8, 8, 1) and found.kind == "image"
    for split, source in (("train", found.train), ("test", found.test)):
        x, y = Split(source).arrays()
        np.testing.assert_array_equal(y, digits[split][1])
        np.testing.assert_array_equal(x, digits[split][0])


def test_image_folder_reads_the_pngs_as_written(digit_folder, digits):
    _assert_same_examples(_sources("image_folder", digit_folder), digits)
    assert tools.detect(digit_folder) == "image_folder"


def test_array_record_shards_hold_the_same_examples(shards, digits):
    _assert_same_examples(_sources("array_record", shards), digits)
    assert tools.detect(shards) == "array_record"


def test_hf_save_to_disk_and_parquet_hold_the_same_examples(tmp_path, digits):
    import datasets as hf
    from PIL import Image
    features = hf.Features({"image": hf.Image(), "label": hf.ClassLabel(num_classes=10)})
    tables = {split: hf.Dataset.from_dict(
        {"image": [Image.fromarray(np.rint(x[..., 0] * 255).astype(np.uint8), mode="L") for x in xs],
         "label": ys.tolist()}, features=features) for split, (xs, ys) in digits.items()}
    hf.DatasetDict(tables).save_to_disk(str(tmp_path / "saved"))
    _assert_same_examples(_sources("hf", tmp_path / "saved"), digits)
    flat = tmp_path / "parquet"
    flat.mkdir()
    for split, (xs, ys) in digits.items():  # a table of numbers: [64] rows
        hf.Dataset.from_dict({"x": xs.reshape(len(xs), -1).tolist(), "label": ys.tolist()}).to_parquet(
            str(flat / f"{split}.parquet"))
    found = _sources("hf", flat)
    assert found.input_shape == (64,) and found.kind == "array"
    x, y = Split(found.test).arrays()
    np.testing.assert_allclose(x, digits["test"][0].reshape(len(x), -1), rtol=0, atol=1e-7)
    assert tools.detect(flat) == "hf"


def test_augmentation_matches_a_per_record_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5, 7, 2)).astype(np.float32)
    keys = record_keys(3, 2, np.arange(10, 16))
    out = Augment(crop_padding=2, flip=True)(x, keys)
    for i in range(len(x)):
        image = x[i][:, ::-1] if int(keys[i]) & 1 else x[i]
        top, left = (int(keys[i]) >> 8) % 5, (int(keys[i]) >> 24) % 5
        padded = np.zeros((9, 11, 2), np.float32)
        padded[2:7, 2:9] = image
        np.testing.assert_array_equal(out[i], padded[top:top + 5, left:left + 7])
    # Keys depend on (seed, epoch, index) alone, and differ when any of them does.
    np.testing.assert_array_equal(record_keys(3, 2, [12]), keys[2:3])
    assert len({int(record_keys(s, e, [i])[0]) for s in range(3) for e in range(3) for i in range(3)}) == 27
    flips = (record_keys(0, 0, np.arange(4000)) & np.uint64(1)).mean()
    assert 0.45 < flips < 0.55


def _stream(split, workers=0, process=(0, 1), batch=32):
    return Batches(split, batch, seed=5, augment=Augment(1, True), workers=workers,
                   process_index=process[0], process_count=process[1])


def test_streams_agree_across_sources_workers_and_processes(digit_folder, shards, digits):
    memory = Split(ArraySource(*digits["train"]))
    reference = _stream(memory).take(45)  # past the first epoch (37 batches)
    for name, path in (("image_folder", digit_folder), ("array_record", shards)):
        split = Split(_sources(name, path).train)
        for workers in (0, 2):
            stream = _stream(split, workers)
            try:
                batches = stream.take(45)
            finally:
                stream.close()
            for (x, y), (rx, ry) in zip(batches, reference):
                np.testing.assert_array_equal(y, ry)
                np.testing.assert_array_equal(x, rx)
    halves = [_stream(memory, process=(p, 2)).take(45) for p in range(2)]
    for (x0, y0), (x1, y1), (rx, ry) in zip(*halves, reference):
        np.testing.assert_array_equal(np.concatenate([x0, x1]), rx)
        np.testing.assert_array_equal(np.concatenate([y0, y1]), ry)


def test_a_stream_resumes_at_the_next_batch_with_workers(shards):
    split = Split(_sources("array_record", shards).train)
    stream = _stream(split, workers=2)
    stream.take(40)
    state = stream.state_dict()
    expected = stream.take(3)
    stream.close()
    again = _stream(split, workers=2)
    again.load_state_dict(state)
    for (x, y), (ex, ey) in zip(again.take(3), expected):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
    again.close()


def test_normalize_is_per_channel_statistics_of_train_and_rejects_tables(digit_folder, digits):
    data = datasets.load("image_folder", path=str(digit_folder), normalize=True, val_fraction=0.25)
    x = np.concatenate([data.train.arrays()[0]])
    assert data.scaling.mean.shape == (1,)
    np.testing.assert_allclose(data.scaling.mean, x.mean(), rtol=1e-5)
    np.testing.assert_allclose(data.scaling.std, x.std(), rtol=1e-5)
    with pytest.raises(ValueError, match="data.normalize: data 'synthetic' has inputs"):
        datasets.load("synthetic", normalize=True)
    with pytest.raises(ValueError, match="data.augment: data 'synthetic'"):
        datasets.load("synthetic", augment=Augment(2))


def _nas(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "launch.cli", *args], capture_output=True, text=True,
                          cwd=cwd)


def _broken_copy(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["missing shard", "spec disagrees", "corrupt image", "empty class"])
def test_broken_data_is_named_in_one_line_and_nothing_is_written(digit_folder, shards, tmp_path, damage):
    if damage in ("missing shard", "spec disagrees"):
        path = _broken_copy(shards, tmp_path / "shards")
        name = "array_record"
        if damage == "missing shard":
            victim = path / "train-00001-of-00003.array_record"
            victim.unlink()
        else:
            spec = json.loads((path / "spec.json").read_text())
            spec["input_shape"] = [8, 8, 3]
            (path / "spec.json").write_text(json.dumps(spec))
            victim = path
    else:
        path = _broken_copy(digit_folder, tmp_path / "folder")
        name = "image_folder"
        if damage == "corrupt image":
            victim = path / "train" / "digit3" / "00003.png"
            victim.write_bytes(victim.read_bytes()[:40])
        else:
            victim = path / "train" / "digit7"
            for f in victim.iterdir():
                f.unlink()
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"space": {"name": "mlp"}, "data": {"name": name, "path": str(path)}}))
    out = tmp_path / "run"
    done = _nas("search", str(config), "--out", str(out), "--quiet")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas: error: ") and str(victim) in lines[0], done.stderr
    assert not out.exists()


def test_the_image_example_config_loads_an_image_folder(digit_folder):
    from launch import config as configs
    example = Path(__file__).resolve().parent.parent / "examples" / "images_convnet.yaml"
    cfg = configs.load(example, [f"data.path={digit_folder}"])
    data = configs.dataset(cfg)
    assert data.augment == Augment(4, True) and data.scaled_by == "channel" and data.workers == 2
    assert (len(data.train), len(data.val), len(data.test)) == (1080, 120, 597)
