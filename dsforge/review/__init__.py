"""`dsforge review`: label sampled answers by hand on a local page, and compare humans with LLM judges.

Modules: items (what is labelled: prompts or candidate pairs), store (the append-only event log
and the judged records made from it), render (safe markdown), server (Starlette app + uvicorn),
stats (agreement and time), interop (Label Studio / Argilla files).

The event log `OUT.events.jsonl` is the truth: one fsync'ed line per decision, undo is a
retraction event, a torn last line is cut off on reopen. `OUT` (judged records, `judge.kind =
"human"`) is rebuilt from it atomically while the server runs, on stop and on every reopen, so
`pairs`, `report` and `run` read human labels exactly like LLM judgements.
"""
