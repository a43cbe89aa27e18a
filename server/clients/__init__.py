"""Programs that call a running server: the client, the load generator and
served evaluation."""
