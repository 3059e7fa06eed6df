"""The embedded default: scikit-learn's bundled 8x8 handwritten digits (offline, 1,797 images).

Pixel values 0..16 are scaled to uint8 0..255. The train/val/test split is stratified by
class and fixed by ``split_seed``, so every run on every machine sees the same images.
``image_size`` resizes them (bilinear, once, at load time) for models that need larger
inputs than 8x8, such as AlexNet or C-RNN in quick end-to-end checks.
"""

from __future__ import annotations

from typing import Any

import torch

from rcnnexp.data.tensor import TensorDataModule, stratified_split


class Digits(TensorDataModule):
    channels = 1
    num_classes = 10
    name = "digits"

    def __init__(self, *, root: str, download: bool, val_fraction: float, test_fraction: float,
                 split_seed: int, image_size: int, **transforms: Any) -> None:
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.image_size = image_size
        self.stored_size = (image_size, image_size)
        super().__init__(root=root, download=download, **transforms)

    def missing(self) -> None:
        return None  # bundled with scikit-learn: nothing is read from dataset.root

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

        bunch = load_digits()
        images = torch.from_numpy(bunch.images).mul(255 / 16).round().clamp(0, 255)
        images = images.unsqueeze(1)  # [1797, 1, 8, 8]
        if self.image_size != 8:
            images = torch.nn.functional.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear",
                align_corners=False).round().clamp(0, 255)
        images = images.to(torch.uint8)
        labels = torch.from_numpy(bunch.target).long()
        parts = stratified_split(labels, (self.test_fraction, self.val_fraction), self.split_seed)
        test, val, train = parts
        out = {"train": (images[train], labels[train]), "test": (images[test], labels[test])}
        if len(val):
            out["val"] = (images[val], labels[val])
        return out


__all__ = ["Digits", "stratified_split"]
