"""farthing.inference: arrives with issue 6; nothing is exported yet."""

__all__: list[str] = []
