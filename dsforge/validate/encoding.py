"""Template encoding rules mirrored from LLaMA-Factory 0.9.5 (formatter.py ToolFormatter/FunctionFormatter,
mm_plugin.py): the checks that depend on the run's template (tools, function calls, media), as methods of
validate's RowChecker."""

from __future__ import annotations

import json
import os
import re


class EncodingRules:
    """Mixin of RowChecker: tool descriptions, function-call messages and media (uses self.a, self.tmpl,
    self.flag, self.media_dir, self.report)."""

    def _tools_problem(self, row: dict) -> tuple[str, str] | None:
        """Mirror of ToolFormatter.apply under the template's tool format: (code, detail) when it raises."""
        a = self.a
        if not a.tools:
            return None
        tools = row.get(a.tools)
        if a.formatting == "openai" and isinstance(tools, (dict, list)):
            tools = json.dumps(tools, ensure_ascii=False)
        if not tools:
            return None
        if not isinstance(tools, str):
            return "tools_json", f"'{a.tools}' is {type(tools).__name__}, not a JSON string"
        try:
            parsed = json.loads(tools)
        except ValueError:
            return "tools_json", (f"'{a.tools}' is {tools[:40]!r}, not JSON: LLaMA-Factory raises 'Invalid JSON format "
                                  "in tool description' and the whole dataset fails")
        if not isinstance(parsed, (list, dict, str)):
            return "tools_shape", f"'{a.tools}' is the JSON {type(parsed).__name__} {tools[:30]!r}, not a list"
        fmt = self.tmpl["tool_format"]
        if not parsed or fmt == "seed_oss":
            return None
        for tool in (parsed if isinstance(parsed, list) else list(parsed)):
            if not isinstance(tool, dict):
                return "tools_shape", f"tool {json.dumps(tool)[:40]} is not an object"
            fn = tool.get("function", "") if tool.get("type") == "function" else tool
            need = ("name", "parameters.properties") if fmt == "default" else ("name",) if fmt == "glm4" else ()
            props = fn.get("parameters", {}).get("properties") if isinstance(fn, dict) and isinstance(
                fn.get("parameters"), dict) else None
            if need and not (isinstance(fn, dict) and "name" in fn):
                return "tools_shape", f"tool {json.dumps(tool)[:50]} has no 'name' (tool format {fmt})"
            if "parameters.properties" in need and not (isinstance(props, dict) and all(
                    isinstance(v, dict) for v in props.values())):
                return "tools_shape", (f"tool '{fn.get('name')}' has no parameters.properties object (tool format "
                                       f"{fmt} reads it)")
        return None

    def _function_problem(self, content: str) -> str | None:
        """Mirror of FunctionFormatter.apply: why a function/tool-call message makes LLaMA-Factory raise.
        Sets self.string_args to the name of a call whose arguments is a string (trained JSON-encoded twice)."""
        self.string_args = None
        t = self.tmpl
        tcw, thw = t["tool_call_words"], t["thought_words"]
        m = re.search(re.escape(tcw[0]) + "(.*?)" + re.escape(tcw[1]), content, re.S) if len(tcw) == 2 else None
        if m is not None:
            part = m.group(1)
        else:
            th = re.search(re.escape(thw[0]) + "(.*?)" + re.escape(thw[1]), content, re.S) if len(thw) == 2 else None
            part = content.replace(th.group(0), "") if th else content
        try:
            calls = json.loads(part)
        except ValueError:
            return f"function_call content {content[:40]!r} is not JSON (after the template's thought/tool-call markers)"
        for tc in calls if isinstance(calls, list) else [calls]:
            if not (isinstance(tc, dict) and "name" in tc and "arguments" in tc):
                return f"tool call {json.dumps(tc)[:50]} needs \"name\" and \"arguments\" (LLaMA-Factory raises)"
            if isinstance(tc["arguments"], str) and self.string_args is None:
                self.string_args = (tc["name"], tc["arguments"])
        return None

    def _media_problem(self, row: dict, msgs: list, path: str, line: int) -> bool:
        """Mirror of the template's mm_plugin on one kept row; True when LLaMA-Factory would raise."""
        a, t = self.a, self.tmpl
        for col, kind, ph in ((a.images, "image", "<image>"), (a.videos, "video", "<video>"),
                              (a.audios, "audio", "<audio>")):
            if not col:
                continue
            media = row.get(col)
            items = [] if media is None else media if isinstance(media, list) else [media]
            # LLaMA-Factory's converter looks media up under media_dir before any template rule, whatever
            # the template (it warns, then the run fails opening the path): reported beside the template's verdict
            missing = False
            for item in items:
                for m in item if isinstance(item, list) else [item]:
                    missing = self._media_missing(m, col, path, line) or missing
            if items and t[f"{kind}_token"] is None:
                self.flag("media_unsupported", path, line, col, f"{len(items)} {kind}(s), but template "
                          f"{self.report.template} has no {kind} token: LLaMA-Factory raises 'This model does not "
                          f"support {kind} input'")
                return True
            if t["mm_plugin"] != "BasePlugin":
                n_ph = sum(c.count(ph) for _, c in msgs if isinstance(c, str))
                if n_ph != len(items):
                    self.flag("media_count_crash", path, line, col, f"{n_ph} {ph} placeholder(s) but {len(items)} "
                              f"file(s); template {self.report.template} raises ValueError")
                    return True
            if missing:
                return True
        return False

    def _media_missing(self, m, col: str, path: str, line: int) -> bool:
        if not isinstance(m, str) or self.media_dir is None:
            return False
        if os.path.isfile(os.path.join(self.media_dir, m)):
            return False
        if os.path.isfile(m):
            self.flag("media_cwd", path, line, col, f"{m!r} is not under media_dir {self.media_dir}; it resolves "
                      f"only from the current directory {os.getcwd()}")
            return False
        near = os.path.join(os.path.dirname(path), m)
        hint = ""
        if os.path.isfile(near):
            rel = os.path.relpath(near, self.media_dir)
            hint = f"; it exists at {near}: write it as {rel!r} (relative to media_dir)"
        self.flag("media_missing", path, line, col, f"{m!r} is not a file under media_dir {self.media_dir}" + hint)
        return True

