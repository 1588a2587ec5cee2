"""What a bundle of wheels needs that neither the bundle nor this interpreter has.

Reads every wheel's Requires-Dist (markers evaluated for this interpreter, no extras) and
names each requirement that no wheel in the bundle provides and no installed distribution
satisfies, with who needs it. Run on the GPU machine before the first import, so that a
bundle missing several packages costs one look instead of one failed start per package:

    python3 scripts/gpu/bundle_check.py /tmp/whl/*.whl

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


def main(wheels: list[str]) -> int:
    bundled = {}
    for w in map(Path, wheels):
        name, version, *_ = parse_wheel_filename(w.name)
        bundled[canonicalize_name(name)] = (str(version), w)
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions()}
    problems: dict[str, set[str]] = {}
    for who, (_, wheel) in sorted(bundled.items()):
        for req in requirements(wheel):
            name = canonicalize_name(req.name)
            have = bundled[name][0] if name in bundled else installed.get(name)
            if have is None:
                problems.setdefault(f"missing {name}", set()).add(who)
            elif req.specifier and not req.specifier.contains(have, prereleases=True):
                problems.setdefault(f"{name} {have}, not {req.specifier}", set()).add(who)
    for what, who in sorted(problems.items()):
        print(f"{what}  (needed by {', '.join(sorted(who))})")
    print(f"{len(bundled)} wheels checked: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
