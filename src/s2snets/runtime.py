"""Where and how tensors run: device selection, mixed precision, channels-last, and torchrun/DDP wiring."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from s2snets.errors import ConfigError
from s2snets.names import AMP_MODES


@dataclass(frozen=True)
class Runtime:
    """The device, its autocast dtype (None: fp32), memory format, whether training steps are compiled
    (``torch.compile``) and this process's place in a DDP group."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = True
    compile: bool = False
    rank: int = 0
    world_size: int = 1

    @property
    def amp_mode(self) -> str:
        """The amp mode as ``init_runtime`` and the config take it: 'off', 'bf16' or 'fp16' (never 'auto': the mode
        this runtime resolved to), so ``init_runtime(device, runtime.amp_mode)`` rebuilds the same autocast dtype."""
        if self.amp_dtype is None:
            return "off"
        modes = {torch.bfloat16: "bf16", torch.float16: "fp16"}
        if self.amp_dtype not in modes:
            raise ConfigError(f"autocast dtype {self.amp_dtype} has no amp mode; use amp 'off', 'bf16' or 'fp16'")
        return modes[self.amp_dtype]

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def inference_batch(self, image_shape: tuple[int, ...]) -> int:
        """Images per batch for inference on images (C, H, W): on a CPU a batch of about 64 K pixel values, whose
        activations stay in cache (at 32 x 32 a batch of 64 ran the small SegNet 1.7x faster than one of 512, with
        outputs equal bit for bit); on a GPU up to 512 within 32 M values."""
        budget = 1 << 25 if self.device.type == "cuda" else 1 << 16
        return max(1, min(512, budget // math.prod(image_shape)))

    def to_dict(self) -> dict:
        return {
            "device": str(self.device),
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
            "channels_last": self.channels_last,
            "compile": self.compile,
            "world_size": self.world_size,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }


def select_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA (this process's local rank under torchrun), then MPS, then CPU."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but CUDA is not available here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device '{name}' asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device '{name}' asked for, but MPS is not available here; use --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def select_amp(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """'auto': bf16 on CUDA when supported, else off. fp16 is CUDA-only (it needs a GradScaler)."""
    if amp not in AMP_MODES:
        raise ConfigError(f"unknown amp mode '{amp}'; use auto, off, bf16 or fp16")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("amp='fp16' needs CUDA; use 'bf16' or 'off' on this device")
        return torch.float16
    if amp == "auto" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def init_runtime(device: str = "auto", amp: str = "auto", compile: bool = False) -> Runtime:
    """Build the Runtime; under torchrun (WORLD_SIZE > 1) also join the process group (NCCL on CUDA, else gloo)."""
    dev = select_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(
        dev, select_amp(dev, amp), channels_last=dev.type in ("cuda", "cpu"), compile=compile, rank=rank, world_size=world
    )


def barrier(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.barrier()


def shutdown(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()
