"""The licences of what each extra installs, read from the installed wheels' metadata.

For every runtime requirement of the core install and of each extra in ``pyproject.toml``, and
everything those require in turn, this prints the installed version and the licence the wheel
declares: ``License-Expression`` first, then a short ``License`` field, then the ``License ::``
classifiers, then the names of the licence files in its ``.dist-info``. Copyleft licences
(GPL, AGPL, LGPL) and packages that declare nothing are flagged, so a team shipping a product
sees at a glance what it is agreeing to. A wheel's metadata covers its own code only: the shared
libraries it bundles (auditwheel's ``<name>.libs/`` folder) are listed by name under it, since
their licences can differ (PyAV's wheel bundles FFmpeg, x264 and x265). Model data packages are
listed like any other package; what their model cards say is in docs/licensing.md.

Run it in the environment you ship::

    python tools/licenses.py                     # every extra, as a table
    python tools/licenses.py offline redis       # just these
    python tools/licenses.py --installed         # every installed distribution (the image's list)
    python tools/licenses.py --markdown > THIRD_PARTY.md

Exit status 0; a requirement that is not installed is listed as "not installed".
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
CORE = "core"
_SHORT = 80  # a License field longer than this is the licence's text, not its name


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    version: str
    license: str
    flag: str  # "", "GPL", "AGPL", "LGPL" or "unknown"
    via: str  # the requirement chain that brought it in
    bundled: tuple[str, ...] = ()  # native libraries vendored into the wheel


def bundled_libraries(dist: metadata.Distribution) -> tuple[str, ...]:
    """Shared libraries the wheel vendors (``<name>.libs/libfoo-1a2b3c4d.so.1``), by name."""
    names = set()
    for file in dist.files or ():
        parts = str(file).split("/")
        if len(parts) == 2 and parts[0].endswith(".libs") and ".so" in parts[1]:
            names.add(re.sub(r"-[0-9a-f]{8}(?=\.)", "", parts[1]).split(".so")[0])
    return tuple(sorted(names))


def declared_license(dist: metadata.Distribution) -> str:
    """What the wheel says its licence is, from the most precise field it fills in."""
    meta = dist.metadata
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    field = (meta.get("License") or "").strip()
    if field and "\n" not in field and len(field) <= _SHORT and field.upper() != "UNKNOWN":
        return field
    classifiers = [
        c.split("::")[-1].strip()
        for c in meta.get_all("Classifier") or []
        if c.startswith("License ::") and c.strip() != "License :: OSI Approved"
    ]
    if classifiers:
        return "; ".join(classifiers)
    if field:  # the full text: its first line names it
        return field.splitlines()[0].strip()[:_SHORT]
    files = [
        str(f)
        for f in dist.files or ()
        if ".dist-info/" in str(f) and re.search(r"LICEN[CS]E|COPYING|NOTICE", str(f), re.I)
    ]
    return "files: " + ", ".join(sorted(files)) if files else ""


def flag_of(license_text: str) -> str:
    text = license_text.upper()
    if not text:
        return "unknown"
    if "AGPL" in text or "AFFERO" in text:
        return "AGPL"
    if "LGPL" in text or "LESSER GENERAL PUBLIC" in text or "LIBRARY GENERAL PUBLIC" in text:
        return "LGPL"
    if re.search(r"\bGPL|GENERAL PUBLIC LICEN", text):
        return "GPL"
    return ""


def _requires(dist: metadata.Distribution, extras: set[str]) -> list[Requirement]:
    """The distribution's requirements that apply here (markers evaluated, with its extras)."""
    found: list[Requirement] = []
    for line in dist.requires or ():
        req = Requirement(line)
        if req.marker is None:
            found.append(req)
            continue
        environments = [{"extra": e} for e in sorted(extras)] or [{"extra": ""}]
        if any(_marker_true(req.marker, env) for env in environments):
            found.append(req)
    return found


def _marker_true(marker: Marker, env: dict[str, str]) -> bool:
    return bool(marker.evaluate(env))


def walk(roots: list[Requirement], label: str) -> list[Row]:
    """Every distribution the requirements reach, each once, in the order first reached."""
    rows: dict[str, Row] = {}
    queue: list[tuple[Requirement, str]] = [(r, label) for r in roots]
    while queue:
        req, via = queue.pop(0)
        key = canonicalize_name(req.name)
        if key in rows or key == "voicebridge":
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            rows[key] = Row(req.name, "not installed", "", "unknown", via)
            continue
        text = declared_license(dist)
        name = dist.metadata["Name"]
        rows[key] = Row(name, dist.version, text, flag_of(text), via, bundled_libraries(dist))
        for sub in _requires(dist, set(req.extras)):
            queue.append((sub, f"{via} > {dist.metadata['Name']}"))
    return list(rows.values())


def extras_of(pyproject: Path) -> dict[str, list[Requirement]]:
    """The core requirements and each extra's, as written in pyproject.toml (an extra that
    names this project's other extras is expanded)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    name = canonicalize_name(project["name"])
    groups: dict[str, list[Requirement]] = {CORE: [Requirement(r) for r in project["dependencies"]]}
    optional = project.get("optional-dependencies", {})
    for extra, lines in optional.items():
        reqs: list[Requirement] = []
        for line in lines:
            req = Requirement(line)
            if canonicalize_name(req.name) == name:
                for inner in sorted(req.extras):
                    reqs += [Requirement(r) for r in optional.get(inner, [])]
            else:
                reqs.append(req)
        groups[extra] = reqs
    return groups


def installed_rows() -> list[Row]:
    rows = []
    for dist in metadata.distributions():
        text = declared_license(dist)
        name = dist.metadata["Name"]
        rows.append(
            Row(name, dist.version, text, flag_of(text), "installed", bundled_libraries(dist))
        )
    return sorted(rows, key=lambda r: canonicalize_name(r.name))


def render(title: str, rows: list[Row], markdown: bool) -> str:
    flagged = sum(1 for r in rows if r.flag)
    if markdown:
        lines = [
            f"### {title}",
            "",
            "| package | version | license | flag | bundled native libraries |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.name} | {r.version} | {r.license or '?'} | {r.flag} | {', '.join(r.bundled)} |"
            for r in rows
        ]
        return "\n".join([*lines, "", f"{len(rows)} packages, {flagged} flagged.", ""])
    width = max([len(r.name) for r in rows] + [7])
    lines = [f"== {title}: {len(rows)} packages, {flagged} flagged"]
    for r in rows:
        mark = f"  <-- {r.flag}" if r.flag else ""
        lines.append(f"{r.name:<{width}}  {r.version:<14} {r.license or '?'}{mark}")
        if r.bundled:
            lines.append(f"{'':<{width}}  bundles: {', '.join(r.bundled)}")
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("extras", nargs="*", help=f"extras to list ({CORE!r} = the core install)")
    parser.add_argument("--installed", action="store_true", help="every installed distribution")
    parser.add_argument("--markdown", action="store_true", help="markdown tables")
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    args = parser.parse_args(argv)
    if args.installed:
        print(render("installed", installed_rows(), args.markdown))
        return 0
    groups = extras_of(args.pyproject)
    unknown = [e for e in args.extras if e not in groups]
    if unknown:
        parser.error(f"no such extra: {', '.join(unknown)} (have: {', '.join(groups)})")
    for name in args.extras or list(groups):
        print(render(name, walk(groups[name], name), args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
