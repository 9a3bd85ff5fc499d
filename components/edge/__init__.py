"""The resources of the node's web transport: the legacy endpoint, the HTTP send API, the dev token form."""
