"""An autoencoder with no grid: stride-1 convolutions only, no pooling, no upsampling.

Every layer is translation-equivariant at the pixel scale, so nothing in it prefers one phase of a period-P lattice
over another: it is the decoder the checkerboard experiment's "none" control needs (fine-tuned through a
smooth-gradient classifier, no lattice has any source). It has the fine-tuning interface of ``SegNet``: a
``decoder`` submodule and ``freeze_encoder()``. (B, C, H, W) -> (B, C, H, W), any H and W.
"""

from __future__ import annotations

from torch import Tensor, nn


def _layers(c_in: int, c_out: int, depth: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [
            nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
    return layers


class FlatAutoencoder(nn.Module):
    """Encoder: ``depth`` conv3x3 + BN + ReLU layers of ``width`` channels; decoder: as many, then a 1x1 conv to the
    input's channels (no activation: the output lives in the normalised image space, as SegNet's)."""

    def __init__(self, in_channels: int = 1, width: int = 16, depth: int = 2):
        super().__init__()
        self.in_channels, self.width, self.depth = in_channels, width, depth
        self.encoder = nn.Sequential(*_layers(in_channels, width, depth))
        self.decoder = nn.Sequential(*_layers(width, width, depth), nn.Conv2d(width, in_channels, 1))
        self.encoder_frozen = False

    @property
    def arch(self) -> str:
        return f"flat(in={self.in_channels},width={self.width},depth={self.depth})"

    def freeze_encoder(self) -> FlatAutoencoder:
        """Encoder in eval mode with no gradients and a detached output, as SegNet's fine-tuning wiring."""
        self.encoder_frozen = True
        self.encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> FlatAutoencoder:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        z = self.encoder(x)
        return self.decoder(z.detach() if self.encoder_frozen else z)
