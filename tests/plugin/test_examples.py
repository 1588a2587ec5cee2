"""The examples a user copies: README's own benchmark runs as written, and the CI workflow
uses only commands and flags that exist."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from pytest_batchperf.cli import parser
from pytest_batchperf.options import OPTIONS

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"


def test_the_readme_shows_the_example_file_as_it_is():
    readme = (ROOT / "README.md").read_text()
    example = (EXAMPLES / "test_chat.py").read_text()
    assert example.strip() in readme, "README's own-benchmark example drifted from examples/"


def test_the_readme_shows_the_profile_pyproject_declares():
    readme = (ROOT / "README.md").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    block = pyproject[pyproject.index("[tool.batchperf.profiles.chat-cpu]") :].split("\n\n")[0]
    assert block.strip() in readme


def test_the_example_runs_on_the_default_profile_in_a_fresh_project(pytester):
    """Copied into a fresh project as written: passes on the default profile."""
    pytest.importorskip("llama_cpp", reason="the default profile is llama-cpp")
    shutil.copy(EXAMPLES / "test_chat.py", pytester.path / "test_chat.py")
    result = pytester.runpytest_subprocess("test_chat.py", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    assert (pytester.path / "reports" / "index.html").is_file()


def _commands(text: str) -> list[list[str]]:
    """Every pytest or batchperf command line of the workflow, comments included."""
    out = []
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        line = re.sub(r"^run:\s*", "", line)
        if re.match(r"^(\S*/)?(pytest|batchperf)\s", line):
            out.append(shlex.split(line))
    return out


def test_the_ci_workflow_uses_flags_and_commands_that_exist():
    commands = _commands((EXAMPLES / "github-actions.yml").read_text())
    assert len(commands) >= 2
    flags = {opt.flag for opt in OPTIONS}
    used = {arg.split("=")[0] for cmd in commands for arg in cmd if arg.startswith("--batchperf")}
    assert used and used <= flags, used - flags
    subcommands = set(parser()._subparsers._group_actions[0].choices)
    for cmd in commands:
        if cmd[0].endswith("batchperf"):
            assert cmd[1] in subcommands, cmd


def test_the_readme_lists_every_option_as_flag_and_ini_key():
    from pytest_batchperf.options import OPTIONS

    readme = (ROOT / "README.md").read_text()
    for opt in OPTIONS:
        assert f"| `{opt.flag}` / `{opt.name}` |" in readme, opt.flag
