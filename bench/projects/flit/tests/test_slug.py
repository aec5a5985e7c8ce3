from slugkit import slugify, unique_slug


def test_slugify() -> None:
    assert slugify("Crème brûlée, à la minute!") == "creme-brulee-a-la-minute"


def test_unique() -> None:
    assert unique_slug("a b", {"a-b"}) == "a-b-2"
