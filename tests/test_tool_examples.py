"""Command-line behaviour of examples/knn_eval.py, visualize.py and contact_sheet.py: a bad flag is refused in one
line (SystemExit naming it) before any expensive work, and what is printed is what was done."""

import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _example(name, monkeypatch):
    """Import examples/<name>.py as a module (registered in sys.modules: its dataclasses look it up there)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def _forbid(monkeypatch, module, *names):
    """Make the module's expensive calls fail loudly: a refusal must come before them."""
    for name in names:

        def forbidden(*args, _name=name, **kwargs):
            raise AssertionError(f"{_name} ran before the bad input was refused")

        monkeypatch.setattr(module, name, forbidden)


def _png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _save_images(path, images, **columns):
    import datasets

    features = {"image": datasets.Image(), **{name: datasets.Value("int64") for name in columns}}
    rows = {"image": [{"bytes": data, "path": None} for data in images], **columns}
    datasets.Dataset.from_dict(rows, features=datasets.Features(features)).save_to_disk(str(path))
    return str(path)


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    """A tiny transformers ViTModel: a valid model folder, but not a ProS model."""
    from transformers import ViTConfig, ViTModel

    folder = tmp_path_factory.mktemp("vit")
    config = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=16, patch_size=8)  # fmt: skip
    ViTModel(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def labelled_set(tmp_path_factory):
    """12 small RGB faces-to-be with an integer label and a multi-label list column."""
    import datasets

    folder = tmp_path_factory.mktemp("labelled") / "set"
    images = [Image.new("RGB", (32, 32), (20 * i, 60, 90)) for i in range(12)]
    features = datasets.Features({"image": datasets.Image(), "expression": datasets.Value("int64"),
                                  "attributes": datasets.List(datasets.Value("int64"))})  # fmt: skip
    datasets.Dataset.from_dict({"image": images, "expression": [i % 2 for i in range(12)],
                                "attributes": [[0, 1]] * 12}, features=features).save_to_disk(str(folder))  # fmt: skip
    return str(folder)


# ---- knn_eval.py ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--label_columns", "foo"], "--label_columns: 'foo' is not a column"),
        (["--label_columns", "attributes"], "--label_columns: 'attributes' holds List values"),
        (["--test_fraction", "1.5"], "--test_fraction must lie in"),
        (["--k", "0"], "--k must be a positive"),
        (["--temperature", "0"], "--temperature must be > 0"),
        (["--batch_size", "0"], "--batch_size must be at least 1"),
        (["--output_json", "MISSING/x.json"], "--output_json .*does not exist"),
        (["--output_json", "FOLDER"], "--output_json .*is a folder"),
    ],
)
def test_knn_eval_refuses_bad_flags_before_rendering_or_extracting(argv, message, tmp_path, monkeypatch):
    knn_eval = _example("knn_eval", monkeypatch)
    import pros_hf.data.synthetic as synthetic

    _forbid(monkeypatch, synthetic, "make_synthetic_faces")  # the default data: 600 faces, seconds to render
    _forbid(monkeypatch, knn_eval, "evaluate_knn")
    argv = [arg.replace("MISSING", str(tmp_path / "missing")).replace("FOLDER", str(tmp_path)) for arg in argv]
    with pytest.raises(SystemExit, match=message):
        knn_eval.main(argv + ["--image_size", "32"])


def test_knn_eval_refuses_a_bad_model_or_dataset_in_one_line(tmp_path, vit_folder, labelled_set, monkeypatch):
    knn_eval = _example("knn_eval", monkeypatch)
    _forbid(monkeypatch, knn_eval, "evaluate_knn")
    with pytest.raises(SystemExit, match="--model: .*model_type 'vit'.*python -m pros_hf.convert"):
        knn_eval.main(["--model", vit_folder, "--dataset", labelled_set])
    with pytest.raises(SystemExit, match="is not a dataset folder"):
        knn_eval.main(["--dataset", str(tmp_path / "nope"), "--image_size", "32"])
    with pytest.raises(SystemExit, match="--label_columns: 'attributes' holds List"):
        knn_eval.main(["--dataset", labelled_set, "--label_columns", "attributes", "--image_size", "32"])
    with pytest.raises(SystemExit, match="image_column 'expression' .* not images"):
        knn_eval.main(["--dataset", labelled_set, "--label_columns", "expression", "--image_column", "expression",
                       "--image_size", "32"])  # fmt: skip


def test_knn_eval_counts_and_chance_leave_out_undecodable_queries(tmp_path, capsys, monkeypatch):
    """4 of the 5 class-0 queries cannot be decoded: k-NN scores 6 queries (1 of class 0, 5 of class 1), so the
    header says 6 and the majority chance is 5/6, not 10 queries at 50%."""
    from pros_hf.knn import stratified_split_indices

    knn_eval = _example("knn_eval", monkeypatch)
    labels = [0] * 10 + [1] * 10
    _, test = stratified_split_indices(np.asarray(labels), 0.5, 0)
    images = [_png_bytes(Image.new("RGB", (32, 32), (10 * i, 50, 90))) for i in range(20)]
    for row in [row for row in test if labels[row] == 0][:4]:
        images[row] = b"not an image"
    dataset = _save_images(tmp_path / "set", images, expression=labels)
    out = tmp_path / "knn.json"
    results = knn_eval.main(["--dataset", dataset, "--label_columns", "expression", "--test_fraction", "0.5",
                             "--k", "3", "--image_size", "32", "--output_json", str(out)])  # fmt: skip
    assert "6 queries (4 undecodable left out)" in capsys.readouterr().out
    assert results["num_queries"] == 6 and results["num_queries_undecodable"] == 4
    assert results["labels"]["expression"]["majority_chance_top1"] == pytest.approx(100 * 5 / 6)
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))


# ---- visualize.py ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num_images", "0"], "--num_images must be positive"),
        (["--layer", "7"], "--layer 7 is not a block of this 4-block model"),
        (["--output", "MISSING/x.png"], "--output .*does not exist"),
        (["--output", "FOLDER"], "--output .*is a folder"),
        (["--output", "OUT.xyz"], "--output .*cannot write .xyz"),
        (["--dataset", "MISSING"], "--dataset: .*is not a dataset folder"),
        (["--dataset", "SET", "--image_column", "foo"], "--dataset: image_column 'foo' is not a column"),
        (["--dataset", "SET", "--image_column", "expression"], "--dataset: image_column 'expression' .*not images"),
        (["--dataset", "DICT", "--split", "foo"], "--dataset: split 'foo' is not in the dataset"),
    ],
)
def test_visualize_refuses_bad_flags_before_running_the_model(argv, message, tmp_path, labelled_set, monkeypatch):
    import datasets

    visualize = _example("visualize", monkeypatch)
    _forbid(monkeypatch, visualize, "cls_attention_maps")
    dictionary = tmp_path / "dict"
    datasets.DatasetDict({"train": datasets.load_from_disk(labelled_set)}).save_to_disk(str(dictionary))
    names = {"MISSING": str(tmp_path / "missing"), "FOLDER": str(tmp_path), "OUT": str(tmp_path / "out"),
             "SET": labelled_set, "DICT": str(dictionary)}  # fmt: skip
    for key, value in names.items():
        argv = [arg.replace(key, value) for arg in argv]
    with pytest.raises(SystemExit, match=message):
        visualize.main(argv + ["--image_size", "32"])


def test_visualize_refuses_an_unknown_upsample_mode(monkeypatch, capsys):
    visualize = _example("visualize", monkeypatch)
    _forbid(monkeypatch, visualize, "cls_attention_maps")
    with pytest.raises(SystemExit):
        visualize.main(["--upsample", "cubic"])
    assert "invalid choice: 'cubic'" in capsys.readouterr().err


def test_visualize_prints_the_file_it_wrote(tmp_path, capsys, monkeypatch):
    """matplotlib adds .png to a name without an extension: the script must name that file, not the bare name."""
    visualize = _example("visualize", monkeypatch)
    written = visualize.main(["--num_images", "1", "--image_size", "32", "--output", str(tmp_path / "noext")])
    assert written == str(tmp_path / "noext.png") and (tmp_path / "noext.png").is_file()
    assert not (tmp_path / "noext").exists()
    assert f"wrote {tmp_path / 'noext.png'} " in capsys.readouterr().out


def test_visualize_decodes_16_bit_and_float_greyscale_as_training_does(tmp_path, monkeypatch):
    """convert("RGB") clips I;16 to white and F to black; the model and the figure must see the grey levels."""
    visualize = _example("visualize", monkeypatch)
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))
    grey16 = Image.fromarray((ramp * 65535).astype(np.uint16))  # I;16 after a PNG round trip
    dataset = _save_images(tmp_path / "grey16", [_png_bytes(grey16)])
    float_set = tmp_path / "float"
    import datasets

    datasets.Dataset.from_dict({"image": [Image.fromarray(ramp, mode="F")]}).save_to_disk(str(float_set))
    seen, real = [], visualize.cls_attention_maps

    def recording(model, pixel_values, layer=-1):
        seen.append(pixel_values)
        return real(model, pixel_values, layer)

    monkeypatch.setattr(visualize, "cls_attention_maps", recording)
    for source in (dataset, str(float_set)):
        visualize.main(["--dataset", source, "--image_size", "32", "--output", str(tmp_path / "maps.png")])
    for pixel_values in seen:  # a left-to-right ramp, not a flat white or black image
        assert pixel_values.std() > 0.5 and pixel_values[0, 0, :, -1].mean() > pixel_values[0, 0, :, 0].mean() + 2


def test_save_attention_figure_draws_16_bit_pil_images_as_their_grey_levels(tmp_path):
    """A PIL I;16 image must be drawn as the RGB image the training decoder makes of it."""
    from pros_hf.data.decoding import open_image_rgb
    from pros_hf.visualization import save_attention_figure

    ramp = np.tile(np.linspace(0, 65535, 16), (16, 1)).astype(np.uint16)
    grey16 = Image.open(io.BytesIO(_png_bytes(Image.fromarray(ramp))))
    grey16.load()
    maps = torch.rand(1, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    from_pil = save_attention_figure([grey16], maps, tmp_path / "pil.png")
    from_rgb = save_attention_figure(np.asarray(open_image_rgb(grey16))[None], maps, tmp_path / "rgb.png")
    with Image.open(from_pil) as first, Image.open(from_rgb) as second:
        assert np.array_equal(np.asarray(first), np.asarray(second))


def test_save_attention_figure_writes_to_a_file_object():
    from pros_hf.visualization import save_attention_figure

    buffer = io.BytesIO()
    save_attention_figure(np.zeros((1, 16, 16, 3), np.uint8), torch.rand(1, 2, 2, 2), buffer)
    assert buffer.getvalue().startswith(b"\x89PNG")


def test_figure_path_adds_png_and_refuses_what_matplotlib_would_mishandle(tmp_path):
    from pros_hf.visualization import figure_path

    assert figure_path(tmp_path / "maps") == str(tmp_path / "maps.png")
    assert figure_path(tmp_path / "maps.pdf") == str(tmp_path / "maps.pdf")
    with pytest.raises(ValueError, match="is a folder"):
        figure_path(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        figure_path(tmp_path / "missing" / "maps.png")


# ---- contact_sheet.py -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num", "0"], "--num must be at least 1"),
        (["--columns", "0"], "--columns must be at least 1"),
        (["--image_size", "16"], "image_size must be in \\[32, 1024\\]"),
        (["--num", "10", "--num_identities", "100"], "num_identities must be in \\[1, 10\\]"),
        (["--pose_scale", "50"], "pose_scale must be a number in \\[0, 1.5\\]"),
        (["--output", "FOLDER"], "--output .*is a folder"),
        (["--output", "MISSING/sheet.png"], "--output .*does not exist"),
        (["--output", "OUT.xyz"], "--output .*cannot write .xyz"),
    ],
)
def test_contact_sheet_refuses_bad_flags_before_rendering(argv, message, tmp_path, monkeypatch):
    contact_sheet = _example("contact_sheet", monkeypatch)
    import pros_hf.data.synthetic as synthetic

    _forbid(monkeypatch, synthetic, "render_face")  # make_synthetic_faces checks its arguments, then renders
    names = {"MISSING": str(tmp_path / "missing"), "FOLDER": str(tmp_path), "OUT": str(tmp_path / "sheet")}
    for key, value in names.items():
        argv = [arg.replace(key, value) for arg in argv]
    with pytest.raises(SystemExit, match=message):
        contact_sheet.main(argv + (["--output", str(tmp_path / "sheet.png")] if "--output" not in argv else []))


def test_contact_sheet_prints_the_file_it_wrote(tmp_path, capsys, monkeypatch):
    contact_sheet = _example("contact_sheet", monkeypatch)
    written = contact_sheet.main(["--num", "2", "--image_size", "32", "--output", str(tmp_path / "sheet")])
    assert written == str(tmp_path / "sheet.png") and (tmp_path / "sheet.png").is_file()
    assert f"wrote {tmp_path / 'sheet.png'} " in capsys.readouterr().out
