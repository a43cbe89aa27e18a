"""shoprank's gRPC ranking server, its client and the command line."""
