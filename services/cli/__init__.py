"""The ``driftscope`` command line."""

__all__: list[str] = []
