"""The config, checked before TensorFlow or MLflow is imported: values, URLs, stores,
the search space in Hydra's grammar, and old records in today's keys.
"""
