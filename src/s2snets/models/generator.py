"""A small image generator for Odena's initialisation probe: the last ``n_transposed`` of its upsampling stages are
transposed convolutions (k=3, s=2), the others nearest resize-convolutions."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from s2snets.layers.upsample import make_upsample


class ProbeGenerator(nn.Module):
    """z (B, latent) -> image (B, channels, 4 * 2**stages, same). Each stage: upsample x2 -> conv3x3 -> ReLU."""

    def __init__(self, latent: int = 64, channels: int = 1, width: int = 32, stages: int = 3, n_transposed: int = 0):
        super().__init__()
        if not 0 <= n_transposed <= stages:
            raise ValueError(f"n_transposed must be in 0..{stages}")
        self.latent, self.width = latent, width
        self.project = nn.Linear(latent, width * 16)
        self.ups = nn.ModuleList(
            make_upsample("transposed" if i >= stages - n_transposed else "resize_conv", width, 2) for i in range(stages)
        )
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(stages))
        self.head = nn.Conv2d(width, channels, 1)

    def forward(self, z: Tensor) -> Tensor:
        x = torch.relu(self.project(z)).view(-1, self.width, 4, 4)
        for up, conv in zip(self.ups, self.convs):
            x = torch.relu(conv(up(x)))
        return self.head(x)


class ProbeAutoencoder(nn.Module):
    """A generator trained as a decoder: global 4x4 average pooling + linear code -> ProbeGenerator.

    The encoder has no strided convolutions, so artifacts in the output come from the generator alone.
    """

    def __init__(self, channels: int = 1, n_transposed: int = 0, latent: int = 64):
        super().__init__()
        self.encode = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * channels, latent))
        self.generator = ProbeGenerator(latent, channels, n_transposed=n_transposed)
        self.arch = f"probe-autoencoder(transposed={n_transposed})"

    def forward(self, x: Tensor) -> Tensor:
        out = self.generator(self.encode(x))
        return out[..., : x.shape[-2], : x.shape[-1]]
