import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def compile_counter():
    """Counts XLA backend compilations from the moment the fixture is used."""
    events = []

    def listener(name, *args, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield events
    jax.monitoring.unregister_event_duration_listener(listener)


DIGITS_TRAIN = 1200  # scikit-learn's digits 0 … 1199 are the folder's train split, the rest test


def digits_uint8():
    """scikit-learn's digits as 8-bit images [1797, 8, 8] and their labels."""
    import numpy as np
    from sklearn.datasets import load_digits
    bunch = load_digits()
    return np.rint(bunch.images * 255 / 16).astype(np.uint8), bunch.target.astype(np.int32)


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory):
    """scikit-learn's digits written as an image folder: ROOT/{train,test}/digit<c>/<index>.png."""
    from PIL import Image
    root = tmp_path_factory.mktemp("digits-folder")
    pixels, labels = digits_uint8()
    for i, (image, label) in enumerate(zip(pixels, labels)):
        target = root / ("train" if i < DIGITS_TRAIN else "test") / f"digit{label}"
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(target / f"{i:05d}.png")
    return root
