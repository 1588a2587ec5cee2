#!/usr/bin/env python3
"""Gate quality (A/A false alarms, A/B detection of injected slowdowns) on vLLM.

    python scripts/gpu_gate_quality.py measure --out gpu-gate.json --aa 10 --ab 3
    python scripts/gpu_gate_quality.py analyse gpu-gate.json

scripts/gate_quality.py does the work (engine loaded once, repeated runner.measure,
judged with gate.compare_case); this only runs the vLLM profile with its engine core in
this process (``multiprocessing = false``), because the vLLM engine's ``slowdown`` delays
each engine step and can only hold the core back when the core runs in the same process.
A and B repetitions use that same configuration.
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
        sys.argv += ["--set", "multiprocessing=false"]
    sys.exit(gate_quality.main())
