"""Built-in plugins of prior-harness, registered through the ``harness`` entry-point group."""
