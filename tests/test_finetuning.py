"""pros_hf.finetuning: data loading and validation with real files, few-shot splits, optimizer groups, LoRA."""

import csv
import json

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from pros_hf import ProSConfig, ProSForImageClassification, ProSForLandmarkDetection, ProSImageProcessor
from pros_hf.finetuning import (
    FaceTaskCollator,
    LabelError,
    TaskLabels,
    apply_lora,
    count_trainable,
    default_augmentation,
    few_shot_indices,
    freeze_backbone,
    load_adapter,
    load_task_data,
    merge_adapter,
    parameter_groups,
    read_label_file,
    save_adapter,
)
from pros_hf.finetuning.data import default_label_names, processor_point_transform
from pros_hf.finetuning.lora import head_module_names
from pros_hf.hub import head_card

EXPRESSIONS = default_label_names("expression")


@pytest.fixture(autouse=True)
def one_thread():
    """The CI machine has 2 cores shared with other jobs: one intra-op thread avoids spinning against them."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_images(folder, count, size=40, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        name = f"face_{index}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / name)
        names.append(name)
    return names


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def landmark_numbers(count, points=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(2, 37, size=(points, 2)).round(2) for _ in range(count)]


# ----------------------------------------------------------------------------------------------------------------------
# loading


def test_folder_and_csv_for_each_task(tmp_path):
    names = write_images(tmp_path / "images", 6)
    # expression: ids and class names mixed
    path = write_csv(
        tmp_path / "expr.csv",
        ["file_name", "expression"],
        [[n, v] for n, v in zip(names, [0, "happiness", 2, "anger", 6, "3"])],
    )
    dataset, labels = read_label_file(tmp_path / "images", path, "expression")
    assert labels.label_names == EXPRESSIONS and labels.problem_type == "single_label_classification"
    assert dataset["expression"] == [0, 1, 2, 6, 6, 3]
    assert dataset[0]["image"].size == (40, 40)
    # attributes: one 0/1 column per attribute, named after it
    path = write_csv(
        tmp_path / "attr.csv",
        ["file_name", "glasses", "smiling", "hat"],
        [[n, i % 2, (i // 2) % 2, 1] for i, n in enumerate(names)],
    )
    dataset, labels = read_label_file(tmp_path / "images", path, "attributes")
    assert labels.label_names == ("glasses", "smiling", "hat")
    assert dataset["attributes"][:4] == [[2], [0, 2], [1, 2], [0, 1, 2]]
    # landmarks: 2N numbers in one cell
    points = landmark_numbers(6)
    path = write_csv(
        tmp_path / "lmk.csv",
        ["file_name", "landmarks"],
        [[n, " ".join(str(v) for v in p.reshape(-1))] for n, p in zip(names, points)],
    )
    dataset, labels = read_label_file(tmp_path / "images", path, "landmarks")
    assert labels.num_landmarks == 5
    np.testing.assert_allclose(np.asarray(dataset[3]["landmarks"]), points[3], atol=1e-5)


def test_folder_and_json_records_and_jsonl(tmp_path):
    names = write_images(tmp_path / "images", 4)
    points = landmark_numbers(4)
    records = [{"file_name": n, "landmarks": p.tolist()} for n, p in zip(names, points)]  # N [x, y] pairs
    (tmp_path / "lmk.json").write_text(json.dumps(records))
    dataset, labels = read_label_file(tmp_path / "images", tmp_path / "lmk.json", "landmarks")
    np.testing.assert_allclose(np.asarray(dataset["landmarks"]), np.stack(points), atol=1e-5)
    flat = [{"file_name": n, "landmarks": p.reshape(-1).tolist()} for n, p in zip(names, points)]  # 2N numbers
    (tmp_path / "lmk.jsonl").write_text("\n".join(json.dumps(r) for r in flat))
    dataset_jsonl, _ = read_label_file(tmp_path / "images", tmp_path / "lmk.jsonl", "landmarks")
    assert dataset_jsonl["landmarks"] == dataset["landmarks"]
    attrs = [{"file_name": n, "a": 1, "b": 0} for n in names]
    (tmp_path / "attr.json").write_text(json.dumps(attrs))
    dataset, labels = read_label_file(tmp_path / "images", tmp_path / "attr.json", "attributes")
    assert labels.label_names == ("a", "b") and dataset["attributes"] == [[0]] * 4


def test_load_task_data_splits_a_label_file_and_uses_a_test_file(tmp_path):
    names = write_images(tmp_path / "images", 20)
    write_csv(tmp_path / "train.csv", ["file_name", "expression"], [[n, i % 4] for i, n in enumerate(names[:16])])
    write_csv(tmp_path / "test.csv", ["file_name", "expression"], [[n, 1] for n in names[16:]])
    data = load_task_data(
        "expression", image_dir=str(tmp_path / "images"), labels_file=str(tmp_path / "train.csv"), test_fraction=0.25
    )
    assert len(data.train) == 12 and len(data.test) == 4
    assert sorted(data.test["expression"]) == [0, 1, 2, 3]  # stratified hold-out
    data = load_task_data(
        "expression",
        image_dir=str(tmp_path / "images"),
        labels_file=str(tmp_path / "train.csv"),
        test_labels_file=str(tmp_path / "test.csv"),
    )
    assert len(data.train) == 16 and data.test["expression"] == [1] * 4


def test_saved_dataset_with_and_without_splits(tmp_path):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(10)]
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "emotion": datasets.ClassLabel(names=["a", "b", "c"]),
            "points": datasets.Array2D((3, 2), "float32"),
        }
    )
    table = {
        "img": images,
        "emotion": [i % 3 for i in range(10)],
        "points": [rng.uniform(0, 31, (3, 2)).astype(np.float32) for _ in range(10)],
    }
    dataset = datasets.Dataset.from_dict(table, features=features)
    datasets.DatasetDict({"train": dataset.select(range(7)), "validation": dataset.select(range(7, 10))}).save_to_disk(
        str(tmp_path / "dict")
    )
    data = load_task_data("expression", dataset=str(tmp_path / "dict"), image_column="img", label_column="emotion")
    assert data.labels.label_names == ("a", "b", "c")  # from the ClassLabel
    assert (len(data.train), len(data.test)) == (7, 3) and data.train.column_names == ["image", "expression"]
    dataset.select(range(6)).save_to_disk(str(tmp_path / "tr"))  # two saved sets, as examples/demo.py writes them
    dataset.select(range(6, 10)).save_to_disk(str(tmp_path / "te"))
    data = load_task_data(
        "expression",
        dataset=str(tmp_path / "tr"),
        test_dataset=str(tmp_path / "te"),
        image_column="img",
        label_column="emotion",
    )
    assert (len(data.train), len(data.test)) == (6, 4) and data.test["expression"] == [0, 1, 2, 0]
    dataset.save_to_disk(str(tmp_path / "flat"))
    data = load_task_data(
        "landmarks", dataset=str(tmp_path / "flat"), image_column="img", label_column="points", test_fraction=0.3
    )
    assert data.labels.num_landmarks == 3 and len(data.train) + len(data.test) == 10


def test_saved_dataset_with_one_column_per_attribute(tmp_path):
    """--attribute_columns on a dataset loaded from disk (it failed inside datasets when the columns were added to a
    column selection of such a dataset)."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(8)]
    glasses, hat = [0, 1, 0, 1, 1, 0, 0, 1], [1, 1, 0, 0, 0, 0, 1, 0]
    table = {"image": images, "glasses": glasses, "hat": hat, "note": list("abcdefgh")}
    datasets.Dataset.from_dict(table).save_to_disk(str(tmp_path / "cols"))
    data = load_task_data(
        "attributes", dataset=str(tmp_path / "cols"), attribute_columns=["glasses", "hat"], test_fraction=0.25
    )
    assert data.labels.label_names == ("glasses", "hat")
    rows = {tuple(np.asarray(image).ravel()[:4]): ids for split in (data.train, data.test)
            for image, ids in zip(split["image"], split["attributes"])}  # fmt: skip
    expected = {tuple(np.asarray(image).ravel()[:4]): [k for k, v in enumerate((g, h)) if v]
                for image, g, h in zip(images, glasses, hat)}  # fmt: skip
    assert rows == expected and data.train.column_names == ["image", "attributes"]


def test_a_dataset_folder_that_is_missing_or_not_saved_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset 'nowhere': no such folder"):
        load_task_data("expression", dataset="nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^dataset '.*plain': not a folder written by save_to_disk"):
        load_task_data("expression", dataset=str(tmp_path / "plain"), test_dataset=str(tmp_path / "plain"))


def test_synthetic_default_matches_the_demo_crops(tmp_path):
    data = load_task_data("attributes", num_train=12, num_test=6, cache_dir=str(tmp_path))
    assert data.labels.label_names == default_label_names("attributes")
    assert data.train[0]["image"].size == (64, 64)  # 128 px render, face-cropped to 64 px as examples/demo.py does
    assert len(data.train) <= 12 and len(data.test) <= 6
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert cached == ["faces-n12-seed0-r128-c64-m0.05", "faces-n6-seed1-r128-c64-m0.05"]  # train and test seeds differ
    again = load_task_data("attributes", num_train=12, num_test=6, cache_dir=str(tmp_path))  # from the cache
    assert again.train["attributes"] == data.train["attributes"]


# ----------------------------------------------------------------------------------------------------------------------
# bad input: every error names the row or file


@pytest.fixture
def images(tmp_path):
    return tmp_path / "images", write_images(tmp_path / "images", 4)


def test_expression_out_of_range_names_the_row(tmp_path, images):
    folder, names = images
    path = write_csv(tmp_path / "l.csv", ["file_name", "expression"], [[names[0], 1], [names[1], 7], [names[2], 0]])
    with pytest.raises(LabelError, match=r"line 3 of l\.csv \(file_name 'face_1\.png'\).*7 is out of range \[0, 7\)"):
        read_label_file(folder, path, "expression")
    path = write_csv(tmp_path / "n.csv", ["file_name", "expression"], [[names[0], "contempt"]])
    with pytest.raises(LabelError, match=r"line 2 of n\.csv.*'contempt' is neither a class id nor one of"):
        read_label_file(folder, path, "expression")


def test_missing_labels_name_the_row(tmp_path, images):
    folder, names = images
    path = write_csv(tmp_path / "l.csv", ["file_name", "expression"], [[names[0], 1], [names[1], ""]])
    with pytest.raises(LabelError, match=r"line 3 of l\.csv \(file_name 'face_1\.png'\): missing expression label"):
        read_label_file(folder, path, "expression")
    (tmp_path / "a.json").write_text(
        json.dumps([{"file_name": names[0], "x": 1, "y": 0}, {"file_name": names[1], "x": None, "y": 1}])
    )
    with pytest.raises(
        LabelError,
        match=r"record 1 of a\.json \(file_name 'face_1\.png'\): missing value for "
        r"attribute 'x'",
    ):
        read_label_file(folder, tmp_path / "a.json", "attributes")
    (tmp_path / "m.json").write_text(
        json.dumps([{"file_name": names[0], "landmarks": [1, 2]}, {"file_name": names[1]}])
    )
    with pytest.raises(LabelError, match=r"record 1 of m\.json \(file_name 'face_1\.png'\): missing landmarks"):
        read_label_file(folder, tmp_path / "m.json", "landmarks")
    (tmp_path / "f.json").write_text(json.dumps([{"expression": 1}]))
    with pytest.raises(LabelError, match=r"record 0 of f\.json: no file_name"):
        read_label_file(folder, tmp_path / "f.json", "expression")


def test_attribute_value_out_of_range_names_row_and_column(tmp_path, images):
    folder, names = images
    path = write_csv(tmp_path / "a.csv", ["file_name", "glasses", "hat"], [[names[0], 0, 1], [names[1], 2, 0]])
    with pytest.raises(
        LabelError,
        match=r"line 3 of a\.csv \(file_name 'face_1\.png'\): attribute 'glasses' is "
        r"'2'; attributes must be 0 or 1",
    ):
        read_label_file(folder, path, "attributes")


def test_wrong_number_of_landmarks_names_the_row(tmp_path, images):
    folder, names = images
    rows = [[names[0], "1 2 3 4 5 6"], [names[1], "1 2 3 4 5 6"], [names[2], "1 2 3 4"]]
    path = write_csv(tmp_path / "l.csv", ["file_name", "landmarks"], rows)
    with pytest.raises(LabelError, match=r"line 4 of l\.csv \(file_name 'face_2\.png'\): 2 landmarks, expected 3"):
        read_label_file(folder, path, "landmarks")
    with pytest.raises(LabelError, match=r"line 2 of l\.csv.*3 landmarks, expected 68"):
        read_label_file(folder, path, "landmarks", num_landmarks=68)
    path = write_csv(tmp_path / "odd.csv", ["file_name", "landmarks"], [[names[0], "1 2 3"]])
    with pytest.raises(LabelError, match=r"line 2 of odd\.csv.*3 landmark numbers; expected 2N"):
        read_label_file(folder, path, "landmarks")


def test_label_file_naming_missing_images_names_them(tmp_path, images):
    folder, names = images
    path = write_csv(
        tmp_path / "l.csv",
        ["file_name", "expression"],
        [[names[0], 1], ["gone.jpg", 2], [names[1], 3], ["sub/also_gone.png", 0]],
    )
    with pytest.raises(FileNotFoundError) as error:
        read_label_file(folder, path, "expression")
    message = str(error.value)
    assert "2 image(s)" in message and "'gone.jpg' (line 3 of l.csv)" in message
    assert "'sub/also_gone.png' (line 5 of l.csv)" in message and str(folder) in message


def test_label_file_naming_undecodable_images_names_them(tmp_path, images):
    """A file that is not an image is refused when the label file is read, with its row: it used to stop training
    halfway with PIL's UnidentifiedImageError."""
    folder, names = images
    (folder / "notes.png").write_text("not a picture")
    (folder / "empty.jpg").write_bytes(b"")
    path = write_csv(
        tmp_path / "l.csv",
        ["file_name", "expression"],
        [[names[0], 1], ["notes.png", 2], [names[1], 3], ["empty.jpg", 0]],
    )
    with pytest.raises(ValueError) as error:
        read_label_file(folder, path, "expression")
    message = str(error.value)
    assert "2 image(s) named in" in message and "cannot be read as images" in message
    assert "'notes.png' (line 3 of l.csv: not an image)" in message
    assert "'empty.jpg' (line 5 of l.csv: empty file)" in message
    with pytest.raises(ValueError, match=r"'notes\.png' \(line 3 of l\.csv"):
        load_task_data("expression", image_dir=str(folder), labels_file=str(path))


def test_image_counts_must_be_positive(tmp_path):
    """num_train / num_test of 0 or less are refused (0 used to fall back to the synthetic default of 2,000; a
    negative count sliced from the end)."""
    for name in ("num_train", "num_test"):
        for count in (0, -3):
            with pytest.raises(ValueError, match=rf"{name} must be at least 1 \(or None for all\), got {count}"):
                load_task_data("expression", cache_dir=str(tmp_path), **{name: count})
    assert not any(tmp_path.iterdir())  # refused before anything was rendered


def test_saved_dataset_with_a_bad_label_names_the_row(tmp_path):
    image = Image.fromarray(np.zeros((16, 16, 3), np.uint8))
    datasets.Dataset.from_dict(
        {"image": [image] * 3, "file_name": ["a.png", "b.png", "c.png"], "expression": [0, 9, 1]}
    ).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(LabelError, match=r"row 1 \(file_name 'b\.png'\): expression label 9 is out of range"):
        load_task_data("expression", dataset=str(tmp_path / "d"))
    datasets.Dataset.from_dict({"image": [image] * 2, "landmarks": [[[1.0, 2.0]] * 3, [[1.0, 2.0]] * 2]}).save_to_disk(
        str(tmp_path / "l")
    )
    with pytest.raises(LabelError, match=r"row 1: 2 landmarks, expected 3"):
        load_task_data("landmarks", dataset=str(tmp_path / "l"))
    datasets.Dataset.from_dict({"image": [image] * 2, "expression": [1, None]}).save_to_disk(str(tmp_path / "m"))
    with pytest.raises(LabelError, match=r"row 1: missing expression label"):
        load_task_data("expression", dataset=str(tmp_path / "m"))


def test_hub_dataset_offline_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r"Cannot load the Hub dataset 'org/no-such-faces'.*HF_HUB_OFFLINE"):
        load_task_data("expression", hub_dataset="org/no-such-faces")


def test_conflicting_sources_are_refused(tmp_path):
    with pytest.raises(ValueError, match="one data source"):
        load_task_data("expression", dataset="x", hub_dataset="y")
    with pytest.raises(ValueError, match="--labels_file needs --image_dir"):
        load_task_data("expression", labels_file=str(tmp_path / "l.csv"))


# ----------------------------------------------------------------------------------------------------------------------
# few-shot splits


def test_few_shot_stratified_by_class_and_seeded():
    labels = np.repeat(np.arange(7), [300, 100, 50, 20, 10, 5, 2])
    indices = few_shot_indices(labels, 0.05, seed=0)
    counts = np.bincount(labels[indices], minlength=7)
    assert counts.tolist() == [15, 5, 2, 1, 1, 1, 1]  # round(5%) per class, at least one each
    np.testing.assert_array_equal(indices, few_shot_indices(labels, 0.05, seed=0))
    assert not np.array_equal(indices, few_shot_indices(labels, 0.05, seed=1))
    assert len(np.unique(indices)) == len(indices) and np.all(np.diff(indices) > 0)
    random = few_shot_indices(labels, 0.05, seed=0, stratify=False)
    assert len(random) == round(0.05 * len(labels))
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        few_shot_indices(labels, 0.0, seed=0)


def test_few_shot_attributes_cover_every_attribute_both_ways():
    rng = np.random.default_rng(0)
    multi_hot = (rng.random((500, 6)) < [0.5, 0.3, 0.1, 0.02, 0.97, 0.6]).astype(np.float32)
    for seed in range(5):
        indices = few_shot_indices(multi_hot, 0.02, seed=seed)
        subset = multi_hot[indices]
        assert len(indices) == 10
        assert subset.max(axis=0).tolist() == [1] * 6 and subset.min(axis=0).tolist() == [0] * 6


def test_few_shot_landmarks_are_random_and_seeded():
    points = np.zeros((200, 68, 2), np.float32)
    first, second = few_shot_indices(points, 0.1, seed=3), few_shot_indices(points, 0.1, seed=3)
    np.testing.assert_array_equal(first, second)
    assert len(first) == 20


# ----------------------------------------------------------------------------------------------------------------------
# transforms and collator


def test_collator_batches_and_landmark_coordinates(tmp_path):
    """Landmarks follow the processor's resize (64 -> 32 px) and end up as (x + 0.5) / W of the model input; under
    augmentation a bright dot drawn at a landmark is still under its transformed point."""
    size, rng = 64, np.random.default_rng(0)
    points = rng.uniform(16, 48, size=(4, 3, 2)).astype(np.float32)
    images = []
    for pts in points:
        array = np.zeros((size, size, 3), np.uint8)
        x, y = np.round(pts[0]).astype(int)
        array[y - 2 : y + 3, x - 2 : x + 3] = 255
        pts[0] = [x, y]
        images.append(Image.fromarray(array))
    rows = [{"image": image, "landmarks": pts.tolist()} for image, pts in zip(images, points)]
    labels = TaskLabels("landmarks", num_landmarks=3)
    processor = ProSImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    batch = FaceTaskCollator(labels, processor)(rows)
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["landmarks"].shape == (4, 3, 2)
    torch.testing.assert_close(batch["landmarks"], torch.from_numpy((points + 0.5) / size))  # same frame, scaled
    from pros_hf.pipelines import processed_to_image_coordinates

    back = processed_to_image_coordinates(batch["landmarks"].numpy(), (size, size), processor)
    np.testing.assert_allclose(back, points, atol=1e-4)  # what the pipeline undoes

    augmentation = default_augmentation("landmarks", (32, 32), processor, 3)
    torch.manual_seed(0)
    augmented = FaceTaskCollator(labels, processor, augmentation)(rows)
    mean, std = torch.tensor(processor.image_mean).view(3, 1, 1), torch.tensor(processor.image_std).view(3, 1, 1)
    for image, dot in zip(augmented["pixel_values"] * std + mean, augmented["landmarks"][:, 0]):
        column, row = (dot * 32 - 0.5).round().long().tolist()
        assert image[:, row, column].min() > 0.5, (row, column)
    assert not torch.allclose(augmented["landmarks"], batch["landmarks"])  # it did move them


def test_collator_reads_image_sizes_of_arrays_and_tensors_and_normalises_by_the_augmented_size():
    """A non-square image as PIL, HWC numpy and CHW tensor gives the same landmark targets; with an augmentation
    whose output size differs from the processor's, targets are normalised by the augmented size."""
    array = np.random.default_rng(0).integers(0, 255, size=(48, 64, 3), dtype=np.uint8)  # H 48, W 64
    points = [[10.0, 20.0], [50.0, 30.0]]
    labels = TaskLabels("landmarks", num_landmarks=2)
    processor = ProSImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    collator = FaceTaskCollator(labels, processor)
    targets = [
        collator([{"image": image, "landmarks": points}])["landmarks"]
        for image in (Image.fromarray(array), array, torch.from_numpy(array).permute(2, 0, 1))
    ]
    for other in targets[1:]:
        torch.testing.assert_close(other, targets[0])
    # 48x64 -> 32x43 (x scale 43/64) -> 5 px cropped off the left (floor((43 - 32) / 2))
    expected_x = ((10.0 + 0.5) * 43 / 64 - 0.5 - 5 + 0.5) / 32
    assert targets[0][0, 0, 0].item() == pytest.approx(expected_x, abs=1e-5)

    from pros_hf.augmentation import LandmarkAugmentation

    augmentation = LandmarkAugmentation(
        output_size=(24, 24),
        rotation_degrees=0.0,
        scale=(1.0, 1.0),
        translate=0.0,
        flip_p=0.0,
        mean=tuple(processor.image_mean),
        std=tuple(processor.image_std),
    )
    augmented = FaceTaskCollator(labels, processor, augmentation)([{"image": array, "landmarks": points}])
    assert augmented["pixel_values"].shape[-2:] == (24, 24)
    torch.testing.assert_close(augmented["landmarks"], targets[0], atol=0.05, rtol=0)  # same place, 24-px frame


def test_collator_classification_labels():
    image = Image.fromarray(np.zeros((48, 48, 3), np.uint8))
    processor = ProSImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    expression = FaceTaskCollator(TaskLabels("expression", label_names=EXPRESSIONS), processor)(
        [{"image": image, "expression": 3}, {"image": image, "expression": 0}]
    )
    assert expression["labels"].dtype == torch.long and expression["labels"].tolist() == [3, 0]
    attributes = FaceTaskCollator(
        TaskLabels("attributes", label_names=("a", "b", "c")),
        processor,
        default_augmentation("attributes", (32, 32), processor),
    )([{"image": image, "attributes": [0, 2]}, {"image": image, "attributes": []}])
    assert attributes["labels"].dtype == torch.float32
    assert attributes["labels"].tolist() == [[1, 0, 1], [0, 0, 0]]
    assert attributes["pixel_values"].shape == (2, 3, 32, 32)


def test_processor_point_transform_with_center_crop():
    processor = ProSImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    sx, sy, tx, ty = processor_point_transform(processor, 64, 128)  # 64x128 -> 32x64 -> crop 16 px off each side
    assert (sx, sy) == (0.5, 0.5)
    assert (0.5 * 63.5 + tx, 0.5 * 31.5 + ty) == pytest.approx((15.5, 15.5))  # the centre stays the centre


# ----------------------------------------------------------------------------------------------------------------------
# optimizer groups


def micro_classifier(num_labels=7, image_size=32, **overrides):
    torch.manual_seed(0)
    config = ProSConfig.from_preset("micro", image_size=image_size, num_labels=num_labels, **overrides)
    return ProSForImageClassification(config)


def test_layer_ids_and_layer_decay_values():
    model = micro_classifier()
    groups = parameter_groups(model, 1e-3, weight_decay=0.05, backbone_lr_scale=0.1, layer_decay=0.5)
    by_name = {name: group for group in groups for name in group["names"]}
    assert set(by_name) == {name for name, _ in model.named_parameters()}
    layer_ids = {  # 0 embeddings, i + 1 block i, L + 1 = 5 final norm and head
        "pros.embeddings.cls_token": 0,
        "pros.embeddings.patch_embeddings.projection.weight": 0,
        "pros.encoder.layer.2.attention.qkv.weight": 3,
        "pros.layernorm.weight": 5,
        "classifier.weight": 5,
    }
    for name, layer in layer_ids.items():
        assert by_name[name]["layer_id"] == layer, name
    # Through PEFT (names under base_model.model., LoRA matrices): block 3's LoRA matrix is layer 4, with the layer
    # decay but not the backbone scale.
    lora_groups = parameter_groups(
        apply_lora(micro_classifier(), r=2, alpha=4), 1e-3, backbone_lr_scale=0.1, layer_decay=0.5
    )
    lora_by_name = {name: group for group in lora_groups for name in group["names"]}
    lora_a = "base_model.model.pros.encoder.layer.3.attention.qkv.lora_A.default.weight"
    assert lora_by_name[lora_a]["layer_id"] == 4 and lora_by_name[lora_a]["lr"] == pytest.approx(1e-3 * 0.5)
    expected = {  # lr * backbone_scale * decay ** (L + 1 - layer_id), L = 4
        "pros.embeddings.position_embeddings": 1e-3 * 0.1 * 0.5**5,
        "pros.encoder.layer.0.attention.qkv.weight": 1e-3 * 0.1 * 0.5**4,
        "pros.encoder.layer.3.mlp.fc2.weight": 1e-3 * 0.1 * 0.5**1,
        "pros.layernorm.weight": 1e-3 * 0.1,
        "classifier.weight": 1e-3,
    }
    for name, lr in expected.items():
        assert by_name[name]["lr"] == pytest.approx(lr), name
    no_decay = {name for name, group in by_name.items() if group["weight_decay"] == 0}
    assert {
        "pros.embeddings.cls_token",
        "pros.embeddings.position_embeddings",
        "classifier.bias",
        "pros.encoder.layer.1.norm1.weight",
        "pros.encoder.layer.1.attention.qkv.bias",
        "pros.layernorm.bias",
    } <= no_decay
    assert by_name["pros.encoder.layer.1.attention.qkv.weight"]["weight_decay"] == 0.05
    assert by_name["classifier.weight"]["weight_decay"] == 0.05
    with pytest.raises(ValueError, match="layer_decay"):
        parameter_groups(model, 1e-3, layer_decay=1.5)


def test_finetune_trainer_builds_the_optim_of_the_arguments_on_the_groups(tmp_path):
    from transformers import TrainingArguments

    from pros_hf.finetuning import FinetuneTrainer

    model = micro_classifier()
    expected = parameter_groups(model, 1e-3, weight_decay=0.05, backbone_lr_scale=0.1, layer_decay=0.5)
    for optim, cls in (("adamw_torch", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        args = TrainingArguments(
            output_dir=str(tmp_path), optim=optim, learning_rate=1e-3, weight_decay=0.05, use_cpu=True, report_to=[]
        )
        trainer = FinetuneTrainer(model=model, args=args, backbone_lr_scale=0.1, layer_decay=0.5)
        optimizer = trainer.create_optimizer()
        assert type(optimizer) is cls
        assert [(g["lr"], g["weight_decay"], g["names"]) for g in optimizer.param_groups] == [
            (g["lr"], g["weight_decay"], g["names"]) for g in expected
        ]


def test_linear_probe_trains_the_head_only():
    model = micro_classifier()
    trainable = freeze_backbone(model)
    assert trainable == 64 * 7 + 7
    assert all(not p.requires_grad for n, p in model.named_parameters() if n.startswith("pros."))
    groups = parameter_groups(model, 1e-3, backbone_lr_scale=0.1, layer_decay=0.75)
    assert sorted(n for g in groups for n in g["names"]) == ["classifier.bias", "classifier.weight"]
    before = model.pros.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    optimizer = torch.optim.AdamW(groups)
    output = model(torch.randn(4, 3, 32, 32), labels=torch.tensor([0, 1, 2, 3]))
    output.loss.backward()
    optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in model.pros.state_dict().items())


# ----------------------------------------------------------------------------------------------------------------------
# LoRA


def test_lora_trains_under_two_percent_at_the_demo_scale():
    """Micro preset (hidden 64, 4 layers), r=2 on qkv and o_proj: the figures of the README."""
    expression = apply_lora(micro_classifier(num_labels=7), r=2, alpha=4)
    counts = count_trainable(expression)
    assert counts.lora == 4 * 2 * ((64 + 192) + (64 + 64)) == 3072
    assert counts.head == 64 * 7 + 7
    assert counts.fraction < 0.02, counts.as_dict()
    attributes = count_trainable(
        apply_lora(micro_classifier(num_labels=12, problem_type=("multi_label_classification")), r=2, alpha=4)
    )
    assert attributes.fraction < 0.02, attributes.as_dict()
    # the landmark decoder is a head of its own weight: over 2% at micro size whatever the rank; LoRA alone is not
    torch.manual_seed(0)
    landmarks = ProSForLandmarkDetection(
        ProSConfig.from_preset("micro", image_size=32, landmark_decoder_hidden_size=64)
    )
    counts = count_trainable(apply_lora(landmarks, r=2, alpha=4))
    assert counts.lora_fraction < 0.02 and counts.head > 0.2 * counts.total
    # only LoRA matrices and the head train; the base weights are frozen
    names = [n for n, p in expression.named_parameters() if p.requires_grad]
    assert all(".lora_" in n or ".modules_to_save." in n for n in names)
    assert head_module_names(micro_classifier()) == ["classifier"]


@pytest.mark.parametrize("preset", ["vit-s16", "vit-b16"])
@pytest.mark.parametrize("rank", [2, 8])
def test_lora_trains_under_two_percent_for_every_head_at_vit_sizes(preset, rank):
    """Built on the meta device (no memory, no weights): the count is all that is checked. The landmark head at
    finetune.py's default decoder width with --lora (64), with its 68 heatmaps."""
    heads = {
        "expression": lambda: ProSForImageClassification(ProSConfig.from_preset(preset, num_labels=7)),
        "attributes": lambda: ProSForImageClassification(
            ProSConfig.from_preset(
                preset, num_labels=12, problem_type="multi_label_classification", classifier_pooling="cls_mean"
            )
        ),
        "landmarks": lambda: ProSForLandmarkDetection(ProSConfig.from_preset(preset, landmark_decoder_hidden_size=64)),
    }
    for task, build in heads.items():
        with torch.device("meta"):
            model = apply_lora(build(), r=rank, alpha=2 * rank)
        counts = count_trainable(model)
        assert counts.other_trainable == 0 and counts.fraction < 0.02, (task, counts.as_dict())


def test_lora_targets_the_backbone_attention_only():
    model = apply_lora(micro_classifier(), r=2, alpha=4)
    adapted = sorted({n.split(".lora_")[0] for n, _ in model.named_parameters() if ".lora_" in n})
    assert len(adapted) == 8 and all(n.endswith(("attention.qkv", "attention.o_proj")) for n in adapted)
    assert model.peft_config["default"].task_type is None
    with pytest.raises(ValueError, match="match no Linear layer of the backbone"):
        apply_lora(micro_classifier(), target_modules=("query",))
    # one unknown name among known ones is refused too (it used to be dropped silently), and named
    with pytest.raises(
        ValueError,
        match=r"target_modules \['foo'\] match no Linear layer .*\['fc1', 'fc2', "
        r"'o_proj', 'qkv'\]",
    ):
        apply_lora(micro_classifier(), target_modules=("qkv", "foo"))
    # the same check on a bare backbone (names without pros.), before any head is built
    from pros_hf.finetuning.lora import check_target_modules

    assert len(check_target_modules(micro_classifier().pros, ["qkv", "o_proj"], prefix="")) == 8
    with pytest.raises(ValueError, match=r"target_modules \['foo'\]"):
        check_target_modules(micro_classifier().pros, ["foo"], prefix="")
    with pytest.raises(ValueError, match="Build the head first"):  # a bare backbone has no pros.* modules
        apply_lora(micro_classifier().pros)


def test_lora_save_reload_and_merge_give_the_same_outputs(tmp_path):
    model = apply_lora(micro_classifier(), r=2, alpha=4)
    with torch.no_grad():  # make the adapter and the head non-trivial, as training would
        for _name, parameter in model.named_parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.05)
    model.eval()
    pixel_values = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values).logits
    save_adapter(model, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    fresh = micro_classifier()  # same seed: same base weights; its head is overwritten by the adapter's
    torch.nn.init.zeros_(fresh.classifier.weight)
    reloaded = load_adapter(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values).logits, expected)
    merged = merge_adapter(reloaded)
    assert type(merged) is ProSForImageClassification and not any(".lora_" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(pixel_values).logits, expected, atol=1e-5, rtol=1e-5)
    merged.save_pretrained(tmp_path / "merged")
    from transformers import AutoModelForImageClassification

    loaded = AutoModelForImageClassification.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values).logits, expected, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# the card


def test_head_card_metadata_parses_with_the_measured_values():
    from huggingface_hub import ModelCard

    model = micro_classifier(num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    results = {
        "pretrained": {"mean": {"accuracy": 0.61, "macro_f1": 0.55}, "std": {"accuracy": 0.01, "macro_f1": 0.02}},
        "random_init": {"mean": {"accuracy": 0.4, "macro_f1": 0.3}, "std": {"accuracy": 0.0, "macro_f1": 0.0}},
    }
    card = head_card(
        model,
        "expression",
        results,
        repo_id="org/pros-expr",
        base_model="org/pros-vits",
        dataset="RAF-DB",
        dataset_id="org/rafdb",
        num_train=100,
        num_test=50,
        seeds=[0, 1],
    )
    parsed = ModelCard(str(card))
    data = parsed.data
    assert data.base_model == "org/pros-vits" and data.datasets == ["org/rafdb"] and data.license == "apache-2.0"
    assert data.model_name == "pros-expr"
    values = {r.metric_type: r.metric_value for r in data.eval_results}
    assert values == {"accuracy": 0.61, "f1": 0.55}
    assert all(r.task_type == "image-classification" and r.dataset_type == "org/rafdb" for r in data.eval_results)
    assert "0.6100 ± 0.0100" in parsed.text and "0.4000 ± 0.0000" in parsed.text
    # a local backbone path is not a Hub id: named by its folder's name in the text, kept out of base_model
    local = head_card(model, "expression", results, base_model="/tmp/backbone")
    assert ModelCard(str(local)).data.base_model is None and "/tmp/backbone" not in str(local)
    assert "**backbone**" in str(local)
    assert "?" not in str(local).split("## Evaluation")[1].split("|")[0]  # no placeholder for the unknown sizes
    assert "test set size not recorded" in str(local) and "| labelled training images | not recorded |" in str(local)


def test_backbone_card_keeps_a_local_dataset_path_out_of_the_metadata():
    from huggingface_hub import ModelCard

    from pros_hf import ProSModel
    from pros_hf.hub import backbone_card

    backbone = ProSModel(ProSConfig.from_preset("micro"))
    assert ModelCard(str(backbone_card(backbone, dataset="/data/faces/train"))).data.datasets is None
    assert ModelCard(str(backbone_card(backbone, dataset="org/faces"))).data.datasets == ["org/faces"]


def test_head_card_of_one_seed_shows_the_means_without_a_spread():
    model = micro_classifier(num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    run = {
        "per_seed": {"0": {"accuracy": 0.61, "macro_f1": 0.55}},
        "mean": {"accuracy": 0.61, "macro_f1": 0.55},
        "std": {"accuracy": 0.0, "macro_f1": 0.0},
    }  # as examples/finetune.py writes a one-seed run
    card = str(head_card(model, "expression", {"pretrained": run, "random_init": run}, seeds=[3]))
    assert "±" not in card and "| 0.6100 | 0.6100 |" in card and "1 seed\n(3)" in card


def test_build_head_random_init_from_a_folder_reads_only_the_config(tmp_path, monkeypatch):
    """A random-init head from a backbone folder (plain or pre-training export) is the seeded architecture alone:
    the same weights as from the loaded backbone, and no backbone weights read."""
    from pros_hf import ProSForPreTraining, ProSModel
    from pros_hf.finetuning.training import build_head

    config = ProSConfig.from_preset("micro", image_size=32)
    torch.manual_seed(1)
    backbone = ProSModel(config)
    backbone.save_pretrained(tmp_path / "backbone")
    ProSForPreTraining(config).save_pretrained(tmp_path / "pretraining")
    overrides = {"num_labels": 7}
    expected = build_head("expression", backbone, overrides, random_init=True, seed=3).state_dict()

    def no_weights(*args, **kwargs):
        raise AssertionError("a random-init head must not load the backbone's weights")

    monkeypatch.setattr(ProSModel, "from_pretrained", no_weights)
    monkeypatch.setattr(ProSForPreTraining, "from_pretrained", no_weights)
    for folder in ("backbone", "pretraining"):
        head = build_head("expression", str(tmp_path / folder), overrides, random_init=True, seed=3)
        assert head.config.architectures != ["ProSForPreTraining"] and head.config.num_labels == 7
        assert all(torch.equal(value, expected[key]) for key, value in head.state_dict().items())
    pretrained = build_head("expression", backbone, overrides, seed=3)
    assert not torch.equal(pretrained.pros.embeddings.cls_token, expected["pros.embeddings.cls_token"])


def test_adapter_folder_holds_no_blank_peft_card(tmp_path):
    """PEFT writes a template README ("More Information Needed"); the folder gets its card from head_card."""
    from pros_hf.finetuning.export import save_adapter_folder

    model = apply_lora(micro_classifier(), r=2, alpha=4)
    save_adapter_folder(model, ProSImageProcessor(size=32, crop_size=32), tmp_path / "adapter", base_model="org/b")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert not (tmp_path / "adapter" / "README.md").exists()


def test_load_backbone_refuses_a_model_that_is_not_pros_or_lacks_weights(tmp_path):
    """A folder of another architecture (a transformers ViT) or a ProS checkpoint with backbone weights missing is
    refused by name: transformers would load it with those weights at random and only print a report, and the head
    would be fine-tuned, and reported, as pre-trained."""
    from safetensors.torch import load_file, save_file
    from transformers import ViTConfig, ViTModel

    from pros_hf import ProSModel, load_backbone

    ViTModel(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=32,
            patch_size=8,
        )
    ).save_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match=r"'.*vit' is not a ProS model: its config.json has model_type 'vit'"):
        load_backbone(str(tmp_path / "vit"))
    with pytest.raises(ValueError, match="is not a ProS model"):  # and so is a head built on it
        ProSForImageClassification.from_backbone(str(tmp_path / "vit"), num_labels=7)

    ProSModel(ProSConfig.from_preset("micro", image_size=32)).save_pretrained(tmp_path / "partial")
    weights = tmp_path / "partial" / "model.safetensors"
    state = load_file(weights)
    dropped = [key for key in state if key.startswith("encoder.layer.3.")]
    save_file({k: v for k, v in state.items() if k not in dropped}, weights, metadata={"format": "pt"})
    with pytest.raises(
        ValueError,
        match=rf"'.*partial': {len(dropped)} backbone weights are missing from its "
        r"checkpoint \(e\.g\. \['encoder\.layer\.3\.",
    ):
        load_backbone(str(tmp_path / "partial"))
