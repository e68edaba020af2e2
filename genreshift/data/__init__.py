"""genreshift.data: datasets, the synthetic corpus, mel shards and training windows."""

# The synthetic corpus's genres, in their default order (data/arrangements.py holds one
# arrangement function per name and checks it against this list), and what `genreshift data
# synth` renders unless told otherwise. Here so that building the command-line parser imports
# no numpy.
SYNTH_GENRES = ("classical", "jazz", "rock", "electronic", "hiphop", "blues", "country",
                "reggae", "metal", "lofi")
DEFAULT_SYNTH_GENRES = ("classical", "jazz", "rock", "electronic", "hiphop")
