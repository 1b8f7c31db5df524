"""Built-in loss terms; importing this package registers them."""

from kdlab.methods.terms import ce, kd  # noqa: F401
