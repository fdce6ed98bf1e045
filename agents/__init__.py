"""farthing.agents: arrives with issue 5; nothing is exported yet."""

__all__: list[str] = []
