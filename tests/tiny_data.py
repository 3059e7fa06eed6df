"""Tiny datasets written in each dataset's real on-disk format, for the loader tests.

Every writer takes a root folder (what ``dataset.root`` points at) and lays its files out
exactly where the real download or archive puts them (CIFAR and SVHN: with their MD5s
beside them, :mod:`tiny_checksums`). Images are random but fixed by a
seed, so a test can compare what a loader returns with what was written.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tiny_checksums import record_checksums

if TYPE_CHECKING:
    import torch

# a few sizes that keep every test fast
CIFAR_TRAIN_PER_BATCH = 8  # x 5 batches = 40 training images
CIFAR_TEST = 10
MNIST_TRAIN, MNIST_TEST = 40, 10
SVHN_SIZES = {"train": 60, "test": 10, "extra": 40}  # 6 / 4 per class in train / extra
FOLDER_CLASSES = 3
IMAGE_SIZE = 80  # the tiny JPEG datasets are read at resize=80, crop=72 (>= 67: AlexNet)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- CIFAR (python pickles) ---------------------------------------------------------------------
def _pickle(path: Path, obj: dict) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """``cifar-10-batches-py/``: data_batch_1..5, test_batch, batches.meta. Returns the
    arrays written: train/test images as [N, 32, 32, 3] uint8 and labels."""
    r = rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    train_x, train_y = [], []
    for b in range(1, 6):
        n = CIFAR_TRAIN_PER_BATCH
        x = r.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in r.integers(0, 10, n)]
        _pickle(d / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "labels": y,
                                        "data": x, "filenames": [f"img{i}.png" for i in range(n)]})
        train_x.append(x)
        train_y += y
    x = r.integers(0, 256, (CIFAR_TEST, 3072), dtype=np.uint8)
    y = [int(v) for v in r.integers(0, 10, CIFAR_TEST)]
    _pickle(d / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": y, "data": x,
                               "filenames": [f"t{i}.png" for i in range(CIFAR_TEST)]})
    _pickle(d / "batches.meta", {"label_names": [f"class{i}" for i in range(10)],
                                 "num_cases_per_batch": CIFAR_TRAIN_PER_BATCH, "num_vis": 3072})
    record_checksums(d)
    return {"train_x": _hwc(np.concatenate(train_x)), "train_y": np.array(train_y),
            "test_x": _hwc(x), "test_y": np.array(y)}


def write_cifar100(root: Path, seed: int = 1) -> dict[str, np.ndarray]:
    """``cifar-100-python/``: train, test, meta with fine and coarse labels."""
    r = rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train", 5 * CIFAR_TRAIN_PER_BATCH), ("test", CIFAR_TEST)):
        x = r.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in r.integers(0, 100, n)]
        _pickle(d / name, {"filenames": [f"{name}{i}.png" for i in range(n)],
                           "batch_label": name, "fine_labels": fine,
                           "coarse_labels": [v // 5 for v in fine], "data": x})
        out[f"{name}_x"], out[f"{name}_y"] = _hwc(x), np.array(fine)
    _pickle(d / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                         "coarse_label_names": [f"c{i}" for i in range(20)]})
    record_checksums(d)
    return out


def _hwc(rows: np.ndarray) -> np.ndarray:
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


# -- MNIST (IDX) ---------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file: magic (0, 0, 0x08 = ubyte, ndim), big-endian dims, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", n) for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, seed: int = 2) -> dict[str, np.ndarray]:
    r = rng(seed)
    d = root / "MNIST" / "raw"
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, split, n in (("train", "train", MNIST_TRAIN), ("t10k", "test", MNIST_TEST)):
        x = r.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n) % 10
        write_idx(d / f"{prefix}-images-idx3-ubyte", x)
        write_idx(d / f"{prefix}-labels-idx1-ubyte", y)
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    return out


def write_mnist_digits(root: Path) -> dict[str, np.ndarray]:
    """MNIST's files holding real handwriting: scikit-learn's 1,797 8x8 digits enlarged to
    28x28 (the first 1,437 train, the other 360 test), for checks that depend on what real
    digits look like (pixel statistics), where random pixels would mislead."""
    import torch
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images * (255 / 16)).float()[:, None]
    images = torch.nn.functional.interpolate(images, size=(28, 28), mode="bilinear",
                                             align_corners=False)
    x = images.round().clamp(0, 255).squeeze(1).numpy().astype(np.uint8)
    y = bunch.target.astype(np.uint8)
    d = root / "MNIST" / "raw"
    d.mkdir(parents=True, exist_ok=True)
    n = 1437
    out = {}
    for prefix, split, part in (("train", "train", slice(0, n)), ("t10k", "test", slice(n, None))):
        write_idx(d / f"{prefix}-images-idx3-ubyte", x[part])
        write_idx(d / f"{prefix}-labels-idx1-ubyte", y[part])
        out[f"{split}_x"], out[f"{split}_y"] = x[part], y[part]
    return out


# -- SVHN (.mat) ---------------------------------------------------------------------------------
def write_svhn(root: Path, seed: int = 3) -> dict[str, np.ndarray]:
    """``svhn/{train,test,extra}_32x32.mat``: X as [32, 32, 3, N] uint8, y as [N, 1] in
    1..10 (10 is the digit 0), as the official files store them."""
    from scipy.io import savemat

    r = rng(seed)
    d = root / "svhn"
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in SVHN_SIZES.items():
        x = r.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)
        savemat(d / f"{split}_32x32.mat", {"X": x, "y": y})
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    record_checksums(d)
    return out


# -- JPEG trees ----------------------------------------------------------------------------------
def jpeg_bytes(seed: int, size: tuple[int, int] | None = None, subsampling: int = -1) -> bytes:
    """A small JPEG of a random colour field (sizes vary, as in real photos); chroma at
    PIL's default 4:2:0 unless ``subsampling`` says otherwise (0: 4:4:4, 2: 4:2:0)."""
    from PIL import Image

    r = rng(seed)
    w, h = size or (int(r.integers(40, 90)), int(r.integers(40, 90)))
    base = r.integers(0, 256, (max(h // 8, 1), max(w // 8, 1), 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, subsampling=subsampling)
    return buf.getvalue()


PHOTOS = ("china.jpg", "flower.jpg")  # scikit-learn's two sample photos, 427x640


def photo_jpeg(name: str = "china.jpg", quality: int = 95, subsampling: int = 2) -> bytes:
    """One of scikit-learn's real photos (:data:`PHOTOS`, shipped with it: nothing is
    downloaded or committed) encoded by PIL at ``quality`` with ``subsampling`` (2: 4:2:0,
    as nearly every camera and ILSVRC's files; 0: 4:4:4). Where chroma upsampling matters
    the tiny colour fields mislead: real photos have soft colour edges."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    buf = io.BytesIO()
    Image.fromarray(load_sample_image(name)).save(buf, format="JPEG", quality=quality,
                                                  subsampling=subsampling)
    return buf.getvalue()


def image_bytes(seed: int, kind: str, size: tuple[int, int] = (64, 48),
                subsampling: int = -1) -> bytes:
    """A small image file of one of the kinds an image folder may hold besides plain
    colour JPEGs: ``grey``, ``cmyk`` and ``progressive`` JPEGs (a colour one's chroma as
    ``subsampling`` says: :func:`jpeg_bytes`), and ``png``."""
    from PIL import Image

    r = rng(seed)
    base = r.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    if kind == "grey":
        img.convert("L").save(buf, format="JPEG", quality=90)
    elif kind == "cmyk":
        img.convert("CMYK").save(buf, format="JPEG", quality=90)
    elif kind == "progressive":
        img.save(buf, format="JPEG", quality=90, progressive=True, subsampling=subsampling)
    elif kind == "png":
        img.save(buf, format="PNG")
    else:
        raise ValueError(kind)
    return buf.getvalue()


def difference(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """How two decoders' images differ, pooled over every pair of uint8 arrays (any layout,
    0..255): the mean, 99th percentile and maximum of the per-value absolute difference,
    the share of values that differ, and PSNR in dB (inf where identical). The measure of
    scripts/measure_chroma.py (docs/data.md) and of the nvJPEG tests' tolerances."""
    diff = np.concatenate([np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).ravel()
                           for a, b in pairs])
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return {"mean": float(diff.mean()), "p99": float(np.percentile(diff, 99)),
            "max": float(diff.max()), "differ": float(np.mean(diff > 0)),
            "psnr": float("inf") if mse == 0 else float(10 * np.log10(255 ** 2 / mse))}


def cuda_decode_model(files: list[bytes], size: tuple[int, int]) -> torch.Tensor:
    """``decode_batch`` of these files as it runs on CUDA, modelled on the CPU: the
    project's own path, with the two device kernels replaced by CPU stand-ins. nvJPEG
    replicates 4:2:0 chroma: libjpeg-turbo's own replication (``do_fancy_upsampling``
    off, through simplejpeg, not a project dependency: ImportError where it is absent);
    nvJPEG's IDCT is not libjpeg-turbo's accurate one: its fast integer IDCT, its least
    accurate, stands in; CUDA resizes in float32 passes (``float_pass``), not the CPU's
    uint8 kernel. uint8 ``[B, 3, H, W]``, as ``decode_batch`` gives."""
    from unittest import mock

    import simplejpeg
    import torch

    from rcnnexp.data import decode

    def decode_jpegs(data: list[torch.Tensor], device: object) -> list[torch.Tensor]:
        return [torch.from_numpy(simplejpeg.decode_jpeg(
            d.numpy().tobytes(), colorspace="RGB", fastdct=True, fastupsample=True)
        ).permute(2, 0, 1) for d in data]

    def interpolate(images: torch.Tensor, to: tuple[int, int]) -> torch.Tensor:
        return images if tuple(images.shape[-2:]) == to else decode.float_pass(images, to)

    payloads = [torch.frombuffer(bytearray(f), dtype=torch.uint8)
                if decode.device_decodable(f) else
                decode.load_image(io.BytesIO(f), size, draft=False) for f in files]
    with mock.patch.object(decode, "_decode_jpegs", decode_jpegs), \
            mock.patch.object(decode, "_interpolate", interpolate):
        return decode.decode_batch(payloads, size, torch.device("cpu"))


def nvjpeg_cases() -> dict[str, tuple[list[bytes], tuple[int, int]]]:
    """What the nvJPEG tests (test_data_decode.py) decode, and to which size, by case.
    ``photos``: scikit-learn's two real photos at quality 75 and 95, 4:2:0 as nearly every
    photo is, warped to 256 as ILSVRC's are. ``tiny 4:4:4``: the loader tests' tiny colour
    fields and each kind of file, encoded with full-resolution chroma, which nvJPEG and PIL
    rebuild alike; ``tiny 4:2:0``: the same at PIL's default, where replicated chroma
    moves the sharp colour-block edges of an 8x-enlarged colour field by several levels
    (docs/data.md)."""

    def tiny(subsampling: int) -> list[bytes]:
        return [*(jpeg_bytes(s, subsampling=subsampling) for s in range(8)),
                image_bytes(3, "grey"), image_bytes(4, "progressive", subsampling=subsampling),
                image_bytes(5, "cmyk")]

    size = (IMAGE_SIZE, IMAGE_SIZE)
    return {"photos": ([photo_jpeg(n, q, 2) for n in PHOTOS for q in (75, 95)], (256, 256)),
            "tiny 4:4:4": (tiny(0), size), "tiny 4:2:0": (tiny(-1), size)}


def write_jpeg(path: Path, seed: int, subsampling: int = -1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(seed, subsampling=subsampling))


WNIDS = ["n01440764", "n01443537", "n01484850"][:FOLDER_CLASSES]


def write_imagenet_folders(root: Path, train_per_class: int = 4, val_per_class: int = 2) -> None:
    """``imagenet/train/<wnid>/*.JPEG`` and ``imagenet/val/<wnid>/*.JPEG``."""
    d = root / "imagenet"
    seed = 100
    for c, wnid in enumerate(WNIDS):
        for i in range(train_per_class):
            write_jpeg(d / "train" / wnid / f"{wnid}_{i + 1}.JPEG", seed := seed + 1)
        for i in range(val_per_class):
            write_jpeg(d / "val" / wnid / f"ILSVRC2012_val_{c * val_per_class + i + 1:08d}.JPEG",
                       seed := seed + 1)


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_imagenet_archives(root: Path, train_per_class: int = 4) -> list[int]:
    """The official archives in miniature: ``ILSVRC2012_devkit_t12.tar.gz`` (data/meta.mat
    with the synsets, the validation ground truth), ``ILSVRC2012_img_train.tar`` (one tar per
    class) and ``ILSVRC2012_img_val.tar``. Returns the validation labels (class indices in
    the sorted-WNID order)."""
    from scipy.io import savemat

    d = root / "imagenet"
    d.mkdir(parents=True, exist_ok=True)
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "wordnet_height",
              "num_train_images"]
    synsets = np.zeros((len(WNIDS) + 1, 1), dtype=[(f, "O") for f in fields])
    for i, wnid in enumerate(WNIDS):  # IDs in a different order from the sorted WNIDs
        synsets[i, 0] = (len(WNIDS) - i, wnid, f"thing {i}", "a gloss", 0, 0, train_per_class)
    synsets[len(WNIDS), 0] = (len(WNIDS) + 1, "n00001740", "entity", "the root", 3, 9, 0)
    ids = {wnid: len(WNIDS) - i for i, wnid in enumerate(WNIDS)}
    val_classes = [2, 0, 1, 1, 0, 2]  # indices into WNIDS
    meta = io.BytesIO()
    savemat(meta, {"synsets": synsets})
    truth = "".join(f"{ids[WNIDS[c]]}\n" for c in val_classes).encode()
    with tarfile.open(d / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        _tar_add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        _tar_add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
                 truth)
    with tarfile.open(d / "ILSVRC2012_img_train.tar", "w") as outer:
        for c, wnid in enumerate(WNIDS):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for i in range(train_per_class):
                    _tar_add(tar, f"{wnid}_{i + 1}.JPEG", jpeg_bytes(200 + 10 * c + i))
            _tar_add(outer, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(d / "ILSVRC2012_img_val.tar", "w") as tar:
        for i in range(len(val_classes)):
            _tar_add(tar, f"ILSVRC2012_val_{i + 1:08d}.JPEG", jpeg_bytes(300 + i))
    return val_classes


SUN_CLASSES = ["/a/abbey", "/a/airport_terminal", "/b/bedroom"]


def write_sun397(root: Path, per_class: int = 2) -> None:
    """``SUN397/``: ClassName.txt (all 397 lines, as the real one), the images of three
    classes, and ``SUN397/Partitions/{Training,Testing}_01..02.txt``."""
    d = root / "SUN397"
    names = SUN_CLASSES + [f"/z/zz_class_{i:03d}" for i in range(397 - len(SUN_CLASSES))]
    d.mkdir(parents=True, exist_ok=True)
    (d / "ClassName.txt").write_text("".join(f"{n}\n" for n in sorted(names)))
    seed = 400
    for k in (1, 2):
        lists: dict[str, list[str]] = {"Training": [], "Testing": []}
        for cls in SUN_CLASSES:
            for split in lists:
                for i in range(per_class):
                    name = f"{cls}/sun_{split.lower()}{k}{i}.jpg"
                    write_jpeg(d / name.lstrip("/"), seed := seed + 1)
                    lists[split].append(name)
        (d / "Partitions").mkdir(exist_ok=True)
        for split, names_ in lists.items():
            (d / "Partitions" / f"{split}_{k:02d}.txt").write_text("\n".join(names_) + "\n")


MIT_CLASSES = ["airport_inside", "bakery", "kitchen"]


def write_mit_indoor(root: Path, train_per_class: int = 4, test_per_class: int = 1,
                     subsampling: int = -1) -> None:
    """``mit_indoor/Images/<class>/*.jpg`` with TrainImages.txt / TestImages.txt beside
    (chroma subsampled as ``subsampling`` says: :func:`jpeg_bytes`)."""
    d = root / "mit_indoor"
    seed = 500
    lists: dict[str, list[str]] = {"TrainImages.txt": [], "TestImages.txt": []}
    for cls in MIT_CLASSES:
        for listing, n in (("TrainImages.txt", train_per_class),
                           ("TestImages.txt", test_per_class)):
            for _ in range(n):
                seed += 1
                name = f"{cls}/img_{seed}.jpg"
                write_jpeg(d / "Images" / name, seed, subsampling)
                lists[listing].append(name)
    for listing, names in lists.items():
        (d / listing).write_text("\r\n".join(names) + "\r\n")  # CRLF line ends load too


def write_all(root: Path) -> None:
    write_cifar10(root)
    write_cifar100(root)
    write_mnist(root)
    write_svhn(root)
    write_imagenet_folders(root)
    write_sun397(root)
    write_mit_indoor(root)


# overrides that make every dataset fit the tiny files (and keep runs fast)
TINY_OVERRIDES: dict[str, list[str]] = {
    "digits": [],
    # torchvision checks the CIFAR and SVHN files against the tiny files' MD5s (tiny_checksums)
    "cifar10": ["dataset._target_=tiny_checksums.TinyCIFAR10"],
    "cifar100": ["dataset._target_=tiny_checksums.TinyCIFAR100"],
    "mnist": [],
    "svhn": ["dataset._target_=tiny_checksums.TinySVHN", "dataset.val_per_class_train=2",
             "dataset.val_per_class_extra=1"],
    "imagenet": [f"dataset.resize={IMAGE_SIZE}", "dataset.crop=72"],
    "sun397": [f"dataset.resize={IMAGE_SIZE}", "dataset.crop=72"],
    "mitindoor": [f"dataset.resize={IMAGE_SIZE}", "dataset.crop=72"],
}
