"""Draw docs/figures/layers.png: every upsampling and downsampling layer's output for a constant input and for an
impulse, at initialisation (run: python docs/make_layer_figures.py)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from s2snets.layers import UPSAMPLE, make_downsample, make_upsample  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    constant = torch.ones(1, 1, 8, 8)
    impulse = torch.zeros(1, 1, 8, 8)
    impulse[..., 4, 4] = 1
    rows = []
    for name in UPSAMPLE:
        layer = make_upsample(name, 1, 2)
        if name == "transposed":
            layer.conv.weight.data.fill_(1.0)  # the Distill picture: all-ones kernel, k=3, s=2
            layer.conv.bias.data.zero_()
        with torch.no_grad():
            if name == "unpool":
                outs = []
                for x in (constant, impulse):
                    pooled, idx = F.max_pool2d(torch.nn.functional.pad(x, (0, 8, 0, 8)), 2, 2, return_indices=True)
                    outs.append(layer(pooled[..., :8, :8], indices=idx[..., :8, :8], output_size=[16, 16]))
            else:
                outs = [layer(constant), layer(impulse)]
        rows.append((f"up: {name}", outs))
    big_constant, big_impulse = torch.ones(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    big_impulse[..., 8, 8] = 1
    for name in ("strided_conv", "max_pool", "avg_pool", "blur_pool"):
        layer = make_downsample(name, 1)
        if name == "strided_conv":
            layer.weight.data.fill_(1.0)
            layer.bias.data.zero_()
        x = big_constant.clone().requires_grad_(True)
        with torch.no_grad():
            out_impulse = layer(big_impulse)
        layer(x).sum().backward()  # where a uniform upstream gradient lands: the backward overlap map
        rows.append((f"down: {name}", [out_impulse, x.grad]))
    fig, axes = plt.subplots(len(rows), 2, figsize=(4.6, 1.9 * len(rows)))
    for r, (label, (a, b)) in enumerate(rows):
        up = label.startswith("up")
        titles = ("output, constant input", "output, impulse") if up else ("output, impulse", "input gradient, constant input")
        for c, (img, title) in enumerate(((a, titles[0]), (b, titles[1]))):
            axes[r, c].imshow(img[0, 0].detach().numpy(), cmap="viridis")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            axes[r, c].set_title(title, fontsize=6)
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.tight_layout()
    out = Path(__file__).with_name("figures")
    out.mkdir(exist_ok=True)
    fig.savefig(out / "layers.png", dpi=100)
    print(out / "layers.png")


if __name__ == "__main__":
    main()
