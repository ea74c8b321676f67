"""Every shipped pipeline has an example scenario, and every example scenario is run in CI:
the offline ones by ``.ci/run`` (``voicebridge test examples/scenarios``), the cloud ones by
``test_cloud_scenarios.py`` against the providers' local fakes (``.ci/run`` runs pytest)."""

from __future__ import annotations

import re
from pathlib import Path

from voicebridge.scenarios.spec import load_scenario

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples/scenarios"
CLOUD_TESTS = Path(__file__).with_name("test_cloud_scenarios.py")


def run_in_ci() -> dict[Path, str]:
    """Each example scenario CI runs, and how: the top-level folder by ``voicebridge test``
    (it reads no subfolders), ``cloud/<name>.yaml`` by the cloud scenario tests."""
    ci = (REPO / ".ci/run").read_text()
    assert re.search(r"^voicebridge test examples/scenarios ", ci, re.M)
    assert re.search(r"&& pytest -q$", ci, re.M)
    runs = {path: "voicebridge test" for path in EXAMPLES.glob("*.yaml")}
    source = CLOUD_TESTS.read_text()
    for name in re.findall(r'CLOUD / "([\w-]+\.yaml)"', source):
        runs[EXAMPLES / "cloud" / name] = "test_cloud_scenarios.py"
    return runs


def test_every_shipped_pipeline_has_a_scenario_run_in_ci() -> None:
    covered: dict[str, list[str]] = {}
    for path in sorted(run_in_ci()):
        scenario = load_scenario(path)
        pipeline = scenario.resolve(scenario.pipeline).resolve()
        covered.setdefault(pipeline.name, []).append(path.name)
    shipped = sorted(p.name for p in (REPO / "pipelines").glob("*.yaml"))
    assert shipped, "no shipped pipelines found"
    missing = [name for name in shipped if name not in covered]
    assert missing == [], f"shipped pipelines without a scenario run in CI: {missing}"


def test_every_cloud_example_is_run_by_the_cloud_tests() -> None:
    runs = run_in_ci()
    idle = [p.name for p in sorted((EXAMPLES / "cloud").glob("*.yaml")) if p not in runs]
    assert idle == [], f"cloud scenarios no test runs: {idle}"
