"""The node's router components: thin WAMP adapters over :mod:`components.service` and :mod:`components.core`."""
