"""docs/security.md names only tests that exist, and every server surface has a section.

Each `tests/...py::name` the document cites is looked up: the file must exist
and define a test function of that name, so a renamed or deleted test cannot
leave a row pointing at nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "security.md"
CITED = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
SURFACES = [
    "paywall's edge",
    "sign-in-with-x",
    "pay page",
    "Channels",
    "Facilitator HTTP API",
    "default spend policy",
    "Inference gateway",
    "Ledger reconciliation",
    "Dashboard",
    "Jobs",
]


def test_every_cited_test_exists() -> None:
    text = DOC.read_text()
    cited = set(CITED.findall(text))
    assert len(cited) > 40
    missing = []
    for path, name in sorted(cited):
        source = ROOT / path
        if not source.is_file() or not re.search(
            rf"^(?:async )?def {name}\(", source.read_text(), re.MULTILINE
        ):
            missing.append(f"{path}::{name}")
    assert missing == []


def test_every_surface_has_a_section() -> None:
    headings = [line for line in DOC.read_text().splitlines() if line.startswith("## ")]
    for surface in SURFACES:
        assert any(surface in heading for heading in headings), surface
