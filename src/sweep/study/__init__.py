"""The Optuna study: its storage, workers, pruning, budgets, warm starts, the Pareto
front, the summary and the champion in the registry.
"""
