"""The gRPC edge: servicers, status mapping, handler wrappers and the server factory."""
