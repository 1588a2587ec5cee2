"""Synthetic models the plugin writes itself: no hub, no download."""

from .shapes import SHAPES, ModelShape, shape  # noqa: F401
