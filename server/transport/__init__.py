"""gRPC to the domain and back: the servicer, admission, request conversion,
pages on the wire, the method handlers and the status table."""
