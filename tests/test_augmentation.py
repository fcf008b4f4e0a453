"""Behaviour of the batched augmentations: geometry, each op in isolation, probabilities, determinism, landmarks."""

import dataclasses
import json
import math

import pytest
import torch
from dispatch_counters import HostToDeviceCopies

from pros_hf.augmentation import (
    LandmarkAugmentation,
    LandmarkAugmentationConfig,
    MultiCropAugmentation,
    MultiCropConfig,
    resize_with_landmarks,
)
from pros_hf.augmentation import functional as AF

MEAN = torch.tensor(AF.IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
STD = torch.tensor(AF.IMAGENET_DEFAULT_STD).view(3, 1, 1)
SMALL = dict(global_crop_size=32, local_crop_size=16, n_local_crops=3)


def denorm(x):
    """Back to [0, 1] units; x (..., 3, H, W)."""
    return x * STD + MEAN


def ramp_image(s=64):
    """R = 4 x, G = 4 y, B = 128 (uint8): the value tells where a pixel came from."""
    y, x = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    return torch.stack([4 * x, 4 * y, torch.full_like(x, 128)]).to(torch.uint8).unsqueeze(0)


def plain(**kw):
    """Geometry only: every colour / blur / solarize op off."""
    cfg = dict(
        SMALL,
        flip_p=0.0,
        color_jitter_p=0.0,
        grayscale_p=0.0,
        global_blur_p=0.0,
        local_blur_p=0.0,
        global_solarize_p=0.0,
        interpolation="bilinear",
    )
    cfg.update(kw)
    return MultiCropAugmentation(**cfg)


def colourful(b=4, s=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, s, s, generator=g) * 0.6 + 0.2


# ---------------------------------------------------------------------------------------------------------------
# shapes, dtypes, config


def test_shapes_dtypes_and_defaults():
    cfg = MultiCropConfig()
    assert (cfg.n_global_crops, cfg.global_crop_size, cfg.global_crop_scale) == (2, 224, (0.4, 1.0))
    assert (cfg.local_crop_size, cfg.local_crop_scale, cfg.flip_p, cfg.grayscale_p) == (96, (0.05, 0.4), 0.5, 0.2)
    assert cfg.global_blur_p == (1.0, 0.1) and cfg.local_blur_p == 0.5 and cfg.global_solarize_p == (0.0, 0.2)
    aug = MultiCropAugmentation(**SMALL)
    images = torch.randint(0, 256, (3, 3, 48, 48), dtype=torch.uint8)
    g, l = aug(images)
    assert g.shape == (3, 2, 3, 32, 32) and l.shape == (3, 3, 3, 16, 16)
    assert g.dtype == l.dtype == torch.float32 and torch.isfinite(g).all() and torch.isfinite(l).all()
    # float input in [0, 1], non-square source, bf16 output, no local crops
    aug = MultiCropAugmentation(**dict(SMALL, n_local_crops=0, output_dtype="bfloat16"))
    g, l = aug(torch.rand(2, 3, 40, 56))
    assert g.dtype == torch.bfloat16 and g.shape == (2, 2, 3, 32, 32) and l.shape == (2, 0, 3, 16, 16)


def test_config_round_trip_and_overrides():
    aug = MultiCropAugmentation(n_local_crops=8, interpolation="bilinear", global_blur_p=0.3)
    saved = json.loads(json.dumps(aug.to_config()))
    again = MultiCropAugmentation.from_config(saved)
    assert again.config == aug.config and again.config.global_blur_p == (0.3, 0.3)
    assert MultiCropAugmentation(aug.config, n_local_crops=2).config.n_local_crops == 2
    with pytest.raises(ValueError, match="unknown MultiCropConfig fields"):
        MultiCropAugmentation.from_config({"n_locals": 3})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(global_crop_scale=(0.0, 1.0)), "global_crop_scale must lie in \\(0.0, 1.0\\]"),
        (dict(local_crop_scale=(0.05, 1.4)), "local_crop_scale must lie in"),
        (dict(local_crop_scale=(0.4, 0.05)), "min <= max"),
        (dict(flip_p=1.5), "flip_p must be a probability in \\[0, 1\\]"),
        (dict(grayscale_p=-0.1), "grayscale_p"),
        (dict(global_blur_p=(1.0, 0.1, 0.5)), "global_blur_p must be one probability or exactly one per view"),
        (dict(global_solarize_p=(0.0, 2.0)), "global_solarize_p\\[1\\]"),
        (dict(global_crop_size=0), "global_crop_size must be > 0"),
        (dict(local_crop_size=-3), "local_crop_size must be > 0"),
        (dict(n_global_crops=0), "n_global_crops must be >= 1"),
        (dict(hue=0.7), "hue must be in \\[0, 0.5\\]"),
        (dict(interpolation="area"), "interpolation must be one of"),
        (dict(color_jitter_mode="torch"), "color_jitter_mode must be one of"),
        (dict(output_dtype="int8"), "output_dtype must be one of"),
        (dict(blur_sigma=(0.0, 2.0)), "blur_sigma"),
        # non-finite values: the crop boxes or a whole channel would be NaN / inf at the first call
        (dict(crop_ratio=(1.0, math.inf)), "crop_ratio must be finite"),
        (dict(std=(math.nan, 1.0, 1.0)), "std must be finite"),
        (dict(std=(math.inf, 1.0, 1.0)), "std must be finite"),
        (dict(mean=(0.5, math.nan, 0.5)), "mean must be finite"),
        (dict(mean=0.5), "mean must be 3 numbers"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiCropAugmentation(**kwargs)


def test_dino_global_probabilities_extend_to_any_global_crop_count():
    defaults = MultiCropConfig()
    two = MultiCropConfig.dino_global_probabilities(2)
    assert two == {"global_blur_p": defaults.global_blur_p, "global_solarize_p": defaults.global_solarize_p}
    assert MultiCropConfig.dino_global_probabilities(1) == {"global_blur_p": (1.0,), "global_solarize_p": (0.0,)}
    three = MultiCropConfig(n_global_crops=3, **MultiCropConfig.dino_global_probabilities(3))
    assert three.global_blur_p == (1.0, 0.1, 0.1) and three.global_solarize_p == (0.0, 0.2, 0.2)
    g, _ = MultiCropAugmentation(three, **dict(SMALL, n_local_crops=0))(torch.rand(2, 3, 40, 40))
    assert g.shape == (2, 3, 3, 32, 32)
    with pytest.raises(ValueError, match="dino_global_probabilities\\(3\\) gives DINO's for 3 global views"):
        MultiCropConfig(n_global_crops=3)  # the defaults are for two views: the error says how to get three
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="n_global_crops must be an int >= 1"):
            MultiCropConfig.dino_global_probabilities(bad)


def test_sample_params_refuses_empty_or_fractional_sources():
    aug = MultiCropAugmentation(**SMALL)
    with pytest.raises(ValueError, match="height must be a positive int"):
        aug.sample_params(2, 0)
    with pytest.raises(ValueError, match="width must be a positive int"):
        aug.sample_params(2, 20, 20.5)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        aug.sample_params(0, 20)


@pytest.mark.parametrize(
    "make",
    [lambda: MultiCropAugmentation(**SMALL), lambda: LandmarkAugmentation(output_size=16, color_jitter_p=0.5)],
    ids=["multicrop", "landmarks"],
)
def test_an_int_seed_is_a_generator(make):
    aug = make()
    images = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    extra = (torch.rand(2, 4, 2) * 39,) if isinstance(aug, LandmarkAugmentation) else ()
    seeded = aug(images, *extra, 7)
    generated = aug(images, *extra, torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(seeded, generated))
    for bad in ("7", 7.0, True):
        with pytest.raises(TypeError, match="generator must be a torch.Generator, an int seed or None"):
            aug(images, *extra, bad)


def test_an_input_that_requires_grad_is_read_as_data():
    aug = MultiCropAugmentation(**SMALL)
    images = torch.rand(2, 3, 40, 40, requires_grad=True)  # e.g. images a model produced
    out = aug(images, torch.Generator().manual_seed(3))
    plain_out = aug(images.detach(), torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) and not a.requires_grad for a, b in zip(out, plain_out))


def test_input_validation():
    aug = MultiCropAugmentation(**SMALL)
    with pytest.raises(ValueError, match="\\(B, 3, H, W\\)"):
        aug(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="\\(B, 3, H, W\\)"):
        aug(torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="values in \\[0, 1\\]"):
        aug(torch.full((1, 3, 32, 32), 2.0))
    with pytest.raises(ValueError, match="values in \\[0, 1\\]"):
        aug(torch.full((1, 3, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.zeros(1, 3, 32, 32, dtype=torch.int32))


# ---------------------------------------------------------------------------------------------------------------
# geometry


def test_crop_box_sampling_follows_torchvision_rules():
    g = torch.Generator().manual_seed(0)
    boxes = AF.sample_resized_crop_boxes(4000, 60, 80, (0.05, 0.4), (3 / 4, 4 / 3), generator=g)
    x0, y0, w, h = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 80).all() and (y0 + h <= 60).all()
    assert torch.equal(boxes, boxes.round())  # integer boxes, like PIL crops
    area = w * h / (60 * 80)
    # rounding the sides moves the area fraction a little past the sampled range
    assert area.min() > 0.04 and area.max() < 0.42
    assert 0.2 < area.mean() < 0.25  # uniform on [0.05, 0.4] has mean 0.225
    ratio = w / h
    assert ratio.min() > 0.7 and ratio.max() < 1.42
    # log-uniform ratio: the median of w/h is ~1
    assert abs(ratio.median().item() - 1.0) < 0.05


def test_crop_takes_the_right_region_and_flip_mirrors_it():
    aug = plain(global_crop_size=16)
    src = ramp_image(64)
    params = aug.sample_params(1, 64, 64, generator=torch.Generator().manual_seed(0))
    gv = params.global_views
    gv.boxes[0, 0] = torch.tensor([8.0, 16.0, 32.0, 24.0])  # x0, y0, w, h
    gv.boxes[0, 1] = torch.tensor([8.0, 16.0, 32.0, 24.0])
    gv.flip[0] = torch.tensor([False, True])
    g, _ = aug.apply(src, params)
    crop = denorm(g[0]) * 255  # (2, 3, 16, 16)
    j = torch.arange(16, dtype=torch.float32)
    # output pixel j samples source x = x0 + (j + 0.5) * w / 16 - 0.5; bilinear reproduces a linear ramp exactly
    expected_x = 8 + (j + 0.5) * 32 / 16 - 0.5
    expected_y = 16 + (j + 0.5) * 24 / 16 - 0.5
    torch.testing.assert_close(crop[0, 0], (4 * expected_x).expand(16, 16), atol=0.05, rtol=0)
    torch.testing.assert_close(crop[0, 1], (4 * expected_y).view(16, 1).expand(16, 16), atol=0.05, rtol=0)
    torch.testing.assert_close(crop[0, 2], torch.full((16, 16), 128.0), atol=0.05, rtol=0)
    # the flipped view is the mirror image of the same region
    torch.testing.assert_close(crop[1], crop[0].flip(-1), atol=0.05, rtol=0)


def test_crop_of_quadrants_holds_the_quadrant_colour():
    img = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    img[:, 0, :32, :32] = 255  # top-left red
    img[:, 1, :32, 32:] = 255  # top-right green
    img[:, 2, 32:, :32] = 255  # bottom-left blue
    aug = plain(interpolation="bicubic")
    params = aug.sample_params(1, 64, 64)
    params.global_views.boxes[0, 0] = torch.tensor([36.0, 2.0, 24.0, 24.0])  # inside top-right
    params.global_views.boxes[0, 1] = torch.tensor([4.0, 36.0, 20.0, 26.0])  # inside bottom-left
    g, _ = aug.apply(img, params)
    means = denorm(g[0]).mean(dim=(2, 3))
    torch.testing.assert_close(means[0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(means[1], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3, rtol=0)


def test_grid_matches_affine_grid():
    boxes = AF.sample_resized_crop_boxes(6, 40, 50, (0.1, 1.0), (0.75, 1.33))
    flip = torch.tensor([True, False] * 3)
    ref = torch.nn.functional.affine_grid(
        AF.crop_boxes_to_theta(boxes, flip, 40, 50), [6, 1, 7, 9], align_corners=False
    )
    torch.testing.assert_close(AF.crop_grid(boxes, flip, 40, 50, (7, 9)), ref, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# single ops


def test_brightness_contrast_saturation():
    x = colourful()
    f = torch.tensor([0.5, 0.8, 1.0, 1.2])
    out = AF.adjust_brightness(x, f)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)) * f)
    gray_mean = AF.rgb_to_grayscale(x)[:, 0].mean(dim=(1, 2))
    low = AF.adjust_contrast(x, torch.zeros(4))
    torch.testing.assert_close(low, gray_mean.view(4, 1, 1, 1).expand_as(x))
    half = AF.adjust_contrast(x, torch.full((4,), 0.5))
    assert (half.std(dim=(1, 2, 3)) < x.std(dim=(1, 2, 3))).all()
    gray = AF.adjust_saturation(x, torch.zeros(4))
    torch.testing.assert_close(gray[:, 0], gray[:, 1])
    torch.testing.assert_close(gray[:, 1], gray[:, 2])


def test_grayscale_makes_channels_equal_with_luma():
    x = colourful()
    g = AF.rgb_to_grayscale(x)
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    torch.testing.assert_close(g[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])


def test_hsv_round_trip_and_hue_shift():
    x = colourful(s=16)
    torch.testing.assert_close(AF.hsv_to_rgb(AF.rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    grey = torch.rand(3, 1, 8, 8).expand(3, 3, 8, 8).contiguous()
    shift = torch.tensor([0.1, -0.3, 0.5])
    torch.testing.assert_close(AF.adjust_hue(grey, shift), grey, atol=1e-6, rtol=0)
    # a full turn is the identity, a shift moves the hue by the shift
    torch.testing.assert_close(
        AF.adjust_hue(x, torch.full((4,), 0.5)), AF.adjust_hue(x, torch.full((4,), -0.5)), atol=1e-5, rtol=0
    )
    pure_red = torch.zeros(1, 3, 2, 2)
    pure_red[:, 0] = 1.0
    green = AF.adjust_hue(pure_red, torch.tensor([1 / 3]))
    torch.testing.assert_close(green[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5, rtol=0)


def test_yiq_hue_rotation_keeps_grey_and_luma():
    grey = torch.rand(3, 1, 8, 8).expand(3, 3, 8, 8).contiguous()
    a, c = AF.hue_rotation_matrix(torch.tensor([0.1, -0.25, 0.5]))
    torch.testing.assert_close(AF.apply_color_matrix(grey, a, c, clamp=False), grey, atol=1e-5, rtol=0)
    x = colourful(b=3)
    rotated = AF.apply_color_matrix(x, a, c, clamp=False)
    luma = lambda t: AF.rgb_to_grayscale(t)[:, 0]  # noqa: E731
    torch.testing.assert_close(luma(rotated), luma(x), atol=1e-5, rtol=0)
    assert (rotated - x).abs().amax() > 0.05


def test_fused_color_matrix_equals_sequential_ops_without_clipping():
    x = colourful(b=6) * 0.5 + 0.25  # stay far from 0 and 1 so no op clips
    g = torch.Generator().manual_seed(3)
    b = 0.9 + 0.2 * torch.rand(6, generator=g)
    c = 0.9 + 0.2 * torch.rand(6, generator=g)
    s = 0.8 + 0.4 * torch.rand(6, generator=g)
    order = torch.rand(6, 4, generator=g).argsort(1)
    gray = torch.tensor([True, False, False, True, False, False])
    a, off = AF.color_jitter_matrices(x.mean(dim=(2, 3)), b, c, s, torch.zeros(6), order, gray)
    fused = AF.apply_color_matrix(x, a, off)
    ref = x.clone()
    ops = [
        lambda t, i: AF.adjust_brightness(t, b[i : i + 1]),
        lambda t, i: AF.adjust_contrast(t, c[i : i + 1]),
        lambda t, i: AF.adjust_saturation(t, s[i : i + 1]),
        lambda t, i: t,
    ]
    for i in range(6):
        t = ref[i : i + 1]
        for op in order[i].tolist():
            t = ops[op](t, i)
        ref[i : i + 1] = AF.rgb_to_grayscale(t) if gray[i] else t
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=0)


def test_solarize_inverts_above_threshold():
    x = torch.linspace(0, 1, 1001).view(1, 1, 1, 1001).expand(1, 3, 1, 1001)
    out = AF.solarize(x, 128 / 255)
    hi = x >= 128 / 255
    assert 490 * 3 < hi.sum() < 500 * 3
    torch.testing.assert_close(out[hi], 1 - x[hi])
    torch.testing.assert_close(out[~hi], x[~hi])
    norm = AF.normalize(x.clone(), AF.IMAGENET_DEFAULT_MEAN, AF.IMAGENET_DEFAULT_STD)
    torch.testing.assert_close(
        AF.solarize_normalized(norm, 128 / 255, AF.IMAGENET_DEFAULT_MEAN, AF.IMAGENET_DEFAULT_STD),
        AF.normalize(out.clone(), AF.IMAGENET_DEFAULT_MEAN, AF.IMAGENET_DEFAULT_STD),
        atol=1e-5,
        rtol=0,
    )


def test_blur_removes_high_frequencies_and_keeps_the_mean():
    y, x = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    checker = ((x + y) % 2).float().expand(3, 3, 32, 32).contiguous() * 0.8 + 0.1
    sigma = torch.tensor([0.3, 1.0, 2.0])
    out = AF.gaussian_blur(checker, sigma, radius=6)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), checker.mean(dim=(1, 2, 3)), atol=2e-3, rtol=0)

    def hf_energy(t):  # energy of the horizontal finite difference
        return (t[..., 1:] - t[..., :-1]).pow(2).mean(dim=(1, 2, 3))

    e = hf_energy(out)
    assert (e < hf_energy(checker)).all() and e[2] < e[1] < e[0]
    assert e[2] < 1e-3 * hf_energy(checker)[2]
    k = AF.gaussian_kernel1d(torch.tensor([0.1, 2.0]), 6)
    torch.testing.assert_close(k.sum(1), torch.ones(2))
    torch.testing.assert_close(k, k.flip(1))
    torch.testing.assert_close(k[1, 6] / k[1, 5], torch.tensor(math.exp(1 / 8)))  # exp(-x^2 / 2 sigma^2) ratios


def test_normalisation_gives_expected_mean_and_std():
    aug = plain()
    img = torch.full((2, 3, 40, 40), 0.5)
    img[:, :, :, ::2] = 0.1  # stripes of 0.1 / 0.5 -> mean 0.3, std 0.2
    g, _ = aug(img)
    expected_mean = (0.3 - MEAN.view(3)) / STD.view(3)
    # a crop keeps the stripes' proportion up to a stripe at the border: loose tolerance on the mean
    torch.testing.assert_close(g.mean(dim=(0, 1, 3, 4)), expected_mean, atol=0.25, rtol=0)
    const = torch.full((2, 3, 40, 40), 0.3)
    g, l = aug(const)
    torch.testing.assert_close(g[0, 0, :, 0, 0], expected_mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(l.std(dim=(3, 4)), torch.zeros(2, 3, 3), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# the module: probabilities, ops applied as drawn, determinism


def test_observed_probabilities_match_the_configuration():
    aug = MultiCropAugmentation(**dict(SMALL, n_local_crops=4))
    p = aug.sample_params(2000, 32, 32, generator=torch.Generator().manual_seed(1))
    gv, lv = p.global_views, p.local_views
    tol = 0.04
    assert abs(gv.flip.float().mean() - 0.5) < tol and abs(lv.flip.float().mean() - 0.5) < tol
    assert abs(gv.jitter.float().mean() - 0.8) < tol
    assert abs(gv.grayscale.float().mean() - 0.2) < tol and abs(lv.grayscale.float().mean() - 0.2) < tol
    assert gv.blur[:, 0].all() and abs(gv.blur[:, 1].float().mean() - 0.1) < tol
    assert abs(lv.blur.float().mean() - 0.5) < tol
    assert not gv.solarize[:, 0].any() and abs(gv.solarize[:, 1].float().mean() - 0.2) < tol
    assert not lv.solarize.any()
    assert gv.sigma.min() >= 0.1 and gv.sigma.max() <= 2.0 and abs(gv.sigma.mean() - 1.05) < 0.05
    assert gv.brightness.min() >= 0.6 and gv.brightness.max() <= 1.4 and gv.hue.abs().max() <= 0.1
    assert gv.saturation.min() >= 0.8 and gv.saturation.max() <= 1.2
    # every permutation of the 4 jitter ops shows up, each about 1/24 of the time
    codes = (gv.jitter_order * torch.tensor([1, 4, 16, 64])).sum(-1).flatten()
    counts = torch.bincount(codes, minlength=256)
    assert (counts > 0).sum() == 24 and counts.max() < 4000 / 24 * 1.5


def test_grayscale_and_flip_are_applied_as_observed_in_the_outputs():
    # a colourful horizontal ramp, crops of the whole image: a flip reverses the ramp, grayscale equalises channels
    n = 2000
    x = torch.arange(8, dtype=torch.float32)
    img = torch.stack([x / 7, 1 - x / 7, torch.full_like(x, 0.5)]).view(1, 3, 1, 8).expand(n, 3, 8, 8)
    aug = MultiCropAugmentation(
        global_crop_size=4,
        local_crop_size=2,
        n_local_crops=0,
        global_crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        color_jitter_p=0.0,
        global_blur_p=0.0,
        global_solarize_p=0.0,
        interpolation="bilinear",
    )
    params = aug.sample_params(n, 8, 8, generator=torch.Generator().manual_seed(0))
    g, _ = aug.apply(img.contiguous(), params)
    g = denorm(g[:, 0])  # view 1
    is_gray = (g[:, 0] - g[:, 1]).abs().amax(dim=(1, 2)) < 1e-4
    red_falls = g[:, 0, 0, 0] > g[:, 0, 0, -1]
    assert torch.equal(is_gray, params.global_views.grayscale[:, 0])
    assert abs(is_gray.float().mean() - 0.2) < 0.04
    colour = ~is_gray
    assert torch.equal(red_falls[colour], params.global_views.flip[colour, 0])
    assert abs(red_falls[colour].float().mean() - 0.5) < 0.05


def test_blur_and_solarize_follow_the_drawn_params():
    aug = MultiCropAugmentation(**dict(SMALL, n_local_crops=2, flip_p=0.0, color_jitter_p=0.0, grayscale_p=0.0))
    images = torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8)
    params = aug.sample_params(8, 40, 40, generator=torch.Generator().manual_seed(5))
    params.global_views.blur[:] = torch.arange(8).view(8, 1) % 2 == 0
    params.global_views.solarize[:] = False
    params.global_views.solarize[:, 1] = torch.arange(8) < 3
    g, _ = aug.apply(images, params)
    ref_params = dataclasses.replace(
        params.global_views, blur=torch.zeros(8, 2, dtype=torch.bool), solarize=torch.zeros(8, 2, dtype=torch.bool)
    )
    g_ref, _ = aug.apply(images, dataclasses.replace(params, global_views=ref_params))
    same = (g - g_ref).abs().amax(dim=(2, 3, 4)) < 1e-5  # (8, 2)
    changed = params.global_views.blur | params.global_views.solarize
    assert torch.equal(~same, changed)
    # every view blurred (the whole-group path)
    all_blur = dataclasses.replace(ref_params, blur=torch.ones(8, 2, dtype=torch.bool), sigma=torch.full((8, 2), 1.5))
    g_all, _ = aug.apply(images, dataclasses.replace(params, global_views=all_blur))
    assert ((g_all - g_ref).abs().amax(dim=(2, 3, 4)) > 1e-3).all()
    # a blurred view has less high-frequency energy than its sharp twin
    hf = lambda t: (t[..., 1:] - t[..., :-1]).pow(2).mean(dim=(-3, -2, -1))  # noqa: E731
    assert (hf(g[0::2, 0]) < hf(g_ref[0::2, 0])).all()


def test_generator_makes_outputs_reproducible():
    aug = MultiCropAugmentation(**SMALL)
    images = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    a = aug(images, generator=torch.Generator().manual_seed(7))
    b = aug(images, generator=torch.Generator().manual_seed(7))
    c = aug(images, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # per-sample randomness: the views of two identical images differ
    same = images[:1].expand(2, 3, 40, 40).contiguous()
    g, _ = aug(same, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(g[0], g[1])


def test_sequential_jitter_mode_matches_fused_when_nothing_clips():
    common = dict(SMALL, n_local_crops=1, hue=0.0, flip_p=0.5, global_blur_p=0.5, global_solarize_p=0.5)
    fused = MultiCropAugmentation(**common, color_jitter_mode="fused", brightness=0.1, contrast=0.1, saturation=0.1)
    seq = MultiCropAugmentation(fused.config, color_jitter_mode="sequential")
    img = colourful(b=6, s=40) * 0.5 + 0.25
    params = fused.sample_params(6, 40, 40, generator=torch.Generator().manual_seed(2))
    a, b = fused.apply(img, params), seq.apply(img, params)
    torch.testing.assert_close(a[0], b[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(a[1], b[1], atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    aug = MultiCropAugmentation(**SMALL)
    images = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    params = aug.sample_params(4, 40, 40, generator=torch.Generator().manual_seed(0))
    cpu = aug.apply(images, params)
    gpu = aug.apply(images.cuda(), params)
    assert gpu[0].device.type == "cuda"
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-3, rtol=0)
    torch.testing.assert_close(gpu[1].cpu(), cpu[1], atol=1e-3, rtol=0)
    g, _ = aug(images.cuda(), generator=torch.Generator(device="cuda").manual_seed(0))
    assert g.shape == (4, 2, 3, 32, 32)


# ---------------------------------------------------------------------------------------------------------------
# landmarks


def test_pack_bytes_round_trips_every_dtype_and_shape():
    tensors = [
        torch.randn(3, 4),
        torch.tensor([True, False, True]),
        torch.arange(5, dtype=torch.long),
        torch.tensor(2.5, dtype=torch.float64),
        torch.empty(0, 4),
        torch.randint(0, 9, (2, 3), dtype=torch.int32),
        torch.randn(4, 6).t(),
    ]  # a non-contiguous one
    buffer, offsets = AF.pack_bytes(tensors)
    assert all(offset % 8 == 0 for offset in offsets)
    for original, unpacked in zip(tensors, AF.unpack_bytes(buffer.clone(), offsets, tensors)):
        assert unpacked.dtype == original.dtype and unpacked.shape == original.shape
        assert torch.equal(unpacked, original)


def test_multicrop_moves_its_cpu_draws_to_the_device_in_one_copy():
    aug = MultiCropAugmentation(
        n_local_crops=4,
        global_crop_size=32,
        local_crop_size=16,
        global_blur_p=(1.0, 0.5),
        local_blur_p=1.0,
        global_solarize_p=(0.0, 1.0),
    )
    images = torch.zeros(3, 3, 48, 48, dtype=torch.uint8, device="meta")
    aug(images)  # the first call may also make its cached constants
    with HostToDeviceCopies() as copies:
        global_crops, local_crops = aug(images)
    assert copies.count == 1
    assert global_crops.shape == (3, 2, 3, 32, 32) and local_crops.shape == (3, 4, 3, 16, 16)
    assert global_crops.device.type == "meta"
    with HostToDeviceCopies() as copies:  # the copy it replaced: one per parameter tensor
        [t.to("meta") for t in dataclasses.astuple(aug.sample_params(3, 48).global_views)]
    assert copies.count == 12


def dot_image(points, size=64, sigma=1.0):
    """Dark images with a bright Gaussian dot at every point; points (B, N, 2) pixel (x, y)."""
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    d2 = (x - points[..., 0, None, None]) ** 2 + (y - points[..., 1, None, None]) ** 2  # (B, N, H, W)
    img = torch.exp(-d2 / (2 * sigma**2)).amax(dim=1).clamp(0, 1)
    return img.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def centroids(img, points, radius=4):
    """Brightness centroid of img (B, H, W) in a window around each predicted point (B, N, 2)."""
    b, h, w = img.shape
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    near = ((x - points[..., 0, None, None]).abs() <= radius) & ((y - points[..., 1, None, None]).abs() <= radius)
    wgt = img.unsqueeze(1) * near
    total = wgt.sum(dim=(2, 3))
    return torch.stack([(wgt * x).sum(dim=(2, 3)) / total, (wgt * y).sum(dim=(2, 3)) / total], dim=-1)


def test_landmarks_follow_the_image():
    g = torch.Generator().manual_seed(0)
    b, n = 6, 5
    # five dots far enough apart that the centroid windows do not overlap, jittered per image
    points = torch.stack([torch.tensor([[18.0, 18.0], [46.0, 18.0], [32.0, 32.0], [20.0, 46.0], [44.0, 46.0]])] * b)
    points = points + torch.rand(b, n, 2, generator=g) * 3
    images = dot_image(points)
    aug = LandmarkAugmentation(
        output_size=(48, 56), rotation_degrees=25, scale=(0.8, 1.1), translate=0.05, mean=None, std=None
    )
    out, new_points = aug(images, points, generator=torch.Generator().manual_seed(1))
    assert out.shape == (b, 3, 48, 56) and new_points.shape == (b, n, 2)
    assert not torch.allclose(new_points, points)  # something moved
    found = centroids(out[:, 0], new_points)
    err = (found - new_points).norm(dim=-1)
    assert err.max() < 0.5, err


def test_landmark_flip_uses_the_permutation():
    # a left/right symmetric point set: 0 <-> 1, 2 on the axis, 3 <-> 4
    points = torch.tensor([[[20.0, 20.0], [43.0, 20.0], [31.5, 34.0], [24.0, 48.0], [39.0, 48.0]]])
    perm = (1, 0, 2, 4, 3)
    aug = LandmarkAugmentation(
        output_size=64,
        rotation_degrees=0,
        scale=(1.0, 1.0),
        translate=0.0,
        flip_p=1.0,
        flip_permutation=perm,
        mean=None,
        std=None,
    )
    images = dot_image(points)
    images[:, 0, :, :32] *= 0.5  # make the left half distinguishable
    out, new_points = aug(images, points)
    torch.testing.assert_close(new_points, points, atol=1e-4, rtol=0)  # symmetric set maps onto itself
    torch.testing.assert_close(out, images.flip(-1), atol=1e-5, rtol=0)  # and the image is mirrored
    # an asymmetric point keeps its index's meaning: index 0 moves to where partner 1's mirror is
    asym = points.clone()
    asym[0, 0] = torch.tensor([10.0, 12.0])
    _, moved = aug(images, asym)
    torch.testing.assert_close(moved[0, 1], torch.tensor([63 - 10.0, 12.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(moved[0, 0], torch.tensor([63 - 43.0, 20.0]), atol=1e-4, rtol=0)


def test_landmark_flip_without_permutation_raises_and_validation():
    with pytest.raises(ValueError, match="flip_p > 0 needs flip_permutation"):
        LandmarkAugmentation(flip_p=0.5)
    with pytest.raises(ValueError, match="permutation of 0..N-1"):
        LandmarkAugmentation(flip_p=0.5, flip_permutation=(0, 0, 1))
    with pytest.raises(ValueError, match="its own inverse"):
        LandmarkAugmentation(flip_p=0.5, flip_permutation=(1, 2, 0))
    with pytest.raises(ValueError, match="rotation_degrees"):
        LandmarkAugmentation(rotation_degrees=-5)
    aug = LandmarkAugmentation(output_size=32, flip_p=0.5, flip_permutation=(1, 0))
    with pytest.raises(ValueError, match="flip_permutation has 2 entries"):
        aug(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 2) * 30, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="points must be a tensor of shape"):
        aug(torch.rand(4, 3, 32, 32), torch.rand(4, 2))
    again = LandmarkAugmentation.from_config(json.loads(json.dumps(aug.to_config())))
    assert again.config == aug.config


def test_landmark_flip_permutation_length_is_checked_when_no_image_flips():
    aug = LandmarkAugmentation(output_size=32, flip_p=0.1, flip_permutation=(1, 0))
    images, points = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 2) * 30
    params = aug.sample_params(4, 32, 32)
    params.flip[:] = False  # this batch happens to draw no flip: a later one would fail, so this one must already
    with pytest.raises(ValueError, match="flip_permutation has 2 entries, points have 3"):
        aug.apply(images, points, params)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(brightness=math.nan), "brightness must be a finite non-negative float"),
        (dict(brightness=math.inf), "brightness must be a finite non-negative float"),
        (dict(contrast=math.inf), "contrast must be a finite non-negative float"),
        (dict(saturation=math.nan), "saturation must be a finite non-negative float"),
        (dict(std=(math.nan, 0.2, 0.2)), "std must be finite"),
        (dict(mean=(math.inf, 0.2, 0.2)), "mean must be finite"),
    ],
)
def test_landmark_config_refuses_non_finite_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LandmarkAugmentationConfig(**kwargs)


def test_landmark_sample_params_refuses_an_empty_source():
    aug = LandmarkAugmentation(output_size=16)
    for height, width in ((0, 20), (20, 0)):  # these gave inf/NaN matrices
        with pytest.raises(ValueError, match="must be a positive int"):
            aug.sample_params(2, height, width)


def test_landmark_augmentation_is_reproducible_and_jitters():
    aug = LandmarkAugmentation(output_size=32, color_jitter_p=1.0, hue=0.1, output_dtype="bfloat16")
    images = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8)
    pts = torch.rand(3, 7, 2) * 39
    a = aug(images, pts, generator=torch.Generator().manual_seed(4))
    b = aug(images, pts, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[0].dtype == torch.bfloat16


def test_resize_with_landmarks():
    points = torch.tensor([[[10.0, 20.0], [30.0, 5.0]]])
    images = dot_image(points, size=40)
    out, new = resize_with_landmarks(images, points, (80, 60))
    assert out.shape == (1, 3, 80, 60)
    torch.testing.assert_close(new, (points + 0.5) * torch.tensor([1.5, 2.0]) - 0.5)
    found = centroids(out[:, 0], new, radius=6)
    assert (found - new).norm(dim=-1).max() < 0.5
    normed, _ = resize_with_landmarks(images, points, 20, mean=AF.IMAGENET_DEFAULT_MEAN, std=AF.IMAGENET_DEFAULT_STD)
    assert normed.min() < 0


@pytest.mark.parametrize("source, size", [(9, 16), (5, 8), (10, 4), (7, 3)])
def test_resize_nearest_keeps_a_dot_with_its_point(source, size):
    # one bright pixel per image, at (s, s) for every s; nearest resampling keeps it whole or drops it
    images = torch.zeros(source, 3, source, source)
    images[torch.arange(source), :, torch.arange(source), torch.arange(source)] = 1.0
    points = torch.arange(source, dtype=torch.float32).view(source, 1, 1).expand(source, 1, 2).contiguous()
    out, new = resize_with_landmarks(images, points, size, mode="nearest")
    kept = 0
    for b in range(source):
        bright = (out[b, 0] > 0.5).nonzero().float()  # (k, 2) rows (y, x)
        if len(bright):
            kept += 1
            # the dot's pixels are centred within half an output pixel of the point (torch's legacy "nearest"
            # is off by up to 0.78 px here)
            assert (bright.mean(0).flip(0) - new[b, 0]).abs().max() < 0.5, (b, bright.tolist(), new[b, 0].tolist())
    assert kept >= min(source, size)


def test_affine_inverse_matches_linalg():
    from pros_hf.augmentation.landmarks import affine_inverse, similarity_matrices

    g = torch.Generator().manual_seed(0)
    m = similarity_matrices(
        torch.rand(5, generator=g) - 0.5,
        0.8 + 0.4 * torch.rand(5, generator=g),
        0.1 * torch.rand(5, 2, generator=g),
        torch.tensor([True, False] * 2 + [True]),
        (40, 50),
        (32, 32),
    )
    torch.testing.assert_close(affine_inverse(m), torch.linalg.inv(m), atol=1e-5, rtol=1e-5)
