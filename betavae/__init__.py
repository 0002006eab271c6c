"""betavae: a PyTorch Lightning framework for training and comparing autoencoders, above all β-VAE."""

__version__ = "0.1.0"
