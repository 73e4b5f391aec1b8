"""Training: the paper's recipes, the training loop, checkpoints and run artifacts."""
