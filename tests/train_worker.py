"""Helper process for the resume, NaN, Ctrl-C and DDP tests: trains one tiny stage on synthetic data."""

import json
import sys

import torch

from s2snets.config import StageConfig
from s2snets.data import synthetic
from s2snets.errors import S2SNetsError
from s2snets.models import build_classifier, build_segnet
from s2snets.runtime import init_runtime
from s2snets.train import autoencoder_stage, classifier_stage, train_stage


def main() -> int:
    ckpt, steps, out, kind, lr = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
    torch.use_deterministic_algorithms(True, warn_only=True)  # max_unpool2d has no flag, but is exact on CPU
    torch.set_num_threads(1)
    runtime = init_runtime("cpu")
    data = synthetic(256, 16, 4, seed=0)
    torch.manual_seed(0)
    if kind == "ae":
        model = build_segnet("tiny", 1)
        stage = autoencoder_stage("ae", model)
    else:
        model = build_classifier("vgg_s", 4, 1)
        stage = classifier_stage("clf", model)
    cfg = StageConfig(
        epochs=100,
        max_steps=steps,
        batch_size=32,
        lr=lr,
        optimizer="sgd" if lr > 1 else "adam",
        checkpoint_every=3,
        schedule="cosine",
        warmup_steps=2,
    )
    delay = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    stop_at = int(sys.argv[7]) if len(sys.argv) > 7 else 0

    def slow(step: int) -> None:
        if delay:
            import time

            time.sleep(delay)
            print(f"step {step}", flush=True)
        if step == stop_at:  # as if the user pressed Ctrl-C here (every rank at the same step)
            import os
            import signal

            os.kill(os.getpid(), signal.SIGINT)

    try:
        result = train_stage(stage, data, cfg, seed=5, checkpoint=ckpt, key="k", runtime=runtime, progress=False, on_step=slow)
    except S2SNetsError as exc:
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        return exc.exit_code
    weights = {k: v.double().sum().item() for k, v in model.state_dict().items() if v.is_floating_point()}
    if runtime.is_main:
        with open(out, "w") as f:
            json.dump(
                {
                    "weights": weights,
                    "steps": result.steps,
                    "resumed_from": result.resumed_from,
                    "world": runtime.world_size,
                    "loss": result.history,
                },
                f,
            )
    if runtime.distributed:
        import torch.distributed as dist

        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.zeros_like(flat) for _ in range(runtime.world_size)]
        dist.all_gather(gathered, flat)
        if runtime.is_main:
            with open(out + ".sync", "w") as f:
                f.write(str(all(torch.equal(gathered[0], g) for g in gathered)))
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
