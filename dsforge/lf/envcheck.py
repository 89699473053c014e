"""Report what LLaMA-Factory's environment holds, as one JSON line, run by its own interpreter:

    python envcheck.py  ->  {"llamafactory": "0.9.5", "requirements": [...], "versions": {...},
                             "mismatches": [[requirement, name, installed]], "openai_error": null}

requirements are the pins LLaMA-Factory checks at start (extras/misc.py check_dependencies, the check
DISABLE_VERSION_CHECK=1 skips); openai_error is set when openai is installed but cannot be imported (TRL
imports it whenever it is installed, so training would fail at start). Stdlib + packaging; no dsforge imports.
"""

import importlib.metadata as md
import importlib.util
import json
import os
import re
import sys


def main() -> None:
    """Print the environment report (the JSON line of the module doc) on stdout; always exits 0.

    requirements are read from llamafactory/extras/misc.py check_dependencies' check_version(...)
    calls; a pin whose package is not installed is left out of versions and mismatches.
    """
    out = {"python": sys.version.split()[0], "llamafactory": None, "requirements": [], "versions": {},
           "mismatches": [], "openai_error": None}
    try:
        out["llamafactory"] = md.version("llamafactory")
    except md.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("llamafactory")
    if spec and spec.submodule_search_locations:
        misc = os.path.join(list(spec.submodule_search_locations)[0], "extras", "misc.py")
        try:
            src = open(misc, encoding="utf-8").read()
            body = src[src.find("def check_dependencies"):]
            body = body[:body.find("\ndef ", 1)]
            out["requirements"] = re.findall(r'check_version\(\s*"([^"]+)"', body)
        except OSError:
            pass
    from packaging.requirements import Requirement

    for text in out["requirements"]:
        req = Requirement(text)
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            continue
        out["versions"][req.name] = have
        if not req.specifier.contains(have, prereleases=True):
            out["mismatches"].append([text, req.name, have])
    if importlib.util.find_spec("openai") is not None:
        try:
            import openai  # noqa: F401
        except Exception as err:  # any failure at import is what TRL would hit
            out["openai_error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
