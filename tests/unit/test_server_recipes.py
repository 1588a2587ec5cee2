"""The server recipes of examples/servers.toml parse, type-check and format (what can be
checked without the servers; which ones ran is in docs/results/servers.md)."""

from pathlib import Path

import pytest

from pytest_batchperf.profiles import declared

RECIPES = Path(__file__).parents[2] / "examples" / "servers.toml"


@pytest.mark.parametrize("name", ["vllm-serve-8b", "tgi-8b", "trtllm-8b"])
def test_recipe_parses_and_its_command_formats(name):
    profile = declared(None, RECIPES)[name]
    knobs = profile.typed_knobs()  # an unknown or mistyped knob would raise here
    values = {
        "python": "python3",
        "model": "/models/m",
        "host": "127.0.0.1",
        "port": 8000,
        "llama_server": "llama-server",
    }
    argv = [a.format(**values) for a in knobs.command]
    assert "/models/m" in argv and "8000" in argv and "127.0.0.1" in argv
    assert knobs.model_format == "hf" and profile.device == "cuda"
