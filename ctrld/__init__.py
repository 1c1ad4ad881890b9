"""ctrld: a small experiment-control daemon speaking FlatBuffers over TCP or a Unix socket."""

__version__ = "0.1.0"
