"""What a bundle of wheels needs that neither the bundle nor this interpreter has.

Reads every wheel's Requires-Dist (markers evaluated for this interpreter, no extras) and
names each requirement that no wheel in the bundle provides and no installed distribution
satisfies, with who needs it. Run on the GPU machine before the first import, so that a
bundle missing several packages costs one look instead of one failed start per package:

    python3 scripts/gpu/bundle_check.py /tmp/whl/*.whl
    python3 scripts/gpu/bundle_check.py --fill-from DIR /tmp/whl/*.whl  # wheels to add

Exit status 1 when something is missing or the wrong version. Standard library plus
`packaging`, which pip vendors where it is not installed.
"""

from __future__ import annotations

import importlib.metadata as md
import sys
import zipfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename
except ImportError:  # pragma: no cover - machines without packaging still have pip's copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename


def requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    reqs = [
        Requirement(x.split(":", 1)[1].strip()) for x in lines if x.startswith("Requires-Dist:")
    ]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


# An unmet requirement's name -> the version there is (None: none), the requirements it
# fails, and who needs it.
Unmet = dict[str, tuple[str | None, list[Requirement], set[str]]]


def installed() -> dict[str, str]:
    """Each installed distribution's version, the first on sys.path winning, as in import."""
    found: dict[str, str] = {}
    for d in md.distributions():
        found.setdefault(canonicalize_name(d.metadata["Name"]), d.version)
    return found


def check(wheels: list[Path]) -> Unmet:
    """What the bundle's wheels require that neither they nor this interpreter meet."""
    bundled = {}
    for w in wheels:
        name, version, *_ = parse_wheel_filename(w.name)
        bundled[canonicalize_name(name)] = (str(version), w)
    there = installed()
    unmet: Unmet = {}
    for who, (_, wheel) in sorted(bundled.items()):
        for req in requirements(wheel):
            name = canonicalize_name(req.name)
            have = bundled[name][0] if name in bundled else there.get(name)
            if have is None or (
                req.specifier and not req.specifier.contains(have, prereleases=True)
            ):
                reqs, needed_by = unmet.setdefault(name, (have, [], set()))[1:]
                reqs.append(req)
                needed_by.add(who)
    return unmet


def fill_ins(unmet: Unmet, directory: Path) -> list[Path]:
    """The wheels in ``directory`` that meet an unmet requirement in full."""
    out = []
    for w in sorted(directory.glob("*.whl")):
        name, version, *_ = parse_wheel_filename(w.name)
        name = canonicalize_name(name)
        if name in unmet and all(r.specifier.contains(version, True) for r in unmet[name][1]):
            out.append(w)
    return out


def main(args: list[str]) -> int:
    if args[:1] == ["--fill-from"]:  # print the fill-in wheels to install, nothing else
        for wheel in fill_ins(check(list(map(Path, args[2:]))), Path(args[1])):
            print(wheel)
        return 0
    unmet = check(list(map(Path, args)))
    lines = []
    for name, (have, reqs, who) in unmet.items():
        what = f"missing {name}" if have is None else f"{name} {have}, not {reqs[0].specifier}"
        lines.append(f"{what}  (needed by {', '.join(sorted(who))})")
    for line in sorted(lines):
        print(line)
    print(f"{len(args)} wheels checked: {len(unmet)} problem(s)")
    return 1 if unmet else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
