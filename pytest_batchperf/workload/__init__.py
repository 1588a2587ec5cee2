"""What a case runs: seeded workloads (spec.py) and batching strategies (strategies.py)."""

from .spec import (
    SLO,
    Arrival,
    CaseSpec,
    LengthDist,
    Request,
    Workload,
    WorkloadSpec,
    build,
    fixed,
    lognormal,
    uniform,
)
from .strategies import Scheduler, Strategy

__all__ = [
    "SLO",
    "Arrival",
    "CaseSpec",
    "LengthDist",
    "Request",
    "Scheduler",
    "Strategy",
    "Workload",
    "WorkloadSpec",
    "build",
    "fixed",
    "lognormal",
    "uniform",
]
