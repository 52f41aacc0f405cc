"""SegNet autoencoder: a VGG-style encoder whose max-pool indices drive the decoder's unpooling.

The upsampling layer is one constructor argument, so "the same autoencoder with resize-conv" is one word. The
output has no activation: it lives in the normalised image space of the input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from s2snets.errors import CheckpointError, ModelError
from s2snets.layers.upsample import make_upsample
from s2snets.names import check_registry

SEGNET_PRESETS: dict[str, dict] = {
    # Exactly the published prototype: 13 conv3x3+BN+ReLU encoder layers, five 2x2 max-pools with indices.
    "paper": {"widths": (64, 128, 256, 512, 512), "convs_per_block": (2, 2, 3, 3, 3)},
    # 28-32 px grayscale on a CPU: three blocks.
    "small": {"widths": (16, 32, 64), "convs_per_block": (2, 2, 2)},
    # Unit tests.
    "tiny": {"widths": (8, 16), "convs_per_block": (1, 1)},
}
check_registry("segnet_preset", SEGNET_PRESETS)


def _conv_bn_relu(c_in: int, c_out: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return layers


class SegNetEncoder(nn.Module):
    """(B, C, H, W) -> features (B, widths[-1], H / 2**n, W / 2**n), pooling indices and pre-pool sizes per block."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], convs_per_block: tuple[int, ...], batch_norm: bool = True):
        super().__init__()
        blocks, c = [], in_channels
        for width, n in zip(widths, convs_per_block):
            layers: list[nn.Module] = []
            for _ in range(n):
                layers += _conv_bn_relu(c, width, batch_norm)
                c = width
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor], list[torch.Size]]:
        indices, sizes = [], []
        for block in self.blocks:
            x = block(x)
            sizes.append(x.shape[-2:])
            x, idx = self.pool(x)
            indices.append(idx)
        return x, indices, sizes


class SegNetDecoder(nn.Module):
    """Mirror of the encoder: per block, upsample (C -> C), then conv3x3+BN+ReLU layers; a final 1x1 conv."""

    def __init__(
        self,
        out_channels: int,
        widths: tuple[int, ...],
        convs_per_block: tuple[int, ...],
        upsample: str | type[nn.Module],
        batch_norm: bool = True,
        upsample_kwargs: dict | None = None,
    ):
        super().__init__()
        ups, blocks = [], []
        for i in reversed(range(len(widths))):
            ups.append(make_upsample(upsample, widths[i], 2, **(upsample_kwargs or {})))
            target = widths[i - 1] if i > 0 else widths[0]
            layers: list[nn.Module] = []
            for j in range(convs_per_block[i]):
                layers += _conv_bn_relu(widths[i], target if j == convs_per_block[i] - 1 else widths[i], batch_norm)
            blocks.append(nn.Sequential(*layers))
        self.upsample = nn.ModuleList(ups)
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: Tensor, indices: list[Tensor], sizes: list[torch.Size]) -> Tensor:
        for up, block, idx, size in zip(self.upsample, self.blocks, reversed(indices), reversed(sizes)):
            x = block(up(x, indices=idx, output_size=size))
        return self.head(x)


class SegNet(nn.Module):
    """SegNet autoencoder. (B, C, H, W) -> (B, C, H, W), H and W divisible by 2**len(widths) for exact shapes."""

    def __init__(
        self,
        in_channels: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 512, 512),
        convs_per_block: tuple[int, ...] = (2, 2, 3, 3, 3),
        upsample: str | type[nn.Module] = "unpool",
        batch_norm: bool = True,
        upsample_kwargs: dict | None = None,
    ):
        super().__init__()
        if len(widths) != len(convs_per_block) or not widths:
            raise ModelError("widths and convs_per_block must be non-empty and of the same length")
        self.in_channels, self.widths, self.convs_per_block, self.upsample_name = (
            in_channels,
            tuple(widths),
            tuple(convs_per_block),
            getattr(upsample, "__name__", upsample),
        )
        self.encoder = SegNetEncoder(in_channels, self.widths, self.convs_per_block, batch_norm)
        self.decoder = SegNetDecoder(in_channels, self.widths, self.convs_per_block, upsample, batch_norm, upsample_kwargs)
        self.encoder_frozen = False

    @property
    def arch(self) -> str:
        return (
            f"segnet(in={self.in_channels},widths={list(self.widths)},convs={list(self.convs_per_block)},up={self.upsample_name})"
        )

    def freeze_encoder(self) -> SegNet:
        """The original fine-tuning wiring: encoder in eval mode (BN statistics frozen), no gradients, outputs detached."""
        self.encoder_frozen = True
        self.encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> SegNet:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        z, indices, sizes = self.encoder(x)
        if self.encoder_frozen:
            z, indices = z.detach(), [i.detach() for i in indices]
        return self.decoder(z, indices, sizes)

    def min_input_size(self) -> int:
        return 2 ** len(self.widths)

    def load_vgg16(self, state_dict: dict[str, Tensor]) -> SegNet:
        """Copy the 13 conv layers of torchvision's VGG16 ``features`` into the encoder (paper preset, 3 channels)."""
        vgg_keys = sorted(
            {
                k.rsplit(".", 1)[0]
                for k, v in state_dict.items()
                if k.startswith("features.") and k.endswith(".weight") and v.ndim == 4
            },
            key=lambda k: int(k.split(".")[1]),
        )
        convs = [m for m in self.encoder.modules() if isinstance(m, nn.Conv2d)]
        if len(vgg_keys) != len(convs):
            raise CheckpointError(f"VGG16 state_dict has {len(vgg_keys)} conv layers, the encoder {len(convs)}")
        for key, conv in zip(vgg_keys, convs):
            w = state_dict[f"{key}.weight"]
            if w.shape != conv.weight.shape:
                raise CheckpointError(f"'{key}.weight' has shape {tuple(w.shape)}, encoder conv needs {tuple(conv.weight.shape)}")
            conv.weight.data.copy_(w)
            if conv.bias is not None and f"{key}.bias" in state_dict:
                conv.bias.data.copy_(state_dict[f"{key}.bias"])
        return self


def build_segnet(preset: str = "small", in_channels: int = 1, upsample: str = "unpool", **kwargs) -> SegNet:
    if preset not in SEGNET_PRESETS:
        raise ModelError(f"unknown SegNet preset '{preset}'; choose one of {', '.join(SEGNET_PRESETS)}")
    return SegNet(in_channels=in_channels, upsample=upsample, **SEGNET_PRESETS[preset], **kwargs)
