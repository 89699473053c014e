"""Parse a train configuration with LLaMA-Factory's own argument parser, print the verdict as JSON.

Usage (inside LLaMA-Factory's interpreter): python check_args.py CONFIG.json
Last stdout line: {"ok": true} or {"ok": false, "error": "<LLaMA-Factory's message>", "type": "ValueError"}.
`get_train_args` only parses and cross-checks (its __post_init__ rules and its own checks); it
loads no model and no tokenizer. Stdlib + llamafactory only; no dsforge imports.
"""

import contextlib
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shim  # noqa: E402

shim.install()


def main() -> None:
    """Parse the JSON config at argv[1] with get_train_args and print the verdict line (module doc).

    LLaMA-Factory's own output goes to a buffer, so the verdict is the last stdout line; a rejected
    config still exits 0 (the verdict says it). An unreadable config file raises (traceback, exit 1).
    """
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    noise = io.StringIO()
    try:
        with contextlib.redirect_stdout(noise):
            from llamafactory.hparams import get_train_args

            get_train_args(cfg)
        verdict = {"ok": True}
    except (ValueError, TypeError) as err:   # HfArgumentParser and LLaMA-Factory's own rules
        verdict = {"ok": False, "error": str(err).strip().splitlines()[0] if str(err).strip() else repr(err),
                   "type": type(err).__name__}
    except SystemExit as err:   # argparse-style exits inside the parser
        verdict = {"ok": False, "error": f"the parser exited ({err.code})", "type": "SystemExit"}
    print(json.dumps(verdict))


if __name__ == "__main__":
    main()
