"""JUnit XML of a scenario run: the format CI systems (GitHub, GitLab, Jenkins) show as tests."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from voicebridge.scenarios.suite import Outcome


def junit_xml(results: Sequence[Outcome], suite: str = "voicebridge") -> str:
    failed = sum(1 for r in results if not r.passed)
    root = ET.Element("testsuites", tests=str(len(results)), failures=str(failed), errors="0")
    node = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(failed),
        errors="0",
        skipped="0",
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(
            node,
            "testcase",
            name=r.scenario.name,
            classname=Path(r.scenario.source).stem or "scenario",
            file=r.scenario.source,
            time=f"{r.seconds:.3f}",
        )
        if r.failures:
            failure = ET.SubElement(case, "failure", message=r.failures[0], type="ScenarioFailed")
            failure.text = "\n".join(r.failures)
        if r.verdict:
            ET.SubElement(case, "system-out").text = r.verdict
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
