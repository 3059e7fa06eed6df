"""Missing and damaged data give one clear line: the root looked in, what was expected there,
and where to get it; never a traceback."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import assert_clean_error, compose_config, run_cli
from tiny_checksums import record_checksums
from tiny_data import (
    TINY_OVERRIDES,
    write_cifar10,
    write_cifar100,
    write_mit_indoor,
    write_mnist,
    write_sun397,
    write_svhn,
)

from rcnnexp.config import validate
from rcnnexp.data.files import reading
from rcnnexp.engine.build import build_data
from rcnnexp.errors import DataError

QUICK_TRAIN = ("model.K=8", "model.T=1", "trainer.epochs=1", "trainer.batch_size=8",
               "trainer.progress=false", "trainer.device=cpu")


def setup(name: str, root: Path, *overrides: str) -> None:
    cfg = compose_config([f"dataset={name}", f"dataset.root={root}", "dataset.download=false",
                          *TINY_OVERRIDES[name], *overrides])
    validate(cfg)
    build_data(cfg.dataset).setup(torch.device("cpu"), 0)


def train(tmp_path: Path, dataset: str, root: Path, *overrides: str):
    return run_cli("train", f"dataset={dataset}", f"dataset.root={root}", *QUICK_TRAIN,
                   *overrides, f"hydra.run.dir={tmp_path / 'run'}")


# -- through the CLI ------------------------------------------------------------------------------
def test_missing_cifar_names_root_files_and_source(tmp_path: Path) -> None:
    proc = train(tmp_path, "cifar10", tmp_path / "nowhere", "dataset.download=false")
    assert_clean_error(proc, "CIFAR-10 not found", str(tmp_path / "nowhere"), "data_batch_1",
                       "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/",
                       "dataset.download=true")


def test_damaged_jpeg_names_the_file(tmp_path: Path) -> None:
    write_mit_indoor(tmp_path)
    images = sorted((tmp_path / "mit_indoor" / "Images" / "bakery").glob("*.jpg"))
    images[0].write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    proc = train(tmp_path, "mitindoor", tmp_path, "dataset.download=false",
                 *TINY_OVERRIDES["mitindoor"], "dataset.normalize=none", "trainer.workers=0")
    assert_clean_error(proc, "MIT Indoor 67", images[0].name, "damaged")


# -- in process -----------------------------------------------------------------------------------
def test_failed_download_is_a_clean_error(tmp_path: Path) -> None:
    """No network here: dataset.download=true must fail in one line, saying what to fetch."""
    with pytest.raises(DataError, match=r"MNIST: no train-images-idx3-ubyte.* in .*empty.*"
                                        r"downloading failed .*Get the four IDX files"):
        setup("mnist", tmp_path / "empty", "dataset.download=true")


def test_corrupt_cifar_batch(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])  # truncated
    with pytest.raises(DataError, match=r"CIFAR-10: could not read the files in .*"
                                        r"cifar-10-batches-py .*corrupt.*cifar-10-python.tar.gz"):
        setup("cifar10", tmp_path)


@pytest.mark.parametrize(("name", "write", "folder"), [
    ("cifar10", write_cifar10, "cifar-10-batches-py"),
    ("cifar100", write_cifar100, "cifar-100-python"),
    ("svhn", write_svhn, "svhn")])
def test_files_that_are_not_the_official_ones_fail_torchvisions_md5_check(
        tmp_path: Path, name: str, write: Callable[[Path], object], folder: str) -> None:
    """CIFAR and SVHN are read through torchvision's classes, checks and all: files that
    parse but are not the official ones (the tiny ones, read by rcnnexp's own class) are
    refused."""
    write(tmp_path)
    product = compose_config([f"dataset={name}"]).dataset._target_
    with pytest.raises(DataError, match=rf"could not read the files in .*{folder} .*corrupted"):
        setup(name, tmp_path, f"dataset._target_={product}")


def test_missing_imagenet_names_the_archives_and_layout(tmp_path: Path) -> None:
    from rcnnexp.engine.run import describe

    # `rcnnexp info` describes the model without the data
    _, summary = describe(compose_config(["dataset=imagenet", "model.K=4", "model.T=0"]))
    assert summary["input"] == [3, 227, 227] and summary["classes"] == 1000
    with pytest.raises(DataError) as err:
        setup("imagenet", tmp_path, "dataset.download=true")
    for needle in ("ILSVRC-2012 not found", str(tmp_path / "imagenet"), "train/",
                   "ILSVRC2012_img_train.tar", "ILSVRC2012_devkit_t12.tar.gz", "image-net.org"):
        assert needle in str(err.value)


def test_corrupt_mnist_idx(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match=r"MNIST: could not read .* corrupt"):
        setup("mnist", tmp_path)


def test_corrupt_svhn_mat(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    (tmp_path / "svhn" / "extra_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, garbage")
    with pytest.raises(DataError, match=r"SVHN: could not read .*svhn.*corrupt"):
        setup("svhn", tmp_path)
    with pytest.raises(DataError,
                       match=r"SVHN not found: no train_32x32.mat, test_32x32.mat in .*ufldl"):
        setup("svhn", tmp_path / "elsewhere", "dataset.val_split=none", "dataset.extra=false")


def test_sun397_needs_its_partition_files(tmp_path: Path) -> None:
    write_sun397(tmp_path)
    with pytest.raises(DataError, match=r"no Training_03.txt, Testing_03.txt in .*Partitions"
                                        r".*Partitions.zip"):
        setup("sun397", tmp_path, "dataset.partition=3")
    with pytest.raises(DataError, match=r"SUN397 not found: no ClassName.txt in .*SUN397.tar.gz"):
        setup("sun397", tmp_path / "none")


def test_listed_images_must_exist(tmp_path: Path) -> None:
    write_mit_indoor(tmp_path)
    victim = next((tmp_path / "mit_indoor" / "Images" / "kitchen").glob("*.jpg"))
    victim.unlink()
    with pytest.raises(DataError, match=r"1 of the \d+ images that (Train|Test)Images.txt names "
                                        r"are missing"):
        setup("mitindoor", tmp_path)
    with pytest.raises(DataError, match=r"no TrainImages.txt, TestImages.txt in .*web.mit.edu"):
        setup("mitindoor", tmp_path / "none")


def test_wrong_labels_are_refused(tmp_path: Path) -> None:
    """Files of another dataset (here CIFAR-100 labels where CIFAR-10 is expected) are
    refused rather than trained on."""
    import pickle

    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    with path.open("rb") as f:
        batch = pickle.load(f)
    batch["labels"][0] = 57
    with path.open("wb") as f:
        pickle.dump(batch, f)
    record_checksums(path.parent)  # intact as a file: only its labels are wrong
    with pytest.raises(DataError, match=r"labels outside 0..9"):
        setup("cifar10", tmp_path)


# -- files this user may not read: the files are fine, the permissions are not -------------------
def test_a_folder_that_may_not_be_searched_is_named_not_a_traceback(tmp_path: Path,
                                                                    monkeypatch) -> None:
    """Path.is_file raises PermissionError inside a folder without x permission (as a
    non-root user; simulated here, since root may search any folder)."""
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    real_is_file = Path.is_file

    def is_file(path: Path) -> bool:
        if path.parent == raw:
            raise PermissionError(13, "Permission denied", str(path))
        return real_is_file(path)

    monkeypatch.setattr(Path, "is_file", is_file)
    with pytest.raises(DataError, match=r"MNIST: cannot read .*MNIST/raw/.* \(Permission denied\)"
                                        r"; make the dataset's files readable"):
        setup("mnist", tmp_path)


def test_an_unreadable_file_is_not_called_corrupt() -> None:
    with pytest.raises(DataError) as err, reading("CIFAR-10", Path("/data"), "the archive"):
        raise PermissionError(13, "Permission denied", "/data/data_batch_1")
    message = str(err.value)
    assert "cannot read /data/data_batch_1 (Permission denied)" in message
    assert "readable" in message and "corrupt" not in message and "delete" not in message


def test_an_unreadable_image_is_not_called_damaged(monkeypatch) -> None:
    from rcnnexp.data import folder

    def denied(path: str, *_: object) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(folder, "load_image", denied)
    _, _, error = folder.ImageFiles(["/data/a.jpg"], [0], (8, 8), draft=False)[0]
    assert "cannot read image /data/a.jpg (permission denied)" in error
    assert "readable" in error and "damaged" not in error


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_unreadable_dataset_file_through_the_cli(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    victim = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    victim.chmod(0)
    proc = train(tmp_path, "mnist", tmp_path, "dataset.download=false")
    assert_clean_error(proc, f"cannot read {victim}", "readable")
    assert not (tmp_path / "run").exists()
