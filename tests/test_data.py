import numpy as np
import pytest

from launch import data as datasets
from launch.data import ArraySource, Batches


def test_mnist1d_is_generated_locally_with_default_sizes():
    d = datasets.load("mnist1d", seed=0, val_fraction=0.1)
    assert d.input_shape == (40, 1) and d.num_classes == 10
    assert (len(d.train), len(d.val), len(d.test)) == (3600, 400, 1000)
    x, y = d.train.read(np.arange(5))
    assert x.dtype == np.float32 and y.dtype == np.int32


def test_splits_are_deterministic_disjoint_and_test_is_seed_free():
    a = datasets.load("digits", seed=1, val_fraction=0.2)
    b = datasets.load("digits", seed=1, val_fraction=0.2)
    c = datasets.load("digits", seed=2, val_fraction=0.2)
    np.testing.assert_array_equal(a.val.arrays()[0], b.val.arrays()[0])
    assert not np.array_equal(a.val.arrays()[0], c.val.arrays()[0])
    np.testing.assert_array_equal(a.test.arrays()[0], c.test.arrays()[0])
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert a.input_shape == (8, 8, 1) and a.train.arrays()[0].max() <= 1.0


def test_train_and_val_partition_the_training_split():
    d = datasets.load("synthetic", seed=3, val_fraction=0.25, n_train=400)
    assert len(d.train) == 300 and len(d.val) == 100
    full = datasets.load("synthetic", seed=3, val_fraction=0.0, n_train=400)
    combined = np.concatenate([d.train.arrays()[0], d.val.arrays()[0]])
    assert sorted(r.tobytes() for r in combined) == sorted(r.tobytes() for r in full.train.arrays()[0])


def test_npz_loader_and_its_errors(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.normal(size=(50, 6)), y_train=rng.integers(3, size=50),
             x_test=rng.normal(size=(10, 6)), y_test=rng.integers(3, size=10))
    d = datasets.load("npz", path=str(path), val_fraction=0.2)
    assert d.input_shape == (6,) and len(d.train) == 40  # a table keeps its row shape
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((5, 2)), y_train=np.zeros(5, int), x_test=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="missing array 'y_test'"):
        datasets.load("npz", path=str(bad))
    with pytest.raises(ValueError, match="needs path"):
        datasets.load("npz")
    with pytest.raises(ValueError, match="did you mean 'digits'"):
        datasets.load("digit")


def test_batches_cover_each_epoch_once_and_resume_exactly():
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10, dtype=np.int32)
    stream = Batches(ArraySource(x, y), batch_size=3, seed=7)
    first_epoch = [next(stream)[1] for _ in range(stream.steps_per_epoch)]
    seen = np.concatenate(first_epoch)
    assert len(set(seen.tolist())) == 9  # 3 full batches, the partial one is dropped
    for _ in range(4):
        next(stream)
    saved = stream.state_dict()
    expected = [next(stream)[1].tolist() for _ in range(7)]
    resumed = Batches(ArraySource(x, y), batch_size=3, seed=0)
    resumed.load_state_dict(saved)
    assert [next(resumed)[1].tolist() for _ in range(7)] == expected
    with pytest.raises(ValueError, match="batch_size=20 exceeds"):
        Batches(ArraySource(x, y), batch_size=20)
