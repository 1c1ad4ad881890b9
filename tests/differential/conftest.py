import sys
from pathlib import Path

# net_helpers (emulate, native) lives with the emulator tests
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "emulator"))
