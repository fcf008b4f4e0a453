"""`python -m pros_hf.convert`: DINO/timm ViT weights become a ProSModel that computes the same function."""

import argparse
import subprocess
import sys

import pytest
import torch
from torch import nn

from pros_hf import ProSModel
from pros_hf.convert import ConversionError, convert_checkpoint


class DinoBlock(nn.Module):
    """DINO's vision_transformer.Block, written out plainly (the published architecture)."""

    def __init__(self, dim, heads, mlp_dim):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, mlp_dim)
        self.mlp.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x):
        batch, tokens, dim = x.shape
        qkv = self.attn.qkv(self.norm1(x)).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (dim // self.heads) ** -0.5).softmax(dim=-1)
        x = x + self.attn.proj((attn @ v).transpose(1, 2).reshape(batch, tokens, dim))
        return x + self.mlp.fc2(nn.functional.gelu(self.mlp.fc1(self.norm2(x))))


class DinoViT(nn.Module):
    def __init__(self, dim=48, depth=3, heads=3, patch=8, image=32):
        super().__init__()
        grid = image // patch
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, dim) * 0.02)
        self.blocks = nn.ModuleList([DinoBlock(dim, heads, 4 * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


@pytest.fixture
def dino():
    torch.manual_seed(0)
    model = DinoViT().eval()
    with torch.no_grad():  # non-trivial norms and biases, so a mis-mapped key cannot go unnoticed
        for name, parameter in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def test_converted_model_equals_the_reference_forward(dino, tmp_path):
    head = {"head.mlp.0.weight": torch.randn(16, 48), "head.last_layer.weight_g": torch.ones(8, 1)}
    checkpoint = {
        "teacher": {
            **{f"backbone.{k}": v for k, v in dino.state_dict().items()},
            **{f"{k}": v for k, v in head.items()},
        },
        "student": {f"module.backbone.{k}": v + 1 for k, v in dino.state_dict().items()},
        "epoch": 100,
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(checkpoint, path)
    model = convert_checkpoint(str(path), num_attention_heads=3)
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.num_attention_heads) == (48, 3, 3)
    assert (model.config.image_size, model.config.patch_size, model.config.intermediate_size) == (32, 8, 192)
    pixel_values = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(pixel_values).pooler_output, dino(pixel_values), atol=1e-5, rtol=1e-4)
    # the student entry, DDP-prefixed, is reachable with --key
    student = convert_checkpoint(str(path), key="student", num_attention_heads=3)
    assert not torch.allclose(student(pixel_values).pooler_output, dino(pixel_values))


@pytest.mark.slow
def test_cli_writes_a_loadable_model(dino, tmp_path):
    torch.save({f"module.{k}": v for k, v in dino.state_dict().items()}, tmp_path / "weights.pth")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pros_hf.convert",
            "--checkpoint",
            str(tmp_path / "weights.pth"),
            "--output",
            str(tmp_path / "out"),
            "--num_attention_heads",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = ProSModel.from_pretrained(tmp_path / "out")
    pixel_values = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(pixel_values).pooler_output, dino(pixel_values), atol=1e-5, rtol=1e-4)
    assert (tmp_path / "out" / "preprocessor_config.json").exists()


def test_safetensors_input(dino, tmp_path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in dino.state_dict().items()}, tmp_path / "w.safetensors")
    model = convert_checkpoint(str(tmp_path / "w.safetensors"), num_attention_heads=3)
    pixel_values = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model(pixel_values).pooler_output, dino(pixel_values), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_refuses_pickled_objects(dino, tmp_path):
    torch.save({"model": dino.state_dict(), "args": argparse.Namespace(arch="vit_small")}, tmp_path / "full.pth")
    with pytest.raises(ConversionError, match="weights_only=True"):
        convert_checkpoint(str(tmp_path / "full.pth"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pros_hf.convert",
            "--checkpoint",
            str(tmp_path / "full.pth"),
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Refusing to load" in result.stderr and "Traceback" not in result.stderr


def test_refuses_what_a_plain_vit_does_not_have(dino, tmp_path):
    state = dict(dino.state_dict())
    state["blocks.0.ls1.gamma"] = torch.ones(48)
    torch.save(state, tmp_path / "dinov2.pth")
    with pytest.raises(ConversionError, match="ls1.gamma"):
        convert_checkpoint(str(tmp_path / "dinov2.pth"))
    torch.save({"foo": torch.ones(3)}, tmp_path / "other.pth")
    with pytest.raises(ConversionError, match="cls_token"):
        convert_checkpoint(str(tmp_path / "other.pth"))
    with pytest.raises(ConversionError, match="does not exist"):
        convert_checkpoint(str(tmp_path / "missing.pth"))
    state = dict(dino.state_dict())
    del state["blocks.0.mlp.fc1.weight"]
    torch.save(state, tmp_path / "no_mlp.pth")
    with pytest.raises(ConversionError, match="blocks.0.mlp.fc1.weight"):
        convert_checkpoint(str(tmp_path / "no_mlp.pth"))
    with pytest.raises(ValueError, match="num_attention_heads"):
        convert_checkpoint(_save(dino, tmp_path), num_attention_heads=5)  # 48 is not divisible by 5


def _save(model, tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(model.state_dict(), path)
    return str(path)
