"""The evaluate metric modules: values worked out by hand, plain-numpy loops on random data, bad input, offline load."""

import math
import os
import socket
import sys

import numpy as np
import pytest

from pros_hf.metrics import METRICS, load_metric, metric_path


@pytest.fixture(scope="module")
def nme():
    return load_metric("landmark_nme")


@pytest.fixture(scope="module")
def attributes():
    return load_metric("attribute_accuracy")


@pytest.fixture(scope="module")
def expression():
    return load_metric("expression_metrics")


# --------------------------------------------------------------------------------------------------------------------
# Loading


def test_metric_path_names_the_valid_metrics():
    for name in METRICS:
        assert os.path.isfile(os.path.join(metric_path(name), f"{name}.py"))
    with pytest.raises(ValueError, match="landmark_nme, attribute_accuracy, expression_metrics"):
        metric_path("accuracy")


def test_loads_by_path_offline_into_hf_home(hf_home, tmp_path, monkeypatch):
    import evaluate

    def refuse(*args, **kwargs):
        raise AssertionError("a metric tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.chdir(tmp_path)
    for name in METRICS:
        for metric in (load_metric(name), evaluate.load(metric_path(name))):
            script = sys.modules[type(metric).__module__].__file__
            assert os.path.commonpath([script, hf_home]) == hf_home  # evaluate's modules cache, in the temp HF_HOME
            assert metric.name == name
    assert load_metric("expression_metrics").compute(predictions=[1, 0], references=[1, 1])["accuracy"] == 0.5
    assert list(tmp_path.iterdir()) == []  # nothing written to the working directory


# --------------------------------------------------------------------------------------------------------------------
# Landmark NME


def _face_68():
    """68 points: outer eye corners 36/45 40 px apart, eye centres 30 px apart, landmark box 80 x 45 px."""
    points = np.full((68, 2), 50.0)
    points[36:42] = [(30, 40), (33, 38), (37, 38), (40, 40), (37, 42), (33, 42)]  # centre (35, 40)
    points[42:48] = [(60, 40), (63, 38), (67, 38), (70, 40), (67, 42), (63, 42)]  # centre (65, 40); 45 is (70, 40)
    points[0], points[8] = (10, 20), (90, 65)
    return points


def _face_98():
    """98 points (WFLW): outer eye corners 60/72 40 px apart, pupils 96/97 30 px apart, box 80 x 45 px."""
    points = np.full((98, 2), 50.0)
    points[60], points[72], points[96], points[97] = (30, 40), (70, 40), (35, 40), (65, 40)
    points[0], points[32] = (10, 20), (90, 65)
    return points


@pytest.mark.parametrize("face", [_face_68, _face_98])
@pytest.mark.parametrize(
    "normalization, distance",
    [("inter_ocular", 40.0), ("inter_pupil", 30.0), ("box", math.sqrt(80 * 45)), ("box_diagonal", math.hypot(80, 45))],
)
def test_nme_of_each_normalisation_by_hand(nme, face, normalization, distance):
    reference = face()
    prediction = reference + (3.0, 4.0)  # every point 5 px off
    result = nme.compute(predictions=[prediction], references=[reference], normalization=normalization)
    assert result["nme"] == pytest.approx(5.0 / distance, rel=1e-6)
    assert result["per_image_nme"] == pytest.approx([5.0 / distance], rel=1e-6)


def test_failure_rate_and_auc_by_hand(nme):
    # inter-ocular 40 px: offsets of 1 + 1/512, 2 + 53/256 and 6 px (exact in float32, which the metric stores) give
    # NME 0.025048828125, 0.05517578125 and 0.15
    reference = _face_68()
    predictions = [reference + (0.0, offset) for offset in (1.001953125, 2.20703125, 6.0)]
    result = nme.compute(predictions=predictions, references=[reference] * 3, failure_threshold=0.10)
    assert result["per_image_nme"] == pytest.approx([0.025048828125, 0.05517578125, 0.15], rel=1e-12)
    assert result["nme"] == pytest.approx((0.025048828125 + 0.05517578125 + 0.15) / 3, rel=1e-12)
    # FR = 1 - CED(0.10): one image of three is above 0.10
    assert result["failure_rate"] == pytest.approx(1 / 3)
    # AUC by Simpson's rule on the CED sampled every 1e-4: levels x_j = j / 10000, j = 0..N, N = 1000, weights 1, 4,
    # 2, 4, ..., 2, 4, 1 (times h / 3). An image with error e adds 1/3 to CED(x_j) from the first j with x_j >= e,
    # call it k, so its share of the area over the threshold (N h) is (sum of the weights from k to N) / (3 N):
    # for odd k, 4 (N - k + 1) / 2 + 2 (N - k - 1) / 2 + 1 = 3 (N - k) + 2; for even k, 3 (N - k) + 1.
    # e = 0.0250488: k = 251 (odd), 3 * 749 + 2 = 2249; e = 0.0551758: k = 552 (even), 3 * 448 + 1 = 1345;
    # e = 0.15 never enters. AUC = (2249 + 1345 + 0) / 3000 / 3 = 3594 / 9000 = 0.399333...
    assert result["auc"] == pytest.approx(3594 / 9000, abs=1e-12)
    # the exact area, mean(max(0, 1 - e / 0.1)) = (0.7495117 + 0.4482422 + 0) / 3 = 0.3992513, is within 1e-4 / 0.1
    assert result["auc"] == pytest.approx((0.74951171875 + 0.4482421875) / 3, abs=1e-3)
    strict = nme.compute(predictions=predictions, references=[reference] * 3, failure_threshold=0.05)
    # at 0.05 (N = 500) only the first image counts: k = 251, 3 * 249 + 2 = 749, AUC = 749 / 1500 / 3
    assert strict["failure_rate"] == pytest.approx(2 / 3) and strict["auc"] == pytest.approx(749 / 4500, abs=1e-12)


def test_box_normalisations_divide_by_the_given_boxes(nme):
    reference = _face_68()  # its points span 80 x 45 px; the annotated box below is 100 x 125 px
    prediction = reference + (3.0, 4.0)  # every point 5 px off
    boxes = [[10.0, 20.0, 110.0, 145.0]]
    box = nme.compute(predictions=[prediction], references=[reference], normalization="box", boxes=boxes)
    assert box["nme"] == pytest.approx(5.0 / math.sqrt(100 * 125), rel=1e-9)  # 5 / 111.80 = 0.044721
    diagonal = nme.compute(
        predictions=[prediction],
        references=[reference],
        normalization="box_diagonal",
        boxes=boxes,
        failure_threshold=0.07,
    )
    assert diagonal["nme"] == pytest.approx(5.0 / math.sqrt(100**2 + 125**2), rel=1e-9)  # 5 / 160.08 = 0.031235
    # the NME 0.031235 is at grid index k = 313 of 700 (odd): AUC = (3 * 387 + 2) / 2100 = 1163 / 2100
    assert diagonal["failure_rate"] == 0.0 and diagonal["auc"] == pytest.approx(1163 / 2100, abs=1e-12)
    extent = nme.compute(predictions=[prediction], references=[reference], normalization="box")
    assert extent["nme"] == pytest.approx(5.0 / math.sqrt(80 * 45), rel=1e-9)  # without boxes: the points' extent


def test_auc_matches_farls_sampling_at_0_1(nme):
    """FaRL samples np.arange(0, 0.1 + 1e-4, 1e-4) (1,001 levels at 0.10) and integrates with scipy's Simpson."""
    from scipy.integrate import simpson

    rng = np.random.default_rng(3)
    references = _face_68() + rng.normal(0, 2, (50, 68, 2))
    predictions = references + rng.normal(0, 1, references.shape) * rng.uniform(0.5, 6, (50, 1, 1))
    result = nme.compute(predictions=predictions, references=references)
    errors = np.asarray(result["per_image_nme"])
    levels = np.arange(0.0, 0.1 + 1e-4, 1e-4)
    ced = [np.count_nonzero(errors <= x) / len(errors) for x in levels]
    assert len(levels) == 1001
    assert result["auc"] == pytest.approx(simpson(ced, x=levels) / 0.1, abs=1e-12)
    assert result["failure_rate"] == pytest.approx(1 - ced[-1])


def _numpy_loop(predictions, references, normalization, threshold, steps):
    errors = []
    for prediction, reference in zip(predictions, references):
        if normalization == "inter_ocular":
            distance = np.linalg.norm(reference[36] - reference[45])
        elif normalization == "inter_pupil":
            distance = np.linalg.norm(reference[36:42].mean(0) - reference[42:48].mean(0))
        else:
            width, height = reference.max(0) - reference.min(0)
            distance = math.sqrt(width * height) if normalization == "box" else math.hypot(width, height)
        errors.append(sum(np.linalg.norm(p - r) for p, r in zip(prediction, reference)) / len(reference) / distance)
    from scipy.integrate import simpson

    errors = np.array(errors)
    levels = np.linspace(0, threshold, steps + 1)
    ced = [np.count_nonzero(errors <= level) / len(errors) for level in levels]
    return errors, np.mean(errors > threshold), simpson(ced, x=levels) / threshold


@pytest.mark.parametrize("normalization", ["inter_ocular", "inter_pupil", "box", "box_diagonal"])
def test_nme_matches_a_numpy_loop_on_random_faces(nme, normalization):
    rng = np.random.default_rng(0)
    references = (_face_68() + rng.normal(0, 3, (40, 68, 2))).astype(np.float32)
    noise = rng.uniform(0.5, 8, (40, 1, 1))  # per-image error scales that straddle the threshold
    predictions = (references + rng.normal(0, 1, references.shape) * noise).astype(np.float32)
    errors, failure_rate, auc = _numpy_loop(
        predictions.astype(np.float64), references.astype(np.float64), normalization, 0.08, 200
    )
    result = nme.compute(
        predictions=predictions,
        references=references,
        normalization=normalization,
        failure_threshold=0.08,
        ced_step=4e-4,
    )
    assert result["per_image_nme"] == pytest.approx(errors.tolist(), rel=1e-6)
    assert result["nme"] == pytest.approx(errors.mean(), rel=1e-6)
    assert result["failure_rate"] == pytest.approx(failure_rate)
    assert 0 < result["failure_rate"] < 1 and result["auc"] == pytest.approx(auc, abs=1e-9)


def test_other_point_counts_need_eye_indices_or_a_box(nme):
    rng = np.random.default_rng(1)
    reference = rng.uniform(0, 100, (19, 2))  # AFLW-19
    prediction = reference + 1.0
    with pytest.raises(ValueError, match="19 points; pass left_eye and right_eye"):
        nme.compute(predictions=[prediction], references=[reference])
    result = nme.compute(predictions=[prediction], references=[reference], left_eye=6, right_eye=11)
    assert result["nme"] == pytest.approx(math.sqrt(2) / np.linalg.norm(reference[6] - reference[11]), rel=1e-5)
    centres = nme.compute(
        predictions=[prediction],
        references=[reference],
        normalization="inter_pupil",
        left_eye=[6, 7, 8],
        right_eye=[9, 10, 11],
    )
    distance = np.linalg.norm(reference[6:9].mean(0) - reference[9:12].mean(0))
    assert centres["nme"] == pytest.approx(math.sqrt(2) / distance, rel=1e-5)
    diagonal = nme.compute(
        predictions=[prediction], references=[reference], normalization="box_diagonal", failure_threshold=0.07
    )
    width, height = reference.max(0) - reference.min(0)
    assert diagonal["nme"] == pytest.approx(math.sqrt(2) / math.hypot(width, height), rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"normalization": "inter_eye"}, "normalization must be one of"),
        ({"left_eye": 36}, "left_eye and right_eye must be given together"),
        ({"normalization": "box", "left_eye": 36, "right_eye": 45}, "eye normalisations only"),
        ({"left_eye": 36, "right_eye": 80}, "example 0: eye point 80 is out of range for its 68 points"),
        ({"failure_threshold": 0}, "failure_threshold must be positive"),
        ({"failure_threshold": float("inf")}, "failure_threshold must be positive and finite"),  # gave auc NaN
        ({"failure_threshold": None}, "failure_threshold must be positive and finite"),  # was a bare TypeError
        ({"ced_step": 0}, "ced_step must be positive"),
        ({"ced_step": 0.06}, "at most half the threshold"),
        ({"boxes": [[0, 0, 10, 10]]}, "boxes apply to the 'box' and 'box_diagonal' normalisations"),
        ({"normalization": "box", "boxes": [[0, 0, 10, 10]] * 2}, "got 2 boxes for 1 references"),
        ({"normalization": "box", "boxes": [[0, 0, 10]]}, "example 0: a box is 4 finite numbers"),
        (
            {"normalization": "box_diagonal", "boxes": [[10, 0, 10, 5]]},
            r"example 0: box \[10.0, 0.0, 10.0, 5.0\] must "
            "have x1 > x0",
        ),
    ],
)
def test_nme_rejects_bad_arguments(nme, kwargs, message):
    reference = _face_68()
    with pytest.raises(ValueError, match=message):
        nme.compute(predictions=[reference + 1], references=[reference], **kwargs)


def test_nme_names_the_bad_example(nme):
    face = _face_68()
    with pytest.raises(ValueError, match=r"example 1: prediction has shape \(67, 2\) but its reference \(68, 2\)"):
        nme.compute(predictions=[face, face[:67]], references=[face, face])
    with pytest.raises(ValueError, match=r"example 1: references must be \(N >= 2, 2\) points"):
        nme.compute(predictions=[face, np.ones((68, 3))], references=[face, np.ones((68, 3))])
    with pytest.raises(ValueError, match="example 2: the inter_ocular distance of its reference is 0"):
        nme.compute(predictions=[face] * 3, references=[face, face, np.zeros((68, 2))])
    with pytest.raises(ValueError, match="example 0: points must be finite"):
        nme.compute(predictions=[np.full((68, 2), np.nan)], references=[face])


# --------------------------------------------------------------------------------------------------------------------
# Attribute accuracy

_ATTRIBUTE_REFERENCES = [[1, 0, 0], [0, 1, 1], [1, 1, 0], [1, 1, 1]]


def test_attribute_accuracy_by_hand(attributes):
    hard = [[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 1]]  # wrong: (0, 2), (1, 1), (3, 0), (3, 1)
    result = attributes.compute(predictions=hard, references=_ATTRIBUTE_REFERENCES)
    assert result["per_attribute_accuracy"] == pytest.approx([0.75, 0.5, 0.75])
    assert result["mean_accuracy"] == pytest.approx(2 / 3)

    probabilities = [[0.9, 0.1, 0.6], [0.2, 0.4, 0.51], [0.7, 0.8, 0.3], [0.5, 0.0, 1.0]]
    same = attributes.compute(predictions=probabilities, references=_ATTRIBUTE_REFERENCES)  # 0.5 is not above 0.5
    assert same["per_attribute_accuracy"] == pytest.approx([0.75, 0.5, 0.75])
    low = attributes.compute(
        predictions=probabilities,
        references=_ATTRIBUTE_REFERENCES,
        threshold=0.35,
        attribute_names=["Smiling", "Male", "Eyeglasses"],
    )  # (1, 1) and (3, 0) turn right
    assert low["per_attribute_accuracy"] == pytest.approx({"Smiling": 1.0, "Male": 0.75, "Eyeglasses": 0.75})
    assert low["mean_accuracy"] == pytest.approx(2.5 / 3)


def test_attribute_accuracy_matches_a_numpy_loop(attributes):
    rng = np.random.default_rng(2)
    references = rng.integers(0, 2, (50, 40))
    probabilities = rng.uniform(0, 1, (50, 40)).astype(np.float32)
    expected = [
        np.mean([(p > 0.5) == (r == 1) for p, r in zip(probabilities[:, a], references[:, a])]) for a in range(40)
    ]
    result = attributes.compute(predictions=probabilities, references=references)
    assert result["per_attribute_accuracy"] == pytest.approx(expected)
    assert result["mean_accuracy"] == pytest.approx(np.mean(expected))


@pytest.mark.parametrize(
    "predictions, references, kwargs, message",
    [
        ([[1, 0], [1, 0, 1]], [[1, 0], [1, 0]], {}, "example 1: predictions has 3 attributes but example 0 has 2"),
        ([[1, 0], [1, 0]], [[1, 0], [1, 2]], {}, r"example 1: references must be 0 or 1, got \[1.0, 2.0\]"),
        ([[0.2, 0.3], [1.7, -0.4]], [[1, 0], [1, 0]], {}, "example 1: predictions must be 0/1 or probabilities"),
        ([[1, 0], [1, 0]], [[1, 0, 1], [1, 0, 1]], {}, "predictions have 2 attributes per image but references 3"),
        ([[1, 0]], [[1, 0]], {"threshold": 1.0}, r"threshold must be a number that lies in \(0, 1\)"),
        ([[1, 0]], [[1, 0]], {"threshold": None}, r"threshold must be a number that lies in \(0, 1\), got None"),
        ([[]], [[]], {}, "predictions hold no attributes"),  # was a mean accuracy of NaN
        # soft references were cast to int (0.7 -> 0, 1.9 -> 1) before the 0/1 check: accuracy 0.0, no error
        ([[0.9], [0.1]], [[0.7], [1.9]], {}, r"example 0: references must be 0 or 1, got \[0.7\]"),
        ([[1, 0]], [[1, 0]], {"attribute_names": ["a"]}, "attribute_names has 1 names but the inputs have 2"),
    ],
)
def test_attribute_accuracy_rejects_bad_input(attributes, predictions, references, kwargs, message):
    with pytest.raises(ValueError, match=message):
        attributes.compute(predictions=predictions, references=references, **kwargs)


def test_attribute_probabilities_are_not_rounded_to_float32(attributes):
    """A float32 feature turned 0.50000001 into 0.5, which is not above the threshold."""
    result = attributes.compute(predictions=[[0.50000001], [0.5]], references=[[1], [0]])
    assert result["mean_accuracy"] == 1.0


# --------------------------------------------------------------------------------------------------------------------
# Expression metrics


def test_expression_metrics_by_hand(expression):
    predictions = [0, 1, 2, 2, 1, 0, 2]
    references = [0, 1, 1, 2, 1, 2, 2]
    result = expression.compute(predictions=predictions, references=references, num_classes=4)
    assert result["confusion_matrix"] == [[1, 0, 0, 0], [0, 2, 1, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    assert result["accuracy"] == pytest.approx(5 / 7)
    # F1 = 2TP / (2TP + FP + FN): class 0 2/3, class 1 4/5, class 2 4/6; class 3 neither occurs nor is predicted
    assert result["per_class_f1"] == pytest.approx([2 / 3, 4 / 5, 2 / 3, None])
    assert result["macro_f1"] == pytest.approx((2 / 3 + 4 / 5 + 2 / 3) / 3)
    inferred = expression.compute(
        predictions=predictions, references=references, label_names=["neutral", "happy", "sad"]
    )
    assert inferred["confusion_matrix"] == [[1, 0, 0], [0, 2, 1], [1, 0, 2]]
    assert inferred["per_class_f1"] == pytest.approx({"neutral": 2 / 3, "happy": 4 / 5, "sad": 2 / 3})
    predicted_only = expression.compute(predictions=[0, 1], references=[0, 0])  # class 1: predicted, no support
    assert predicted_only["per_class_f1"] == pytest.approx([2 / 3, 0.0]) and predicted_only["macro_f1"] == 1 / 3


def test_expression_metrics_match_a_numpy_loop(expression):
    rng = np.random.default_rng(3)
    references = rng.integers(0, 7, 200)
    predictions = np.where(rng.uniform(size=200) < 0.6, references, rng.integers(0, 7, 200))
    matrix = np.zeros((7, 7), dtype=int)
    for reference, prediction in zip(references, predictions):
        matrix[reference, prediction] += 1
    f1 = []
    for c in range(7):
        tp = np.sum((predictions == c) & (references == c))
        precision, recall = tp / np.sum(predictions == c), tp / np.sum(references == c)
        f1.append(2 * precision * recall / (precision + recall))
    result = expression.compute(predictions=predictions, references=references)
    assert result["confusion_matrix"] == matrix.tolist()
    assert result["accuracy"] == pytest.approx(np.mean(predictions == references))
    assert result["macro_f1"] == pytest.approx(np.mean(f1))


def test_macro_f1_follows_sklearns_default_convention(expression):
    """Classes absent from both sides are left out of the mean, as sklearn's f1_score(average="macro") does."""
    predictions, references = [0, 1, 1, 4, 4], [0, 1, 0, 4, 1]  # classes 2 and 3 absent on both sides
    result = expression.compute(predictions=predictions, references=references, num_classes=5)
    # per class: 0: P 1, R 1/2 -> 2/3; 1: P 1/2, R 1/2 -> 1/2; 4: P 1/2, R 1 -> 2/3; mean over the 3 present classes
    assert result["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)


@pytest.mark.parametrize(
    "predictions, references, kwargs, message",
    [
        ([0, 1, 7], [0, 1, 2], {"num_classes": 3}, r"example 2: predictions holds class 7, outside \[0, 3\)"),
        ([0, 1, 2], [0, -1, 2], {}, r"example 1: references holds class -1, outside \[0, 3\)"),
        ([0, 1, 2], [0, 1, 3], {"label_names": ["a", "b", "c"]}, "example 2: references holds class 3"),
        ([0, 1], [0, 1], {"num_classes": 3, "label_names": ["a", "b"]}, "num_classes is 3 but label_names has 2"),
        ([0, 1], [0, 1], {"num_classes": 0}, "num_classes must be a positive integer"),
        # probabilities were cast to int (0.9 -> class 0) before the integer check: accuracy 1/3, no error
        ([0.9, 0.8, 0.2], [1, 1, 0], {}, r"example 0: predictions holds 0.9, not a class id: .*argmax of the logits"),
        ([1, 2, 0], [1, 1.5, 0], {}, "example 1: references holds 1.5, not a class id"),
        ([0, float("nan")], [0, 1], {}, "example 1: predictions holds nan, not a class id"),
        ([0, None], [0, 1], {}, "example 1: predictions holds None, not a class id"),
    ],
)
def test_expression_metrics_reject_bad_input(expression, predictions, references, kwargs, message):
    with pytest.raises(ValueError, match=message):
        expression.compute(predictions=predictions, references=references, **kwargs)


def test_expression_metrics_accept_whole_float_class_ids(expression):
    """Float tensors of argmax ids are fine: only fractional values are refused."""
    result = expression.compute(predictions=np.array([1.0, 0.0, 2.0]), references=[1, 1, 2])
    assert result["confusion_matrix"] == [[0, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_ced_figure_reports_the_metric_numbers(nme):
    from pros_hf.evaluation_plots import _failure_rate_and_auc

    rng = np.random.default_rng(4)
    references = rng.uniform(0, 128, (30, 68, 2))
    result = nme.compute(
        predictions=references + rng.normal(0, 5, references.shape), references=references, ced_step=5e-4
    )
    assert _failure_rate_and_auc(np.array(result["per_image_nme"]), 0.10, 5e-4) == pytest.approx(
        (result["failure_rate"], result["auc"])
    )


def test_the_representation_protocols_nme_is_the_metrics_inter_ocular_nme(nme):
    """pros_hf.representation scores landmarks with its own torch function (probes run on tensors); it must give
    what the evaluate metric gives for the same points."""
    from pros_hf.representation import landmark_nme

    rng = np.random.default_rng(1)
    references = (_face_68() + rng.normal(0, 3, (20, 68, 2))).astype(np.float32)
    predictions = (references + rng.normal(0, 2, references.shape)).astype(np.float32)
    expected = nme.compute(predictions=predictions, references=references, normalization="inter_ocular")["nme"]
    assert landmark_nme(predictions.reshape(20, -1), references.reshape(20, -1)) == pytest.approx(expected, rel=1e-5)
