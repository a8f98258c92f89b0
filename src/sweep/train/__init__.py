"""Training with no MLflow and no config: data, model builders, the compiled loop, plots
and provenance, each from plain arguments.
"""
