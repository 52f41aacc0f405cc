"""The claims table's status rules, each driven by numbers built to reach it (no run needed)."""

from s2snets.experiments.claims import check_claims


def _results(cost_points: list[float], lossy_cost: list[float] | None = None, share: float = 0.0) -> dict:
    names = [f"c{i}" for i in range(len(cost_points))]
    acc = {}
    for i, n in enumerate(names):
        top1 = lambda t: {"top1": t, "top5": 1.0, "per_class": []}  # noqa: E731
        acc[n] = {"original": top1(0.9), "plain": top1(0.9 + cost_points[i] / 100), "finetuned": top1(0.9)}
        if lossy_cost is not None:
            acc[n] |= {"lossy_plain": top1(0.9 + lossy_cost[i] / 100), "lossy_finetuned": top1(0.9)}
    transfer = {"threshold": 0.9, "order": {"ranking": names}, "bootstrap": {"families": names, "total_order_share": share,
                                                                              "draws": 200}}  # fmt: skip
    return {"classifiers": names, "accuracy": acc, "transfer": transfer, "quality": {"classifiers": [], "autoencoder": []}}


def _row(claims: list[dict], start: str) -> dict:
    return next(c for c in claims if c["claim"].startswith(start))


def test_the_order_is_not_testable_on_reconstructions_that_cost_nothing():
    near_lossless = _row(check_claims(_results([-0.5, 0.4, -0.2, 0.1]), None), "Transfer between classifiers")
    assert near_lossless["status"].startswith("not testable here: the reconstructions the transfer matrix is built on")
    costly = _row(check_claims(_results([-3.0, -2.5, -3.5, -2.8], share=0.0), None), "Transfer between classifiers")
    assert costly["status"] == "does not hold"
    costly = _row(check_claims(_results([-3.0, -2.5, -3.5, -2.8], share=0.97), None), "Transfer between classifiers")
    assert costly["status"] == "holds"


def test_the_cost_row_says_it_rests_on_the_lossy_autoencoder():
    row = _row(check_claims(_results([-0.1, 0.2, -0.3], lossy_cost=[-3.0, -2.0, -4.0]), None), "The plain autoencoder")
    assert row["status"] == "holds" and "lossy autoencoder (pretrained briefly on purpose" in row["note"]
    row = _row(check_claims(_results([-3.0, -2.0, -4.0]), None), "The plain autoencoder")
    assert row["status"] == "holds" and "lossy" not in row["note"]


def test_a_single_value_prints_without_an_infinite_interval():
    from s2snets.experiments.claims import format_value

    assert format_value({"mean": 0.5, "low": float("-inf"), "high": float("inf"), "n": 1}) == "+0.50 (n = 1: no interval)"
    assert format_value({"mean": 0.5, "low": 0.1, "high": 0.9, "n": 3}) == "+0.50 [+0.10, +0.90] (n = 3)"
