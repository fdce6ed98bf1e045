"""The local dev chain: anvil with persisted state and every scheme's contracts.

``node`` (start anvil, deploy and fund) and ``cli`` (``farthing chain dev``).
The deployment record it writes is read through ``farthing.wallet.deployment``.
It sits above the schemes because it deploys all of them.
"""

__all__: list[str] = []
