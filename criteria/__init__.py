"""Built-in criterion types. Registered through entry points in setup.cfg, exactly like a third-party plugin."""
