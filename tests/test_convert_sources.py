"""`python -m pros_hf.convert` on CLIP (transformers and OpenAI / open_clip / FaRL layouts) and DINOv2 (with and
without registers): the converted ProSModel computes the source's features, loads anywhere, carries the source's
image processor, continues pre-training, and every wrong input ends in one line naming it."""

import contextlib
import copy
import io
import json

import numpy as np
import pytest
import torch
from conftest import install_in_hub_cache, run_without_pros_hf
from transformers import (
    AutoModel,
    BertConfig,
    BertModel,
    BitImageProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
)

from pros_hf import ProSImageProcessor, ProSModel
from pros_hf.convert import ConversionError, convert_model, main
from pros_hf.training.initialization import pretraining_model

VISION = dict(
    hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
)
TEXT = dict(
    hidden_size=24,
    intermediate_size=40,
    num_hidden_layers=1,
    num_attention_heads=2,
    vocab_size=50,
    max_position_embeddings=12,
)
DINOV2 = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, image_size=32, patch_size=8)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
# a DINOv2 processor with statistics and sizes of its own, to see them carried over
DINOV2_PROCESSOR = dict(
    size={"shortest_edge": 40},
    crop_size={"height": 32, "width": 32},
    image_mean=[0.5, 0.4, 0.3],
    image_std=[0.2, 0.25, 0.3],
)


def randomised(model):
    """Random values where initialisation puts constants (norms, biases, layer scales, tokens), so that a parameter
    the converter misses or misplaces changes the output."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 1 or "token" in name or "embedding" in name:
                parameter.add_(torch.randn_like(parameter) * 0.3)
    return model.eval()


def openai_layout(vision_state: dict) -> dict:
    """A CLIPVisionModel's weights in the published OpenAI CLIP layout (`clip/model.py`: VisionTransformer with
    conv1, class_embedding, positional_embedding, ln_pre, transformer.resblocks.N with nn.MultiheadAttention's
    in_proj / out_proj, ln_1, mlp.c_fc, mlp.c_proj, ln_2, then ln_post and proj), beside a text tower, as a full CLIP
    state dict holds it."""
    s = {name.removeprefix("vision_model."): value for name, value in vision_state.items()}
    out = {
        "visual.class_embedding": s["embeddings.class_embedding"],
        "visual.positional_embedding": s["embeddings.position_embedding.weight"],
        "visual.conv1.weight": s["embeddings.patch_embedding.weight"],
        "visual.ln_pre.weight": s["pre_layrnorm.weight"],
        "visual.ln_pre.bias": s["pre_layrnorm.bias"],
        "visual.ln_post.weight": s["post_layernorm.weight"],
        "visual.ln_post.bias": s["post_layernorm.bias"],
        "visual.proj": torch.randn(32, 16),
    }
    for i in range(VISION["num_hidden_layers"]):
        hf, oa = f"encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{oa}attn.in_proj_{kind}"] = torch.cat([s[f"{hf}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            out[f"{oa}attn.out_proj.{kind}"] = s[f"{hf}self_attn.out_proj.{kind}"]
            out[f"{oa}ln_1.{kind}"] = s[f"{hf}layer_norm1.{kind}"]
            out[f"{oa}ln_2.{kind}"] = s[f"{hf}layer_norm2.{kind}"]
            out[f"{oa}mlp.c_fc.{kind}"] = s[f"{hf}mlp.fc1.{kind}"]
            out[f"{oa}mlp.c_proj.{kind}"] = s[f"{hf}mlp.fc2.{kind}"]
    return {**out, **text_tower()}


def text_tower() -> dict:
    return {
        "token_embedding.weight": torch.randn(50, 24),
        "positional_embedding": torch.randn(12, 24),
        "transformer.resblocks.0.attn.in_proj_weight": torch.randn(72, 24),
        "ln_final.weight": torch.ones(24),
        "text_projection": torch.randn(24, 16),
        "logit_scale": torch.tensor(4.6),
    }


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Each source format written to disk, with the reference model that computes its features."""
    root = tmp_path_factory.mktemp("sources")
    clip = randomised(CLIPModel(CLIPConfig(vision_config=VISION, text_config=TEXT, projection_dim=16)))
    clip.save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "clip")
    torch.save({"state_dict": openai_layout(clip.vision_model.state_dict()), "epoch": 64}, root / "farl.pth")
    dinov2 = randomised(Dinov2Model(Dinov2Config(**DINOV2, layerscale_value=0.5)))
    dinov2.save_pretrained(root / "dinov2")
    BitImageProcessor(**DINOV2_PROCESSOR).save_pretrained(root / "dinov2")
    registers = randomised(Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**DINOV2, num_register_tokens=2)))
    registers.save_pretrained(root / "registers")
    hub_id = "org/dinov2-registers-micro"
    install_in_hub_cache(root / "registers", hub_id)
    return {
        "transformers-clip": (str(root / "clip"), clip.vision_model),
        "openai-clip": (str(root / "farl.pth"), clip.vision_model),
        "transformers-dinov2": (str(root / "dinov2"), dinov2),
        "registers": (hub_id, registers),
    }


@pytest.fixture(scope="module")
def converted(sources, tmp_path_factory):
    """Each source converted by the command line, in this process: {name: (output folder, stdout)}."""
    root = tmp_path_factory.mktemp("converted")
    folders = {}
    for name, (source, _) in sources.items():
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            # a state dict does not record the head count: OpenAI's rule (width / 64) gives 1 for this micro width
            heads = ["--num_attention_heads", "4"] if name == "openai-clip" else []
            assert main(["--checkpoint", source, "--output", str(root / name), *heads]) == 0
        folders[name] = (root / name, stdout.getvalue())
    return folders


def reference_features(name, reference, pixel_values):
    """(CLS feature, un-normalised last-block tokens or None, final-norm tokens) of the source, registers left out."""
    if name in ("transformers-clip", "openai-clip"):
        output = reference(pixel_values, interpolate_pos_encoding=True)
        return output.pooler_output, output.last_hidden_state, reference.post_layernorm(output.last_hidden_state)
    output = reference(pixel_values)
    registers = getattr(reference.config, "num_register_tokens", 0)
    tokens = torch.cat((output.last_hidden_state[:, :1], output.last_hidden_state[:, 1 + registers :]), dim=1)
    return output.pooler_output, None, tokens


@pytest.mark.parametrize("name", ["transformers-clip", "openai-clip", "transformers-dinov2", "registers"])
@pytest.mark.parametrize("side", [32, 48])  # 48: position embeddings interpolated, by both models
def test_converted_features_equal_the_sources(sources, converted, name, side):
    folder, stdout = converted[name]
    expected_format = "transformers-dinov2" if name == "registers" else name
    assert f"from a {expected_format} source" in stdout  # the command line detected the format
    model = ProSModel.from_pretrained(folder).eval()
    _, reference = sources[name]
    pixel_values = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(side))
    with torch.no_grad():
        pooled, last_block, tokens = reference_features(name, reference, pixel_values)
        output = model(pixel_values, output_hidden_states=True)
    torch.testing.assert_close(output.pooler_output, pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.last_hidden_state, tokens, atol=1e-5, rtol=1e-5)
    if last_block is not None:  # CLIP's last_hidden_state comes before its post_layernorm
        torch.testing.assert_close(output.hidden_states[-1], last_block, atol=1e-5, rtol=1e-5)
    assert output.last_hidden_state.shape[1] == 1 + (side // 8) ** 2


def test_the_architecture_fields_come_from_the_source(converted):
    configs = {name: ProSModel.from_pretrained(folder).config for name, (folder, _) in converted.items()}
    for name in ("transformers-clip", "openai-clip"):
        config = configs[name]
        assert config.use_pre_layernorm and config.hidden_act == "quick_gelu" and config.layer_norm_eps == 1e-5
        assert config.layerscale_value is None and config.num_register_tokens == 0
    for name in ("transformers-dinov2", "registers"):
        config = configs[name]
        assert not config.use_pre_layernorm and config.hidden_act == "gelu" and config.layerscale_value is not None
        assert config.intermediate_size == 64 and config.use_mask_token
    assert configs["registers"].num_register_tokens == 2 and configs["registers"].interpolate_antialias
    assert configs["transformers-dinov2"].num_register_tokens == 0
    assert not configs["transformers-dinov2"].interpolate_antialias


def test_the_image_processor_carries_the_sources_statistics_and_size(converted):
    for name in ("transformers-clip", "openai-clip"):
        processor = ProSImageProcessor.from_pretrained(converted[name][0])
        np.testing.assert_allclose(processor.image_mean, CLIP_MEAN)
        np.testing.assert_allclose(processor.image_std, CLIP_STD)
        assert processor.size == {"shortest_edge": 32} and processor.crop_size == {"height": 32, "width": 32}
    processor = ProSImageProcessor.from_pretrained(converted["transformers-dinov2"][0])
    np.testing.assert_allclose(processor.image_mean, DINOV2_PROCESSOR["image_mean"])
    np.testing.assert_allclose(processor.image_std, DINOV2_PROCESSOR["image_std"])
    assert processor.size == {"shortest_edge": 40} and processor.crop_size == {"height": 32, "width": 32}
    assert processor.resample == "bicubic"


@pytest.mark.parametrize("variant", ["bare", "module", "visual_only"])
def test_openai_layouts_without_a_state_dict_entry(sources, tmp_path, variant):
    source, reference = sources["openai-clip"]
    state = torch.load(source, weights_only=True)["state_dict"]
    if variant == "module":
        state = {f"module.{name}": value for name, value in state.items()}
    elif variant == "visual_only":
        state = {name.removeprefix("visual."): value for name, value in state.items() if name.startswith("visual.")}
    torch.save(state, tmp_path / "clip.pt")
    converted = convert_model(tmp_path / "clip.pt", num_attention_heads=4)
    assert converted.source_format == "openai-clip"
    pixel_values = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            converted.model(pixel_values).pooler_output, reference(pixel_values).pooler_output, atol=1e-5, rtol=1e-5
        )


def test_open_clip_layer_scale_and_activation(sources, tmp_path):
    """open_clip's layer scale (`ls_1.gamma`, `ls_2.gamma`) is converted: a branch scaled by gamma equals one whose
    output projection's rows are scaled by it, which the reference gets. The activation, which the weights do not
    record, is given (`--hidden_act gelu` for open_clip's LAION models)."""
    source, reference = sources["openai-clip"]
    reference = copy.deepcopy(reference)
    state = torch.load(source, weights_only=True)["state_dict"]
    torch.manual_seed(2)
    with torch.no_grad():
        for index, layer in enumerate(reference.encoder.layers):
            for branch, projection in (("ls_1", layer.self_attn.out_proj), ("ls_2", layer.mlp.fc2)):
                gamma = torch.rand(32) + 0.5
                state[f"visual.transformer.resblocks.{index}.{branch}.gamma"] = gamma
                projection.weight.mul_(gamma[:, None])
                projection.bias.mul_(gamma)
    torch.save(state, tmp_path / "open_clip.bin")
    model = convert_model(tmp_path / "open_clip.bin", num_attention_heads=4).model
    assert model.config.layerscale_value is not None
    pixel_values = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model(pixel_values).pooler_output, reference(pixel_values).pooler_output, atol=1e-5, rtol=1e-5
        )
    gelu = convert_model(tmp_path / "open_clip.bin", num_attention_heads=4, hidden_act="gelu").model
    assert gelu.config.hidden_act == "gelu"


REMOTE_SCRIPT = r"""
import sys, numpy as np, torch
from transformers import AutoModel
pixel_values = torch.from_numpy(np.load(sys.argv[1]))
for index, folder in enumerate(sys.argv[3:]):
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    np.save(f"{sys.argv[2]}_{index}.npy", model(pixel_values).pooler_output.detach().numpy())
"""


def test_converted_folders_load_with_auto_model_with_and_without_the_package(converted, tmp_path):
    pixel_values = torch.randn(2, 3, 32, 32)
    np.save(tmp_path / "pixels.npy", pixel_values.numpy())
    folders = [folder for folder, _ in converted.values()]
    expected = []
    for folder in folders:
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            expected.append(model(pixel_values).pooler_output.numpy())
        torch.testing.assert_close(
            torch.from_numpy(expected[-1]),
            ProSModel.from_pretrained(folder).eval()(pixel_values).pooler_output.detach(),
        )
    run_without_pros_hf(REMOTE_SCRIPT, tmp_path / "pixels.npy", tmp_path / "pooled", *folders, cwd=tmp_path)
    for index, values in enumerate(expected):
        np.testing.assert_allclose(np.load(tmp_path / f"pooled_{index}.npy"), values, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["transformers-clip", "registers"])
def test_pretraining_starts_from_a_converted_folder(converted, name):
    folder, _ = converted[name]
    backbone = ProSModel.from_pretrained(folder)
    torch.manual_seed(0)
    model = pretraining_model(
        48,
        model_name_or_path=str(folder),
        num_prototypes=16,
        head_hidden_size=32,
        head_bottleneck_size=16,
        drop_path_rate=0.1,
    )
    expected = backbone.state_dict()
    expected["embeddings.position_embeddings"] = backbone.embeddings.interpolate_pos_encoding(6, 6, torch.float32)
    for part in (model.student, model.teacher):
        state = part.state_dict()
        assert set(state) == set(expected)
        for key, value in expected.items():
            torch.testing.assert_close(state[key], value, msg=key)
    model.train()
    generator = torch.Generator().manual_seed(0)
    output = model(torch.randn(2, 2, 3, 48, 48, generator=generator), torch.randn(2, 2, 3, 16, 16, generator=generator))
    assert torch.isfinite(output.loss)
    output.loss.backward()
    new_parameters = [
        name
        for name in dict(model.student.named_parameters())
        if "pre_layernorm" in name or "layer_scale" in name or "register_tokens" in name
    ]
    assert new_parameters
    for parameter_name in new_parameters:
        gradient = model.student.get_parameter(parameter_name).grad
        assert gradient is not None and gradient.abs().sum() > 0, parameter_name


def test_the_pretrain_example_continues_from_a_converted_folder(converted, tmp_path):
    from test_training import TINY_RUN, load_pretrain_example

    folder, _ = converted["registers"]
    example = load_pretrain_example()
    example.main(
        [
            *TINY_RUN,
            "--num_local_crops",
            "0",
            "--knn_synthetic_images",
            "0",
            "--max_steps",
            "2",
            "--model_name_or_path",
            str(folder),
            "--output_dir",
            str(tmp_path / "run"),
        ]
    )
    exported = sorted(path for path in (tmp_path / "run").rglob("config.json") if "ProSModel" in path.read_text())
    assert exported, sorted(p.name for p in (tmp_path / "run").iterdir())
    config = json.loads(exported[0].read_text())
    assert config["num_register_tokens"] == 2 and config["layerscale_value"] is not None


# --------------------------------------------------------------------------------------------------------------------
# wrong inputs: one line, naming the source


def one_line_error(capsys, source, tmp_path) -> str:
    capsys.readouterr()  # what building the source printed
    assert main(["--checkpoint", str(source), "--output", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    message = captured.err.strip()
    assert "\n" not in message and message.startswith(f"error: {source}: "), captured.err
    assert not (tmp_path / "out").exists()
    return message


def test_an_unknown_format_lists_the_accepted_ones(tmp_path, capsys):
    torch.save({"foo.weight": torch.ones(3)}, tmp_path / "other.pth")
    message = one_line_error(capsys, tmp_path / "other.pth", tmp_path)
    assert "unknown checkpoint format" in message and "OpenAI CLIP" in message and "Dinov2Model" in message


def test_truncated_files(sources, tmp_path, capsys):
    data = open(sources["openai-clip"][0], "rb").read()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    assert "truncated" in one_line_error(capsys, tmp_path / "cut.pth", tmp_path)
    safetensors = open(f"{sources['transformers-clip'][0]}/model.safetensors", "rb").read()
    (tmp_path / "cut.safetensors").write_bytes(safetensors[: len(safetensors) // 2])
    assert "truncated" in one_line_error(capsys, tmp_path / "cut.safetensors", tmp_path)
    folder = tmp_path / "cut_clip"
    folder.mkdir()
    (folder / "config.json").write_text(open(f"{sources['transformers-clip'][0]}/config.json").read())
    (folder / "model.safetensors").write_bytes(safetensors[: len(safetensors) // 2])
    assert "cannot be loaded" in one_line_error(capsys, folder, tmp_path)


def test_a_folder_of_another_model_type(tmp_path, capsys):
    BertModel(
        BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=30)
    ).save_pretrained(tmp_path / "bert")
    message = one_line_error(capsys, tmp_path / "bert", tmp_path)
    assert "'bert' model folder" in message and "accepted are" in message


def test_clip_text_only_checkpoints(tmp_path, capsys):
    CLIPTextModel(CLIPTextConfig(**TEXT)).save_pretrained(tmp_path / "text")
    assert "text-only" in one_line_error(capsys, tmp_path / "text", tmp_path)
    torch.save({"state_dict": text_tower()}, tmp_path / "text.pth")
    assert "text-only" in one_line_error(capsys, tmp_path / "text.pth", tmp_path)


def test_missing_sources_and_flags_that_do_not_apply(sources, tmp_path, capsys):
    assert "does not exist" in one_line_error(capsys, tmp_path / "missing.pth", tmp_path)
    (tmp_path / "empty").mkdir()
    assert "config.json" in one_line_error(capsys, tmp_path / "empty", tmp_path)
    assert "config.json" in one_line_error(capsys, "org/not-cached", tmp_path)
    CLIPVisionModel(CLIPVisionConfig(**VISION)).save_pretrained(tmp_path / "vision")
    (tmp_path / "vision" / "model.safetensors").rename(tmp_path / "model.safetensors")
    assert "pass the folder" in one_line_error(capsys, tmp_path / "model.safetensors", tmp_path)
    with pytest.raises(ConversionError, match="weights files only"):
        convert_model(sources["transformers-dinov2"][0], num_attention_heads=2)
    with pytest.raises(ConversionError, match="hidden_act"):
        convert_model(sources["openai-clip"][0], hidden_act="not_an_activation")
