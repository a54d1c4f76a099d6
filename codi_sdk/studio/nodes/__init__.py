"""Built-in Studio node types: CoDi composition, Python and HTTP calls, and offline services."""
