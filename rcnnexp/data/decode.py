"""Turning image files into uint8 ``[3, H, W]`` images at the stored size, two ways.

* ``pil`` (:func:`load_image`): a DataLoader worker decodes one file with PIL and resizes it
  (bilinear). The CPU path, and the reference the other path is measured against.
* ``torchvision`` (:func:`decode_batch`): workers only read the files' bytes
  (:func:`read_payload`); the main process decodes a whole batch with
  ``torchvision.io.decode_jpeg`` on the training device (nvJPEG on CUDA, its hardware
  decoder on A100/H100 for baseline JPEGs; libjpeg-turbo on a CPU device) and resizes it
  there with ``torch.nn.functional.interpolate`` (bilinear, antialiased as PIL's resize
  is: :func:`resize`). Files nvJPEG cannot take (PNG and the other formats, CMYK or
  arithmetic-coded JPEGs) are decoded with PIL by the worker that read them, and any JPEG
  the device decoder refuses is retried with PIL in the main process, so every file PIL
  reads works.

On a CPU both give the same image up to rounding; on CUDA nvJPEG also replicates 4:2:0
chroma where PIL interpolates it: docs/data.md gives the measured differences.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

# start-of-frame markers nvJPEG decodes: baseline, extended sequential, progressive (Huffman)
DEVICE_SOF = {0xC0, 0xC1, 0xC2}
OTHER_SOF = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# markers without a length field
STANDALONE = {0x01, *range(0xD0, 0xD8)}


def load_image(source: str | BinaryIO, size: tuple[int, int], draft: bool) -> torch.Tensor:
    """An image file (a path or an open binary file) as uint8 RGB ``[3, H, W]``, resized to
    ``size`` (H, W) (bilinear).

    With ``draft``, a JPEG is decoded at the smallest 1/2, 1/4 or 1/8 scale that is still at
    least ``size`` (libjpeg's DCT scaling), which is several times faster for large photos.
    """
    from PIL import Image

    h, w = size
    with Image.open(source) as img:
        if draft and img.format == "JPEG":
            img.draft("RGB", (w, h))
        rgb = img.convert("RGB")
    if rgb.size != (w, h):
        rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


def device_decodable(data: bytes) -> bool:
    """Whether ``data`` is a JPEG that nvJPEG decodes to RGB: 8-bit Huffman-coded baseline or
    progressive, with 1 (grey) or 3 (YCbCr) components. Read from the frame header; a
    file too damaged to say is not (PIL then decodes it, or names it as damaged)."""
    if data[:3] != b"\xff\xd8\xff":
        return False
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return False
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in DEVICE_SOF or marker in OTHER_SOF:
            if marker in OTHER_SOF or i + 10 > n:
                return False
            precision, components = data[i + 4], data[i + 9]
            return precision == 8 and components in (1, 3)
        i += 2 + length
    return False


def read_payload(path: str, size: tuple[int, int]) -> torch.Tensor:
    """What a worker hands the main process for one file: its bytes (uint8 ``[n]``) when the
    device decodes it, else the image decoded here with PIL (uint8 ``[3, H, W]``, full-size
    decode as on the device: no draft)."""
    with open(path, "rb") as f:
        data = f.read()
    if device_decodable(data):
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return load_image(io.BytesIO(data), size, draft=False)


class UndecodableImage(Exception):
    """Image ``index`` of a batch is neither decodable on the device nor by PIL."""

    def __init__(self, index: int, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.index = index
        self.cause = cause


def _decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders (for TorchCodec)
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


@functools.cache
def device_decoder_problem(device: torch.device) -> str | None:
    """Why torchvision cannot decode JPEGs on ``device`` here (a build without nvJPEG, a
    torchvision without batched decoding), or None when it can: one tiny JPEG is tried,
    once per process and device."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 90)).save(buf, format="JPEG")
    try:
        [image] = _decode_jpegs([torch.frombuffer(bytearray(buf.getvalue()),
                                                  dtype=torch.uint8)], device)
    except Exception as err:
        return f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
    if tuple(image.shape) != (3, 16, 16):
        return f"a 16x16 JPEG decoded to shape {tuple(image.shape)}"
    return None


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``[B, 3, h, w]`` -> uint8 ``[B, 3, H, W]`` as PIL's bilinear resize does it: one
    axis, then the other, each pass antialiased when it shrinks (the triangle filter
    widened by the scale) and rounded to 8 bits, the axis that shrinks most first (as
    Pillow mostly orders them). One pass for both axes instead differs from PIL on about 1
    value in 6; these two on about 1 in 1000 when shrinking photos, by 1 level
    (docs/data.md)."""
    H, W = size
    h, w = images.shape[-2:]
    if (h, w) == (H, W):
        return images
    if w / W >= h / H:  # the width shrinks more (or grows less): first
        return _interpolate(_interpolate(images, (h, W)), (H, W))
    return _interpolate(_interpolate(images, (H, w)), (H, W))


def _interpolate(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One bilinear antialiased pass, uint8 to uint8: on a CPU torch's uint8 kernel (8-bit
    arithmetic, as PIL's), elsewhere :func:`float_pass` (CUDA interpolates floats only)."""
    if tuple(images.shape[-2:]) == size:
        return images
    if images.device.type == "cpu":
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False,
                             antialias=True)
    return float_pass(images, size)


def float_pass(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One bilinear antialiased pass of uint8 images in float32, rounded back to uint8."""
    out = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False,
                        antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def decode_batch(payloads: Sequence[torch.Tensor], size: tuple[int, int],
                 device: torch.device) -> torch.Tensor:
    """A batch of :func:`read_payload` results as uint8 ``[B, 3, H, W]`` on ``device``.

    The JPEG bytes are decoded together (one batched nvJPEG call on CUDA), then resized
    together, one interpolation per distinct source size. Raises :class:`UndecodableImage`
    for a file neither the device nor PIL can decode."""
    out: list[torch.Tensor | None] = [None] * len(payloads)
    jpegs = [i for i, p in enumerate(payloads) if p.dim() == 1]
    for i, p in enumerate(payloads):
        if p.dim() == 3:
            out[i] = p.to(device, non_blocking=True)
    decoded: list[torch.Tensor | None]
    try:
        decoded = list(_decode_jpegs([payloads[i] for i in jpegs], device)) if jpegs else []
    except Exception:  # one file spoils the batch: find it, and let PIL try
        decoded = [None] * len(jpegs)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, image in zip(jpegs, decoded, strict=True):
        if image is None:
            try:
                image = _decode_jpegs([payloads[i]], device)[0]
            except Exception:
                try:
                    image = load_image(io.BytesIO(payloads[i].numpy().tobytes()), size,
                                       draft=False).to(device)
                except Exception as err:
                    raise UndecodableImage(i, err) from None
        out[i] = image
        by_shape.setdefault(tuple(image.shape), []).append(i)
    for ids in by_shape.values():
        small = resize(torch.stack([out[i] for i in ids]), size)  # type: ignore[misc]
        for i, image in zip(ids, small, strict=True):
            out[i] = image
    return torch.stack(out)  # type: ignore[arg-type]


__all__ = [
    "UndecodableImage",
    "decode_batch",
    "device_decodable",
    "device_decoder_problem",
    "float_pass",
    "load_image",
    "read_payload",
    "resize",
]
