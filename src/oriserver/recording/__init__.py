"""Recording calculations: the batching writer and the recorders the service layer uses."""
