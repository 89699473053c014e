"""Run `llamafactory-cli SUBCOMMAND ...` inside LLaMA-Factory's interpreter, tolerating a torchaudio
that cannot load (CPU-only machines): the shim puts a stand-in module in sys.modules for this
process only; site-packages are not touched. Stdlib + llamafactory only; no dsforge imports.

    python launch.py train cfg.yaml [key=value ...]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shim  # noqa: E402

if __name__ == "__main__":
    stubbed = shim.install()
    if stubbed:
        print(f"[dsforge] {', '.join(stubbed)} cannot load here; using a stand-in (text-only work)", flush=True)
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    from llamafactory.cli import main

    sys.argv = ["llamafactory-cli", *sys.argv[1:]]
    sys.exit(main())
