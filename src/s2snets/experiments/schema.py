"""The shape of what the experiments write and the claims, figures and report read: ``metrics/results.json``
(``Results``) and ``metrics/hypothesis.json`` (``HypothesisResult``).

TypedDicts, so the JSON stays plain dicts (bit-identical files, readable without s2snets) while writers and readers
name the same keys; ``problems(value, Schema)`` lists where a file read back from disk departs from its schema (an
older version's results, a hand-edited file) so a reader can say so in one line instead of failing on a key.
"""

# No ``from __future__ import annotations`` here: TypedDict reads NotRequired[...] from evaluated annotations only.
import types
import typing
from typing import Any, NotRequired, TypedDict

# ----------------------------------------------------------------------------------------------- results.json


class Accuracy(TypedDict):
    top1: float
    top5: float
    per_class: list[float]


class ClassifierAccuracy(TypedDict):
    original: Accuracy
    plain: Accuracy
    finetuned: Accuracy
    lossy_plain: NotRequired[Accuracy]  # the paper's condition, when the run has a lossy autoencoder
    lossy_finetuned: NotRequired[Accuracy]


class Error(TypedDict):
    mse: float
    psnr: float


class Reconstruction(TypedDict):
    plain: Error
    finetuned: dict[str, Error]
    lossy_plain: NotRequired[Error]


class NmiSummary(TypedDict):
    inter_same_class: float
    inter_cross_class: float
    intra: NotRequired[float]  # not for the originals


class Order(TypedDict):
    total_order: bool
    total_preorder: bool
    ranking: list[str]
    incomparable: list[list[str]]
    mutual: list[list[str]]
    intransitive: list[list[str]]


class Transfer(TypedDict):
    names: list[str]
    T: list[list[float]]  # T[A][B]: top-1 of B on the reconstructions of the decoder fine-tuned for A
    RRC: list[list[float]]
    relation: list[list[bool]]
    threshold: float
    order: Order
    lattice: list[dict[str, Any]]
    bootstrap: dict[str, Any]


class Gate(TypedDict):
    name: str
    bar: float
    meets: bool
    text: str


class QualityGates(TypedDict):
    classifiers: list[Gate]
    autoencoder: list[Gate]


class Claim(TypedDict):
    source: str
    claim: str
    measure: str
    value: Any
    status: str  # holds / holds in part / does not hold / inconclusive / "not testable here: reason"
    note: str


class Dataset(TypedDict):
    train: str
    test: str
    train_images: int
    eval_images: int
    classes: list[str]
    channels: int
    size: int
    skipped_files: list[str]


class Answer(TypedDict):
    verdicts: list[str]
    text: str
    status: str


class CalibrationSummary(TypedDict):
    """One planted control as results.json keeps it: the verdict against the truth and the rules' intervals (the
    full row, with its per-classifier numbers, is in hypothesis.json)."""

    control: str
    truth: str
    verdict: str
    recovered: bool
    n: int
    unit: str
    pattern: dict[str, Any]
    band_stop: dict[str, Any]
    frame: dict[str, Any]
    stability: dict[str, Any]


class Results(TypedDict):
    version: str
    config: dict[str, Any]
    runtime: dict[str, Any]
    dataset: Dataset
    classifiers: list[str]
    stages: dict[str, dict[str, Any]]
    accuracy: dict[str, ClassifierAccuracy]
    reconstruction: Reconstruction
    nmi: dict[str, NmiSummary]
    pattern: dict[str, dict[str, Any]]
    pattern_by_family: dict[str, dict[str, Any]]
    gradient_probe: dict[str, dict[str, Any]]
    lint: dict[str, dict[str, Any]]
    transfer: Transfer
    quality: QualityGates
    key: str
    seconds_total: float
    claims: NotRequired[list[Claim]]  # added by pipeline.run_pipeline
    calibration: NotRequired[list[CalibrationSummary]]  # added by pipeline.run_pipeline when the experiment ran
    checkerboard_answer: NotRequired[dict[str, Answer]]  # the same: the answer per decoder kind


# ----------------------------------------------------------------------------------------------- hypothesis.json


class Decision(TypedDict):
    verdict: str
    rule: str
    n: int
    clauses: dict[str, dict[str, Any]]
    geometry: dict[str, Any] | None
    frame: str | None
    undecided: list[str]


class Decided(TypedDict):
    """What the rules decided for a group of classifiers: a real cell's or a planted control's."""

    decision: Decision
    period: int
    unit: str  # "classifier", or "fine-tuning replicate" for a one-classifier cell
    classifiers: list[str]
    probes: list[dict[str, Any]]
    units: dict[str, list[float]]


class Cell(Decided):
    cell: str
    upsample: str


class CalibrationRow(Decided):
    control: str
    truth: str
    strided_truth: str | None
    description: str
    decoder: str
    verdict: str
    recovered: bool
    strength: NotRequired[float]  # a scalable control's multiple of its 0.3 strength (hypothesis.control_strengths)


class Comparison(TypedDict):
    """A family's other downsampling against its native cell, per decoder (Welch intervals)."""

    cell: str
    against: str
    upsample: str
    pattern: dict[str, Any]
    gradient: dict[str, Any]


class HypothesisResult(TypedDict):
    cells: list[Cell]
    calibration: list[CalibrationRow]
    answer: dict[str, Answer]  # per decoder kind
    comparisons: list[Comparison]
    min_ratio: float
    alpha: float
    min_amplitude: float
    runs: list[dict[str, Any]]
    periods: dict[str, int]
    version: str
    config: dict[str, Any]
    image_size: int
    jobs: int
    seconds_total: float
    odena: NotRequired[dict[str, Any]]
    calibration_curve: NotRequired[dict[str, Any]]  # experiments.calibration: per control and strength, k/n recovered
    primary: NotRequired[dict[str, Any]]  # verdict.primary_verdict on the registered primary cell (0.4)
    registration: NotRequired[dict[str, Any]]  # experiments.registration: rules, primary endpoint and cell, n, time
    incomplete: NotRequired[dict[str, int]]  # a shard that left jobs to others: jobs, missing


# ----------------------------------------------------------------------------------------------- checking


def problems(value: Any, schema: Any, where: str = "") -> list[str]:
    """Where ``value`` (JSON read back) departs from ``schema`` (a TypedDict or a typing form): missing keys and
    values of the wrong kind, as ``path: what``. Empty when it conforms. Extra keys are allowed (newer writers).

    >>> problems({"mse": 0.1, "psnr": "x"}, Error)
    ['psnr: expected float, got str']
    >>> problems({"mse": 0.1}, Error)
    ['psnr: missing']
    """
    if typing.is_typeddict(schema):
        if not isinstance(value, dict):
            return [f"{where.rstrip('.') or 'value'}: expected an object, got {type(value).__name__}"]
        out = []
        for key, hint in typing.get_type_hints(schema).items():  # in the order the schema declares them
            if key in value:
                out += problems(value[key], hint, f"{where}{key}.")
            elif key in schema.__required_keys__:
                out.append(f"{where}{key}: missing")
        return out
    return _form_problems(value, schema, where.rstrip("."))


def _form_problems(value: Any, form: Any, where: str) -> list[str]:
    origin, args = typing.get_origin(form), typing.get_args(form)
    if origin is typing.NotRequired:
        return problems(value, args[0], where)
    if form is Any:
        return []
    if origin in (typing.Union, types.UnionType):
        fits = [problems(value, a, where) for a in args]
        return [] if any(not f for f in fits) else fits[0]
    if form is type(None):
        return [] if value is None else [f"{where}: expected null, got {type(value).__name__}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [p for i, v in enumerate(value) for p in problems(v, args[0], f"{where}[{i}].")] if args else []
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        return [p for k, v in value.items() for p in problems(v, args[1], f"{where}.{k}.")] if args else []
    kinds = {float: (int, float), int: (int,), str: (str,), bool: (bool,)}.get(form, (form,))
    if isinstance(value, bool) and form in (int, float):  # JSON true is not a number
        return [f"{where}: expected {form.__name__}, got bool"]
    return [] if isinstance(value, kinds) else [f"{where}: expected {form.__name__}, got {type(value).__name__}"]
