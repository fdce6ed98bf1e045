"""The blogger's site: ``farthing paywall init`` and ``serve`` in front of any web server.

``template`` and ``init`` (the config file, the relayer key), ``config``
(the TOML and its flags), ``serve`` (what the server is built from),
``proxy`` (the reverse proxy), ``keys`` (secrets from files), ``revenue`` and
``reports`` (what sold).
"""

__all__: list[str] = []
