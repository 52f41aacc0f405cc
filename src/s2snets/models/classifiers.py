"""The classifier zoo: torchvision architectures and four small-image families, with pluggable downsampling.

``build_classifier(name, num_classes, in_channels, downsample=None, weights=None)`` is the one entry point.
``downsample`` rewrites every downsampling site (a Conv2d or pooling layer with stride > 1) and nothing else:

| site \\ kind      | strided_conv      | max_pool                | avg_pool               | blur_pool                    |
|------------------|-------------------|-------------------------|------------------------|------------------------------|
| Conv2d stride s  | unchanged         | conv stride 1 + MaxPool(s, s) | conv stride 1 + AvgPool(s, s) | conv stride 1 + BlurPool(s) |
| MaxPool(k, s)    | Conv2d(C, C, k, s) | unchanged              | AvgPool(k, s)          | MaxPool(k, 1) + BlurPool(s)  |
| AvgPool(k, s)    | Conv2d(C, C, k, s) | MaxPool(k, s)          | unchanged              | BlurPool(s)                  |

The BlurPool column is Zhang's (2019) recipe. A replaced site becomes a ``DownsampleSite`` container under the same
name, so every other module keeps its name, type and parameters.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from s2snets.checkpoint import check_state_fits, load_user_weights
from s2snets.errors import CheckpointError, ModelError
from s2snets.layers.downsample import BlurPool
from s2snets.names import DOWNSAMPLINGS, check_registry
from s2snets.names import SMALL_FAMILIES as SMALL_FAMILY_NAMES


def _cbr(c_in: int, c_out: int, k: int, s: int = 1, p: int | None = None) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, s, k // 2 if p is None else p, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class AlexNetS(nn.Module):
    """AlexNet's character at 32 px: a large first kernel with a stride (7x7/2, uneven overlap), overlapping 3x3/2
    max-pools, a 5x5 conv, three 3x3 convs and a dropout MLP head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_cbr(in_channels, w, 7, 2, 3),
            nn.MaxPool2d(3, 2, 1),
            *_cbr(w, 2 * w, 5),
            nn.MaxPool2d(3, 2, 1),
            *_cbr(2 * w, 3 * w, 3),
            *_cbr(3 * w, 3 * w, 3),
            *_cbr(3 * w, 2 * w, 3),
            nn.MaxPool2d(3, 2, 1),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(0.3), nn.Linear(8 * w, 4 * w), nn.ReLU(inplace=True), nn.Linear(4 * w, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VGGS(nn.Module):
    """VGG's character: 3x3 stride-1 convs and 2x2 max-pools only (no uneven overlap); three blocks."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in (width, 2 * width, 4 * width):
            layers += _cbr(c, w, 3) + _cbr(w, w, 3) + [nn.MaxPool2d(2, 2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetS(nn.Module):
    """ResNet's character: residual stages entered by stride-2 3x3 convs with 1x1 stride-2 shortcuts (which skip
    three of every four inputs)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(*_cbr(in_channels, width, 3))
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.layer3 = BasicBlock(2 * width, 4 * width, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InceptionReduction(nn.Module):
    """Parallel branches that halve the size: 3x3/2 conv | 1x1 -> 3x3 -> 3x3/2 | 3x3/2 max-pool, concatenated."""

    def __init__(self, c_in: int, c_branch: int):
        super().__init__()
        self.branch3 = nn.Sequential(*_cbr(c_in, c_branch, 3, 2))
        self.branch_dbl = nn.Sequential(*_cbr(c_in, c_branch, 1), *_cbr(c_branch, c_branch, 3), *_cbr(c_branch, c_branch, 3, 2))
        self.branch_pool = nn.MaxPool2d(3, 2, 1)
        self.out_channels = 2 * c_branch + c_in

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch3(x), self.branch_dbl(x), self.branch_pool(x)], 1)


class InceptionBlock(nn.Module):
    """Stride-1 mixing: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 avg-pool -> 1x1, concatenated."""

    def __init__(self, c_in: int, c: int):
        super().__init__()
        self.b1 = nn.Sequential(*_cbr(c_in, c, 1))
        self.b3 = nn.Sequential(*_cbr(c_in, c, 1), *_cbr(c, c, 3))
        self.b5 = nn.Sequential(*_cbr(c_in, c, 1), *_cbr(c, c, 5))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), *_cbr(c_in, c, 1))
        self.out_channels = 4 * c

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class InceptionS(nn.Module):
    """Inception's character: stride-2 convs working in parallel with stride-1 paths and a pooling branch."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(*_cbr(in_channels, width, 3))
        self.mixed1 = InceptionBlock(width, width // 2)
        self.reduce1 = InceptionReduction(self.mixed1.out_channels, width)
        self.mixed2 = InceptionBlock(self.reduce1.out_channels, width)
        self.reduce2 = InceptionReduction(self.mixed2.out_channels, width)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.reduce2.out_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduce2(self.mixed2(self.reduce1(self.mixed1(self.stem(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ----------------------------------------------------------------------------------------------- torchvision
def _torchvision(name: str) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, in_channels: int) -> nn.Module:
        from torchvision import models

        kwargs: dict = {"weights": None, "num_classes": num_classes}
        if name == "inception_v3":
            kwargs.update(aux_logits=False, init_weights=False)
        model = getattr(models, name)(**kwargs)
        if in_channels != 3:
            _replace_first_conv(model, in_channels)
        return model

    return build


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                setattr(
                    parent,
                    child_name,
                    nn.Conv2d(
                        in_channels,
                        child.out_channels,
                        child.kernel_size,
                        child.stride,
                        child.padding,
                        child.dilation,
                        child.groups,
                        child.bias is not None,
                    ),
                )
                return


CLASSIFIERS: dict[str, Callable[[int, int], nn.Module]] = {
    "alexnet_s": lambda n, c: AlexNetS(n, c),
    "vgg_s": lambda n, c: VGGS(n, c),
    "resnet_s": lambda n, c: ResNetS(n, c),
    "inception_s": lambda n, c: InceptionS(n, c),
    "alexnet": _torchvision("alexnet"),
    "vgg16": _torchvision("vgg16"),
    "vgg16_bn": _torchvision("vgg16_bn"),
    "resnet50": _torchvision("resnet50"),
    "inception_v3": _torchvision("inception_v3"),
}
# Smallest input each torchvision model accepts (its native size is 224; inception_v3's 299).
MIN_INPUT = {"alexnet": 63, "vgg16": 32, "vgg16_bn": 32, "resnet50": 32, "inception_v3": 75}
DOWNSAMPLE_KINDS = DOWNSAMPLINGS
check_registry("classifier", CLASSIFIERS)


# ----------------------------------------------------------------------------------------------- downsampling
class DownsampleSite(nn.Module):
    """A rewritten downsampling site: the stride-1 operation (if any), then the chosen downsampling layer."""

    def __init__(self, *layers: nn.Module, kind: str, stride: int):
        super().__init__()
        self.ops = nn.Sequential(*layers)
        self.kind, self.stride = kind, stride

    def forward(self, x: Tensor) -> Tensor:
        return self.ops(x)


def _stride(m: nn.Module) -> int:
    s = getattr(m, "stride", 1)
    s = s[0] if isinstance(s, tuple | list) else s
    return int(s or 1)


def downsampling_sites(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv2d, MaxPool2d or AvgPool2d with stride > 1, in definition order."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d)
        and _stride(m) > 1
        and not any(name.startswith(n + ".") for n, site in model.named_modules() if isinstance(site, DownsampleSite))
    ]


def _pool_channels(model: nn.Module, example: Tensor) -> dict[str, int]:
    """Input channel count of every pooling site, found with one forward pass under hooks."""
    channels: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, n=name: channels.__setitem__(n, inp[0].shape[1]))
        for name, m in model.named_modules()
        if isinstance(m, nn.MaxPool2d | nn.AvgPool2d)
    ]
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(example)
            model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return channels


def _rewrite(name: str, m: nn.Module, kind: str, channels: dict[str, int]) -> nn.Module:
    s = _stride(m)
    if isinstance(m, nn.Conv2d):
        if kind == "strided_conv":
            return m
        stride1 = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, 1, m.padding, m.dilation, m.groups, m.bias is not None)
        pool = {"max_pool": nn.MaxPool2d(s, s), "avg_pool": nn.AvgPool2d(s, s), "blur_pool": BlurPool(3, s)}[kind]
        return DownsampleSite(stride1, pool, kind=kind, stride=s)
    k, p = m.kernel_size, m.padding
    if (kind == "max_pool" and isinstance(m, nn.MaxPool2d)) or (kind == "avg_pool" and isinstance(m, nn.AvgPool2d)):
        return m
    if kind == "strided_conv":
        c = channels[name]
        return DownsampleSite(nn.Conv2d(c, c, k, s, p), kind=kind, stride=s)
    if kind == "max_pool":
        return DownsampleSite(nn.MaxPool2d(k, s, p), kind=kind, stride=s)
    if kind == "avg_pool":
        return DownsampleSite(nn.AvgPool2d(k, s, p), kind=kind, stride=s)
    if isinstance(m, nn.MaxPool2d):  # blur_pool: MaxBlurPool
        return DownsampleSite(nn.MaxPool2d(k, 1, p), BlurPool(3, s), kind=kind, stride=s)
    return DownsampleSite(BlurPool(3, s), kind=kind, stride=s)


def replace_downsampling(model: nn.Module, kind: str, example: Tensor) -> nn.Module:
    """Rewrite every downsampling site of ``model`` in place as ``kind`` (table in the module docstring).

    ``example``: an input batch (1, C, H, W), used to find the channel count of pooling sites.
    """
    if kind not in DOWNSAMPLE_KINDS:
        raise ModelError(f"unknown downsampling '{kind}'; choose one of {', '.join(DOWNSAMPLE_KINDS)}")
    if kind == "native":
        return model
    sites = downsampling_sites(model)
    channels = _pool_channels(model, example) if kind == "strided_conv" else {}
    for name, m in sites:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _rewrite(name, m, kind, channels))
    return model


# ----------------------------------------------------------------------------------------------- entry point
def _import_factory(spec: str) -> Callable[..., nn.Module]:
    """``package.module:factory`` -> the callable. Whatever importing the user's module does (a syntax error, an
    exception, ``sys.exit``) is a ModelError naming the spec, never the command's own exit."""
    module_name, _, attr = spec.partition(":")
    if (
        not module_name
        or module_name.startswith(".")
        or not attr.isidentifier()
        or not all(part.isidentifier() for part in module_name.split("."))
    ):
        raise ModelError(f"'{spec}' is not package.module:factory (an absolute module path and a function name)")
    try:
        factory = getattr(_import_from_here(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"cannot import model factory '{spec}': {exc}") from None
    except SyntaxError as exc:
        raise ModelError(f"the module of '{spec}' has a syntax error: {exc.msg} (line {exc.lineno})") from None
    except (Exception, SystemExit) as exc:  # its own code ran and failed
        raise ModelError(f"importing the module of '{spec}' raised {type(exc).__name__}: {str(exc)[:300]}") from None
    if not callable(factory):
        raise ModelError(f"'{spec}' is not callable")
    return factory


def _import_from_here(module_name: str):
    """``importlib.import_module``, looking in the current folder too, as ``python -m`` does: ``s2snets lint
    mymodels:make`` run beside ``mymodels.py`` finds it. The folder is searched after the installed packages."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        here = os.getcwd()
        if exc.name != module_name.split(".")[0] or here in sys.path:
            raise
        sys.path.append(here)
        try:
            return importlib.import_module(module_name)
        finally:
            sys.path.remove(here)


def _call_factory(spec: str, factory: Callable[..., nn.Module], *, num_classes: int, in_channels: int) -> nn.Module:
    """Call a user's model factory once: ``factory(num_classes=..., in_channels=...)``, the second only when its
    signature names it (torchvision's builders take ``num_classes`` through ``**kwargs``, and no ``in_channels``).

    This runs the user's code, by design. A callable that cannot take ``num_classes`` is refused before it is
    called; whatever the factory raises is reported as its own error.
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        raise ModelError(f"'{spec}' has no inspectable signature; a model factory is a Python function or class") from None
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "num_classes" not in params and not takes_kwargs:
        raise ModelError(
            f"'{spec}' does not take num_classes=; a model factory is called as factory(num_classes=K[, in_channels=C])"
        )
    kwargs = {"num_classes": num_classes}
    if "in_channels" in params:
        kwargs["in_channels"] = in_channels
    try:
        return factory(**kwargs)
    except (Exception, SystemExit) as exc:
        raise ModelError(f"the model factory '{spec}' raised {type(exc).__name__}: {str(exc)[:300]}") from None


def check_classifier(model: nn.Module, name: str, num_classes: int, in_channels: int, size: int, device=None) -> None:
    """One batch of zeros (2, C, size, size) through ``model`` in eval mode, before any work: it must return float32
    logits (2, num_classes). ModelError naming the model, what it returned and what was expected otherwise (a model
    returning K + 3 logits, one logit, a tuple or a feature map would otherwise run a whole pipeline)."""
    params = list(model.parameters())
    if not params:
        raise ModelError(f"'{name}' has no parameters; a classifier maps (B, {in_channels}, H, W) to logits (B, {num_classes})")
    dtypes = {p.dtype for p in params}
    if dtypes != {torch.float32}:
        raise ModelError(f"'{name}' has parameters of {sorted(map(str, dtypes))}; convert it with model.float() (float32)")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, in_channels, size, size, device=device or params[0].device))
    except Exception as exc:
        raise ModelError(
            f"'{name}' cannot run on (2, {in_channels}, {size}, {size}) inputs: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or out.shape != (2, num_classes) or out.dtype != torch.float32:
        got = f"{tuple(out.shape)} {out.dtype}" if isinstance(out, Tensor) else type(out).__name__
        raise ModelError(f"'{name}' returned {got} for a batch of 2; a classifier must return float32 logits (2, {num_classes})")


def _library_model(name: str, num_classes: int, in_channels: int) -> nn.Module:
    """Any other torchvision classification model by name (``torchvision.models.get_model``), else a timm model when
    timm is installed; random weights. ModelError naming the choices otherwise."""
    from torchvision import models

    if name in models.list_models(module=models):
        try:
            model = models.get_model(name, weights=None, num_classes=num_classes)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"torchvision could not build '{name}' with {num_classes} classes: {exc}") from None
        if in_channels != 3:
            _replace_first_conv(model, in_channels)
        return model
    try:
        import timm  # optional: timm's names too
    except ImportError:
        timm = None  # type: ignore[assignment]
    if timm is not None and name in timm.list_models():
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
    raise ModelError(
        f"unknown classifier '{name}'; choose one of {', '.join(CLASSIFIERS)}, any torchvision classification model "
        "(torchvision.models.list_models()), a timm model (with timm installed) or 'package.module:factory'"
    )


def default_input_size(name: str) -> int:
    """The usual input side: 224 for torchvision architectures (299 for inception_v3), 32 for the small families."""
    return 32 if name in SMALL_FAMILY_NAMES else {"inception_v3": 299}.get(name, 224)


def build_classifier(
    name: str,
    num_classes: int = 10,
    in_channels: int = 1,
    downsample: str | None = None,
    weights: str | Path | None = None,
    input_size: int | None = None,
) -> nn.Module:
    """A classifier by zoo name or ``"package.module:factory"`` (called with num_classes=, in_channels=).

    ``weights``: a local safetensors or ``.pth`` file (read with ``weights_only=True``), or ``"DEFAULT"`` for the
    torchvision weights enum (needs the internet or a filled torch hub cache).
    """
    if ":" in name:
        model = _call_factory(name, _import_factory(name), num_classes=num_classes, in_channels=in_channels)
    elif name in CLASSIFIERS:
        model = CLASSIFIERS[name](num_classes, in_channels)
    else:
        model = _library_model(name, num_classes, in_channels)
    if not isinstance(model, nn.Module):
        raise ModelError(f"'{name}' did not build an nn.Module")
    if weights == "DEFAULT":
        from torchvision.models import get_model_weights

        try:
            state = get_model_weights(name).DEFAULT.get_state_dict(progress=False)
        except Exception as exc:
            raise ModelError(f"cannot fetch torchvision weights for '{name}' (offline?): {exc}") from None
        model.load_state_dict(state)
    elif weights:
        state = load_user_weights(weights)
        check_state_fits(model.state_dict(), state, str(weights))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{weights} does not fit '{name}': {str(exc).splitlines()[0]}") from None
    if downsample and downsample != "native":
        size = input_size or default_input_size(name)
        replace_downsampling(model, downsample, torch.zeros(1, in_channels, size, size))
    if ":" in name and input_size:  # a user's model: its outputs checked before any work uses them
        check_classifier(model, name, num_classes, in_channels, input_size)
    model.arch = f"{name}(classes={num_classes},in={in_channels},down={downsample or 'native'})"  # type: ignore[assignment]
    return model
