"""The on-device batch pipeline against the torchvision transforms it replaces: the same crop
offsets and flip rates (statistically), the same pixels for the same parameters, the same
test views, and normalisation by the training statistics."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from scipy import stats as sps

from rcnnexp.config.dataset import DatasetConfig
from rcnnexp.data.transforms import BatchPipeline, Stats, compute_stats
from rcnnexp.errors import ConfigError

N_DRAWS = 5000
PIPELINE_KEYS = ("normalize", "crop", "padding", "flip", "views", "view_stride", "scale",
                 "train_crops")


def pipeline(size: tuple[int, int], **changes: object) -> BatchPipeline:
    """A pipeline with the dataset schema's defaults, ``changes`` on top (as a config gives)."""
    defaults = {key: getattr(DatasetConfig(), key) for key in PIPELINE_KEYS}
    return BatchPipeline(size, **{**defaults, **changes})


def coordinate_image(size: int) -> torch.Tensor:
    """uint8 [3, size, size]: R = row + 1, G = column + 1, B = 0 (so padding reads as 0)."""
    r = torch.arange(1, size + 1, dtype=torch.uint8)
    return torch.stack([r[:, None].expand(size, size), r[None, :].expand(size, size),
                        torch.zeros(size, size, dtype=torch.uint8)])


def recover(crops: torch.Tensor, padding: int) -> torch.Tensor:
    """(top, left, flipped) of each crop [N, 3, h, w] of the coordinate image, in padded
    coordinates, read from the crop's central pixel and its right neighbour (inside the
    image for the geometries tested here)."""
    h, w = crops.shape[-2:]
    i, j = h // 2, w // 2
    rows, cols = crops[:, 0, i, j].long(), crops[:, 1, i, j].long()
    assert bool((rows > 0).all() and (cols > 0).all())
    flipped = (crops[:, 1, i, j + 1].long() < cols).long()
    top = rows - 1 - i + padding
    left = cols - 1 - torch.where(flipped.bool(), w - 1 - j, j) + padding
    return torch.stack([top, left, flipped], dim=1)


def torchvision_draws(size: int, crop: int, padding: int, n: int) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    torch.manual_seed(0)
    transform = T.Compose([T.RandomCrop(crop, padding=padding), T.RandomHorizontalFlip()])
    img = Image.fromarray(coordinate_image(size).permute(1, 2, 0).numpy())
    crops = np.stack([np.asarray(transform(img)) for _ in range(n)])
    return recover(torch.from_numpy(crops).permute(0, 3, 1, 2), padding)


def pipeline_draws(size: int, crop: int, padding: int, n: int) -> torch.Tensor:
    pipe = pipeline((size, size), normalize="none", crop=crop, padding=padding, flip=True,
                         scale=255.0)
    images = coordinate_image(size).unsqueeze(0).expand(n, 3, size, size)
    crops = pipe.train(images, torch.Generator().manual_seed(1)).round().to(torch.uint8)
    return recover(crops, padding)


@pytest.mark.parametrize(("size", "crop", "padding"), [(32, 32, 4), (32, 24, 0)],
                         ids=["recnet-pad4", "rcnn-crop24"])
def test_crops_and_flips_follow_torchvision_distribution(size: int, crop: int,
                                                         padding: int) -> None:
    ours = pipeline_draws(size, crop, padding, N_DRAWS)
    theirs = torchvision_draws(size, crop, padding, N_DRAWS)
    span = size + 2 * padding - crop + 1
    for draws in (ours, theirs):
        assert set(draws[:, 0].tolist()) == set(range(span))
        assert set(draws[:, 1].tolist()) == set(range(span))
    # each marginal: the same distribution as torchvision's (chi-square homogeneity), and
    # uniform (goodness of fit); a flip rate of one half (binomial)
    for k, cells in ((0, span), (1, span), (2, 2)):
        a = torch.bincount(ours[:, k], minlength=cells)
        b = torch.bincount(theirs[:, k], minlength=cells)
        assert sps.chi2_contingency(torch.stack([a, b]).numpy())[1] > 1e-3
        assert sps.chisquare(a.numpy()).pvalue > 1e-3
    assert sps.binomtest(int(ours[:, 2].sum()), N_DRAWS, 0.5).pvalue > 1e-3
    # offsets and flips are independent: the joint (top, left, flip) cells are uniform too
    joint = torch.bincount((ours[:, 0] * span + ours[:, 1]) * 2 + ours[:, 2],
                           minlength=span * span * 2)
    assert sps.chisquare(joint.numpy()).pvalue > 1e-3


def test_crop_pixels_equal_torchvision_for_the_same_parameters() -> None:
    pipe = pipeline((32, 32), normalize="none", crop=28, padding=4, flip=True, scale=255.0)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    top, left, flip = pipe.draw(64, torch.Generator().manual_seed(5))
    ours = pipe.crops(images, top, left, flip).round().to(torch.uint8)
    for i in range(64):
        ref = TF.crop(TF.pad(images[i], [4]), int(top[i]), int(left[i]), 28, 28)
        ref = TF.hflip(ref) if flip[i] else ref
        assert torch.equal(ours[i], ref)


def test_ten_views_are_torchvision_tencrop() -> None:
    pipe = pipeline((37, 41), normalize="none", crop=29, views="ten", scale=255.0)
    images = torch.randint(0, 256, (2, 3, 37, 41), dtype=torch.uint8)
    views = pipe.eval(images).round().to(torch.uint8)
    assert views.shape == (2, 10, 3, 29, 29)
    for b in range(2):
        ref = torch.stack(T.TenCrop(29)(images[b]))
        key = lambda v: v.flatten().tolist()  # noqa: E731 - compare as sets of views
        assert sorted(map(key, views[b])) == sorted(map(key, ref))
    center = pipeline((37, 41), normalize="none", crop=29, scale=255.0).eval(images)
    assert torch.equal(center[:, 0].round().to(torch.uint8), TF.center_crop(images, [29, 29]))


def test_rcnn_nine_crops_lie_on_a_grid_four_pixels_apart() -> None:
    pipe = pipeline((32, 32), normalize="none", crop=24, views="grid9", view_stride=4)
    assert sorted((t, left) for t, left, _ in pipe.view_offsets()) == [
        (t, left) for t in (0, 4, 8) for left in (0, 4, 8)]
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    views = pipe.eval(images)
    assert views.shape == (3, 9, 3, 24, 24)
    torch.testing.assert_close(views[:, 0] * 255, images[:, :, 0:24, 0:24].float())
    with pytest.raises(ConfigError, match="view_stride"):
        pipeline((32, 32), crop=24, views="grid9", view_stride=5)


def test_pixel_mean_is_subtracted_where_the_crop_was_taken() -> None:
    pipe = pipeline((16, 16), normalize="pixel", crop=12, flip=True)
    mean = torch.rand(3, 16, 16)
    pipe.set_stats(Stats(mean, mean.mean((1, 2)), torch.ones(3), 1), torch.device("cpu"))
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    top, left, flip = pipe.draw(8, torch.Generator().manual_seed(2))
    out = pipe.crops(images, top, left, flip)
    for i in range(8):
        t, lo = int(top[i]), int(left[i])
        ref = images[i, :, t:t + 12, lo:lo + 12].float() / 255 - mean[:, t:t + 12, lo:lo + 12]
        torch.testing.assert_close(out[i], ref.flip(-1) if flip[i] else ref)
    views = pipe.eval(images)  # the centre view, likewise
    torch.testing.assert_close(views[:, 0], images[:, :, 2:14, 2:14].float() / 255
                               - mean[:, 2:14, 2:14])


def test_channel_statistics_and_normalisation() -> None:
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    chunks = (images[i:i + 7] for i in range(0, 50, 7))
    s = compute_stats(chunks)
    x = images.double() / 255
    torch.testing.assert_close(s.mean_image.double(), x.mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(s.channel_mean.double(), x.mean((0, 2, 3)), atol=1e-6, rtol=0)
    torch.testing.assert_close(s.channel_std.double(), x.std((0, 2, 3), correction=0),
                               atol=1e-6, rtol=0)
    pipe = pipeline((8, 8), normalize="channel")
    pipe.set_stats(s, torch.device("cpu"))
    y = pipe.eval(images)[:, 0]
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std((0, 2, 3), correction=0), torch.ones(3), atol=1e-5, rtol=0)


def test_training_batches_are_a_function_of_the_generator() -> None:
    pipe = pipeline((32, 32), normalize="none", crop=24, padding=2, flip=True)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a = pipe.train(images, torch.Generator().manual_seed(3))
    b = pipe.train(images, torch.Generator().manual_seed(3))
    c = pipe.train(images, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ten_position_training_crops() -> None:
    """train_crops=ten (C-RNN): only the 4 corners and the centre, each about 1/5 of draws."""
    pipe = pipeline((40, 40), normalize="none", crop=30, flip=True, train_crops="ten")
    top, left, flip = pipe.draw(5000, torch.Generator().manual_seed(0))
    pairs = torch.bincount(top * 100 + left)
    cells = {int(i): int(n) for i, n in enumerate(pairs) if n}
    assert set(cells) == {0, 10, 1000, 1010, 505}
    assert sps.chisquare(list(cells.values())).pvalue > 1e-3
    assert sps.binomtest(int(flip.sum()), 5000, 0.5).pvalue > 1e-3


def test_the_ten_crop_table_is_built_once_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the five positions from Python numbers is a host-to-device copy that waits
    for the GPU; done per batch it stalled every C-RNN step. It is built once per device,
    and the crops stay those of the table (with the padding added)."""
    pipe = pipeline((40, 40), normalize="none", crop=30, padding=2, flip=True,
                    train_crops="ten")
    builds = []
    positions = pipe.five_positions
    monkeypatch.setattr(pipe, "five_positions", lambda: builds.append(1) or positions())
    images = torch.zeros(4, 3, 40, 40, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        pipe.train(images, g)
    assert len(builds) == 1
    top, left, _ = pipe.draw(500, g)
    assert set(zip(top.tolist(), left.tolist(), strict=True)) == {
        (t + 2, l + 2) for t, l in positions()}


@pytest.mark.gpu
def test_a_cuda_training_batch_waits_for_no_host_copy() -> None:
    """C-RNN's training transform on CUDA (ten positions, flips, the mean image) makes no
    synchronising copy after its first batch."""
    cuda = torch.device("cuda")
    pipe = pipeline((40, 40), normalize="pixel", crop=30, flip=True, train_crops="ten")
    pipe.set_stats(compute_stats([torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8)]),
                   cuda)
    images = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8, device=cuda)
    g = torch.Generator(device=cuda).manual_seed(0)
    pipe.train(images, g)  # builds the table (one copy)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            pipe.train(images, g)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_impossible_geometry_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.crop=40 is larger than the 32x32"):
        pipeline((32, 32), crop=40)
    with pytest.raises(ConfigError, match=r"dataset\.normalize"):
        pipeline((32, 32), normalize="zca")
