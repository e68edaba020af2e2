"""genreshift: convert music from one genre to another."""

__version__ = "0.1.0"
