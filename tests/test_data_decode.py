"""The image-file datasets' two decoders and their cache: torchvision's batched decoder (the
GPU path, run here on the CPU: the same code, device cpu) gives PIL's images to within
rounding and the same epochs; every kind of file an image folder may hold still loads; the
cache of resized images gives exactly the uncached batches, and a stale one is refused."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from conftest import (
    REPO,
    assert_one_line_error,
    build_dataset,
    cli_env,
    load_dataset,
    run_cli,
)
from tiny_data import (
    PHOTOS,
    TINY_OVERRIDES,
    cuda_decode_model,
    difference,
    image_bytes,
    jpeg_bytes,
    nvjpeg_cases,
    photo_jpeg,
    write_imagenet_folders,
    write_jpeg,
    write_mit_indoor,
)

from rcnnexp.data.decode import (
    decode_batch,
    device_decodable,
    float_pass,
    load_image,
    read_payload,
)
from rcnnexp.data.folder import ImageBytes
from rcnnexp.errors import ConfigError, DataError

CPU = torch.device("cpu")
SIZE = (80, 80)
# PIL's bilinear resize against the device's (docs/data.md): at most this many levels apart
MAX_LEVELS = 1


def photo_bytes(seed: int, size: tuple[int, int]) -> bytes:
    """A photo-sized JPEG of smooth random content (as scripts/bench_data.py makes)."""
    from PIL import Image

    small = np.random.default_rng(seed).integers(0, 256, (47, 63, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def payloads(files: list[bytes], size: tuple[int, int]) -> list[torch.Tensor]:
    """What the workers hand over for these files (through read_payload, from disk)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = []
        for i, data in enumerate(files):
            path = Path(tmp) / f"{i}.img"
            path.write_bytes(data)
            out.append(read_payload(str(path), size))
        return out


def pil(files: list[bytes], size: tuple[int, int]) -> torch.Tensor:
    return torch.stack([load_image(io.BytesIO(d), size, draft=False) for d in files])


@pytest.fixture(scope="module")
def root(tiny_data_root: Path) -> Path:
    return tiny_data_root


# -- the decoder ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "size"), [((500, 375), (256, 256)), ((375, 500), (256, 256)),
                                              (None, SIZE)])
def test_torchvision_decoding_gives_pil_images_to_within_rounding(
        source: tuple[int, int] | None, size: tuple[int, int]) -> None:
    """Photo-sized JPEGs shrunk to 256x256, and the tiny files (40-90 px) of the loader tests
    enlarged to 80x80: the device's decode + resize against load_image's."""
    files = [photo_bytes(s, source) if source else jpeg_bytes(s) for s in range(12)]
    got = decode_batch(payloads(files, size), size, CPU)
    diff = (got.int() - pil(files, size).int()).abs()
    assert got.dtype == torch.uint8 and got.shape == (12, 3, *size)
    assert int(diff.max()) <= MAX_LEVELS
    assert float(diff.float().mean()) < (0.01 if source else 0.1)


@pytest.mark.parametrize("size", [(64, 40), (40, 64), (80, 80), (200, 150)])
def test_cudas_float_pass_is_the_cpu_uint8_kernel_to_within_a_level(size: tuple[int, int]
                                                                        ) -> None:
    """The resize the GPU runs (float32, rounded) against the CPU's 8-bit kernel, each axis
    shrunk and enlarged."""
    images = decode_batch(payloads([photo_bytes(s, (120, 90)) for s in range(3)], (90, 120)),
                          (90, 120), CPU)
    for axis_size in ((images.shape[-2], size[1]), (size[0], images.shape[-1])):
        uint8 = torch.nn.functional.interpolate(images, size=axis_size, mode="bilinear",
                                                antialias=True)
        assert int((float_pass(images, axis_size).int() - uint8.int()).abs().max()) <= 1


@pytest.mark.parametrize("kind", ["grey", "cmyk", "progressive", "png"])
def test_every_kind_of_image_file_decodes_as_pil_does(kind: str) -> None:
    """Grey and progressive JPEGs go to the device decoder; CMYK JPEGs and other formats are
    decoded with PIL by the worker; in a batch with a colour JPEG, all come out as PIL's."""
    files = [image_bytes(1, kind), jpeg_bytes(2)]
    assert device_decodable(files[0]) == (kind in ("grey", "progressive"))
    got = decode_batch(payloads(files, SIZE), SIZE, CPU)
    assert int((got.int() - pil(files, SIZE).int()).abs().max()) <= MAX_LEVELS


def test_a_damaged_jpeg_is_named_by_the_torchvision_path(tmp_path: Path) -> None:
    write_mit_indoor(tmp_path)
    victim = sorted((tmp_path / "mit_indoor" / "Images" / "kitchen").glob("*.jpg"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[:len(data) // 2])  # a JPEG header, half the scan: truncated
    assert device_decodable(victim.read_bytes())
    with pytest.raises(DataError, match=rf"MIT Indoor 67: cannot decode image .*{victim.name}"
                                        r" .*damaged"):
        load_dataset("mitindoor", tmp_path, "dataset.decode=torchvision",
                     "dataset.normalize=pixel")


# -- the torchvision path through the dataset ----------------------------------------------------
def test_auto_decodes_with_pil_on_a_cpu(root: Path) -> None:
    data = load_dataset("mitindoor", root, "dataset.normalize=none")
    assert data.decode == "auto" and data.decoder == "pil" and not data.cached


def test_torchvision_where_it_cannot_decode_is_refused(root: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A torchvision built without nvJPEG (simulated): asked for, a config error naming
    the key and the way out; never a silent fallback to PIL in the main process."""
    from rcnnexp.data import decode

    def unsupported(*_: object) -> None:
        raise RuntimeError("decode_jpegs_cuda: torchvision not compiled with nvJPEG support")

    monkeypatch.setattr(decode, "_decode_jpegs", unsupported)
    decode.device_decoder_problem.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"dataset\.decode=torchvision: .*not compiled "
                                              r"with nvJPEG.*dataset\.decode=pil"):
            load_dataset("mitindoor", root, "dataset.decode=torchvision")
    finally:
        decode.device_decoder_problem.cache_clear()


def test_the_torchvision_path_gives_pils_epochs(root: Path) -> None:
    """Same order, labels, crop positions and flips from the same generator (the pixels
    within rounding); and the same epoch with 0 or 2 workers."""
    base = ("dataset.normalize=none", "dataset.train_crops=random", "dataset.jpeg_draft=false")
    ref = load_dataset("mitindoor", root, *base, "dataset.decode=pil")
    epochs = {}
    for workers in (0, 2):
        data = load_dataset("mitindoor", root, *base, "dataset.decode=torchvision",
                            workers=workers)
        assert isinstance(data.files, ImageBytes)
        epochs[workers] = list(data.train_batches(4, torch.Generator().manual_seed(5)))
    expected = list(ref.train_batches(4, torch.Generator().manual_seed(5)))
    assert len(expected) == len(epochs[0]) == 3
    for (x, y), (x0, y0), (x2, y2) in zip(expected, epochs[0], epochs[2], strict=True):
        assert torch.equal(y, y0) and torch.equal(x0, x2) and torch.equal(y0, y2)
        assert float((x - x0).abs().max()) <= MAX_LEVELS / 255 + 1e-6
    (xe, ye), = ref.eval_batches("test", 30)
    (xt, yt), = data.eval_batches("test", 30)
    assert torch.equal(ye, yt) and float((xe - xt).abs().max()) <= MAX_LEVELS / 255 + 1e-6


def test_png_cmyk_and_grey_files_among_the_jpegs_load_through_the_worker_pool(
        tmp_path: Path) -> None:
    """As in ILSVRC's train/ (a PNG and CMYK JPEGs named .JPEG, grey JPEGs): the workers
    decode what nvJPEG cannot, the batch mixes both, and all equal PIL's path."""
    write_imagenet_folders(tmp_path)
    files = sorted((tmp_path / "imagenet" / "val").rglob("*.JPEG"))
    for path, kind in zip(files, ("png", "cmyk", "grey", "progressive"), strict=False):
        path.write_bytes(image_bytes(len(kind), kind))
    views = ("dataset.normalize=none", "dataset.views=center")
    ref = load_dataset("imagenet", tmp_path, *views, "dataset.decode=pil")
    data = load_dataset("imagenet", tmp_path, *views, "dataset.decode=torchvision", workers=2)
    (xe, ye), = ref.eval_batches("test", 10)
    (xt, yt), = data.eval_batches("test", 10)
    assert torch.equal(ye, yt) and float((xe - xt).abs().max()) <= MAX_LEVELS / 255 + 1e-6


def test_the_torchvision_path_has_its_own_training_mean(tmp_path: Path) -> None:
    write_mit_indoor(tmp_path)
    pil_mean = load_dataset("mitindoor", tmp_path, "dataset.decode=pil").stats.mean_image
    tv_mean = load_dataset("mitindoor", tmp_path, "dataset.decode=torchvision").stats.mean_image
    assert len(list((tmp_path / "mit_indoor").glob("rcnnexp-stats-*.pt"))) == 2
    assert float((pil_mean - tv_mean).abs().max()) <= MAX_LEVELS / 255


# -- the cache -------------------------------------------------------------------------------------
def epoch_and_test(data: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(11)
    return [*data.train_batches(4, g), *data.eval_batches("test", 30)]  # type: ignore[attr-defined]


def test_a_cached_run_gives_exactly_the_uncached_batches(tmp_path: Path) -> None:
    write_mit_indoor(tmp_path)
    plain = load_dataset("mitindoor", tmp_path)
    written = plain.write_cache(workers=0)
    assert [p.name for p in written] == ["rcnnexp-cache-mitindoor-train-80.npy",
                                         "rcnnexp-cache-mitindoor-test-80.npy"]
    train = np.load(written[0], mmap_mode="r")
    assert train.shape == (12, 80, 80, 3) and train.dtype == np.uint8
    cached = load_dataset("mitindoor", tmp_path, workers=2)
    assert cached.cached and not plain.cached
    assert torch.equal(cached.stats.mean_image, plain.stats.mean_image)
    expected = epoch_and_test(plain)
    for (x1, y1), (x2, y2) in zip(expected, epoch_and_test(cached), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # whatever dataset.decode says: the cache holds the images, no file is decoded
    for image in (tmp_path / "mit_indoor" / "Images").rglob("*.jpg"):
        image.write_bytes(b"gone")
    again = load_dataset("mitindoor", tmp_path, "dataset.decode=torchvision")
    for (x1, _), (x2, _) in zip(expected, epoch_and_test(again), strict=True):
        assert torch.equal(x1, x2)


def test_a_stale_cache_is_refused_naming_it(tmp_path: Path) -> None:
    write_mit_indoor(tmp_path)
    load_dataset("mitindoor", tmp_path).write_cache()
    cache = tmp_path / "mit_indoor" / "rcnnexp-cache-mitindoor-train-80.npy"
    with pytest.raises(DataError, match=rf"image cache {cache} is stale \(made with "
                                        r"jpeg_draft=True, not False\).*--cache"):
        load_dataset("mitindoor", tmp_path, "dataset.jpeg_draft=false")
    # another image in the training list: the cache no longer stands for the files
    write_jpeg(tmp_path / "mit_indoor" / "Images" / "bakery" / "extra.jpg", 9)
    with (tmp_path / "mit_indoor" / "TrainImages.txt").open("a") as f:
        f.write("bakery/extra.jpg\r\n")
    with pytest.raises(DataError, match=rf"{cache} is stale \(made with count=12, not 13\)"):
        load_dataset("mitindoor", tmp_path)
    # another size has its own cache name: none here, so the files are decoded
    assert not load_dataset("mitindoor", tmp_path, "dataset.resize=76").cached


def test_a_stale_cache_through_the_cli_is_one_line(tmp_path: Path) -> None:
    write_mit_indoor(tmp_path)
    load_dataset("mitindoor", tmp_path).write_cache()
    meta = tmp_path / "mit_indoor" / "rcnnexp-cache-mitindoor-test-80.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "key": "0" * 16}))
    proc = run_cli("train", "dataset=mitindoor", f"dataset.root={tmp_path}",
                   "dataset.download=false", *TINY_OVERRIDES["mitindoor"], "model=crnn",
                   "trainer.epochs=1", "trainer.progress=false", "trainer.device=cpu",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(proc, "rcnnexp-cache-mitindoor-test-80.npy is stale",
                          "other image files or labels", "--cache")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_prepare_data_writes_the_cache_and_keeps_one_up_to_date(tmp_path: Path) -> None:
    write_mit_indoor(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "prepare_data.py"), "mitindoor", "--cache",
         "--root", str(tmp_path), "--no-download", "--workers", "0",
         *(f"--set={o}" for o in TINY_OVERRIDES["mitindoor"])],
        cwd=REPO, env=cli_env(), text=True, capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mitindoor: ready (train 12, test 3; cached" in proc.stdout
    cache = sorted((tmp_path / "mit_indoor").glob("rcnnexp-cache-*"))
    assert [p.name for p in cache] == [
        f"rcnnexp-cache-mitindoor-{s}-80{e}" for s in ("test", "train")
        for e in (".json", ".labels.npy", ".npy")]
    stamps = [p.stat().st_mtime_ns for p in cache]
    build_dataset("mitindoor", tmp_path).write_cache()  # up to date: kept as it is
    assert [p.stat().st_mtime_ns for p in cache] == stamps
    # a stale one is replaced, and then read
    build_dataset("mitindoor", tmp_path, "dataset.jpeg_draft=false").write_cache()
    assert load_dataset("mitindoor", tmp_path, "dataset.jpeg_draft=false").cached
    assert not list((tmp_path / "mit_indoor").glob(".*tmp"))


# -- nvJPEG's pixels: what "the same image" means --------------------------------------------------
class Bound(NamedTuple):
    """How far two decoders' images may be apart, per value in 0..255 (tiny_data.difference)."""

    mean: float
    p99: float
    max: float

    def holds(self, diff: dict[str, float]) -> bool:
        return diff["mean"] <= self.mean and diff["p99"] <= self.p99 and diff["max"] <= self.max

    def slack(self) -> Bound:
        """The tolerance this measured bound gives a GPU test: a quarter of a level on the
        mean, 1 on the 99th percentile, 2 on the maximum, for whatever of nvJPEG's IDCT
        and colour conversion the CPU model (its fast-IDCT stand-in) leaves out."""
        return Bound(self.mean + 0.25, self.p99 + 1, self.max + 2)


# The CUDA path against the CPU path as tiny_data.cuda_decode_model models it (libjpeg-turbo
# replicating chroma, with its fast IDCT, and CUDA's float32 resize), measured on the CPU
# (simplejpeg 1.9.0, Pillow 13.0.0's libjpeg-turbo; docs/data.md, "nvJPEG's chroma"); the
# tests below check these numbers whenever simplejpeg is installed.
NVJPEG_MODEL = {"photos": Bound(1.005, 4, 13), "tiny 4:4:4": Bound(0.869, 3, 4)}
NVJPEG_TOLERANCE = {case: bound.slack() for case, bound in NVJPEG_MODEL.items()}


def test_the_photo_fixture_is_a_real_photo_with_the_chroma_asked_for() -> None:
    from PIL import Image, JpegImagePlugin

    for subsampling in (2, 0):
        files = [photo_jpeg(name, 95, subsampling) for name in PHOTOS]
        for data in files:
            with Image.open(io.BytesIO(data)) as img:
                assert img.size == (640, 427)
                assert JpegImagePlugin.get_sampling(img) == subsampling
        assert len(set(files)) == len(PHOTOS)


def test_the_nvjpeg_tolerances_are_the_measured_model_with_slack() -> None:
    """Each GPU tolerance holds its model's measurement; tiny 4:2:0 colour fields have none:
    their chroma edges are too far from PIL's to say anything about nvJPEG's decoding."""
    assert set(NVJPEG_TOLERANCE) == {"photos", "tiny 4:4:4"}
    for case, model in NVJPEG_MODEL.items():
        tolerance = NVJPEG_TOLERANCE[case]
        assert tolerance.holds(model._asdict()) and tolerance != model
    assert NVJPEG_TOLERANCE["photos"].mean < 1.5  # closer than q75 vs q95 files (docs/data.md)


@pytest.mark.parametrize("case", ["photos", "tiny 4:4:4", "tiny 4:2:0"])
def test_the_modelled_cuda_path_measures_what_the_tolerances_assume(case: str) -> None:
    """On the CPU, with simplejpeg (not a project dependency: skipped without it): the
    modelled CUDA path is as far from the CPU path as NVJPEG_MODEL records, and the tiny
    4:2:0 fixtures are beyond even the tiny 4:4:4 tolerance, which is why the GPU tests
    decode the tiny files at 4:4:4."""
    pytest.importorskip("simplejpeg", reason="the nvJPEG model needs simplejpeg "
                                             "(pip install simplejpeg)")
    files, size = nvjpeg_cases()[case]
    diff = difference([(cuda_decode_model(files, size), decode_batch(payloads(files, size),
                                                                      size, CPU))])
    if case in NVJPEG_MODEL:
        model = NVJPEG_MODEL[case]
        assert (round(diff["mean"], 3), diff["p99"], diff["max"]) == tuple(model)
    else:
        assert not NVJPEG_TOLERANCE["tiny 4:4:4"].holds(diff)


# -- on CUDA ---------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("case", ["photos", "tiny 4:4:4"])
def test_nvjpeg_decodes_as_the_cpu_decoder_does(case: str) -> None:
    """nvJPEG replicates 4:2:0 chroma where libjpeg-turbo interpolates it, and its IDCT and
    colour conversion are its own: "the same image" is within NVJPEG_TOLERANCE, the
    CPU-measured model of those differences with slack. Real photos at 4:2:0 carry the
    chroma difference (docs/data.md: a mean of about 1 level after the 256 warp, less than
    two JPEG qualities of the same photo differ by); the tiny colour fields are compared at
    4:4:4, where the two rebuild chroma alike, so that grey, progressive and CMYK files are
    still checked tightly; at 4:2:0 their 8x-enlarged colour blocks' edges differ by up to
    23 levels, which would hide any real fault."""
    files, size = nvjpeg_cases()[case]
    work = payloads(files, size)
    cpu = decode_batch(work, size, CPU)
    cuda = decode_batch(work, size, torch.device("cuda"))
    assert cuda.is_cuda and cuda.shape == cpu.shape
    diff = difference([(cuda.cpu(), cpu)])
    assert NVJPEG_TOLERANCE[case].holds(diff), diff


@pytest.mark.gpu
def test_auto_decodes_on_cuda_with_pils_order(tmp_path: Path) -> None:
    """The tiny MIT Indoor files at 4:4:4 (at 4:2:0 the modelled CUDA path is 2.4 levels
    from PIL's on average, on the colour fields' edges: nvjpeg_cases), so that the test
    views' closeness says the decode is right: within the tiny files' nvJPEG tolerance."""
    write_mit_indoor(tmp_path, subsampling=0)
    base = ("dataset.normalize=none", "dataset.jpeg_draft=false")
    cuda = load_dataset("mitindoor", tmp_path, *base, device="cuda")
    assert cuda.decoder == "torchvision"
    ref = load_dataset("mitindoor", tmp_path, *base)
    g = torch.Generator(device="cuda").manual_seed(2)
    got = list(cuda.train_batches(4, g))
    # the same draws on the CPU generator would differ: compare labels and closeness of a
    # test view instead, which draw nothing
    assert len(got) == 3 and all(x.is_cuda for x, _ in got)
    (xe, ye), = ref.eval_batches("test", 30)
    (xc, yc), = cuda.eval_batches("test", 30)
    mean = float((xe - xc.cpu()).abs().mean())
    assert torch.equal(ye, yc.cpu()) and mean <= NVJPEG_TOLERANCE["tiny 4:4:4"].mean / 255
