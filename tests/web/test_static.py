"""Static checks of web/: no markup sinks, no third-party code, every module preloaded."""

from __future__ import annotations

import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "coalition" / "web"
SINKS = re.compile(r"\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(")


def _code(path: Path) -> str:
    """The file without // comments (so a comment may name what the code never does)."""
    return "\n".join(line.split("//", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())


def test_no_markup_sinks_in_the_page_scripts():
    scripts = sorted(WEB.rglob("*.js"))
    assert scripts
    offenders = [f"{p.relative_to(WEB)}: {m.group(0)}" for p in scripts for m in SINKS.finditer(_code(p))]
    assert offenders == []


def test_index_preloads_every_module_and_sets_a_content_security_policy():
    index = (WEB / "index.html").read_text(encoding="utf-8")
    assert "Content-Security-Policy" in index and "script-src 'self'" in index
    preloaded = set(re.findall(r'rel="modulepreload" href="js/([\w-]+\.js)"', index))
    assert preloaded == {p.name for p in (WEB / "js").glob("*.js")}


def test_no_third_party_code():
    for path in WEB.rglob("*"):
        if path.is_file():
            assert path.suffix in {".html", ".js", ".css", ".svg"}, path
            assert "jquery" not in path.name.lower() and ".min." not in path.name, path
