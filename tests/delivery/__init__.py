"""Offline checks of the delivery artefacts: images, compose, Kubernetes, CI, docs."""
