"""Training a model: the train loop, likelihoods, the perceptual network, checkpoints."""
