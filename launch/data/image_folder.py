"""`image_folder`: images in `root/<split>/<class>/*.png|jpg|jpeg` (torchvision's ImageFolder
layout), decoded with Pillow.

Classes are the training split's sub-folders in sorted order; other splits may hold a
subset of them. Inputs read as float32 [height, width, channels] in [0, 1] (pixel / 255).
With `size` each image is resized (shorter side to `size`) and centre-cropped to it;
without, every image must have the first one's size. `channels` 3 (RGB) or 1 (grey),
by default the first image's. Every file is opened once at load (its header), so a
damaged image is named before the run writes anything; for large sets, convert the
folder once (`nas data convert`) and train from the shards.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from launch.data.core import Sources, bad_path, register

EXTENSIONS = (".png", ".jpg", ".jpeg")



def _files(split_dir: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            continue
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
        if not found:
            raise bad_path(folder, f"class folder holds no image ({', '.join(EXTENSIONS)})")
        files += found
        labels += [label] * len(found)
    return files, np.asarray(labels, np.int32)


class ImageFolderSource:
    """One split's image files, read by index: (float32 [H, W, C] in [0, 1], int label)."""

    def __init__(self, files: list[Path], labels: np.ndarray, size: tuple[int, int], channels: int,
                 resize: bool):
        self.files, self._labels = files, labels
        self.size, self.channels, self.resize = size, channels, resize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        from PIL import Image, UnidentifiedImageError
        path = self.files[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB" if self.channels == 3 else "L")
                if self.resize:
                    image = _resize_crop(image, self.size)
                pixels = np.asarray(image, np.float32)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
            raise bad_path(path, f"is not a readable image ({err})") from None
        if pixels.shape[:2] != self.size:
            raise bad_path(path, f"is {pixels.shape[1]}×{pixels.shape[0]} pixels, the folder's images "
                             f"{self.size[1]}×{self.size[0]}; set data.options.size to resize them")
        return pixels.reshape(*self.size, self.channels) / np.float32(255), int(self._labels[index])


def _resize_crop(image, size: tuple[int, int]):
    """Shorter side scaled to the target's (bilinear), then the centre cut out."""
    from PIL import Image
    height, width = size
    scale = max(height / image.height, width / image.width)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))),
                           Image.Resampling.BILINEAR)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def _check_headers(files: list[Path]) -> None:
    from PIL import Image, UnidentifiedImageError
    from tqdm.auto import tqdm
    for path in tqdm(files, desc="check images", unit="img", disable=len(files) < 20_000):
        try:
            with Image.open(path) as image:
                image.verify()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
            raise bad_path(path, f"is not a readable image ({err})") from None


@register("image_folder")
def _image_folder(path: str | None = None, size=None, channels: int | None = None,
                  splits: tuple = ("train", "val", "test")) -> Sources:
    """Images in path/<split>/<class>/; a "val" folder is a file split (data.val_split: val)."""
    from PIL import Image
    if path is None:
        raise ValueError("data 'image_folder' needs path=ROOT holding train/<class>/*.png and test/…")
    root = Path(path)
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise bad_path(root, "needs sub-folders train/ and test/, each holding one folder per class")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise bad_path(root / "train", "holds no class folder")
    for split in splits:
        if (root / split).is_dir():
            extra = sorted({p.name for p in (root / split).iterdir() if p.is_dir()} - set(classes))
            if extra:
                raise bad_path(root / split / extra[0], "is a class the train split does not have")
    found = {split: _files(root / split, classes) for split in splits if (root / split).is_dir()}
    if channels not in (None, 1, 3):
        raise ValueError(f"config data.options.channels must be 1 or 3, got {channels!r}")
    first = found["train"][0][0]
    _check_headers([f for files, _ in found.values() for f in files])
    with Image.open(first) as image:
        native = (image.height, image.width)
        channels = channels or (1 if image.mode in ("1", "L", "I", "I;16", "F") else 3)
    if size is None:
        target = native
    else:
        target = (size, size) if isinstance(size, int) else tuple(size)
        if len(target) != 2 or not all(isinstance(s, int) and s > 0 for s in target):
            raise ValueError(f"config data.options.size must be a positive int or [height, width], "
                             f"got {size!r}")
    sources = {split: ImageFolderSource(files, labels, target, channels, size is not None)
               for split, (files, labels) in found.items()}
    return Sources(sources.pop("train"), sources.pop("test"), len(classes), (*target, channels),
                   "image", sources)
