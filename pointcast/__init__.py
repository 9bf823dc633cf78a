"""pointcast: a self-hosted campaign engine that speaks Amazon Pinpoint's API and runs its extensions."""

__version__ = "0.1.0"
__all__ = ["__version__"]
