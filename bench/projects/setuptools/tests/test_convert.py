import pytest
from unitconv import convert


def test_length() -> None:
    assert convert(12, "in", "cm") == pytest.approx(30.48)


def test_temperature() -> None:
    assert convert(100, "C", "F") == pytest.approx(212)
