"""Benchmark protocols: flip permutations against published mean shapes, the face crop, the protocol presets of the
landmark metric, and the seeded data-ratio subsets."""

import math

import numpy as np
import pytest
from PIL import Image

from pros_hf.benchmarks import (
    BENCHMARKS,
    FLIP_PERMUTATIONS,
    PROTOCOLS,
    CropRule,
    crop_to_box,
    get_protocol,
    square_around,
    train_subset,
)
from pros_hf.metrics import load_metric

# Mean face shapes (x, y normalised to the face box) of the 300W (68), WFLW (98) and AFLW-19 (19) training sets, as
# PIPNet publishes them (data/*/meanface.txt, rounded to 4 decimals): averages of real annotations, so independent of
# the flip permutations they check.
MEAN_SHAPE_68 = (
    "0.0556 0.2385 0.0589 0.3590 0.0737 0.4792 0.0998 0.5959 0.1468 0.7036 0.2185 0.7972 0.3055 0.8751 0.4018 "
    "0.9365 0.5101 0.9521 0.6162 0.9309 0.7095 0.8669 0.7941 0.7879 0.8627 0.6934 0.9072 0.5837 0.9299 0.4657 "
    "0.9405 0.3461 0.9425 0.2256 0.1330 0.1485 0.1887 0.0960 0.2673 0.0808 0.3488 0.0925 0.4227 0.1247 0.5619 "
    "0.1184 0.6395 0.0848 0.7204 0.0725 0.7989 0.0877 0.8535 0.1380 0.4961 0.2152 0.4971 0.2929 0.4982 0.3700 "
    "0.4998 0.4494 0.4068 0.5032 0.4523 0.5198 0.4997 0.5332 0.5470 0.5184 0.5892 0.5024 0.2241 0.2284 0.2726 "
    "0.1992 0.3307 0.2003 0.3804 0.2384 0.3288 0.2490 0.2707 0.2495 0.6087 0.2347 0.6604 0.1937 0.7178 0.1932 "
    "0.7652 0.2209 0.7227 0.2420 0.6658 0.2442 0.3289 0.6497 0.3935 0.6217 0.4572 0.6079 0.4990 0.6190 0.5466 "
    "0.6071 0.6116 0.6205 0.6742 0.6437 0.6145 0.7078 0.5526 0.7363 0.5018 0.7424 0.4554 0.7382 0.3924 0.7119 "
    "0.3553 0.6524 0.4571 0.6467 0.4997 0.6508 0.5477 0.6451 0.6478 0.6479 0.5488 0.6779 0.5001 0.6845 0.4565 "
    "0.6799 "
)
MEAN_SHAPE_98 = (
    "0.0796 0.3922 0.0832 0.4351 0.0868 0.4781 0.0914 0.5210 0.0984 0.5638 0.1087 0.6060 0.1231 0.6475 0.1424 "
    "0.6877 0.1671 0.7260 0.1969 0.7617 0.2313 0.7948 0.2692 0.8253 0.3099 0.8533 0.3535 0.8783 0.4009 0.8984 "
    "0.4529 0.9112 0.5079 0.9147 0.5617 0.9094 0.6119 0.8951 0.6575 0.8738 0.6995 0.8483 0.7388 0.8199 0.7752 "
    "0.7890 0.8079 0.7555 0.8361 0.7196 0.8592 0.6813 0.8771 0.6412 0.8902 0.6000 0.8993 0.5580 0.9050 0.5157 "
    "0.9083 0.4731 0.9105 0.4305 0.9125 0.3880 0.1847 0.3506 0.2411 0.3119 0.3003 0.3083 0.3603 0.3136 0.4171 "
    "0.3243 0.4168 0.3527 0.3601 0.3440 0.3001 0.3389 0.2412 0.3407 0.5710 0.3214 0.6306 0.3097 0.6895 0.3036 "
    "0.7489 0.3069 0.8030 0.3435 0.7485 0.3349 0.6893 0.3340 0.6305 0.3404 0.5710 0.3499 0.4954 0.4020 0.4960 "
    "0.4593 0.4964 0.5163 0.4981 0.5703 0.4075 0.5984 0.4537 0.6057 0.5007 0.6117 0.5448 0.6044 0.5882 0.5962 "
    "0.2430 0.4072 0.2777 0.3907 0.3185 0.3842 0.3622 0.3901 0.3965 0.4107 0.3587 0.4204 0.3185 0.4238 0.2789 "
    "0.4194 0.5939 0.4091 0.6304 0.3865 0.6775 0.3809 0.7151 0.3875 0.7475 0.4025 0.7155 0.4146 0.6801 0.4200 "
    "0.6359 0.4180 0.3392 0.6969 0.4001 0.6758 0.4718 0.6679 0.5025 0.6683 0.5338 0.6672 0.6016 0.6743 0.6587 "
    "0.6932 0.6193 0.7283 0.5666 0.7550 0.5031 0.7648 0.4371 0.7573 0.3815 0.7321 0.3513 0.6987 0.4248 0.6913 "
    "0.5028 0.6911 0.5770 0.6896 0.6471 0.6949 0.5800 0.7185 0.5025 0.7285 0.4218 0.7209 0.3220 0.4038 0.6751 "
    "0.4002 "
)
MEAN_SHAPE_19 = (
    "0.2520 0.2287 0.3409 0.2093 0.4310 0.2284 0.5634 0.2252 0.6578 0.2007 0.7494 0.2175 0.2934 0.3158 0.3585 "
    "0.3115 0.4199 0.3192 0.5820 0.3162 0.6454 0.3059 0.7111 0.3079 0.4036 0.5335 0.4963 0.5077 0.5978 0.5306 "
    "0.3844 0.6924 0.5032 0.7045 0.6259 0.6873 0.5099 0.9323 "
)


def _shape(text: str) -> np.ndarray:
    return np.asarray(text.split(), dtype=np.float64).reshape(-1, 2)


def _mirror_residual(shape: np.ndarray, permutation) -> float:
    """Largest distance between a shape and its mirror image re-indexed by `permutation`, both centred (in units
    of the face box)."""
    mirrored = shape * [-1.0, 1.0]
    mirrored = mirrored[list(permutation)]
    return float(np.abs((mirrored - mirrored.mean(0)) - (shape - shape.mean(0))).max())


@pytest.mark.parametrize("num_points, text", [(68, MEAN_SHAPE_68), (98, MEAN_SHAPE_98), (19, MEAN_SHAPE_19)])
def test_flip_permutations_map_the_mean_shape_onto_its_mirror_image(num_points, text):
    shape = _shape(text)
    permutation = FLIP_PERMUTATIONS[num_points]
    assert len(shape) == num_points and sorted(permutation) == list(range(num_points))
    assert all(permutation[permutation[i]] == i for i in range(num_points))  # pairs swap, the mid-line stays
    # a real face is not exactly symmetric: the mirrored mean shape lands within 2.1% of the box (measured 2.06%,
    # 1.76%, 1.70%), while leaving out any single pair of the permutation moves some point by 6.9% or more
    assert _mirror_residual(shape, permutation) < 0.03
    for i, j in enumerate(permutation):
        if j > i:
            broken = list(permutation)
            broken[i], broken[j] = i, j
            assert _mirror_residual(shape, broken) > 0.05, (num_points, i, j)


def test_every_protocol_is_complete():
    assert set(BENCHMARKS) == {"celeba", "lfwa", "rafdb", "affectnet7", "affectnet8", "300w", "wflw", "aflw19"}
    for protocol in PROTOCOLS.values():
        assert protocol.test_split in protocol.splits
        assert set(protocol.test_subsets) <= set(protocol.splits)
        assert protocol.default_metric == protocol.metrics[0]
        if protocol.task == "landmarks":
            assert len(protocol.flip_permutation) == protocol.num_landmarks
            assert protocol.failure_threshold in (0.10, 0.07) and protocol.crop.box is not None
        else:
            assert protocol.flip_permutation is None and protocol.label_names
    assert get_protocol("RAF-DB").name == "rafdb" and get_protocol("AFLW_19").name == "aflw19"
    assert get_protocol("300W").splits == {"train": 3148, "test_common": 554, "test_challenging": 135, "test_full": 689}
    with pytest.raises(ValueError, match="affectnet7 drops contempt, affectnet8 keeps it"):
        get_protocol("AffectNet")
    with pytest.raises(ValueError, match="unknown benchmark 'cofw'; the benchmarks are celeba, lfwa"):
        get_protocol("cofw")


# ---------------------------------------------------------------------------------------------------------------------
# The protocol presets of the landmark metric


def test_nme_presets_of_each_landmark_benchmark():
    assert get_protocol("300w").nme_kwargs() == {"normalization": "inter_ocular", "failure_threshold": 0.10}
    assert get_protocol("wflw").nme_kwargs("inter_pupil")["normalization"] == "inter_pupil"
    aflw = get_protocol("aflw19")
    with pytest.raises(ValueError, match="divides by the annotated face box: pass boxes"):
        aflw.nme_kwargs()
    kwargs = aflw.nme_kwargs(boxes=[(0, 0, 30, 40)])
    assert kwargs == {"normalization": "box_diagonal", "failure_threshold": 0.07, "boxes": [[0.0, 0.0, 30.0, 40.0]]}
    assert aflw.nme_kwargs("inter_ocular") == {
        "normalization": "inter_ocular",
        "failure_threshold": 0.07,
        "left_eye": 6,
        "right_eye": 11,
    }
    with pytest.raises(ValueError, match="CelebA's task is attributes; NME applies to landmark"):
        get_protocol("celeba").nme_kwargs()


def test_aflw19_preset_scores_by_hand():
    """19 points, every prediction 3 px right and 4 px down (5 px); the annotated box is 30 x 40 px: NME_diag is
    5 / 50 = 0.1, NME_box 5 / sqrt(1200) = 0.1443; both fail at 0.07, the AFLW-19 threshold."""
    rng = np.random.default_rng(0)
    reference = rng.uniform(10, 30, (19, 2))
    prediction = reference + (3.0, 4.0)
    metric = load_metric("landmark_nme")
    aflw = get_protocol("aflw19")
    diagonal = metric.compute(
        predictions=[prediction], references=[reference], **aflw.nme_kwargs(boxes=[(5, 5, 35, 45)])
    )
    assert diagonal["nme"] == pytest.approx(0.1, rel=1e-6) and diagonal["failure_rate"] == 1.0
    box = metric.compute(
        predictions=[prediction],
        references=[reference],
        **aflw.nme_kwargs(aflw.curve_normalization, boxes=[(5, 5, 35, 45)]),
    )
    assert box["nme"] == pytest.approx(5 / math.sqrt(1200), rel=1e-6) and box["auc"] == 0.0


# ---------------------------------------------------------------------------------------------------------------------
# The face crop


def test_crop_moves_landmarks_with_the_pixels():
    image = np.zeros((90, 120, 3), np.uint8)
    image[30, 70] = 255  # a bright pixel at x = 70, y = 30, which a landmark marks
    crop = crop_to_box(image, (40, 10, 100, 60), landmarks=[[70, 30]], enlargement=1.0, image_size=60)
    assert crop.image.size == (60, 60) and crop.region == (40.0, 5.0, 100.0, 65.0) and crop.scale == 1.0
    red = np.asarray(crop.image)[..., 0]
    assert np.unravel_index(red.argmax(), red.shape) == (24, 29)  # row y, column x
    assert crop.landmarks.tolist() == [[29.5, 24.5]]  # the region's left edge is at x = 40 (pixel 40.5 is 0)
    # enlarged and upsampled: the landmark stays on the centre of mass of the (interpolated) bright pixel
    big = crop_to_box(image, (40, 10, 100, 60), landmarks=[[70, 30]], enlargement=1.3, image_size=240)
    red = np.asarray(big.image)[..., 0].astype(np.float64)
    ys, xs = np.mgrid[:240, :240]
    centre = [(red * xs).sum() / red.sum(), (red * ys).sum() / red.sum()]
    assert big.landmarks[0] == pytest.approx(centre, abs=0.05)
    assert big.to_original(big.landmarks) == pytest.approx(np.array([[70.0, 30.0]]), abs=1e-4)
    assert square_around((40, 10, 100, 60), 1.3) == pytest.approx((31.0, -4.0, 109.0, 74.0))


def test_crop_of_the_whole_square_image_is_the_image():
    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3)).astype(np.uint8)
    crop = crop_to_box(image, (-0.5, -0.5, 47.5, 47.5), enlargement=1.0, image_size=48)
    assert np.array_equal(np.asarray(crop.image), image)
    with pytest.raises(ValueError, match=r"face box \(5, 5, 5, 9\) must be finite"):
        crop_to_box(image, (5, 5, 5, 9))


def test_crop_rules():
    image = Image.new("RGB", (178, 218))
    aligned = get_protocol("celeba").crop.apply(image)  # CelebA's aligned images are used as they are
    assert aligned.image is image and aligned.region == (-0.5, -0.5, 177.5, 217.5)
    wflw = get_protocol("wflw").crop
    assert wflw == CropRule(box="the annotated face rectangle", enlargement=1.25)
    framed = wflw.apply(image, box=(40, 60, 140, 160), landmarks=[[90, 110]], image_size=448)
    assert framed.image.size == (448, 448) and framed.landmarks[0] == pytest.approx([223.5, 223.5])
    with pytest.raises(ValueError, match="pass the example's face_box"):
        wflw.apply(image)


# ---------------------------------------------------------------------------------------------------------------------
# Data-ratio subsets


def _expression_split(n=1000):
    import datasets

    labels = np.random.default_rng(0).choice(7, n, p=[0.4, 0.3, 0.1, 0.1, 0.05, 0.03, 0.02])
    return datasets.Dataset.from_dict(
        {"expression": labels}, features=datasets.Features({"expression": datasets.ClassLabel(num_classes=7)})
    )


def test_train_subsets_are_seeded_and_stratified():
    split = _expression_split()
    one = train_subset(split, 0.01, seed=0)
    assert len(one) == pytest.approx(10, abs=3) and set(one["expression"]) == set(range(7))  # every class kept
    assert train_subset(split, 0.01, seed=0)["expression"] == one["expression"]
    assert train_subset(split, 0.1, seed=1)["expression"] != train_subset(split, 0.1, seed=2)["expression"]
    ten = train_subset(split, 0.1, seed=0)
    counts, full = np.bincount(ten["expression"], minlength=7), np.bincount(split["expression"], minlength=7)
    assert np.abs(counts - np.maximum(1, np.round(full * 0.1))).max() == 0  # per class round(10%), at least one
    assert len(train_subset(split, 1.0, seed=0)) == 1000
    with pytest.raises(ValueError, match="fraction must be in"):
        train_subset(split, 0.0, seed=0)
