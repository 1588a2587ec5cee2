"""What the plugin's tests share: the fake engine's project, runs for the report tests."""
