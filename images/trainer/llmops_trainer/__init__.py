"""The fine-tuning workload: python -m llmops_trainer --help."""
