"""patchfleet: resolve software issues with many sandboxed trajectories and a hybrid selector."""

__version__ = "0.1.0"
