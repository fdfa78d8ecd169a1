"""One module per command: an options dataclass and a ``run_x(options, env) -> Result``."""
