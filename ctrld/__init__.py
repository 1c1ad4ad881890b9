"""ctrld: a small experiment-control daemon speaking FlatBuffers over TCP or a Unix socket."""

__version__ = "0.1.0"


def _import_protocol_without_numpy() -> None:
    """The flatbuffers runtime and the code flatc generates import numpy whenever they can find it
    (for vector helpers we never use): ~15 MiB of RSS in a daemon whose goal is <= 25 MiB (numpy is
    installed for the plots of `simterpose compare`). Import both with numpy out of sight, unless
    numpy is already loaded in this process (then it costs nothing more)."""
    import importlib
    import importlib.util
    import os
    import sys

    if "numpy" in sys.modules or "flatbuffers" in sys.modules:
        return
    spec = importlib.util.find_spec("flatbuffers")
    if spec is None or spec.loader is None:
        return
    saved = list(sys.path)
    # Only the find_spec("numpy") probes see this path; flatbuffers is loaded from its spec and our
    # generated module through the ctrld package's own path.
    sys.path[:] = [p for p in saved if not os.path.isdir(os.path.join(p or ".", "numpy"))]
    try:
        module = importlib.util.module_from_spec(spec)
        sys.modules["flatbuffers"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["flatbuffers"]
            raise
        importlib.import_module("ctrld.protocol.generated.ctrld_generated")
    finally:
        sys.path[:] = saved


_import_protocol_without_numpy()
