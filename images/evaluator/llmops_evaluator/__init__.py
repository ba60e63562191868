"""The evaluation workload: python -m llmops_evaluator --help."""
