"""The deptcast client for Python backends: exactly once to the application, in per-topic
order, across reconnects and node failover; asyncio (:mod:`components.client.aio`) or Twisted
(:mod:`components.client.tx`), both on Autobahn's ``Component`` and txaio.

Import the style you use; each selects its framework for txaio when imported, so this
package imports neither. The errors (:mod:`components.client.errors`) and the position
store (:mod:`components.client.state`) are shared.
"""

from components.client.errors import (ConnectionLost, DeptcastError, InvalidFrame, InvalidToken, NotAuthorized,
                                      NotConnected, Pruned, RateLimited, Revoked, TokenExpired, TooLarge,
                                      Unavailable)
from components.client.state import FileState, PositionStore, StateError

__all__ = ["ConnectionLost", "DeptcastError", "FileState", "InvalidFrame", "InvalidToken", "NotAuthorized",
           "NotConnected", "PositionStore", "Pruned", "RateLimited", "Revoked", "StateError", "TokenExpired",
           "TooLarge", "Unavailable"]
