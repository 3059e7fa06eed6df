"""Every dataset's loader, through the code the CLI uses (compose -> build_data -> setup), on
tiny files written in the real formats: splits, labels, pixels, caches, views."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import build_dataset, load_dataset
from tiny_data import (
    CIFAR_TEST,
    CIFAR_TRAIN_PER_BATCH,
    FOLDER_CLASSES,
    MIT_CLASSES,
    SVHN_SIZES,
    WNIDS,
    write_imagenet_archives,
)

from rcnnexp.data.base import DataModule
from rcnnexp.errors import DataError


@pytest.fixture(scope="module")
def root(tiny_data_root: Path) -> Path:
    return tiny_data_root


def load(name: str, root: Path, *overrides: str, workers: int = 0) -> DataModule:
    return load_dataset(name, root, *overrides, workers=workers)


def test_cifar10_splits_and_pixels(root: Path) -> None:
    from tiny_data import write_cifar10

    written = write_cifar10(root / "again")  # same seed: the same arrays as in `root`
    data = load("cifar10", root, "dataset.normalize=none")
    n_train = 5 * CIFAR_TRAIN_PER_BATCH
    assert data.splits == ("train", "test")
    assert (data.num_examples("train"), data.num_examples("test")) == (n_train, CIFAR_TEST)
    # pixels arrive as written (NCHW), labels in order
    expected = torch.from_numpy(written["train_x"]).permute(0, 3, 1, 2)
    assert torch.equal(data.images["train"], expected)
    assert data.labels["train"].tolist() == written["train_y"].tolist()
    # eval views of normalize=none are the pixels / 255
    x, y = next(data.eval_batches("test", 4))
    assert x.shape == (4, 1, 3, 32, 32)
    torch.testing.assert_close(x[:, 0] * 255, torch.from_numpy(written["test_x"][:4]).permute(
        0, 3, 1, 2).float())
    assert y.tolist() == written["test_y"][:4].tolist()

    # the RCNN protocol: the last val_size training images validate
    rcnn = load("cifar10", root, "dataset.val_split=rcnn",
                f"dataset.val_size={CIFAR_TRAIN_PER_BATCH}")
    assert rcnn.splits == ("train", "val", "test")
    assert torch.equal(rcnn.images["val"], expected[-CIFAR_TRAIN_PER_BATCH:])
    assert torch.equal(rcnn.images["train"], expected[:-CIFAR_TRAIN_PER_BATCH])

    # a fraction: disjoint, complete, and the same on every call
    a = load("cifar10", root, "dataset.val_split=fraction", "dataset.val_fraction=0.25")
    b = load("cifar10", root, "dataset.val_split=fraction", "dataset.val_fraction=0.25")
    assert a.num_examples("val") + a.num_examples("train") == n_train
    assert 0 < a.num_examples("val") < n_train // 2
    assert torch.equal(a.images["val"], b.images["val"])
    both = torch.cat([a.images["train"], a.images["val"]]).flatten(1)
    assert len(torch.unique(both, dim=0)) == n_train


def test_cifar100_reads_fine_labels(root: Path) -> None:
    from tiny_data import write_cifar100

    written = write_cifar100(root / "again100")
    data = load("cifar100", root)
    assert data.spec.num_classes == 100
    assert data.labels["train"].tolist() == written["train_y"].tolist()
    assert data.labels["test"].tolist() == written["test_y"].tolist()


def test_mnist_idx_files(root: Path) -> None:
    from tiny_data import write_mnist

    written = write_mnist(root / "again_mnist")
    data = load("mnist", root)
    assert data.spec.in_channels == 1 and data.spec.image_size == (28, 28)
    assert torch.equal(data.images["test"][:, 0], torch.from_numpy(written["test_x"]))
    # raw pixels (RCNN on MNIST): no mean is subtracted
    x, _ = next(data.train_batches(8, torch.Generator().manual_seed(0)))
    assert x.min() >= 0 and x.max() <= 1
    val = load("mnist", root, "dataset.val_split=fraction", "dataset.val_fraction=0.25")
    assert val.num_examples("val") == 10 and val.num_examples("train") == 30
    assert sorted(val.labels["val"].tolist()) == sorted(list(range(10)))  # stratified


def test_svhn_rcnn_protocol(root: Path) -> None:
    data = load("svhn", root)  # 2 per class of train, 1 per class of extra validate
    assert data.num_examples("val") == 10 * 2 + 10 * 1
    assert data.num_examples("train") == SVHN_SIZES["train"] + SVHN_SIZES["extra"] - 30
    assert data.num_examples("test") == SVHN_SIZES["test"]
    assert torch.bincount(data.labels["val"], minlength=10).tolist() == [3] * 10
    # label 10 is the digit 0
    assert data.labels["test"].tolist() == [(i + 1) % 10 for i in range(SVHN_SIZES["test"])]
    # validation and training are disjoint, and together all of train + extra
    everything = torch.cat([data.images["train"], data.images["val"]]).flatten(1)
    assert len(torch.unique(everything, dim=0)) == SVHN_SIZES["train"] + SVHN_SIZES["extra"]
    # deterministic
    again = load("svhn", root)
    assert torch.equal(again.images["val"], data.images["val"])
    only = load("svhn", root, "dataset.val_split=none", "dataset.extra=false")
    assert only.splits == ("train", "test") and only.num_examples("train") == SVHN_SIZES["train"]


def test_pixel_mean_is_cached_beside_the_data(tmp_path: Path) -> None:
    from tiny_data import write_cifar10

    root = tmp_path
    write_cifar10(root)
    data = load("cifar10", root)  # normalize=pixel: RCNN's default
    caches = list((root / "cifar-10-batches-py").glob("rcnnexp-stats-cifar10-*.pt"))
    assert len(caches) == 1
    expected = data.images["train"].double().mean(0) / 255
    torch.testing.assert_close(data.stats.mean_image.double(), expected, atol=1e-6, rtol=0)
    # the cached value is used: a doctored cache shows through
    cached = torch.load(caches[0], weights_only=True)
    cached["mean_image"] = torch.zeros_like(cached["mean_image"])
    torch.save(cached, caches[0])
    assert load("cifar10", root).stats.mean_image.abs().max() == 0
    # another training split has its own statistics
    load("cifar10", root, "dataset.val_split=rcnn", "dataset.val_size=8")
    assert len(list((root / "cifar-10-batches-py").glob("rcnnexp-stats-*.pt"))) == 2


def test_imagenet_class_folders(root: Path) -> None:
    data = load("imagenet", root)
    assert data.spec.num_classes == 1000 and data.spec.image_size == (72, 72)
    assert data.num_examples("train") == 4 * FOLDER_CLASSES
    assert data.splits == ("train", "test")  # ILSVRC's validation set is the test set
    x, y = next(data.eval_batches("test", 100))
    assert x.shape == (2 * FOLDER_CLASSES, 10, 3, 72, 72)  # ten views
    assert y.tolist() == [0, 0, 1, 1, 2, 2]


def test_imagenet_official_archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The archives are extracted by torchvision's ImageNet code into class folders, with the
    validation images sorted by the devkit's ground truth."""
    import torchvision.datasets.imagenet as tv

    val_classes = write_imagenet_archives(tmp_path)
    # the tiny archives are not the official ones: check that they exist, not their MD5s
    monkeypatch.setattr(tv, "_verify_archive",
                        lambda root, file, md5: (Path(root) / file).is_file() or 1 / 0)
    data = load("imagenet", tmp_path, "dataset.views=center")
    assert sorted(p.name for p in (tmp_path / "imagenet" / "train").iterdir()) == WNIDS
    assert data.num_examples("train") == 4 * FOLDER_CLASSES
    labels = torch.cat([y for _, y in data.eval_batches("test", 2)]).tolist()
    # val/ is listed class by class, each class's images in file order
    assert labels == sorted(val_classes)


def test_sun397_partitions(root: Path) -> None:
    one = load("sun397", root)
    two = load("sun397", root, "dataset.partition=2")
    assert one.spec.num_classes == 397
    assert one.num_examples("train") == one.num_examples("test") == 2 * 3
    assert one.files is not None and two.files is not None
    assert set(one.files.paths.tolist()).isdisjoint(two.files.paths.tolist())
    # labels follow ClassName.txt: abbey 0, airport_terminal 1, bedroom 2
    _, y = next(one.eval_batches("test", 60))
    assert y.tolist() == [0, 0, 1, 1, 2, 2]


def test_mit_indoor_lists(root: Path) -> None:
    data = load("mitindoor", root, "dataset.views=center")
    assert data.spec.num_classes == 67
    assert data.num_examples("train") == 4 * len(MIT_CLASSES)
    assert data.num_examples("test") == len(MIT_CLASSES)
    x, y = next(data.eval_batches("test", 8))
    assert x.shape == (3, 1, 3, 72, 72) and y.tolist() == [0, 1, 2]


def test_folder_batches_do_not_depend_on_workers(root: Path) -> None:
    """Crops, flips and order come from the generator, never from the workers: an epoch is
    the same with 0 and 2 worker processes (so a resumed run replays it exactly)."""
    epochs = {}
    for workers in (0, 2):
        data = load("mitindoor", root, "dataset.train_crops=random", workers=workers)
        batches = list(data.train_batches(4, torch.Generator().manual_seed(7)))
        assert len(batches) == data.num_train_batches(4) == 3
        epochs[workers] = batches
        again = list(data.train_batches(4, torch.Generator().manual_seed(7)))  # a second pass
        for (x1, y1), (x2, y2) in zip(batches, again, strict=True):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)
    for (x0, y0), (x2, y2) in zip(epochs[0], epochs[2], strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    other = list(load("mitindoor", root).train_batches(4, torch.Generator().manual_seed(8)))
    assert not torch.equal(other[0][0], epochs[0][0][0])


def test_folder_mean_image_is_the_training_mean(root: Path) -> None:
    from rcnnexp.data.folder import load_image

    data = load("mitindoor", root)
    assert data.files is not None
    start, n = data.ranges["train"]
    images = torch.stack([load_image(p.decode(), (80, 80), True)
                          for p in data.files.paths[start:start + n]])
    torch.testing.assert_close(data.stats.mean_image.double(),
                               images.double().mean(0) / 255, atol=1e-6, rtol=0)
    assert list((root / "mit_indoor").glob("rcnnexp-stats-mitindoor-*.pt"))


def test_distributed_shards_are_disjoint(root: Path) -> None:
    data = load("cifar10", root)
    seen = []
    for rank in range(2):
        for _, y in data.eval_batches("test", 3, rank=rank, world_size=2):
            seen.append(len(y))
    assert sum(seen) == CIFAR_TEST
    g = [torch.Generator().manual_seed(3) for _ in range(2)]
    parts = [torch.cat([x.flatten(1) for x, _ in data.train_batches(4, g[r], r, 2)])
             for r in range(2)]
    assert len(torch.unique(torch.cat(parts), dim=0)) == sum(len(p) for p in parts)


def test_eval_batches_hold_batch_size_images_with_all_their_views(root: Path) -> None:
    data = load("cifar10", root, "dataset.crop=24", "dataset.views=grid9")
    shapes = [tuple(x.shape) for x, _ in data.eval_batches("test", 4)]
    assert shapes[0] == (4, 9, 3, 24, 24)  # trainer.eval_batch_size counts images
    assert sum(s[0] for s in shapes) == CIFAR_TEST


def test_missing_class_folder_in_val_is_not_a_new_label(tmp_path: Path) -> None:
    from tiny_data import write_jpeg

    d = tmp_path / "imagenet"
    for wnid in WNIDS:
        write_jpeg(d / "train" / wnid / "a.JPEG", 1)
    write_jpeg(d / "val" / WNIDS[2] / "b.JPEG", 2)  # only the third class has val images
    data = load("imagenet", tmp_path, "dataset.views=center")
    _, y = next(data.eval_batches("test", 4))
    assert y.tolist() == [2]
    write_jpeg(d / "val" / "n99999999" / "c.JPEG", 3)
    with pytest.raises(DataError, match="n99999999"):
        load("imagenet", tmp_path)


# where each dataset looks for its files under dataset.root (None: embedded, nothing on disk)
FOLDERS = {"digits": None, "mnist": "MNIST/raw", "cifar10": "cifar-10-batches-py",
           "cifar100": "cifar-100-python", "svhn": "svhn", "imagenet": "imagenet",
           "sun397": "SUN397", "mitindoor": "mit_indoor"}


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_a_dataset_on_disk_lacks_nothing_and_one_elsewhere_names_its_folder(
        name: str, root: Path, tmp_path: Path) -> None:
    """What a sweep's dry run says of each job's data (DataModule.missing), looking only."""
    assert build_dataset(name, root).missing() is None
    empty = tmp_path / "empty"
    lacking = build_dataset(name, empty).missing()
    folder = FOLDERS[name]
    assert lacking is None if folder is None else lacking.startswith(f"{empty / folder} (no ")
    assert not empty.exists()  # nothing fetched, nothing made
