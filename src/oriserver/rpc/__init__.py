"""The gRPC edge: servicers, status mapping, interceptors and the server factory."""
