"""Provider clients: one module per seller, all behind ``providers.base.Provider``."""
