"""The whole pipeline of ``demo`` and ``replicate``: the paper's stages, the checkerboard experiment when asked, the
claims checked against both, and ``metrics/results.json`` written once with all of it."""

from __future__ import annotations

from dataclasses import dataclass

from s2snets.config import RunConfig, validate
from s2snets.experiments.claims import check_claims
from s2snets.experiments.hypothesis import calibration_summary, run_experiment
from s2snets.experiments.replicate import run_stages
from s2snets.experiments.schema import HypothesisResult, Results
from s2snets.rundir import RunDir
from s2snets.runtime import Runtime


@dataclass
class PipelineOutcome:
    results: Results  # metrics/results.json: accuracies, nMI, patterns, transfer, gates, claims
    hypothesis: HypothesisResult | None  # metrics/hypothesis.json, when the checkerboard experiment ran


def run_pipeline(
    config: RunConfig,
    run: RunDir,
    runtime: Runtime,
    *,
    progress: bool = True,
    hypothesis: bool = False,
    jobs: int | None = None,
) -> PipelineOutcome:
    """Run (or resume) every stage, then the checkerboard experiment if ``hypothesis``; check the claims against
    both and write ``results.json`` once (a kill before that point re-runs only the evaluation on resume)."""
    validate(config)  # once, before any work: the steps below take it as checked
    with run.logging():
        results = run_stages(config, run, runtime, progress)
        outcome = run_experiment(config, run, runtime, progress, jobs, None) if hypothesis else None
    results["claims"] = check_claims(results, outcome)
    if outcome is not None and "calibration" in outcome:  # the headline of the experiment beside the claims
        results["calibration"] = calibration_summary(outcome)
        results["checkerboard_answer"] = outcome["answer"]
    if runtime.is_main:
        run.write_json("results", results)
    return PipelineOutcome(results, outcome)
