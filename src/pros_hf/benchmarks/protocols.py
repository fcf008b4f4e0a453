"""What each benchmark's published protocol is: the task, its metrics, the landmark normalisations and threshold, the
published split sizes, the flip permutation and the crop rule. One table, read by the loaders (split sizes), by
whoever scores a model (`nme_kwargs`) and by whoever frames its images (`crop`).

Sources: the split sizes are the data sets' own papers' (CelebA and LFWA: Liu et al. 2015; RAF-DB: Li et al. 2017;
AffectNet: Mollahosseini et al. 2017; 300W: Sagonas et al. 2013 as split by Ren et al. 2014; WFLW: Wu et al. 2018;
AFLW-19: Zhu et al. 2016); normalisations, thresholds and crops follow FaRL's face-alignment scorers and
configurations (its `scale_mu` of 0.8 is an enlargement of 1.25, which is also HRNet's), which follow HRNet's.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..data.face_params import EXPRESSION_NAMES
from .crops import FaceCrop, crop_to_box
from .layouts import EYE_POINTS, FLIP_PERMUTATIONS

# CelebA's 40 attributes in the order of list_attr_celeba.txt (LFWA's annotation uses the same 40, in this order).
CELEBA_ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip

# AffectNet's 8-class protocol keeps contempt, as an eighth class after the project's seven.
AFFECTNET8_EXPRESSION_NAMES = (*EXPRESSION_NAMES, "contempt")

TASK_METRICS = {
    "attributes": ("mean_accuracy",),
    "expression": ("accuracy", "macro_f1"),
    "landmarks": ("nme", "failure_rate", "auc"),
}


@dataclass(frozen=True)
class CropRule:
    """How a benchmark frames its faces: `box` says where the `face_box` column comes from (None: the images are
    used as distributed, already aligned), `enlargement` how much larger than the box's longer side the square is."""

    box: str | None
    enlargement: float = 1.0

    def apply(self, image, box=None, landmarks=None, image_size: int = 224) -> FaceCrop:
        """The framed image (and landmarks): `crop_to_box` with this rule, or the image as it is (the image
        processor resizes it) when the rule has no box."""
        if self.box is None:
            from PIL import Image

            image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
            points = None if landmarks is None else np.asarray(landmarks, dtype=np.float32)
            width, height = image.size
            return FaceCrop(image=image, landmarks=points, region=(-0.5, -0.5, width - 0.5, height - 0.5), scale=1.0)
        if box is None:
            raise ValueError(f"this crop rule frames the face box ({self.box}): pass the example's face_box.")
        return crop_to_box(image, box, landmarks, self.enlargement, image_size)


@dataclass(frozen=True)
class BenchmarkProtocol:
    """One benchmark's protocol. `splits` are the published sizes (the loaders warn when a folder holds fewer);
    `test_split` is the split a headline figure is computed on; `metrics[0]` is the headline metric."""

    name: str
    title: str
    task: str
    splits: Mapping[str, int]
    crop: CropRule
    test_split: str = "test"
    test_subsets: tuple[str, ...] = ()
    label_names: tuple[str, ...] | None = None
    num_landmarks: int | None = None
    normalizations: tuple[str, ...] = ()  # NME normalisations the literature reports; the first is the headline
    failure_threshold: float | None = None
    curve_normalization: str | None = None  # the normalisation of the failure rate and AUC
    notes: str = ""
    metrics: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "metrics", TASK_METRICS[self.task])

    @property
    def default_metric(self) -> str:
        return self.metrics[0]

    @property
    def flip_permutation(self) -> tuple[int, ...] | None:
        """`flipped = mirror(points)[flip_permutation]` for landmark sets (see `pros_hf.benchmarks.layouts`)."""
        return FLIP_PERMUTATIONS.get(self.num_landmarks)

    def nme_kwargs(self, normalization: str | None = None, boxes: Sequence | None = None) -> dict:
        """Keyword arguments of the `landmark_nme` metric under this protocol: the normalisation (default the
        headline one), the failure threshold, the eye points of a 19-point layout, and the face boxes (one
        (x0, y0, x1, y1) per image, the `face_box` column) that the box normalisations divide by."""
        if self.task != "landmarks":
            raise ValueError(f"{self.title}'s task is {self.task}; NME applies to landmark benchmarks.")
        normalization = normalization or self.normalizations[0]
        known = ("inter_ocular", "inter_pupil", "box", "box_diagonal")
        if normalization not in known:
            raise ValueError(f"normalization must be one of {known}, got {normalization!r}.")
        kwargs = {"normalization": normalization, "failure_threshold": self.failure_threshold}
        if normalization in ("box", "box_diagonal"):
            if boxes is None:
                raise ValueError(
                    f"{self.title}'s {normalization!r} normalisation divides by the annotated face box: "
                    "pass boxes (the face_box column of the test split)."
                )
            kwargs["boxes"] = [list(map(float, box)) for box in boxes]
        elif self.num_landmarks == 19:  # the metric knows the eyes of 68 and 98 points only
            kwargs["left_eye"], kwargs["right_eye"] = EYE_POINTS[19][normalization]
        return kwargs


_ALIGNED = CropRule(box=None)

PROTOCOLS: dict[str, BenchmarkProtocol] = {
    protocol.name: protocol
    for protocol in (
        BenchmarkProtocol(
            name="celeba",
            title="CelebA",
            task="attributes",
            label_names=CELEBA_ATTRIBUTE_NAMES,
            splits={"train": 162_770, "validation": 19_867, "test": 19_962},
            crop=_ALIGNED,
            notes="img_align_celeba (178 x 218, aligned by the eyes) as distributed; mean accuracy over 40 attributes.",
        ),
        BenchmarkProtocol(
            name="lfwa",
            title="LFWA",
            task="attributes",
            label_names=CELEBA_ATTRIBUTE_NAMES,
            splits={"train": 6_263, "test": 6_880},
            crop=_ALIGNED,
            notes="Liu et al. 2015's 40-attribute annotation of LFW (lfw_att_40.mat, indices_train_test.mat).",
        ),
        BenchmarkProtocol(
            name="rafdb",
            title="RAF-DB",
            task="expression",
            label_names=EXPRESSION_NAMES,
            splits={"train": 12_271, "test": 3_068},
            crop=_ALIGNED,
            notes="basic emotions, the aligned 100 x 100 images; overall accuracy.",
        ),
        BenchmarkProtocol(
            name="affectnet7",
            title="AffectNet-7",
            task="expression",
            label_names=EXPRESSION_NAMES,
            splits={"train": 283_901, "test": 3_500},
            crop=CropRule(box="the annotated face rectangle"),
            notes="manually annotated images; the official validation set is the test set; contempt and the codes "
            "none / uncertain / no-face are dropped.",
        ),
        BenchmarkProtocol(
            name="affectnet8",
            title="AffectNet-8",
            task="expression",
            label_names=AFFECTNET8_EXPRESSION_NAMES,
            splits={"train": 287_651, "test": 4_000},
            crop=CropRule(box="the annotated face rectangle"),
            notes="as AffectNet-7 with contempt kept as an eighth class.",
        ),
        BenchmarkProtocol(
            name="300w",
            title="300W",
            task="landmarks",
            num_landmarks=68,
            splits={"train": 3_148, "test_common": 554, "test_challenging": 135, "test_full": 689},
            test_split="test_full",
            test_subsets=("test_common", "test_challenging"),
            normalizations=("inter_ocular", "inter_pupil"),
            failure_threshold=0.10,
            curve_normalization="inter_ocular",
            crop=CropRule(box="the 68 points' tight box, or HRNet's centre +- 100 * scale", enlargement=1.25),
            notes="train: AFW + HELEN and LFPW training sets; common: HELEN + LFPW test sets; challenging: iBUG.",
        ),
        BenchmarkProtocol(
            name="wflw",
            title="WFLW",
            task="landmarks",
            num_landmarks=98,
            splits={
                "train": 7_500,
                "test": 2_500,
                "test_pose": 326,
                "test_expression": 314,
                "test_illumination": 698,
                "test_makeup": 206,
                "test_occlusion": 736,
                "test_blur": 773,
            },
            test_subsets=(
                "test_pose",
                "test_expression",
                "test_illumination",
                "test_makeup",
                "test_occlusion",
                "test_blur",
            ),
            normalizations=("inter_ocular", "inter_pupil"),
            failure_threshold=0.10,
            curve_normalization="inter_ocular",
            crop=CropRule(box="the annotated face rectangle", enlargement=1.25),
        ),
        BenchmarkProtocol(
            name="aflw19",
            title="AFLW-19",
            task="landmarks",
            num_landmarks=19,
            splits={"train": 20_000, "test_full": 4_386, "test_frontal": 1_314},
            test_split="test_full",
            test_subsets=("test_frontal",),
            normalizations=("box_diagonal", "box"),
            failure_threshold=0.07,
            curve_normalization="box",
            crop=CropRule(box="the annotated face box", enlargement=1.0),
            notes="normalised by the annotated box (not the points' extent); FR and AUC at 0.07 with the box "
            "normalisation, as FaRL reports them.",
        ),
    )
}

_ALIASES = {"ibug300w": "300w", "300faces": "300w", "aflw": "aflw19"}


def canonical_name(name: str) -> str:
    """The registry name of `name`: case, '-', '_' and spaces do not matter ("RAF-DB" is "rafdb")."""
    key = "".join(ch for ch in str(name).lower() if ch not in "-_ ")
    key = _ALIASES.get(key, key)
    if key not in PROTOCOLS:
        hint = " (affectnet7 drops contempt, affectnet8 keeps it)" if key == "affectnet" else ""
        raise ValueError(f"unknown benchmark {name!r}{hint}; the benchmarks are {', '.join(PROTOCOLS)}.")
    return key


def get_protocol(name: str) -> BenchmarkProtocol:
    """The protocol of benchmark `name` (see `PROTOCOLS` for the names)."""
    return PROTOCOLS[canonical_name(name)]
