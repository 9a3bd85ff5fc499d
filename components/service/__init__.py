"""What the router worker's parts share: the one send and history path, the settings, the slots
the router components fill."""
