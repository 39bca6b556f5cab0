"""Plain MathHelper servers, each in its most plain form: what the benchmark compares oriserver with."""
