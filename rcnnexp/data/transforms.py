"""Preprocessing on whole batches on the training device: normalisation, training crops and
flips, and test-time views. Both data paths use it: the GPU-resident tensors of the small
datasets and the decoded batches that DataLoader workers deliver for the large ones.

A batch arrives as uint8 ``[B, C, H, W]`` at the stored size (CIFAR's 32x32, or 256x256 after
the Caffe-style resize). Training crops are taken with one ``gather`` for the whole batch,
the offsets and flips drawn from the epoch's generator:

* ``crop`` (model input, default the stored size) from the image zero-padded by ``padding``
  pixels, at an offset drawn uniformly from every position that fits (torchvision's
  ``RandomCrop(crop, padding)``), or with ``train_crops=ten`` at one of the five positions of
  the ten views below (C-RNN: "10 sub-crops ... as the training data"), then a horizontal
  flip with probability 1/2 when ``flip`` (``RandomHorizontalFlip``);
* test-time ``views``: ``center`` (one crop), ``grid9`` (RCNN: 3x3 crops ``view_stride``
  pixels apart around the centre), ``ten`` (C-RNN, Caffe: 4 corners + centre, and their
  mirror images).

Normalisation (``normalize``): ``none`` (pixels / 255; RCNN on MNIST), ``channel`` (minus the
training split's per-channel mean, divided by its per-channel std; RecNets), ``pixel`` (minus
the training split's mean image, cropped at the same place as the image; RCNN, Caffe).
Padded pixels are black (0) before normalisation; under ``pixel`` the mean image has no value
there, so padded pixels come out 0 (the mean). The result is multiplied by ``scale`` (Caffe
feeds 0..255 pixels minus the mean: scale 255).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from rcnnexp.data.choices import Normalize, TrainCrops, Views, choice
from rcnnexp.errors import ConfigError

log = logging.getLogger("rcnnexp")



@dataclass
class Stats:
    """Training-split statistics in [0, 1] pixel units (float32, on the CPU until moved)."""

    mean_image: torch.Tensor  # [C, H, W]
    channel_mean: torch.Tensor  # [C]
    channel_std: torch.Tensor  # [C]
    count: int

    def to_dict(self) -> dict[str, object]:
        return {"mean_image": self.mean_image, "channel_mean": self.channel_mean,
                "channel_std": self.channel_std, "count": self.count}


def compute_stats(batches: Iterable[torch.Tensor]) -> Stats:
    """Mean image and per-channel mean/std of uint8 ``[B, C, H, W]`` batches (in float64)."""
    total: torch.Tensor | None = None
    squares: torch.Tensor | None = None
    count = 0
    for batch in batches:
        x = batch.to(torch.float64)
        s = x.sum(dim=0)
        q = x.square().sum(dim=(0, 2, 3))
        total = s if total is None else total + s
        squares = q if squares is None else squares + q
        count += len(batch)
    if total is None or squares is None or count == 0:
        raise ValueError("no training images to compute statistics from")
    mean_image = total / count / 255
    pixels = count * total.shape[1] * total.shape[2]
    channel_mean = total.sum(dim=(1, 2)) / pixels / 255
    channel_var = squares / pixels / 255**2 - channel_mean.square()
    channel_std = channel_var.clamp_min(0).sqrt().clamp_min(1e-6)
    return Stats(mean_image.float().cpu(), channel_mean.float().cpu(),
                 channel_std.float().cpu(), count)


def stats_key(*parts: object) -> str:
    """A short digest naming a training split's statistics in a cache file."""
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, torch.Tensor):
            h.update(part.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def cached_stats(cache_dir: Path | None, name: str, key: str,
                 compute: Callable[[], Stats]) -> Stats:
    """Load ``<cache_dir>/rcnnexp-stats-<name>-<key>.pt`` or compute it and write it there.

    A read-only data folder only costs the recomputation (logged once per run).
    """
    path = None if cache_dir is None else cache_dir / f"rcnnexp-stats-{name}-{key}.pt"
    if path is not None and path.is_file():
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            return Stats(d["mean_image"], d["channel_mean"], d["channel_std"], int(d["count"]))
        except Exception as err:  # a damaged cache is recomputed, never trusted
            log.warning("ignoring the unreadable statistics cache %s (%s)", path, err)
    stats = compute()
    if path is not None:
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".stats-", suffix=".pt")
            os.close(fd)
            torch.save(stats.to_dict(), tmp)
            os.replace(tmp, path)
        except OSError as err:
            log.info("could not cache the training-set statistics in %s (%s); they are "
                     "recomputed at each run", path.parent, err)
    return stats


class BatchPipeline:
    """Normalise, crop, flip and make test views of uint8 batches, all on their device."""

    def __init__(self, size: tuple[int, int], *, normalize: str, crop: int | None,
                 padding: int, flip: bool, views: str, view_stride: int, scale: float,
                 train_crops: str) -> None:
        """The keywords are the dataset schema's (``rcnnexp/config/dataset.py``), which holds
        their defaults; each dataset passes them on from its config."""
        normalize = choice(Normalize, "dataset.normalize", normalize)
        views = choice(Views, "dataset.views", views)
        train_crops = choice(TrainCrops, "dataset.train_crops", train_crops)
        H, W = size
        h, w = (H, W) if crop is None else (crop, crop)
        if h > H or w > W:
            raise ConfigError(f"dataset.crop={crop} is larger than the {H}x{W} images this "
                              f"dataset holds; choose a crop of at most {min(H, W)}")
        if padding < 0:
            raise ConfigError(f"dataset.padding must be zero or more, got {padding}")
        if views in ("grid9", "ten") and (h, w) == (H, W):
            # every view would be the whole image: the average of copies of one prediction
            raise ConfigError(
                f"dataset.views={views} takes crops at several places in the image, but the "
                f"crop is the whole {H}x{W} image (dataset.crop={crop or 'null'}): set "
                f"dataset.crop below {min(H, W)}, or dataset.views=center; e.g. "
                "dataset.crop=24 on 32x32 images (RCNN)")
        if views == "grid9":
            room = min(min(c, full - c) for c, full in (
                (round((H - h) / 2.0), H - h), (round((W - w) / 2.0), W - w)))
            if room == 0:
                raise ConfigError(
                    f"dataset.views=grid9 moves its views dataset.view_stride pixels off the "
                    f"centre each way, and a {h}x{w} crop of {H}x{W} images leaves no room: "
                    f"choose dataset.crop at most {min(H, W) - 2}; e.g. dataset.crop=24 "
                    "dataset.view_stride=4 on 32x32 images (RCNN)")
            if view_stride <= 0 or view_stride > room:
                raise ConfigError(
                    f"dataset.views=grid9 needs dataset.view_stride from 1 to {room} for "
                    f"{h}x{w} crops of {H}x{W} images (got {view_stride}); e.g. "
                    "dataset.crop=24 dataset.view_stride=4 on 32x32 images (RCNN)")
        self.size = (H, W)
        self.out_size = (h, w)
        self.normalize = normalize
        self.padding = padding
        self.flip = flip
        self.views = views
        self.view_stride = view_stride
        self.scale = scale
        self.train_crops = train_crops
        self.mean: torch.Tensor | None = None  # [1, C, H, W] (pixel) or [1, C, 1, 1]
        self.std: torch.Tensor | None = None  # [1, C, 1, 1] (channel)
        self._ten_tables: dict[torch.device, torch.Tensor] = {}  # device -> [5, 2]

    # -- statistics -------------------------------------------------------------------------
    def set_stats(self, stats: Stats | None, device: torch.device) -> None:
        if self.normalize == "pixel":
            assert stats is not None
            self.mean = stats.mean_image.to(device).unsqueeze(0)
        elif self.normalize == "channel":
            assert stats is not None
            self.mean = stats.channel_mean.to(device).view(1, -1, 1, 1)
            self.std = stats.channel_std.to(device).view(1, -1, 1, 1)

    @property
    def needs_stats(self) -> bool:
        return self.normalize != "none"

    # -- geometry ---------------------------------------------------------------------------
    def five_positions(self) -> list[tuple[int, int]]:
        """(top, left) of the 4 corner crops and the centre crop in the stored image."""
        H, W = self.size
        h, w = self.out_size
        return [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w), self.center()]

    def center(self) -> tuple[int, int]:
        """(top, left) of the centre crop, rounded as torchvision's ``center_crop``."""
        H, W = self.size
        h, w = self.out_size
        return round((H - h) / 2.0), round((W - w) / 2.0)

    def view_offsets(self) -> list[tuple[int, int, bool]]:
        """(top, left, flipped) of each test-time view in the stored image."""
        ct, cl = self.center()
        if self.views == "center":
            return [(ct, cl, False)]
        if self.views == "grid9":
            s = self.view_stride
            return [(ct + dy * s, cl + dx * s, False) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        return [(t, l, f) for f in (False, True) for t, l in self.five_positions()]

    def ten_table(self, device: torch.device) -> torch.Tensor:
        """The five (top, left) positions in the padded image, as a tensor on ``device``:
        built once per device, since building it from Python numbers is a host-to-device
        copy that waits for the device (one per batch would stall a CUDA step)."""
        table = self._ten_tables.get(device)
        if table is None:
            table = torch.tensor(self.five_positions(), device=device) + self.padding
            self._ten_tables[device] = table
        return table

    @property
    def num_views(self) -> int:
        return len(self.view_offsets())

    def draw(self, n: int, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random (top, left) offsets in the padded image and flip flags for ``n`` images."""
        H, W = self.size
        h, w = self.out_size
        p = self.padding
        dev = generator.device
        if self.train_crops == "ten":
            table = self.ten_table(dev)
            pos = table[torch.randint(0, 5, (n,), generator=generator, device=dev)]
            top, left = pos[:, 0], pos[:, 1]
        else:
            top = torch.randint(0, H + 2 * p - h + 1, (n,), generator=generator, device=dev)
            left = torch.randint(0, W + 2 * p - w + 1, (n,), generator=generator, device=dev)
        if self.flip:
            flip = torch.rand(n, generator=generator, device=dev) < 0.5
        else:
            flip = torch.zeros(n, dtype=torch.bool, device=dev)
        return top, left, flip

    # -- transforms -------------------------------------------------------------------------
    def train(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crops (and flips) of a uint8 batch, normalised: float32 [B, C, h, w]."""
        top, left, flip = self.draw(len(images), generator)
        dev = images.device
        return self.crops(images, top.to(dev), left.to(dev), flip.to(dev))

    def crops(self, images: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
              flip: torch.Tensor) -> torch.Tensor:
        """Crop every image at its own offset (in the padded image), flip, normalise."""
        B, C, H, W = images.shape
        h, w = self.out_size
        p = self.padding
        if p == 0 and not self.flip and (h, w) == (H, W):  # nothing to move: no gather
            return self._normalize(images, self.mean if self.normalize == "pixel" else None)
        if p:
            images = F.pad(images, (p, p, p, p))  # black borders
        Hp, Wp = H + 2 * p, W + 2 * p
        rows = top[:, None] + torch.arange(h, device=images.device)  # [B, h]
        cols = left[:, None] + torch.arange(w, device=images.device)  # [B, w]
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        index = (rows[:, :, None] * Wp + cols[:, None, :]).view(B, 1, h * w).expand(B, C, h * w)
        out = images.reshape(B, C, Hp * Wp).gather(2, index).view(B, C, h, w)
        mean = None
        if self.normalize == "pixel":
            assert self.mean is not None
            m = F.pad(self.mean, (p, p, p, p)) if p else self.mean  # no mean in the border
            mean = m.reshape(1, C, Hp * Wp).expand(B, C, Hp * Wp).gather(2, index)
            mean = mean.view(B, C, h, w)
        return self._normalize(out, mean)

    def eval(self, images: torch.Tensor) -> torch.Tensor:
        """Test-time views of a uint8 batch, normalised: float32 [B, V, C, h, w]."""
        h, w = self.out_size
        out = []
        for top, left, flipped in self.view_offsets():
            x = images[:, :, top:top + h, left:left + w]
            mean = None
            if self.normalize == "pixel":
                assert self.mean is not None
                mean = self.mean[:, :, top:top + h, left:left + w]
            v = self._normalize(x, mean)
            out.append(v.flip(-1) if flipped else v)
        return torch.stack(out, dim=1)

    def _normalize(self, x: torch.Tensor, pixel_mean: torch.Tensor | None) -> torch.Tensor:
        y = x.to(torch.float32).div_(255)
        if self.normalize == "pixel":
            assert pixel_mean is not None
            y = y.sub_(pixel_mean)
        elif self.normalize == "channel":
            assert self.mean is not None and self.std is not None
            y = y.sub_(self.mean).div_(self.std)
        if self.scale != 1.0:
            y = y.mul_(self.scale)
        return y
