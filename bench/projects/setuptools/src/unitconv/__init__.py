"""Convert between units."""

from unitconv.convert import UnknownUnitError, convert

__version__ = "1.3.0"
__all__ = ["UnknownUnitError", "__version__", "convert"]
