"""farthing.paywall: arrives with issue 4; nothing is exported yet."""

__all__: list[str] = []
