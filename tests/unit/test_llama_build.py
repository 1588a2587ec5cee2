"""``batchperf build-llama-cpp``'s CMake definitions: each configuration builds into a tree of
its own, a finished target is not rebuilt, and a malformed definition is one line. None of
these tests compiles anything (the build itself runs in CI's set-up and on the GPU)."""

import pytest

from pytest_batchperf.cli import main
from pytest_batchperf.engines import llama_build


def test_each_configuration_has_its_own_tree_and_order_does_not_matter(tmp_path):
    cpu = llama_build._root(tmp_path)
    cuda = llama_build._root(tmp_path, ("GGML_CUDA=ON", "BUILD_SHARED_LIBS=ON"))
    again = llama_build._root(tmp_path, ("BUILD_SHARED_LIBS=ON", "GGML_CUDA=ON"))
    assert cpu.name == f"llama.cpp-{llama_build.version()}"
    assert cuda == again
    assert cuda != cpu and cuda.name.startswith(cpu.name + "-")


def test_a_finished_target_is_found_without_a_build(tmp_path, monkeypatch):
    defines = ("GGML_CUDA=ON", "BUILD_SHARED_LIBS=ON")
    bin_dir = llama_build._root(tmp_path, defines) / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("libllama.so", "llama-batched-bench"):
        (bin_dir / name).write_text("built")

    def no_build(*args, **kw):
        raise AssertionError("rebuilt a finished target")

    monkeypatch.setattr(llama_build, "_compile", no_build)
    got = llama_build.build(("llama", "llama-batched-bench"), tmp_path, defines=defines)
    assert got == {
        "llama": bin_dir / "libllama.so",
        "llama-batched-bench": bin_dir / "llama-batched-bench",
    }


@pytest.mark.parametrize("bad", ["GGML_CUDA", "=ON", "1X=2", "A B=1"])
def test_a_malformed_definition_is_one_line_exit_2(tmp_path, capsys, bad):
    assert main(["build-llama-cpp", "--cache", str(tmp_path), "-D", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a CMake definition KEY=VALUE" in err
    assert not any(tmp_path.iterdir())  # refused before anything was made
