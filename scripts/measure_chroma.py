#!/usr/bin/env python
"""How far nvJPEG's way of upsampling chroma moves a JPEG's pixels from PIL's, measured
without a GPU.

nvJPEG (``dataset.decode=torchvision`` on CUDA) rebuilds the 4:2:0 chroma planes of a JPEG
by replication (each chroma sample covers its 2x2 pixels), where PIL's libjpeg-turbo
interpolates them ("fancy upsampling", the default). libjpeg-turbo's own replication
(``do_fancy_upsampling = FALSE``) is the same kind of upsampling; the ``simplejpeg``
package exposes it (``fastupsample=True``), so the difference can be measured here, on
real photos (scikit-learn's two sample photos, 427x640: tests/tiny_data.py ``photo_jpeg``)
and on the tiny colour-field fixtures the loader tests use (``jpeg_bytes``, 40-90 px,
quality 90, 4:2:0), whose sharp colour-block edges are where replication differs most.

Each row decodes the same file two ways and compares them, per value (0..255): mean and
99th percentile of the absolute difference, its maximum, the share of values that differ,
and PSNR. ``decoded``: the full-size images; ``256 -> 227``: after the ImageNet/SUN397
preprocessing (warped to 256x256 with the project's resize, centre 227x227 crop),
``-> 80``: the tiny fixtures at the loader tests' size. Rows for scale: libjpeg-turbo's
fast integer IDCT against its accurate one (how much another IDCT alone moves pixels, a
stand-in for nvJPEG's, which was not measured), and two JPEG qualities, and 4:2:0 against
4:4:4, of the same photo (what the files themselves already vary by).

    PYTHONPATH=/tmp/sj python scripts/measure_chroma.py   # pip install --target /tmp/sj simplejpeg

``simplejpeg`` is needed by this script only, not by the project. docs/data.md ("nvJPEG's
chroma upsampling") gives the table and what it means for the gpu tests' tolerances.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rcnnexp.data.decode import decode_batch, device_decodable, load_image, resize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_data import (
    PHOTOS,
    cuda_decode_model,
    difference,
    image_bytes,
    jpeg_bytes,
    nvjpeg_cases,
    photo_jpeg,
)

Decoder = Callable[[bytes], np.ndarray]
Pairs = list[tuple[np.ndarray, np.ndarray]]


def decoders() -> dict[str, Decoder]:
    """PIL (the reference) and libjpeg-turbo through simplejpeg with each upsampling and
    IDCT; exits in one line when simplejpeg is absent."""
    from PIL import Image

    try:
        import simplejpeg
    except ImportError:
        sys.exit("measure_chroma.py needs simplejpeg (not a project dependency): "
                 "pip install --target /tmp/sj simplejpeg, then PYTHONPATH=/tmp/sj")

    def pil(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))

    def turbo(fastupsample: bool, fastdct: bool) -> Decoder:
        return lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=fastdct,
                                                   fastupsample=fastupsample)

    return {"pil": pil, "fancy": turbo(False, False), "replicate": turbo(True, False),
            "fastdct": turbo(False, True), "replicate+fastdct": turbo(True, True)}


def preprocess(image: np.ndarray, size: int, crop: int | None) -> np.ndarray:
    """HWC uint8 -> warped to ``size`` x ``size`` by the project's resize (the torchvision
    path's; PIL's to within a level), then the centre ``crop`` (as torchvision rounds it)."""
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None]
    x = resize(x, (size, size))[0].permute(1, 2, 0).numpy()
    crop = crop or size
    top = round((size - crop) / 2)
    return x[top:top + crop, top:top + crop]


def row(label: str, stage: str, s: dict[str, float]) -> str:
    psnr = "identical" if s["psnr"] == float("inf") else f"{s['psnr']:.1f}"
    return (f"| {label} | {stage} | {s['mean']:.3f} | {s['p99']:.0f} | {s['max']:.0f} | "
            f"{100 * s['differ']:.1f} % | {psnr} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qualities", type=int, nargs="+", default=[75, 95])
    ap.add_argument("--fixtures", type=int, default=12, help="tiny colour fields (seeds 0..)")
    ap.add_argument("--resize", type=int, default=256)
    ap.add_argument("--crop", type=int, default=227)
    ap.add_argument("--tiny-size", type=int, default=80, help="the loader tests' resize")
    args = ap.parse_args()
    dec = decoders()
    lo, hi = min(args.qualities), max(args.qualities)
    photos = {(n, q, s): photo_jpeg(n, q, s) for n in PHOTOS for q in args.qualities
              for s in (2, 0)}
    probe = photos[PHOTOS[0], hi, 2]
    if not np.array_equal(dec["fancy"](probe), dec["pil"](probe)):
        sys.exit("simplejpeg's default decode is not PIL's here: not the same libjpeg-turbo")
    both = " + ".join(n.split(".")[0] for n in PHOTOS)
    crop = f"{args.resize} -> {args.crop}"
    stages = {"decoded": None, f"-> {args.resize}": (args.resize, None),
              crop: (args.resize, args.crop)}

    def at(stage: str, pairs: Pairs) -> dict[str, float]:
        if stages[stage] is None:
            return difference(pairs)
        return difference([(preprocess(a, *stages[stage]), preprocess(b, *stages[stage]))
                           for a, b in pairs])

    def vs_pil(decoder: str, files: list[bytes]) -> Pairs:
        return [(dec[decoder](f), dec["pil"](f)) for f in files]

    print("| comparison | stage | mean abs | p99 abs | max abs | values differing | PSNR dB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for q in args.qualities:  # what nvJPEG's replication alone does, photo by photo
        for stage in ("decoded", crop):
            for n in PHOTOS:
                label = f"replicate vs fancy, {n.split('.')[0]}, q{q} 4:2:0"
                print(row(label, stage, at(stage, vs_pil("replicate", [photos[n, q, 2]]))))
    files444 = [photos[n, q, 0] for n in PHOTOS for q in args.qualities]
    for stage in ("decoded", crop):
        label = f"replicate vs fancy, {both}, q{lo} + q{hi} 4:4:4"
        print(row(label, stage, at(stage, vs_pil("replicate", files444))))
    for q in args.qualities:  # another IDCT alone; then both, the stand-in for nvJPEG
        files = [photos[n, q, 2] for n in PHOTOS]
        for stage in ("decoded", crop):
            print(row(f"fast IDCT vs accurate, {both}, q{q} 4:2:0", stage,
                      at(stage, vs_pil("fastdct", files))))
        for stage in ("decoded", f"-> {args.resize}"):
            print(row(f"replicate + fast IDCT vs PIL, {both}, q{q} 4:2:0", stage,
                      at(stage, vs_pil("replicate+fastdct", files))))
    for stage in ("decoded", crop):  # what the files themselves vary by
        quality = [(dec["pil"](photos[n, lo, 2]), dec["pil"](photos[n, hi, 2])) for n in PHOTOS]
        chroma = [(dec["pil"](photos[n, hi, 2]), dec["pil"](photos[n, hi, 0])) for n in PHOTOS]
        print(row(f"q{lo} vs q{hi} files (PIL), {both}, 4:2:0", stage, at(stage, quality)))
        print(row(f"4:2:0 vs 4:4:4 files (PIL), {both}, q{hi}", stage, at(stage, chroma)))
    tiny = f"-> {args.tiny_size}"
    stages[tiny] = (args.tiny_size, None)
    for sub, name in ((-1, "4:2:0"), (0, "4:4:4")):
        files = [jpeg_bytes(s, subsampling=sub) for s in range(args.fixtures)]
        for stage in ("decoded", tiny):
            label = f"replicate vs fancy, {args.fixtures} tiny colour fields, q90 {name}"
            print(row(label, stage, at(stage, vs_pil("replicate", files))))
    kinds = [jpeg_bytes(s, subsampling=0) for s in range(args.fixtures)] + [
        image_bytes(3, "grey"), image_bytes(4, "progressive", subsampling=0)]
    for stage in ("decoded", tiny):
        label = (f"replicate + fast IDCT vs PIL, {args.fixtures} tiny colour fields + grey + "
                 "progressive, q90 4:4:4")
        print(row(label, stage, at(stage, vs_pil("replicate+fastdct", kinds))))
    print("\nThe gpu tests' inputs (tiny_data.nvjpeg_cases), the CUDA path as "
          "tiny_data.cuda_decode_model models it against the CPU path (decode_batch):\n")
    print("| case | size | mean abs | p99 abs | max abs | values differing | PSNR dB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for case, (files, size) in nvjpeg_cases().items():
        print(row(case, f"{size[0]}x{size[1]}",
                  difference([(cuda_decode_model(files, size), cpu_path(files, size))])))


def cpu_path(files: list[bytes], size: tuple[int, int]) -> torch.Tensor:
    """decode_batch on the CPU (libjpeg-turbo as PIL has it, the uint8 resize)."""
    payloads = [torch.frombuffer(bytearray(f), dtype=torch.uint8) if device_decodable(f)
                else load_image(io.BytesIO(f), size, draft=False) for f in files]
    return decode_batch(payloads, size, torch.device("cpu"))


if __name__ == "__main__":
    main()
