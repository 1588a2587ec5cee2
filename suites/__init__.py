"""The ready-made suites, shipped as pytest_batchperf.suites (pytest --pyargs
pytest_batchperf.suites) and run from a clone as pytest suites."""
