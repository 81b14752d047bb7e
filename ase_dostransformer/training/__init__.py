"""Training on Lightning: the module, the data module, splits and metrics."""
