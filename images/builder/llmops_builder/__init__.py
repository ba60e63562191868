"""The build workload: python -m llmops_builder --help."""
