"""The embedded synthetic face data set: schema, landmark layout and placement, labels, determinism, arguments."""

import runpy
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from pros_hf.data.contact_sheet import draw_contact_sheet
from pros_hf.data.synthetic import (
    ATTRIBUTE_NAMES,
    EXPRESSION_NAMES,
    FLIP_PERMUTATION_68,
    MASK_LABELS,
    attributes_to_multi_hot,
    iter_synthetic_faces,
    make_synthetic_faces,
    render_face,
    sample_face_params,
    sample_identity,
    synthetic_faces_arrays,
)

L = {name: i for i, name in enumerate(MASK_LABELS)}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def posed():
    """Default pose ranges, 128 px, with ground-truth params and label maps."""
    return synthetic_faces_arrays(60, image_size=128, seed=11, return_params=True, return_masks=True)


@pytest.fixture(scope="module")
def frontal():
    return synthetic_faces_arrays(40, image_size=96, seed=5, pose_scale=0.0)


@pytest.fixture(scope="module")
def many():
    return synthetic_faces_arrays(200, image_size=64, seed=0, return_params=True, return_masks=True)


def _labels_near(mask, point, radius):
    x, y = int(round(float(point[0]))), int(round(float(point[1])))
    return set(np.unique(mask[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]).tolist())


def test_dataset_columns_features_and_shapes():
    ds = make_synthetic_faces(12, image_size=64, seed=0)
    assert ds.column_names == ["image", "landmarks", "expression", "attributes", "identity"]
    f = ds.features
    assert isinstance(f["image"], datasets.Image)
    assert isinstance(f["landmarks"], datasets.Array2D)
    assert f["landmarks"].shape == (68, 2) and f["landmarks"].dtype == "float32"
    assert f["expression"].names == list(EXPRESSION_NAMES)
    assert {"neutral", "happiness", "sadness", "surprise", "anger"} <= set(f["expression"].names)
    assert f["attributes"].feature.names == list(ATTRIBUTE_NAMES)
    assert len(ATTRIBUTE_NAMES) >= 8
    assert f["identity"].dtype == "int64"
    ex = ds[0]
    assert isinstance(ex["image"], Image.Image) and ex["image"].mode == "RGB" and ex["image"].size == (64, 64)
    assert np.asarray(ex["landmarks"], dtype=np.float32).shape == (68, 2)
    assert all(0 <= a < len(ATTRIBUTE_NAMES) for a in ex["attributes"])
    assert 0 <= ex["expression"] < len(EXPRESSION_NAMES)
    assert sorted(set(ds["identity"])) == [0, 1]  # default: ceil(12 / 10) identities


def test_png_dataset_equals_arrays():
    ds = make_synthetic_faces(6, image_size=48, seed=4, image_format="png")
    arr = synthetic_faces_arrays(6, image_size=48, seed=4)
    for i in range(6):
        ex = ds[i]
        np.testing.assert_array_equal(np.asarray(ex["image"]), arr["images"][i])
        np.testing.assert_array_equal(np.asarray(ex["landmarks"], np.float32), arr["landmarks"][i])
        np.testing.assert_array_equal(attributes_to_multi_hot(ex["attributes"]), arr["attributes"][i])
        assert ex["expression"] == arr["expression"][i] and ex["identity"] == arr["identity"][i]
    # the default JPEG storage stays close to the rendered pixels
    jpeg = make_synthetic_faces(2, image_size=48, seed=4)
    err = np.abs(np.asarray(jpeg[0]["image"], np.float32) - arr["images"][0].astype(np.float32)).mean()
    assert err < 4.0


def test_attributes_to_multi_hot():
    np.testing.assert_array_equal(attributes_to_multi_hot([0, 3]), np.eye(len(ATTRIBUTE_NAMES))[[0, 3]].sum(0))
    batch = attributes_to_multi_hot([[1], [], [2, 4]])
    assert batch.shape == (3, len(ATTRIBUTE_NAMES)) and batch.sum() == 3 and batch[1].sum() == 0 and batch[2, 4] == 1


@pytest.mark.parametrize(
    "ids, message",
    [
        ([-1], "^attribute ids .* got -1"),  # was silently the last attribute
        ([len(ATTRIBUTE_NAMES)], f"^attribute ids .* got {len(ATTRIBUTE_NAMES)}"),  # was a bare numpy IndexError
        ([1.0], "^attribute ids .* got 1.0"),
        ([[1], [2, -3]], "^example 1: attribute ids .* got -3"),
    ],
)
def test_attributes_to_multi_hot_refuses_ids_out_of_range(ids, message):
    with pytest.raises(ValueError, match=message) as info:
        attributes_to_multi_hot(ids)
    assert f"must be ints in [0, {len(ATTRIBUTE_NAMES)})" in str(info.value)


def test_landmarks_inside_image(posed, many):
    for arrays, size in ((posed, 128), (many, 64)):
        lm = arrays["landmarks"]
        assert lm.dtype == np.float32 and lm.shape[1:] == (68, 2)
        assert lm.min() >= 0 and lm.max() <= size - 1


def test_landmark_anatomical_order_frontal(frontal):
    lm = frontal["landmarks"]
    right_eye, left_eye = lm[:, 36:42].mean(1), lm[:, 42:48].mean(1)
    assert np.all(right_eye[:, 0] + 5 < left_eye[:, 0])  # 36-41 is the eye on the image's left
    eyes_y = (right_eye[:, 1] + left_eye[:, 1]) / 2
    nose_tip_y, mouth_y = lm[:, 30, 1], lm[:, 48:68, 1].mean(1)
    assert np.all(lm[:, 17:27, 1].mean(1) < eyes_y)  # brows above eyes
    assert np.all(eyes_y < nose_tip_y) and np.all(nose_tip_y < mouth_y)
    assert np.all(mouth_y < lm[:, 8, 1])
    assert np.all(np.argmax(lm[:, :, 1], axis=1) == 8)  # chin is the lowest point
    assert np.all(np.diff(lm[:, 0:17, 0], axis=1) > 0)  # jaw runs left to right
    assert np.all(np.diff(lm[:, 17:22, 0], axis=1) > 0) and np.all(np.diff(lm[:, 22:27, 0], axis=1) > 0)
    assert np.all(np.diff(lm[:, 27:31, 1], axis=1) > 0)  # bridge runs down
    assert np.all(np.diff(lm[:, 31:36, 0], axis=1) > 0)
    for first in (36, 42):  # corner, two upper-lid points, corner, two lower-lid points
        e = lm[:, first : first + 6]
        assert np.all(e[:, 0, 0] < e[:, 1, 0]) and np.all(e[:, 2, 0] < e[:, 3, 0])
        assert np.all(e[:, 1, 1] < e[:, 5, 1]) and np.all(e[:, 2, 1] < e[:, 4, 1])
        assert np.all(e[:, 5, 0] < e[:, 4, 0])  # the lower lid runs back from the right corner to the left
    assert np.all(lm[:, 48, 0] < lm[:, 51, 0]) and np.all(lm[:, 51, 0] < lm[:, 54, 0])
    assert np.all(lm[:, 51, 1] < lm[:, 57, 1]) and np.all(lm[:, 62, 1] <= lm[:, 66, 1])
    assert np.all(np.diff(lm[:, 48:55, 0], axis=1) > 0) and np.all(np.diff(lm[:, 54:60, 0], axis=1) < 0)
    assert np.all(np.diff(lm[:, 60:65, 0], axis=1) > 0) and np.all(np.diff(lm[:, 64:68, 0], axis=1) < 0)


def test_flip_permutation_maps_a_frontal_face_onto_its_mirror(frontal):
    perm = np.array(FLIP_PERMUTATION_68)
    assert sorted(perm.tolist()) == list(range(68))
    np.testing.assert_array_equal(perm[perm], np.arange(68))  # an involution
    assert perm[36] == 45 and perm[39] == 42 and perm[48] == 54 and perm[8] == 8 and perm[17] == 26
    lm = frontal["landmarks"]  # pose_scale=0: every face is symmetric about the image's vertical mid-line
    mirrored = lm.copy()
    mirrored[..., 0] = 96 - 1 - mirrored[..., 0]
    np.testing.assert_allclose(mirrored[:, perm], lm, atol=1e-3)


def test_landmarks_lie_on_drawn_features(posed):
    lm, masks, images = posed["landmarks"], posed["masks"], posed["images"]
    hits = {"eye": [], "brow": [], "lips": [], "nose": [], "jaw": []}
    face = {L["skin"], L["beard"]}
    for i in range(len(lm)):
        for first in (36, 42):
            hits["eye"].append(bool(_labels_near(masks[i], lm[i, first: first + 6].mean(0), 1)
                                    & {L["sclera"], L["iris"]}))  # fmt: skip
        # glasses frames may legitimately cover a brow
        hits["brow"] += [bool(_labels_near(masks[i], p, 1) & {L["brow"], L["glasses"]}) for p in lm[i, 17:27]]
        hits["lips"] += [L["lips"] in _labels_near(masks[i], p, 1) for p in lm[i, 48:60]]
        hits["nose"] += [L["nose"] in _labels_near(masks[i], p, 1) for p in lm[i, 31:36]]
        for p in lm[i, 0:17]:  # on the face outline: face inside, something else outside
            near = _labels_near(masks[i], p, 2)
            hits["jaw"].append(bool(near & face) and bool(near - face))
    rates = {k: float(np.mean(v)) for k, v in hits.items()}
    assert rates["eye"] == 1.0, rates
    assert min(rates.values()) >= 0.95, rates
    # and in the pixels themselves: the eye centre is not skin-coloured
    no_beard = [i for i in range(len(lm)) if not posed["attributes"][i, ATTRIBUTE_NAMES.index("beard")]]
    diffs = []
    for i in no_beard:
        eye = np.round(lm[i, 36:42].mean(0)).astype(int)
        cheek = np.round((lm[i, 2] + lm[i, 31]) / 2).astype(int)
        diffs.append(np.abs(images[i, eye[1], eye[0]].astype(float) - images[i, cheek[1], cheek[0]]).sum())
    assert np.median(diffs) > 60


def test_same_seed_same_data_different_seed_different_data():
    a = synthetic_faces_arrays(8, image_size=48, seed=3)
    b = synthetic_faces_arrays(8, image_size=48, seed=3)
    c = synthetic_faces_arrays(8, image_size=48, seed=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["images"], c["images"])
    assert not np.allclose(a["landmarks"], c["landmarks"])
    first = next(iter_synthetic_faces(8, image_size=48, seed=3))
    np.testing.assert_array_equal(first["image"], a["images"][0])
    np.testing.assert_array_equal(first["attributes"], a["attributes"][0])
    d1 = make_synthetic_faces(4, image_size=48, seed=3)
    d2 = make_synthetic_faces(4, image_size=48, seed=3)
    assert d1.data.table.equals(d2.data.table)


def test_parallel_rendering_gives_the_same_dataset():
    """num_proc splits the images into chunks rendered in worker processes: the rows, in order, are unchanged."""
    sequential = make_synthetic_faces(13, image_size=40, seed=5)
    parallel = make_synthetic_faces(13, image_size=40, seed=5, num_proc=2)
    assert parallel.data.table.equals(sequential.data.table)
    arrays = synthetic_faces_arrays(13, image_size=40, seed=5, return_params=True, return_masks=True)
    in_parallel = synthetic_faces_arrays(13, image_size=40, seed=5, return_params=True, return_masks=True, num_proc=2)
    assert in_parallel.keys() == arrays.keys() and in_parallel["params"] == arrays["params"]
    for name in ("images", "landmarks", "expression", "attributes", "identity", "masks"):
        assert np.array_equal(in_parallel[name], arrays[name]), name


def test_a_face_out_of_the_frame_is_not_drawn_but_takes_its_random_draws():
    """render_face(frame_margin=...) checks the landmarks before drawing: a face that fails is not drawn, yet its
    generator ends where a full render leaves it, so the faces drawn after a redrawn pose do not change."""
    ident = sample_identity(np.random.default_rng(0))
    noisy = 0
    for seed in (0, 1, 2, 17, 18):  # 17 and 18 draw no sensor noise (noise_std <= 0.5)
        params = sample_face_params(np.random.default_rng(seed), ident, 0, [0])
        noisy += params.noise_std > 0.5
        rendered, skipped = np.random.default_rng(seed), np.random.default_rng(seed)
        full = render_face(rendered, params, 48, "clutter")
        assert render_face(skipped, params, 48, "clutter", frame_margin=24.0) is None  # no landmark is that far in
        assert rendered.random() == skipped.random()
        kept = render_face(np.random.default_rng(seed), params, 48, "clutter", frame_margin=-100.0)
        np.testing.assert_array_equal(kept.image, full.image)
        np.testing.assert_array_equal(kept.landmarks, full.landmarks)
    assert noisy == 3  # with and without sensor noise (drawn last)


def test_identity_shares_shape_and_colouring(posed):
    params, ids, masks, images = posed["params"], posed["identity"], posed["masks"], posed["images"]
    assert sorted(np.bincount(ids).tolist()) == [10] * 6  # ceil(60 / 10) identities, balanced
    for k in np.unique(ids):
        members = [params[i].identity for i in np.flatnonzero(ids == k)]
        assert all(m == members[0] for m in members)  # same shape, skin, hair, eye colour, ...
    assert len({params[i].identity.skin_rgb for i in range(len(ids))}) == 6
    # measured from pixels: skin chromaticity varies less within an identity than between identities
    chroma = []
    for i in range(len(ids)):
        skin = images[i][masks[i] == L["skin"]].astype(float)
        rgb = np.median(skin, axis=0)
        chroma.append(rgb / rgb.sum())
    chroma = np.array(chroma)
    dist = np.linalg.norm(chroma[:, None] - chroma[None], axis=-1)
    same = ids[:, None] == ids[None]
    off_diag = ~np.eye(len(ids), dtype=bool)
    assert dist[same & off_diag].mean() < 0.5 * dist[~same].mean()
    # while pose and expression vary within an identity
    first = np.flatnonzero(ids == 0)
    assert len({params[i].expression for i in first}) > 1 and len({round(params[i].roll, 3) for i in first}) > 1


def _render_expressions(identity_seed, size=128):
    ident = sample_identity(np.random.default_rng(identity_seed))
    out = {}
    for e, name in enumerate(EXPRESSION_NAMES):
        rng = np.random.default_rng(100 + e)
        params = sample_face_params(rng, ident, 0, [e], pose_scale=0.0)
        out[name] = render_face(rng, params, size, background="plain", return_masks=True)
    return out


@pytest.mark.parametrize("identity_seed", [1, 2, 3])
def test_expressions_are_visibly_different(identity_seed):
    faces = _render_expressions(identity_seed)

    def corner_lift(f):  # > 0 when the mouth corners sit above the lips' centre
        lm = f.landmarks
        return (lm[62, 1] + lm[66, 1]) / 2 - (lm[48, 1] + lm[54, 1]) / 2

    def mouth_gap(f):
        return f.landmarks[66, 1] - f.landmarks[62, 1]

    def eye_height(f):
        lm = f.landmarks
        return (lm[[40, 41, 46, 47], 1] - lm[[38, 37, 44, 43], 1]).mean()

    def brow_to_eye(f):
        lm = f.landmarks
        return lm[36:48, 1].mean() - lm[17:27, 1].mean()

    def inner_brow_drop(f):  # inner brow ends below the outer ends (frown)
        lm = f.landmarks
        return (lm[21, 1] + lm[22, 1]) / 2 - (lm[17, 1] + lm[26, 1]) / 2

    assert corner_lift(faces["happiness"]) > 1.5
    assert corner_lift(faces["sadness"]) < -1.5
    assert abs(corner_lift(faces["neutral"])) < 0.5
    assert mouth_gap(faces["neutral"]) == pytest.approx(0.0, abs=1e-3)
    assert mouth_gap(faces["surprise"]) > 4.0
    assert faces["surprise"].attributes[ATTRIBUTE_NAMES.index("mouth_open")] == 1
    assert (faces["surprise"].masks == L["mouth_interior"]).sum() > 10
    assert (faces["neutral"].masks == L["mouth_interior"]).sum() == 0
    assert eye_height(faces["surprise"]) > 1.3 * eye_height(faces["neutral"])
    assert eye_height(faces["happiness"]) < eye_height(faces["neutral"])
    assert brow_to_eye(faces["surprise"]) > brow_to_eye(faces["neutral"]) + 2
    assert brow_to_eye(faces["anger"]) < brow_to_eye(faces["neutral"])
    assert inner_brow_drop(faces["anger"]) > inner_brow_drop(faces["neutral"]) + 1
    assert inner_brow_drop(faces["sadness"]) < inner_brow_drop(faces["neutral"]) - 1
    # and the images themselves differ around the mouth
    lm = faces["neutral"].landmarks
    x0, y0 = np.floor(lm[48:60].min(0)).astype(int) - 2
    x1, y1 = np.ceil(lm[48:60].max(0)).astype(int) + 2
    crop = np.s_[y0:y1, x0:x1]
    for name in ("happiness", "surprise"):
        assert np.abs(faces[name].image[crop].astype(int) - faces["neutral"].image[crop]).mean() > 5


def test_attribute_frequencies_and_ties(many):
    attrs, expr = many["attributes"], many["expression"]
    freq = dict(zip(ATTRIBUTE_NAMES, attrs.mean(0)))
    for name, f in freq.items():
        assert 0.03 <= f <= 0.85, (name, f)
    a = {name: attrs[:, i].astype(bool) for i, name in enumerate(ATTRIBUTE_NAMES)}
    np.testing.assert_array_equal(a["smiling"], expr == EXPRESSION_NAMES.index("happiness"))
    assert a["mouth_open"][expr == EXPRESSION_NAMES.index("surprise")].all()
    assert not (a["bald"] & (a["dark_hair"] | a["hat"] | a["long_hair"])).any()


def test_attributes_are_drawn(many):
    attrs, masks, lm, images = many["attributes"], many["masks"], many["landmarks"], many["images"]
    a = {name: attrs[:, i].astype(bool) for i, name in enumerate(ATTRIBUTE_NAMES)}
    present = {label: np.array([(m == L[label]).any() for m in masks]) for label in MASK_LABELS}
    for attr, label in (("eyeglasses", "glasses"), ("hat", "hat"), ("beard", "beard"), ("mustache", "mustache"),
                        ("earrings", "earring")):  # fmt: skip
        np.testing.assert_array_equal(present[label], a[attr], err_msg=attr)
    np.testing.assert_array_equal(~present["hair"], a["bald"])
    below_chin = np.array([(m[int(np.ceil(p[8, 1])) + 2 :] == L["hair"]).any() for m, p in zip(masks, lm)])
    assert below_chin[a["long_hair"]].all() and not below_chin[~a["long_hair"] & ~a["bald"]].mean() > 0.1

    def mean_colour(label, rows):
        return np.array([images[i][masks[i] == L[label]].mean(0) for i in rows if (masks[i] == L[label]).any()])

    hair_rows = np.flatnonzero(~a["bald"])
    dark = mean_colour("hair", hair_rows[a["dark_hair"][hair_rows]]).mean(1)
    light = mean_colour("hair", hair_rows[~a["dark_hair"][hair_rows]]).mean(1)
    assert np.median(dark) + 40 < np.median(light)
    pale = mean_colour("skin", np.flatnonzero(a["pale_skin"])).mean(1)
    other = mean_colour("skin", np.flatnonzero(~a["pale_skin"])).mean(1)
    assert np.median(pale) > np.median(other) + 30

    def redness(rows):
        c = mean_colour("lips", rows)
        return c[:, 0] - c[:, 1:].mean(1)

    assert np.median(redness(np.flatnonzero(a["wearing_lipstick"]))) > np.median(
        redness(np.flatnonzero(~a["wearing_lipstick"]))) + 30  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_images=0), r"num_images must be >= 1"),
        (dict(num_images=-3), r"num_images"),
        (dict(num_images=2.5), r"num_images must be an integer"),
        (dict(num_images=4, image_size=16), r"image_size must be in \[32, 1024\]"),
        (dict(num_images=4, seed=-1), r"seed must be >= 0"),
        (dict(num_images=4, num_identities=5), r"num_identities must be in \[1, 4\]"),
        (dict(num_images=4, background="sky"), r"background must be one of \['clutter', 'gradient', 'plain'\]"),
        (dict(num_images=4, expressions=["joy"]), r"expressions must be one of .*'happiness'"),
        (dict(num_images=4, pose_scale=3.0), r"pose_scale must be a number in \[0, 1.5\]"),
        (dict(num_images=4, image_format="gif"), r"image_format must be one of \['jpeg', 'png'\]"),
        (dict(num_images=4, num_proc=0), r"num_proc must be >= 1"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_faces(**kwargs)


def test_expressions_subset_and_backgrounds():
    arr = synthetic_faces_arrays(12, image_size=48, seed=1, expressions=["anger", "surprise"], background="plain")
    assert set(arr["expression"].tolist()) == {EXPRESSION_NAMES.index("anger"), EXPRESSION_NAMES.index("surprise")}
    corner = arr["images"][:, 0, 0].astype(float)  # plain background: top-left pixel is a flat colour + noise
    assert np.all(np.abs(arr["images"][:, 0, 1].astype(float) - corner).max(1) < 40)


def test_contact_sheet(tmp_path):
    ds = make_synthetic_faces(6, image_size=48, seed=2)
    sheet = draw_contact_sheet(ds, columns=3)
    assert sheet.mode == "RGB" and sheet.size == (3 * 50 + 2, 2 * (48 + 11 + 2) + 2)
    px = np.asarray(sheet)
    assert ((px == [0, 255, 0]).all(-1)).sum() > 0  # eye landmark dots
    with pytest.raises(ValueError, match="columns"):
        draw_contact_sheet(ds, columns=0)
    out = tmp_path / "sheet.png"
    runpy.run_path(str(ROOT / "examples" / "contact_sheet.py"))["main"](
        ["--output", str(out), "--num", "4", "--image_size", "40", "--columns", "2"]
    )
    assert Image.open(out).size == (2 * 42 + 2, 2 * (40 + 11 + 2) + 2)
