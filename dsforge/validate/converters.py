"""LLaMA-Factory 0.9.5's converters (data/converter.py: alpaca, sharegpt, openai) mirrored as methods of
validate's RowChecker: each turns one row into (prompt, response, why), prompt and response being lists
of (role, content), why a (code, field, detail) drop reason or None; None when LLaMA-Factory would crash
(the crash is flagged)."""

from __future__ import annotations

import json


class Converters:
    """Mixin of RowChecker: the three converters and their helpers (uses self.a, self.get, self.flag)."""

    def _alpaca(self, row: dict, path: str, line: int):
        a, get = self.a, self.get
        prompt: list = []
        if a.history:
            hist = get(row, a.history, path, line)
            if isinstance(hist, list):
                for item in hist:
                    if not (isinstance(item, (list, tuple, str)) and len(item) == 2):
                        self.flag("history_shape", path, line, a.history, f"history item {json.dumps(item)[:60]} "
                                  "is not an [instruction, response] pair; LLaMA-Factory raises ValueError")
                        return None
                    prompt.append(("user", item[0]))
                    prompt.append(("assistant", item[1]))
        query = []
        if a.prompt:
            v = get(row, a.prompt, path, line)
            if v:
                query.append(v)
        if a.query:
            v = get(row, a.query, path, line)
            if v:
                query.append(v)
        for q in query:
            if not isinstance(q, str):
                self.flag("field_type_crash", path, line, a.prompt, f"'{a.prompt}'/'{a.query}' holds "
                          f"{type(q).__name__} {json.dumps(q)[:40]}; LLaMA-Factory's join raises TypeError")
                return None
        prompt.append(("user", "\n".join(query)))
        why = None
        kto = get(row, a.kto_tag, path, line) if a.kto_tag else None
        if a.kto_tag and isinstance(kto, bool):
            resp = ("assistant", get(row, a.response, path, line))
            response = [resp, ("assistant", "")] if kto else [("assistant", ""), resp]
        elif a.ranking and isinstance(c := get(row, a.chosen, path, line), str) and isinstance(
                r := get(row, a.rejected, path, line), str):
            response = [("assistant", c), ("assistant", r)]
        else:
            out = get(row, a.response, path, line) if a.response else None
            if a.response and isinstance(out, str):
                response = [("assistant", out)]
            else:
                response = []
                if a.ranking:
                    why = ("ranking_shape", a.chosen, "chosen/rejected must both be strings in alpaca ranking rows")
                elif a.kto_tag and kto is not None:
                    why = ("kto_tag_type", a.kto_tag, f"kto_tag is {json.dumps(kto)} ({type(kto).__name__}), not a boolean")
                elif not a.response and (a.chosen or a.rejected):   # ranking columns, but ranking is not true
                    why = ("missing_response", a.chosen or a.rejected, "the entry maps chosen/rejected but not "
                           "\"ranking\": true, so LLaMA-Factory reads no response")
                elif not a.response and a.prompt and self.stage != "ppo":
                    why = ("pretrain_data", a.prompt, f"this is pretraining data (only '{a.prompt}', no response "
                           f"column): use stage pt, not {self.stage}")
                elif out is None:
                    why = ("missing_response", a.response, None)
                else:
                    why = ("response_not_string", a.response, f"'{a.response}' is {type(out).__name__}, not a string")
        return prompt, response, why

    def _messages(self, row: dict, path: str, line: int):
        a = self.a
        msgs = self.get(row, a.messages, path, line)
        if not isinstance(msgs, list):
            if a.messages in self.present or a.messages not in self.absent:
                self.flag("messages_not_list", path, line, a.messages,
                          f"'{a.messages}' is {type(msgs).__name__ if msgs is not None else 'missing'}, not a list")
            return None
        for m in msgs:
            if not isinstance(m, dict):
                self.flag("message_not_object", path, line, a.messages)
                return None
            self.msg_keys.update(m)
        return msgs

    def _sharegpt(self, row: dict, path: str, line: int):
        a = self.a
        msgs = self._messages(row, path, line)
        if msgs is None:
            return None
        rt, ct = a.role_tag, a.content_tag
        if a.system_tag and msgs and msgs[0].get(rt) == a.system_tag:
            msgs = msgs[1:]
            self._system_both(row, path, line)
        elif a.system:
            self.get(row, a.system, path, line)
        aligned = []
        why = None
        for i, m in enumerate(msgs):
            role = m.get(rt)
            if role not in self.accept[i % 2]:
                why = ("role_order", a.messages, f"turn {i + 1} has role {json.dumps(role)}, expected one of "
                       f"{[t for t in self.accept[i % 2] if t]}")
                break
            aligned.append((self.tag_mapping[role], m.get(ct)))
        return self._finish_messages(row, path, line, msgs, aligned, why)

    def _openai(self, row: dict, path: str, line: int):
        a = self.a
        msgs = self._messages(row, path, line)
        if msgs is None:
            return None
        rt, ct = a.role_tag, a.content_tag
        system = None
        if a.system_tag and msgs and msgs[0].get(rt) == a.system_tag:
            system = msgs[0].get(ct)
            msgs = msgs[1:]
            self._system_both(row, path, line)
        elif a.system:
            system = row.get(a.system)
        tools = row.get(a.tools) if a.tools else None
        if not tools and not (isinstance(system, str) and ("detailed thinking on" in system or
                                                           "detailed thinking off" in system)):
            self.flag("openai_thinking_off", path, line, a.messages)
        aligned, tool_responses = [], []
        for m in msgs:
            role, content = m.get(rt), m.get(ct)
            if role in (a.assistant_tag, a.function_tag) and m.get("tool_calls"):
                calls = m["tool_calls"] if isinstance(m["tool_calls"], list) else [m["tool_calls"]]
                self._tool_calls_mangled(calls, content, path, line)
                content = json.dumps([t.get("function") if isinstance(t, dict) else None for t in calls],
                                     ensure_ascii=False)
                role = a.function_tag
            if role == a.observation_tag:
                if not isinstance(content, str):
                    self.flag("content_not_string", path, line, a.messages, f"a tool message is "
                              f"{json.dumps(content)[:40]}, not a string; LLaMA-Factory's openai converter raises "
                              "TypeError")
                    return None
                tool_responses.append(content)
                continue
            if tool_responses:
                aligned.append(("observation", "\n</tool_response>\n<tool_response>\n".join(tool_responses)))
                tool_responses = []
            if role not in self.tag_mapping:
                self.flag("unknown_role", path, line, a.messages, f"role {json.dumps(role)} is not one of the "
                          f"declared tags {[t for t in self.tag_mapping if t]}")
                return None
            aligned.append((self.tag_mapping[role], content))
        if tool_responses:
            self.flag("tool_response_dropped", path, line, a.messages, f"{len(tool_responses)} tool message(s) "
                      "after the last assistant turn are dropped")
        why = None
        accept = (("user", "observation"), ("assistant", "function"))
        for i, (role, _) in enumerate(aligned):
            if role not in accept[i % 2]:
                why = ("role_order", a.messages, f"turn {i + 1} has role {role}, expected one of {list(accept[i % 2])}")
                break
        return self._finish_messages(row, path, line, msgs, aligned, why)

    def _finish_messages(self, row, path, line, msgs, aligned, why):
        a = self.a
        ranking = bool(a.ranking)
        if why is None and ((not ranking and len(aligned) % 2 != 0) or (ranking and len(aligned) % 2 == 0)):
            n = len(aligned)
            why = ("message_count", a.messages, f"{n} turns after the system turn; "
                   + ("ranking needs an odd count ending on the user turn" if ranking else
                      "SFT needs an even count ending on the assistant turn"))
        if why is not None:
            return [], [], why
        kto = self.get(row, a.kto_tag, path, line) if a.kto_tag else None
        if a.kto_tag and isinstance(kto, bool):
            resp = aligned[-1:]
            response = resp + [("assistant", "")] if kto else [("assistant", "")] + resp
            return aligned[:-1], response, None
        if ranking:
            c = self.get(row, a.chosen, path, line)
            r = self.get(row, a.rejected, path, line)
            if isinstance(c, dict) and isinstance(r, dict):
                response = []
                for name, m in ((a.chosen, c), (a.rejected, r)):
                    role = m.get(a.role_tag)
                    if role not in self.accept[1]:
                        self.flag("chosen_role", path, line, name, f"'{name}' has role {json.dumps(role)}")
                    if role not in self.tag_mapping:
                        self.flag("unknown_role", path, line, name, f"'{name}' has role {json.dumps(role)}, which "
                                  "no tag declares (KeyError in LLaMA-Factory)")
                        return None
                    response.append((self.tag_mapping[role], m.get(a.content_tag)))
                return aligned, response, None
            return aligned[:-1], aligned[-1:], ("ranking_shape", a.chosen,
                                                "chosen/rejected must each be one message object")
        if not aligned:
            return [], [], ("empty_conversation", a.messages, None)
        why = None
        if a.kto_tag and kto is not None:
            why = ("kto_tag_type", a.kto_tag, f"kto_tag is {json.dumps(kto)} ({type(kto).__name__}), not a boolean")
        return aligned[:-1], aligned[-1:], why

    def _system_both(self, row: dict, path: str, line: int) -> None:
        if self.a.system and row.get(self.a.system):
            self.flag("system_column_ignored", path, line, self.a.system, f"the first message is a system turn, so "
                      f"'{self.a.system}' ({str(row[self.a.system])[:30]!r}) is ignored")

    def _tool_calls_mangled(self, calls: list, content, path: str, line: int) -> None:
        """Name the text the openai converter silently drops beside tool_calls (string arguments are named where
        the function turn is encoded, for every format)."""
        fld = self.a.messages
        if isinstance(content, str) and content.strip():
            self.flag("tool_calls_text_lost", path, line, fld, f"the assistant text {content[:40]!r} is replaced by "
                      f"the JSON of its {len(calls)} tool call(s) and never trained")
