"""Turn titles into URL slugs."""

from slugkit.slug import slugify, unique_slug

__version__ = "2.0.1"
__all__ = ["__version__", "slugify", "unique_slug"]
