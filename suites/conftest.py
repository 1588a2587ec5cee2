"""The ready-made suites. Fixtures (engine, batch_size, batchperf) come from the
pytest-batchperf plugin; choose the engine with --batchperf-profile."""
