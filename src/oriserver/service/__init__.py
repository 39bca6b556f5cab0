"""The service layer: use cases that tie the pure domain to the adapters."""
