"""genreshift.inference: the conversion pipeline, its modes, and evaluation."""

# The methods `genreshift evaluate` compares (inference/evaluate.py); here so that building the
# command-line parser needs no import of evaluate (and torch).
EVALUATE_METHODS = ("identity", "eq", "trained", "reference", "gram-baseline")

# Trained mode's rhythm section (convert --rhythm, inference/rhythm.py). The default is the
# mode that measured best on real recordings (docs/DECISIONS.md, "Rhythm section"): with the
# shipped models on the 20 excerpts of ../shared/realmusic, replace put the target in the
# tagger's top 2 for 10 of 20 against 7 for keep (target up 17 against 16, median content 0.75
# against 0.78). Here so that the parser can name it without importing the pipeline.
RHYTHM_MODES = ("keep", "replace", "add")
DEFAULT_RHYTHM = "replace"
