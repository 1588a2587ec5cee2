"""pytest with Ctrl-C restored, for jobs started in the background (`setsid ... &`): such a
job inherits SIGINT ignored, so an interrupt (gpu/poll.sh's, or kill -INT) did nothing and
the job, killed instead, wrote no results.

    python3 scripts/pytest_job.py suites --batchperf-profile vllm-synthetic-8b ...
"""

import signal
import sys

import pytest

signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(pytest.main())
