"""`llmroute init` and `init --merge`: the shipped catalogue into a project, and upgrades that
never lose an edit."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmroute.config import CATALOGUE_FILES, load_config, shipped_root
from llmroute.config._init import InitError, init_project, merge_project

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 12, 1, 17, 30, 5)
STAMP = "20261201_173005"


def llmroute(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmroute.cli", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_shipped_catalogue_is_the_repository_config() -> None:
    # In a source checkout the package reads the repository's own files: one source of truth.
    root = shipped_root()
    for rel in CATALOGUE_FILES:
        assert (root / rel).read_bytes() == (ROOT / rel).read_bytes()


def test_init_writes_the_catalogue_and_it_loads(tmp_path: Path) -> None:
    run = llmroute("init", str(tmp_path / "proj"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    for rel in CATALOGUE_FILES:
        assert (tmp_path / "proj" / rel).read_bytes() == (ROOT / rel).read_bytes()
    config = load_config(
        tmp_path / "proj" / "config" / "models.yaml",
        tmp_path / "proj" / "config" / "limits.yaml",
        env={},
    )
    assert "chat" in config.models.routes
    assert "llmroute check" in run.stdout


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    mine = tmp_path / "config" / "models.yaml"
    mine.write_text("# mine\n", encoding="utf-8")
    run = llmroute("init", cwd=tmp_path)
    assert run.returncode == 1
    assert "already exist" in run.stderr and "--merge" in run.stderr
    assert "Traceback" not in run.stderr
    assert mine.read_text(encoding="utf-8") == "# mine\n"
    assert not (tmp_path / ".env.example").exists()  # nothing at all was written
    forced = llmroute("init", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert mine.read_bytes() == (ROOT / "config" / "models.yaml").read_bytes()


@pytest.fixture
def edited(tmp_path: Path) -> Path:
    """An older project: a model and a route of the catalogue missing, a custom model, a
    changed limit, comments of the user's own, and a .env with values."""
    init_project(tmp_path)
    models = tmp_path / "config" / "models.yaml"
    text = models.read_text(encoding="utf-8")
    allam = text[text.index("  groq/allam-2-7b:\n") : text.index("  # Retired by Groq")]
    text = text.replace(
        allam,
        "  # my own model, keep this comment\n"
        "  groq/my-custom:   {provider: groq, model: my-custom-model}   # trailing comment\n",
    )
    cheap = text[text.index("  # Lowest cost") : text.index("  # What `router.complete")]
    text = text.replace(cheap, "")
    text = text.replace("    timeout: 120\n", "    timeout: 99   # I changed this\n", 1)
    models.write_text(text, encoding="utf-8")
    limits = tmp_path / "config" / "limits.yaml"
    ltext = limits.read_text(encoding="utf-8")
    ltext = ltext.replace("  groq/allam-2-7b: {rpm: 30, rpd: 7000, tpm: 6000, tpd: 500000}\n", "")
    ltext = ltext.replace(
        "groq/openai/gpt-oss-20b: {rpm: 30,", "groq/openai/gpt-oss-20b: {rpm: 3,  # mine\n   "
    )
    limits.write_text(ltext, encoding="utf-8")
    (tmp_path / ".env").write_text(
        "# my keys\nGROQ_API_KEY=gsk-mine-123\nUSE_PAID_MODELS=true\nMY_OWN=1\n", encoding="utf-8"
    )
    return tmp_path


def test_merge_adds_what_is_new_and_keeps_every_edit(edited: Path) -> None:
    models = edited / "config" / "models.yaml"
    limits = edited / "config" / "limits.yaml"
    env = edited / ".env"
    before = {p: p.read_text(encoding="utf-8") for p in (models, limits, env)}

    report = merge_project(edited, now=NOW)

    # the backups come first and hold the files exactly as they were
    for path, text in before.items():
        backup = path.with_name(f"{path.name}.bak.{STAMP}")
        assert backup.read_text(encoding="utf-8") == text
    # every line the user had is still there, in order
    for path, text in before.items():
        after = path.read_text(encoding="utf-8").splitlines()
        it = iter(after)
        assert all(line in it for line in text.splitlines()), path
    added = set(report.added)
    assert ("model", "groq/allam-2-7b") in added
    assert ("route", "cheap") in added
    assert ("limit", "groq/allam-2-7b") in added
    assert ("model", "groq/my-custom") not in added
    # .env: existing values kept, only missing variables added (empty)
    env_after = env.read_text(encoding="utf-8")
    assert "GROQ_API_KEY=gsk-mine-123" in env_after
    assert env_after.count("GROQ_API_KEY=") == 1
    assert "\nOPENROUTER_API_KEY=\n" in env_after
    assert ("env", "OPENROUTER_API_KEY") in added
    assert ("env", "GROQ_API_KEY") not in added
    # retired models the user still has are listed, not deleted
    retired = dict(report.retired)
    assert "groq/llama-3.1-8b-instant" in retired
    assert "groq/llama-3.1-8b-instant:" in models.read_text(encoding="utf-8")
    # the result loads, with the user's values
    config = load_config(models, limits, env={})
    assert config.models.models["groq/my-custom"].model == "my-custom-model"
    assert config.limits.models["groq/openai/gpt-oss-20b"].rpm == 3
    assert "cheap" in config.models.routes
    lines = "\n".join(report.lines())
    assert "added" in lines and "kept" in lines and "flagged" in lines


def test_merge_twice_changes_nothing_the_second_time(edited: Path) -> None:
    merge_project(edited, now=NOW)
    snapshot = {p: p.read_bytes() for p in edited.rglob("*") if p.is_file()}
    second = merge_project(edited, now=NOW + dt.timedelta(seconds=5))
    assert second.added == [] and second.backups == []
    assert {p: p.read_bytes() for p in edited.rglob("*") if p.is_file()} == snapshot
    assert "nothing to add" in "\n".join(second.lines())


def test_merge_through_the_cli_prints_added_kept_and_flagged(edited: Path) -> None:
    run = llmroute("init", "--merge", cwd=edited)
    assert run.returncode == 0, run.stderr
    assert "added    model    groq/allam-2-7b" in run.stdout
    assert "kept" in run.stdout
    assert "flagged  groq/llama-3.1-8b-instant" in run.stdout
    assert "gsk-mine-123" not in run.stdout + run.stderr


def test_merge_without_a_project_says_to_init_first(tmp_path: Path) -> None:
    with pytest.raises(InitError, match="llmroute init"):
        merge_project(tmp_path)


def test_merge_keeps_a_custom_indent_and_flow_sections_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    models = tmp_path / "config" / "models.yaml"
    models.write_text(
        "providers:\n"
        "    groq:\n"
        "        type: openai_compatible\n"
        "        base_url: http://127.0.0.1:9/v1\n"
        "models: {groq/x: {provider: groq}}\n",
        encoding="utf-8",
    )
    report = merge_project(tmp_path, now=NOW)
    text = models.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert "openrouter" in data["providers"]  # added, at the user's 4-space indent
    assert "\n    openrouter:\n" in text
    assert data["models"] == {"groq/x": {"provider": "groq"}}  # flow style: not touched
    assert any("flow style" in note for note in report.notes)
