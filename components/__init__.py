"""deptcast: department notifications on a Crossbar.io router cluster.

The package holds pure logic (``names``, ``tokens``, ``policy``, ``messages``,
``ratelimit``, ``config``, ``store``) and thin WAMP components on top of it
(``auth``, ``api``).
"""
