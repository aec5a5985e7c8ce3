"""Count word frequencies in text."""

from wordfreq.core import count_words, top_words

__version__ = "0.4.2"
__all__ = ["__version__", "count_words", "top_words"]
