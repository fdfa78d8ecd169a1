"""Provider clients: one package or module per seller, all behind ``providers.base.Provider``."""
