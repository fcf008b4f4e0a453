"""crop_faces_in_dataset: face-dominant crops of labelled synthetic faces, labels kept, landmarks moved along."""

import numpy as np
import pytest

from pros_hf.data import make_synthetic_faces
from pros_hf.retrieval.face_crops import crop_faces_in_dataset


def test_crops_keep_labels_and_move_landmarks():
    faces = make_synthetic_faces(12, image_size=96, seed=4)
    faces = faces.add_column("row", list(range(len(faces))))
    crops, counts = crop_faces_in_dataset(faces, size=48, margin=0.25)
    assert counts["kept"] == len(crops) >= 11 and sum(counts.values()) == 12
    assert {"expression", "identity", "attributes", "landmarks", "face_box", "detector_score"} <= set(
        crops.column_names
    )
    for row in crops:
        assert row["image"].size == (48, 48)
        points = np.asarray(row["landmarks"])
        # the face fills the crop: landmarks inside, spanning a good part of it
        assert points.min() > -2 and points.max() < 50
        assert points[:, 0].max() - points[:, 0].min() > 16
        assert row["detector_score"] >= 0.5

    # the moved landmarks sit on the same content: colours under the 68 points match between original and crop,
    # much better than under points shifted by 4 px in the crop
    def colours(image, points):
        array = np.asarray(image, dtype=float)
        rows = np.clip(np.round(points[:, 1]).astype(int), 0, array.shape[0] - 1)
        cols = np.clip(np.round(points[:, 0]).astype(int), 0, array.shape[1] - 1)
        return array[rows, cols]

    true_error, shifted_error = [], []
    for row in crops:
        source = faces[row["row"]]
        reference = colours(source["image"], np.asarray(source["landmarks"]))
        moved = np.asarray(row["landmarks"])
        true_error.append(np.abs(reference - colours(row["image"], moved)).mean())
        shifted_error.append(np.abs(reference - colours(row["image"], moved + 4)).mean())
    assert np.mean(true_error) < 0.6 * np.mean(shifted_error)


def test_images_without_faces_are_dropped_and_counted():
    import datasets
    from PIL import Image

    blank = datasets.Dataset.from_dict({"image": [Image.new("RGB", (64, 64), (120, 130, 140))] * 3, "label": [0, 1, 2]})
    crops, counts = crop_faces_in_dataset(blank, size=32)
    assert len(crops) == 0 and counts == {"kept": 0, "no_face": 3}
    with pytest.raises(ValueError, match="No column 'picture'"):
        crop_faces_in_dataset(blank, image_column="picture")
