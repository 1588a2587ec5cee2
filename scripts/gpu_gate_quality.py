#!/usr/bin/env python3
"""Gate quality (A/A false alarms, A/B detection of injected slowdowns) on vLLM.

    python scripts/gpu_gate_quality.py measure --out gpu-gate.json --aa 10 --ab 3
    python scripts/gpu_gate_quality.py analyse gpu-gate.json

scripts/gate_quality.py does the work; this runs it on the vLLM profile with every
repetition in a new process (``--fresh``): the engine starts afresh each time, as in
separate CI runs, and the ``slowdown`` knob of the B repetitions (the engine core
busy-waits that fraction of each step) is taken when the engine starts.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gate_quality  # noqa: E402

if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        if "--profile" not in sys.argv:
            sys.argv += ["--profile", "vllm-synthetic-1b"]
        sys.argv += ["--fresh"]
    sys.exit(gate_quality.main())
