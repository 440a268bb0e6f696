"""The run: the plugin object that owns a pytest run's state, its settings, concurrent cases and the assertion."""
