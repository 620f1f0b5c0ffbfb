"""Every reference in code, config and docs points inside the repository: no citation of a
document the repository does not hold, no link or path to a file that does not exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_TEXT = {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".txt", ".example"}
#: a document cited in code, config or prose, such as `docs/providers.md 5.5` or `NOTES.md`
_CITED = re.compile(r"(?<![\w/.$-])((?:[\w.-]+/)*[\w-]+\.md)\b")
#: in Markdown, also a repository path such as `config/limits.yaml` or `bench/results/x.png`
_PATH = re.compile(
    r"(?<![\w/.-])((?:config|docs|bench|src|tests|\.ci)/[\w./-]*[\w-]\.(?:yaml|png|json|py|sh|md))\b"
)
#: a relative Markdown link target
_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s#]+)(?:#[^)]*)?\)")
#: names that are patterns or other projects' files, not references into this repository
_NOT_REFERENCES = {
    "config.yaml",
    "latest.json",
    "pyproject.toml",
    "auth.json",
    "config.toml",
    # an output the quota bench writes (bench/results/), not a document it cites
    "quota.md",
}


def _tracked() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    files = [ROOT / line for line in out.stdout.splitlines()]
    scanned = ("src/", "config/", "tests/", "bench/", "docs/", ".ci/")
    return [
        f
        for f in files
        if f.is_file()
        and (f.suffix in _TEXT or f.name == ".env.example")
        and (f.relative_to(ROOT).as_posix().startswith(scanned) or f.parent == ROOT)
    ]


def _exists(reference: str, source: Path) -> bool:
    candidates = [ROOT / reference, source.parent / reference]
    if "/" not in reference:
        # a bare file name: somewhere in the repository
        return any(p.name == reference for p in _all_files())
    return any(p.exists() for p in candidates)


_FILES: list[Path] = []


def _all_files() -> list[Path]:
    if not _FILES:
        _FILES.extend(_tracked())
        _FILES.extend(p for p in ROOT.glob("bench/results/*") if p.is_file())
    return _FILES


def test_no_reference_points_outside_the_repository() -> None:
    dead: list[str] = []
    for file in _tracked():
        if file.name == "test_references.py":
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            found = set(_CITED.findall(line))
            if file.suffix == ".md":
                found |= set(_LINK.findall(line)) | set(_PATH.findall(line))
            # wheel paths (pyproject's force-include) are where a file goes, not a reference
            found = {r for r in found - _NOT_REFERENCES if not r.startswith("llmroute/")}
            for reference in found:
                if not _exists(reference, file):
                    dead.append(f"{file.relative_to(ROOT)}:{number}: {reference}")
    assert not dead, "references to files that do not exist:\n" + "\n".join(dead)


def test_the_check_catches_a_dead_reference(tmp_path: Path) -> None:
    assert _CITED.findall("see NOWHERE.md section 2 and ELSEWHERE.md 5.5") == [
        "NOWHERE.md",
        "ELSEWHERE.md",
    ]
    assert _LINK.findall("[x](docs/nowhere.md#a) [y](https://example.org/a.md)") == [
        "docs/nowhere.md"
    ]
    assert not _exists("NOWHERE.md", ROOT / "README.md")
    assert _exists("docs/providers.md", ROOT / "README.md")
    assert _exists("providers.md", ROOT / "docs" / "reference.md")
