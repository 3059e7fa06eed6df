"""CIFAR and SVHN as rcnnexp reads them, checked against the tiny files' own MD5s.

torchvision checks each CIFAR and SVHN file against the MD5 of the official file before it
reads it, and the tiny files :mod:`tiny_data` writes are not the official ones. So
``tiny_data`` records their MD5s beside them (:data:`CHECKSUMS`), and the dataset classes
here (the ``_target_`` of :data:`tiny_data.TINY_OVERRIDES`) hand torchvision those in place
of the official ones: its check still runs, and a file changed after it was written fails
it as a damaged download would. A CLI subprocess finds this module on the PYTHONPATH that
``conftest.cli_env`` gives it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torchvision

from rcnnexp.data import cifar, svhn

CHECKSUMS = "tiny-md5.json"


def record_checksums(folder: Path) -> None:
    """Record the MD5 of every file in ``folder`` as the one torchvision is to expect."""
    sums = {p.name: hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != CHECKSUMS}
    (folder / CHECKSUMS).write_text(json.dumps(sums, indent=1))


def recorded(folder: Path) -> dict[str, str]:
    return json.loads((folder / CHECKSUMS).read_text())


class _TinyCIFAR10(torchvision.datasets.CIFAR10):
    def _check_integrity(self) -> bool:
        sums = recorded(Path(self.root) / self.base_folder)
        self.train_list = [[name, sums[name]] for name, _ in type(self).train_list]
        self.test_list = [[name, sums[name]] for name, _ in type(self).test_list]
        self.meta = {**type(self).meta, "md5": sums[type(self).meta["filename"]]}
        return super()._check_integrity()


class _TinyCIFAR100(_TinyCIFAR10, torchvision.datasets.CIFAR100):
    pass


class _TinySVHN(torchvision.datasets.SVHN):
    def _check_integrity(self) -> bool:
        sums = recorded(Path(self.root))
        self.split_list = {split: [url, name, sums.get(name, md5)]
                           for split, (url, name, md5) in type(self).split_list.items()}
        return super()._check_integrity()


class TinyCIFAR10(cifar.CIFAR10):
    torchvision_class = _TinyCIFAR10


class TinyCIFAR100(cifar.CIFAR100):
    torchvision_class = _TinyCIFAR100


class TinySVHN(svhn.SVHN):
    torchvision_class = _TinySVHN


# the same classes by dataset option: a sweep over datasets (a table's rows) picks each job's
# with ``dataset._target_=tiny_checksums.${hydra:runtime.choices.dataset}`` (PER_JOB_TARGET)
cifar10, cifar100, svhn = TinyCIFAR10, TinyCIFAR100, TinySVHN
PER_JOB_TARGET = "dataset._target_=tiny_checksums.${hydra:runtime.choices.dataset}"
