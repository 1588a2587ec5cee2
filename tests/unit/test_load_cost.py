"""Free until used: loading the plugin imports none of the heavy libraries
(docs/results/load-cost.md has the timings)."""

import subprocess
import sys

HEAVY = (
    "scipy",
    "numpy",
    "matplotlib",
    "jinja2",
    "gguf",
    "pynvml",
    "psutil",
    "pytest_benchmark",
    "llama_cpp",
    "torch",
    "vllm",
    "httpx",
)


def test_loading_the_plugin_imports_no_heavy_library():
    code = (
        "import sys, pytest_batchperf.plugin; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_run_without_batchperf_tests_imports_none_either(pytester):
    pytester.makepyfile(
        test_plain=f"""
import sys
def test_plain():
    loaded = [m for m in {HEAVY!r} if m in sys.modules and m != "pytest_benchmark"]
    assert loaded == []
"""
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
