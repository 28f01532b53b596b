"""docs/bgp.md shows the core configs the lab tests run (pathsteer_lab.fleet.example_configs),
and the README's excerpts of them are lines of those configs."""

from __future__ import annotations

import re
from pathlib import Path

from pathsteer_lab.fleet import example_configs

ROOT = Path(__file__).resolve().parents[2]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_bgp_doc_shows_the_configs_the_tests_run():
    doc = (ROOT / "docs" / "bgp.md").read_text()
    configs = example_configs()
    assert blocks(doc, "bird") == [configs["bird"]]
    assert blocks(doc, "frr") == [configs["frr"]]


def test_readme_excerpts_are_lines_of_those_configs():
    readme = (ROOT / "README.md").read_text()
    configs = example_configs()
    for lang in ("bird", "frr"):
        found = blocks(readme, lang)
        assert found, f"README has no {lang} snippet"
        lines = {line.strip() for line in configs[lang].splitlines()}
        for block in found:
            for line in block.splitlines():
                if line.strip() and line.strip() not in ("...", "…"):
                    assert line.strip() in lines, f"README {lang} line not in the tested config: {line!r}"
