"""resnet-repro: reproduce and verify He et al. 2016, *Deep Residual Learning*, on CIFAR-10."""

__version__ = "0.1.0"
