"""Running deptcast: node and cluster configuration, node processes, the ``deptcast`` command.
Nothing imports this layer."""
