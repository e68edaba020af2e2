"""genreshift.inference: the conversion pipeline, its modes, and evaluation."""

# The methods `genreshift evaluate` compares (inference/evaluate.py); here so that building the
# command-line parser needs no import of evaluate (and torch).
EVALUATE_METHODS = ("identity", "eq", "trained", "reference", "gram-baseline")
