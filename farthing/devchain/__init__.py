"""The local dev chain: anvil with persisted state and every scheme's contracts.

``node`` (start, deploy, the deployment record) and ``cli`` (``farthing chain
dev``). It sits above the schemes because it deploys all of them.
"""

__all__: list[str] = []
