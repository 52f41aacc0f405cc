import base64
import json
import re
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)), true);
const origError = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); origError(...a); };
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  const pre = document.createElement('pre'); pre.id = '__probe';
  pre.textContent = JSON.stringify({images: imgs.length, broken: bad, errors: window.__errors});
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.slow
def test_report_is_self_contained(quick_demo):
    run, _ = quick_demo
    page = (run / "report.html").read_text()
    srcs = re.findall(r'src="([^"]+)"', page)
    assert len(srcs) >= 10 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Claims of the sources" in page and "Decoder unpool:" in page and "Accuracy" in page and "<script" not in page
    assert len(list((run / "figures").glob("*.png"))) >= 10


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make setup installs it as root)")
def test_report_renders_in_headless_chromium(quick_demo, tmp_path):
    run, _ = quick_demo
    page = (run / "report.html").read_text().replace("<head>", "<head>" + PROBE, 1)
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(page)
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe_page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="__probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result["images"] >= 10 and result["broken"] == 0 and result["errors"] == []


def test_a_results_file_of_another_shape_is_named_in_one_line(tmp_path):
    from s2snets.errors import DataError
    from s2snets.experiments.schema import Error, Results, problems
    from s2snets.report.html import write_report

    found = problems({"version": "0.1", "accuracy": {"a": {"original": 3}}}, Results)
    assert found[:2] == ["config: missing", "runtime: missing"] and "accuracy.a.original: expected an object, got int" in found
    assert problems({"mse": True, "psnr": 1}, Error) == ["mse: expected float, got bool"]  # JSON true is no number
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "results.json").write_text('{"version": "0.1", "accuracy": {"a": {"original": 3}}}')
    with pytest.raises(DataError, match=r"results.json does not have the shape .*config: missing; .*and \d+ more"):
        write_report(tmp_path)


@pytest.mark.slow
def test_a_calibration_only_run_shows_its_calibration_table(quick_demo, tmp_path):
    """hypothesis.upsamples = []: no real cell, yet the report and the CLI text keep the calibration table and say
    that only the instrument was run."""
    from s2snets.experiments.claims import check_claims
    from s2snets.experiments.hypothesis import verdict_text
    from s2snets.report.html import write_report

    run, _ = quick_demo
    hyp = json.loads((run / "metrics" / "hypothesis.json").read_text())
    hyp.update(cells=[], answer={}, comparisons=[], runs=[])
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "hypothesis.json").write_text(json.dumps(hyp))
    page = write_report(tmp_path).read_text()
    recovered = sum(c["recovered"] for c in hyp["calibration"])
    said = f"no real cell was run; {recovered} of {len(hyp['calibration'])} planted controls recovered"
    assert "<h3>Calibration</h3>" in page and said in page and "Decoder unpool:" not in page
    assert all(f"<td>{c['control']}</td>" in page for c in hyp["calibration"])
    assert said in verdict_text(hyp) and "withheld" not in verdict_text(hyp)
    forum = [c for c in check_claims(None, hyp) if c["source"] == "forum"]
    assert [c["status"] for c in forum] == [
        "not testable here: a calibration-only run has no real cell (s2snets hypothesis --config examples/checkerboard-question.toml)"
    ]
