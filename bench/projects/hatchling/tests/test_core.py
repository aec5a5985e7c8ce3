from wordfreq import count_words, top_words


def test_counts() -> None:
    counter = count_words(["the cat and the hat", "The end"])
    assert top_words(counter, 2) == [("the", 3), ("and", 1)]
