"""The browser client's files, installed as the package ``deptcast_web`` (package data).

Nothing to import here: a node serves this folder at ``/`` (``components/edge/static.py``
finds it with :func:`importlib.resources.files`). This file makes the folder a regular
package, which editable and ordinary installs both resolve to the right place.
"""
