"""Save/load and the Hub: exact round trips, the Auto classes, and trust_remote_code without the package."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import BLOCK_PROS_HF, install_in_hub_cache
from skimage import data
from transformers import AutoConfig, AutoImageProcessor, AutoModel

from pros_hf import ProSConfig, ProSImageProcessor, ProSModel


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    torch.manual_seed(0)
    model = ProSModel(ProSConfig.from_preset("micro", image_size=48)).eval()
    folder = tmp_path_factory.mktemp("pros-micro")
    model.save_pretrained(folder)
    ProSImageProcessor.from_model_config(model.config).save_pretrained(folder)
    return model, folder


def test_save_load_reproduces_every_tensor_exactly(saved_model):
    model, folder = saved_model
    loaded = ProSModel.from_pretrained(folder)
    original, reloaded = model.state_dict(), loaded.state_dict()
    assert set(original) == set(reloaded)
    for name, tensor in original.items():
        assert torch.equal(tensor, reloaded[name]), name
    # buffers too (none today; the pre-training model adds prototypes and the center)
    assert {n for n, _ in model.named_buffers()} == {n for n, _ in loaded.named_buffers()}


def test_saved_folder_has_auto_map_and_code(saved_model):
    _, folder = saved_model
    files = set(os.listdir(folder))
    assert {
        "config.json",
        "model.safetensors",
        "modeling_pros.py",
        "configuration_pros.py",
        "preprocessor_config.json",
        "image_processing_pros.py",
    } <= files
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "pros"
    assert config["auto_map"] == {"AutoConfig": "configuration_pros.ProSConfig", "AutoModel": "modeling_pros.ProSModel"}
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor["auto_map"] == {"AutoImageProcessor": "image_processing_pros.ProSImageProcessor"}


def test_auto_classes_load_from_the_hub_cache(saved_model):
    model, folder = saved_model
    install_in_hub_cache(folder, "org/pros-vitb")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the Auto path must not warn (no torchvision, offline)
        config = AutoConfig.from_pretrained("org/pros-vitb")
        loaded = AutoModel.from_pretrained("org/pros-vitb")
        processor = AutoImageProcessor.from_pretrained("org/pros-vitb")
    assert isinstance(config, ProSConfig) and isinstance(loaded, ProSModel)
    assert isinstance(processor, ProSImageProcessor)
    pixel_values = processor(data.astronaut(), return_tensors="pt").pixel_values
    assert pixel_values.shape == (1, 3, 48, 48)
    torch.testing.assert_close(loaded(pixel_values).pooler_output, model(pixel_values).pooler_output, rtol=0, atol=0)


REMOTE_CODE_SCRIPT = (
    BLOCK_PROS_HF
    + r"""
import numpy as np, torch
from transformers import AutoImageProcessor, AutoModel
model = AutoModel.from_pretrained("org/pros-vitb", trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained("org/pros-vitb", trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
image = np.load(sys.argv[1])
pixel_values = processor(image, return_tensors="pt").pixel_values
np.save(sys.argv[2], model(pixel_values).pooler_output.detach().numpy())
"""
)


@pytest.mark.slow
def test_trust_remote_code_in_a_process_without_the_package(saved_model, tmp_path, hf_home):
    model, folder = saved_model
    install_in_hub_cache(folder, "org/pros-vitb")
    image = data.astronaut()[::4, ::4]
    np.save(tmp_path / "image.npy", image)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_SCRIPT, str(tmp_path / "image.npy"), str(tmp_path / "features.npy")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = np.load(tmp_path / "features.npy")
    local = model(ProSImageProcessor.from_model_config(model.config)(image, return_tensors="pt").pixel_values)
    np.testing.assert_array_equal(remote, local.pooler_output.detach().numpy())


def test_image_processor_geometry_and_values():
    processor = ProSImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    image = np.zeros((64, 128, 3), dtype=np.uint8)
    image[:, 48:80] = 255  # a white band in the middle: it must survive the center crop
    pixel_values = processor([image, image], return_tensors="pt").pixel_values
    assert pixel_values.shape == (2, 3, 32, 32)
    mean = torch.tensor(processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1)
    restored = pixel_values[0] * std + mean
    assert restored[:, :, 10:22].min() > 0.95 and restored[:, :, :6].max() < 0.05
    # float [0, 1], grayscale and torch CHW inputs all land on the same values
    as_float = processor(image.astype(np.float32) / 255, return_tensors="pt").pixel_values
    as_tensor = processor(torch.from_numpy(image).permute(2, 0, 1), return_tensors="pt").pixel_values
    torch.testing.assert_close(as_float, pixel_values[:1])
    torch.testing.assert_close(as_tensor, pixel_values[:1])
    gray = processor(image[..., 0], return_tensors="pt").pixel_values
    assert gray.shape == (1, 3, 32, 32)


def test_image_processor_bad_inputs():
    processor = ProSImageProcessor()
    with pytest.raises(TypeError, match="PIL images, numpy arrays or torch tensors"):
        processor("not an image")
    with pytest.raises(ValueError, match="unknown arguments"):
        processor(np.zeros((8, 8, 3), np.uint8), do_magic=True)
    with pytest.raises(ValueError, match="resample"):
        ProSImageProcessor(resample="lanczos7")


PRETRAINING_REMOTE_SCRIPT = (
    REMOTE_CODE_SCRIPT.split("import numpy as np, torch")[0]
    + r"""
import torch
from transformers import AutoModelForPreTraining
model = AutoModelForPreTraining.from_pretrained(sys.argv[1], trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
torch.manual_seed(0)
output = model(torch.randn(2, 2, 3, 32, 32), torch.randn(2, 2, 3, 16, 16))
print(repr(float(output.loss)))
"""
)


@pytest.mark.slow
def test_pretraining_checkpoint_loads_with_remote_code_and_its_loss_module(tmp_path):
    from transformers import AutoModelForPreTraining

    from pros_hf import ProSForPreTraining

    torch.manual_seed(0)
    model = ProSForPreTraining(ProSConfig.from_preset("micro")).eval()
    model.save_pretrained(tmp_path / "ckpt")
    assert {"modeling_pros_pretraining.py", "modeling_pros.py", "losses.py", "configuration_pros.py"} <= set(
        os.listdir(tmp_path / "ckpt")
    )
    assert isinstance(AutoModelForPreTraining.from_pretrained(tmp_path / "ckpt"), ProSForPreTraining)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", PRETRAINING_REMOTE_SCRIPT, str(tmp_path / "ckpt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    torch.manual_seed(0)
    expected = model(torch.randn(2, 2, 3, 32, 32), torch.randn(2, 2, 3, 16, 16)).loss.detach()
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(float(expected), rel=1e-6)


def test_image_processor_reads_16_bit_images_and_refuses_ambiguous_values(tmp_path):
    from PIL import Image

    processor = ProSImageProcessor(size=16, crop_size=16, do_normalize=False)
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    with Image.open(tmp_path / "ramp16.png") as png:
        assert png.mode.startswith("I")
        from_png = processor(png, return_tensors="pt").pixel_values
    from_array = processor(ramp, return_tensors="pt").pixel_values
    from_8_bit = processor((ramp // 257).astype(np.uint8), return_tensors="pt").pixel_values
    # a 16-bit ramp is a ramp, not white (PIL's convert("RGB") clips it to 255)
    assert 0.45 < float(from_png.mean()) < 0.55 and float(from_png.max()) <= 1.0
    torch.testing.assert_close(from_png, from_array)
    torch.testing.assert_close(from_array, from_8_bit, atol=1 / 255, rtol=0)
    # an HWC numpy array whose height could be a channel count is read as HWC, like the same pixels as PIL
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    torch.testing.assert_close(
        processor(rgb, return_tensors="pt").pixel_values,
        processor(Image.fromarray(rgb), return_tensors="pt").pixel_values,
    )
    for bad, message in (
        (np.ones((8, 8), bool), "boolean mask"),
        (torch.randn(3, 8, 8), "normalised inputs"),
        (np.full((8, 8, 3), 300, np.int32), "8-bit values"),
        (np.zeros((0, 0, 3), np.uint8), "empty"),
    ):
        with pytest.raises(ValueError, match=message):
            processor(bad)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(size={"height": 32, "width": 32}), "shortest_edge"),
        (dict(crop_size="big"), "crop_size"),
        (dict(image_mean=[0.5]), "image_mean"),
        (dict(image_std=[0, 0, 0]), "image_std"),
        (dict(rescale_factor=0), "rescale_factor"),
    ],
)
def test_image_processor_arguments_name_what_is_wrong(arguments, message):
    with pytest.raises(ValueError, match=message):
        ProSImageProcessor(**arguments)
    assert ProSImageProcessor(size=32, crop_size=32).crop_size == {"height": 32, "width": 32}


def test_processor_of_a_non_square_model_crops_without_padding():
    from PIL import Image

    config = ProSConfig.from_preset("micro", image_size=[32, 48])
    processor = ProSImageProcessor.from_model_config(config, do_normalize=False)
    pixel_values = processor(Image.new("RGB", (100, 100), "white"), return_tensors="pt").pixel_values
    assert pixel_values.shape == (1, 3, 32, 48) and float(pixel_values.min()) > 0.99  # no black padding


def test_exported_teacher_names_only_the_code_its_folder_holds(tmp_path):
    from pros_hf import ProSForPreTraining

    model = ProSForPreTraining(ProSConfig.from_preset("micro"))
    model.save_pretrained(tmp_path / "checkpoint")  # writes auto_map into the model's config
    backbone = model.export_teacher()
    assert backbone.config is not model.config
    backbone.save_pretrained(tmp_path / "backbone")
    auto_map = json.loads((tmp_path / "backbone" / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel"}
    assert all((tmp_path / "backbone" / f"{entry.split('.')[0]}.py").is_file() for entry in auto_map.values())


def test_image_processor_keeps_valid_overshoot_and_16_bit_tensors_and_reads_wide_modes_as_training_does(tmp_path):
    import io

    from PIL import Image

    from pros_hf.data.decoding import open_image_rgb

    processor = ProSImageProcessor(size=16, crop_size=16, do_normalize=False)
    # a [0, 255] float image resized bicubically rings past both ends at a sharp edge: still an image
    edge = torch.zeros(3, 32, 32)
    edge[:, :, 16:] = 255.0
    ringing = torch.nn.functional.interpolate(edge[None], size=(64, 64), mode="bicubic", align_corners=False)[0]
    assert float(ringing.min()) < -10 and float(ringing.max()) > 265
    pixel_values = processor(ringing, return_tensors="pt").pixel_values
    assert float(pixel_values.min()) == 0.0 and float(pixel_values.max()) == 1.0
    # torch uint16 is scaled like numpy uint16 (torch has no min/max for it)
    sixteen = torch.full((3, 20, 20), 65535 // 2, dtype=torch.int32).to(torch.uint16)
    torch.testing.assert_close(
        processor(sixteen, return_tensors="pt").pixel_values,
        processor(sixteen.numpy().astype(np.uint16), return_tensors="pt").pixel_values,
    )
    # mode I / F images are scaled by the training decoder's rule: inference sees the pixels pre-training saw
    for array, mode in (
        (np.arange(400, dtype=np.int32).reshape(20, 20) % 200, "I"),
        (np.linspace(0, 90, 400, dtype=np.float32).reshape(20, 20), "F"),
    ):
        buffer = io.BytesIO()
        Image.fromarray(array, mode=mode).save(buffer, format="TIFF")
        image = Image.open(io.BytesIO(buffer.getvalue()))
        decoded = processor(open_image_rgb(buffer.getvalue()), return_tensors="pt").pixel_values
        torch.testing.assert_close(processor(image, return_tensors="pt").pixel_values, decoded)
