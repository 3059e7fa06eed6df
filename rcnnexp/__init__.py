"""rcnnexp: config-driven experiments for recurrent-convolutional image classifiers."""

__version__ = "0.1.0"
