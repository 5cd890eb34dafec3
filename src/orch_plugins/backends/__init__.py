"""Built-in backends: ordinary plugins, registered exactly like third-party ones."""
