"""ProSForLandmarkDetection: facial landmarks from the ProS backbone, by heatmaps + soft-argmax or direct regression.

The heatmap decoder follows FaRL (features of several ViT blocks) and VitPose's simple decoder (upsample the patch
grid, one convolution per point): the patch tokens of the `landmark_feature_layers` blocks are layer-normalised,
concatenated on channels as a grid, fused by a 1x1 convolution, upsampled `landmark_heatmap_scale_factor` times
(bilinear), refined by a 3x3 convolution and mapped to one heatmap per point by a 1x1 convolution. The coordinates
are the soft-argmax of each heatmap (the expectation under its spatial softmax), so the model is trained end to end on
them: loss = L1(coordinates) + `landmark_heatmap_loss_weight` * KL(Gaussian target || spatial softmax) (DSNT, Nibali
et al. 2018). `landmark_decoder="regression"` instead maps CLS + mean patch token through an MLP to sigmoid
coordinates, loss L1.

Coordinate convention (inputs and outputs): `(batch, num_landmarks, 2)` normalised (x, y) in [0, 1] relative to the
width and height of `pixel_values`, with the image spanning [0, 1] edge to edge: pixel column `i` covers
[i / W, (i + 1) / W], so a point at pixel coordinate x (pixel centres at integers, the convention of
`pros_hf.data.synthetic` and `pros_hf.augmentation.landmarks`) is `u = (x + 0.5) / W`. `normalize_landmarks` and
`denormalize_landmarks` convert; the convention holds at any input size, so predictions for a resized input
denormalise to any resolution of the same crop.

Copied next to the weights by `save_pretrained` for `trust_remote_code=True` users: torch, transformers and
relative imports only.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import ModelOutput

from .configuration_pros import ProSConfig
from .modeling_pros import ProSModel, ProSPreTrainedModel
from .modeling_pros_heads import head_from_backbone


@dataclass
class ProSLandmarkDetectionOutput(ModelOutput):
    """
    loss (`torch.FloatTensor` of shape `()`, returned with `landmarks`): coordinate L1, plus the weighted heatmap KL
        for the heatmap decoder.
    landmarks (`torch.FloatTensor` of shape `(batch_size, num_landmarks, 2)`): predicted normalised (x, y) in [0, 1].
    heatmaps (`torch.FloatTensor` of shape `(batch_size, num_landmarks, height, width)`): heatmap logits (a softmax
        over each map's pixels gives the distribution the coordinates are the mean of), at
        `landmark_heatmap_scale_factor` times the patch grid, as VitPose's `heatmaps`; None for regression.
    hidden_states, attentions: as `ProSModel`'s, when requested.
    """

    loss: torch.FloatTensor | None = None
    landmarks: torch.FloatTensor | None = None
    heatmaps: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def normalize_landmarks(points, image_size) -> torch.Tensor:
    """Pixel (x, y) (pixel centres at integers) -> normalised [0, 1] coordinates of an image of `image_size`
    (height, width): `u = (x + 0.5) / width`, `v = (y + 0.5) / height`."""
    points = torch.as_tensor(points, dtype=torch.float32)
    height, width = image_size
    return (points + 0.5) / points.new_tensor([width, height])


def denormalize_landmarks(landmarks, image_size) -> torch.Tensor:
    """Inverse of `normalize_landmarks`: normalised coordinates -> pixel (x, y) of an image of (height, width)."""
    landmarks = torch.as_tensor(landmarks, dtype=torch.float32)
    height, width = image_size
    return landmarks * landmarks.new_tensor([width, height]) - 0.5


def _cell_centres(size: int, reference: torch.Tensor) -> torch.Tensor:
    return (torch.arange(size, device=reference.device, dtype=torch.float32) + 0.5) / size


def soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """(B, N, H, W) heatmap logits -> (B, N, 2) normalised (x, y): the mean of cell centres `(j + 0.5) / W` under
    each map's spatial softmax (computed in float32)."""
    probabilities = heatmaps.float().flatten(2).softmax(dim=-1).view(heatmaps.shape)
    x = (probabilities.sum(dim=2) * _cell_centres(heatmaps.shape[-1], heatmaps)).sum(dim=-1)
    y = (probabilities.sum(dim=3) * _cell_centres(heatmaps.shape[-2], heatmaps)).sum(dim=-1)
    return torch.stack((x, y), dim=-1)


def gaussian_log_heatmaps(landmarks: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """(B, N, 2) normalised points -> (B, N, height, width) log-probabilities of Gaussians of std `sigma` cells centred
    on them, normalised over the map (in log space, so points far outside the map still give a valid target)."""
    x = landmarks[..., 0:1].float() * width - 0.5  # in cell indices
    y = landmarks[..., 1:2].float() * height - 0.5
    columns = torch.arange(width, device=landmarks.device, dtype=torch.float32)
    rows = torch.arange(height, device=landmarks.device, dtype=torch.float32)
    log_x = -((columns - x) ** 2) / (2 * sigma**2)  # (B, N, W)
    log_y = -((rows - y) ** 2) / (2 * sigma**2)  # (B, N, H)
    log_x = log_x - log_x.logsumexp(dim=-1, keepdim=True)
    log_y = log_y - log_y.logsumexp(dim=-1, keepdim=True)
    return log_y[..., :, None] + log_x[..., None, :]


class ProSLandmarkHeatmapDecoder(nn.Module):
    """Patch tokens of several blocks -> one heatmap per landmark, `landmark_heatmap_scale_factor` x the patch grid."""

    def __init__(self, config: ProSConfig):
        super().__init__()
        self.layer_indices = config.landmark_hidden_state_indices()
        width = config.landmark_decoder_hidden_size
        self.norms = nn.ModuleList(
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) for _ in self.layer_indices
        )
        self.fuse = nn.Conv2d(config.hidden_size * len(self.layer_indices), width, kernel_size=1)
        self.scale_factor = config.landmark_heatmap_scale_factor
        self.refine = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.activation = nn.GELU()
        self.heatmaps = nn.Conv2d(width, config.num_landmarks, kernel_size=1)

    def forward(self, hidden_states: tuple[torch.Tensor, ...], grid_size: tuple[int, int]) -> torch.Tensor:
        features = torch.cat(
            [norm(hidden_states[index][:, 1:]) for norm, index in zip(self.norms, self.layer_indices)], dim=-1
        )
        features = features.transpose(1, 2).reshape(features.shape[0], -1, *grid_size)
        features = self.activation(self.fuse(features))
        features = F.interpolate(features, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        return self.heatmaps(self.activation(self.refine(features)))


class ProSLandmarkRegressionDecoder(nn.Module):
    """CLS + mean patch token of the final-norm output -> MLP -> sigmoid (x, y) per landmark."""

    def __init__(self, config: ProSConfig):
        super().__init__()
        self.num_landmarks = config.num_landmarks
        self.mlp = nn.Sequential(
            nn.Linear(2 * config.hidden_size, config.landmark_decoder_hidden_size),
            nn.GELU(),
            nn.Linear(config.landmark_decoder_hidden_size, 2 * config.num_landmarks),
        )

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((sequence_output[:, 0], sequence_output[:, 1:].mean(dim=1)), dim=-1)
        return self.mlp(pooled).float().sigmoid().view(-1, self.num_landmarks, 2)


class ProSForLandmarkDetection(ProSPreTrainedModel):
    """ProS backbone + landmark decoder (see the module docstring for the decoders, the loss and the coordinates).

    Build it from a pre-trained backbone with `ProSForLandmarkDetection.from_backbone(folder_or_model,
    num_landmarks=68)`. With transformers' `Trainer`, name the target column `landmarks` and set
    `label_names=["landmarks"]`, or name it `labels` (an alias).
    """

    # the loss is a per-batch mean that ignores `num_items_in_batch`: tell transformers' Trainer to scale it for
    # gradient accumulation itself
    accepts_loss_kwargs = False

    def __init__(self, config: ProSConfig):
        config.ensure_section("landmark_config")  # the saved config.json then holds every field the decoder read
        super().__init__(config)
        self.pros = ProSModel(config)
        if config.landmark_decoder == "heatmap":
            self.decoder = ProSLandmarkHeatmapDecoder(config)
        else:
            self.decoder = ProSLandmarkRegressionDecoder(config)
        self.post_init()

    @classmethod
    def from_backbone(cls, pretrained, **config_overrides) -> "ProSForLandmarkDetection":
        """A landmark head on the backbone of `pretrained`: a `ProSModel` or its folder / Hub id, a fine-tuned head's
        folder, or a pre-training checkpoint (`ProSForPreTraining` or its folder, whose EMA teacher is taken).
        `config_overrides` (e.g. `num_landmarks=98`, `landmark_decoder="regression"`) are the landmark fields; the
        rest comes from the backbone's config. The decoder is freshly initialised."""
        return head_from_backbone(cls, pretrained, **config_overrides)

    def _check_landmarks(self, landmarks, batch_size: int) -> torch.Tensor:
        if not isinstance(landmarks, torch.Tensor):
            raise TypeError(
                f"ProSForLandmarkDetection expects `landmarks` as a torch.Tensor, got {type(landmarks).__name__}."
            )
        expected = (batch_size, self.config.num_landmarks, 2)
        if tuple(landmarks.shape) != expected:
            raise ValueError(
                f"ProSForLandmarkDetection expects landmarks of shape (batch={batch_size}, num_landmarks="
                f"{self.config.num_landmarks}, 2), got {tuple(landmarks.shape)}; a data set with another number of "
                "points needs a head built with that num_landmarks."
            )
        landmarks = landmarks.float()
        finite = torch.isfinite(landmarks).all(dim=(1, 2))
        in_range = ((landmarks >= -0.5) & (landmarks <= 1.5)).all()
        if bool(finite.all() & in_range):  # one host sync per batch when all is well
            return landmarks
        if not finite.all():
            rows = (~finite).nonzero().flatten().tolist()
            raise ValueError(f"Landmark targets contain NaN or infinite values in batch rows {rows[:5]}.")
        if not in_range:
            raise ValueError(
                "Landmark targets must be normalised to the input, (x + 0.5) / width and (y + 0.5) / height, got "
                f"values in [{float(landmarks.min()):.3g}, {float(landmarks.max()):.3g}]; convert pixel coordinates "
                "with pros_hf.normalize_landmarks(points, (height, width))."
            )
        return landmarks

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        landmarks: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> ProSLandmarkDetectionOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`): normalised images;
            any size (square or not) that is a multiple of `patch_size`.
        landmarks (`torch.FloatTensor` of shape `(batch_size, num_landmarks, 2)`, *optional*): normalised (x, y)
            targets (see the module docstring); gives `loss`. Points a little outside the image (pushed out by
            augmentation) are fine; values beyond [-0.5, 1.5] are refused, as they are almost surely pixels.
        labels (*optional*): alias of `landmarks`, for trainers that pass targets as `labels`.
        """
        if labels is not None:
            if landmarks is not None:
                raise ValueError("Pass the landmark targets as `landmarks` or as `labels`, not both.")
            landmarks = labels
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        self.pros._check_pixel_values(pixel_values)
        if landmarks is not None:
            landmarks = self._check_landmarks(landmarks, pixel_values.shape[0])

        heatmap_decoder = self.config.landmark_decoder == "heatmap"
        outputs = self.pros(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=heatmap_decoder or output_hidden_states,
            return_dict=True,
        )
        heatmaps = None
        if heatmap_decoder:
            patch_height, patch_width = self.pros.embeddings.patch_embeddings.patch_size
            grid_size = (pixel_values.shape[-2] // patch_height, pixel_values.shape[-1] // patch_width)
            heatmaps = self.decoder(outputs.hidden_states, grid_size)
            predicted = soft_argmax(heatmaps)
        else:
            predicted = self.decoder(outputs.last_hidden_state)

        loss = None
        if landmarks is not None:
            loss = F.l1_loss(predicted, landmarks)
            if heatmap_decoder and self.config.landmark_heatmap_loss_weight > 0:
                log_target = gaussian_log_heatmaps(
                    landmarks, heatmaps.shape[-2], heatmaps.shape[-1], self.config.landmark_heatmap_sigma
                ).flatten(2)
                log_predicted = heatmaps.float().flatten(2).log_softmax(dim=-1)
                kl = (log_target.exp() * (log_target - log_predicted)).sum(dim=-1).mean()
                loss = loss + self.config.landmark_heatmap_loss_weight * kl

        output = ProSLandmarkDetectionOutput(
            loss=loss,
            landmarks=predicted,
            heatmaps=heatmaps,
            hidden_states=outputs.hidden_states if output_hidden_states else None,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "ProSForLandmarkDetection",
    "ProSLandmarkDetectionOutput",
    "denormalize_landmarks",
    "gaussian_log_heatmaps",
    "normalize_landmarks",
    "soft_argmax",
]
