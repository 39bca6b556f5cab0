"""Migration scripts, applied in order by ``oriserver db upgrade``."""
