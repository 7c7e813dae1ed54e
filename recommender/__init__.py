"""The Bookstore recommender: data -> train -> evaluate -> register -> serve.

Kept import-light: heavy modules (numpy, scipy, the server) are imported where used.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
