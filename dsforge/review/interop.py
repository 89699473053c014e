"""Label Studio JSON tasks and Argilla records, as files (no server): export items to label
elsewhere, import the labels back as review events (then the usual judged records).

Score mode: one task/record per candidate, question `score` (rating 1-5). Pairwise: one per pair,
question `verdict` (choice A / B / tie, A = answer_a). Both: optional free-text question `flag`
(a non-empty text flags the answer, or the pair's answers, as unusable).

Label Studio: a JSON list of tasks {"id", "data": {...}, "annotations": [{"completed_by",
"lead_time", "was_cancelled", "result": [{"from_name", "type", "value"}]}]} (its "JSON" export);
the export also writes OUT.labeling-config.xml to paste into the project. Argilla (2.x): a JSON
list of records {"id", "fields": {...}, "metadata": {...}, "suggestions": {...}, "responses":
{question: [{"value", "user_id"}]}} as `Record.to_dict()` writes them.
"""

from __future__ import annotations

import json

from dsforge.errors import InputError, UsageError
from dsforge.io import atomic_write
from dsforge.review.items import load_dataset
from dsforge.review.store import EventLog, events_path, new_header, rubric_info, write_output

LS_CONFIG = {
    "score": """<View>
  <Text name="prompt" value="$prompt"/>
  <Text name="answer" value="$answer"/>
  <Rating name="score" toName="answer" maxRating="5" required="true"/>
  <TextArea name="flag" toName="answer" placeholder="unusable? say why" maxSubmissions="1"/>
</View>
""",
    "pairwise": """<View>
  <Text name="prompt" value="$prompt"/>
  <Text name="answer_a" value="$answer_a"/>
  <Text name="answer_b" value="$answer_b"/>
  <Choices name="verdict" toName="answer_a" choice="single" required="true">
    <Choice value="A"/><Choice value="B"/><Choice value="tie"/>
  </Choices>
  <TextArea name="flag" toName="answer_a" placeholder="unusable? say why" maxSubmissions="1"/>
</View>
""",
}


def _prompt_text(messages: list[dict]) -> str:
    return "\n\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages)


def _tasks(ds) -> list[dict]:
    """(data, metadata) per exported unit, in item order."""
    out = []
    for it in ds.items:
        row = ds.by_cid[it.cids[0]]
        base = {"prompt": _prompt_text(row["messages"]), "prompt_id": it.prompt_id, "item": it.key}
        if ds.mode == "pairwise":
            a, b = it.cids
            out.append({**base, "answer_a": ds.by_cid[a]["text"], "answer_b": ds.by_cid[b]["text"],
                        "candidate_a": a, "candidate_b": b})
        else:
            for cid in it.cids:
                c = ds.by_cid[cid]
                out.append({**base, "answer": c["text"], "candidate_id": cid, "model": c.get("model"),
                            "temperature": c.get("temperature"),
                            "judge_score": (c.get("judge") or {}).get("score")})
    return out


def export_file(src: str, out: str, fmt: str, *, mode: str = "score", max_pairs_per_prompt: int = 3,
                seed: int = 0) -> int:
    """Write SRC's items as Label Studio tasks or Argilla records (a JSON list) to OUT; returns the count.

    `fmt`: "labelstudio" (also writes OUT.labeling-config.xml) or "argilla"; `mode`: "score" (one
    unit per candidate) or "pairwise" (one per pair). Writes are atomic. Raises UsageError (exit 2)
    for another mode or format, an OUT that is not .json or would replace SRC; InputError (exit 1)
    for unreadable candidate rows.
    """
    if mode not in LS_CONFIG:
        raise UsageError(f"--export supports --mode score and pairwise, not {mode}")
    if not out.endswith(".json"):
        raise UsageError(f"-o {out}: the export is one JSON list; name it .json")
    from dsforge.io import guard_outputs

    guard_outputs({"FILE": src}, {"-o": out, "config": out + ".labeling-config.xml"})
    ds = load_dataset(src, mode, max_pairs_per_prompt=max_pairs_per_prompt, seed=seed)
    units = _tasks(ds)
    if fmt == "labelstudio":
        recs = [{"id": i + 1, "data": u} for i, u in enumerate(units)]
        with atomic_write(out + ".labeling-config.xml") as f:
            f.write(LS_CONFIG[mode])
    elif fmt == "argilla":
        recs = []
        for u in units:
            fields = {k: u[k] for k in ("prompt", "answer", "answer_a", "answer_b") if k in u}
            meta = {k: v for k, v in u.items() if k not in fields and k != "judge_score" and v is not None}
            rec = {"id": u["item"] if mode == "pairwise" else u["candidate_id"], "fields": fields, "metadata": meta,
                   "suggestions": {}, "responses": {}}
            if u.get("judge_score") is not None:
                rec["suggestions"]["score"] = {"value": u["judge_score"], "agent": "llm-judge"}
            recs.append(rec)
    else:
        raise UsageError(f"unknown export format '{fmt}'", "labelstudio or argilla")
    with atomic_write(out) as f:
        json.dump(recs, f, ensure_ascii=False, indent=1)
    return len(recs)


def _decisions(rec: dict, path: str, i: int):
    """(annotator, seconds, cancelled, {question: value}) per labeller of one task/record."""
    if "annotations" in rec or "data" in rec:
        for ann in rec.get("annotations") or []:
            who = ann.get("completed_by")
            if isinstance(who, dict):
                who = who.get("email") or who.get("id")
            vals = {}
            for r in ann.get("result") or []:
                v = r.get("value") or {}
                if r.get("type") == "rating":
                    vals[r.get("from_name")] = v.get("rating")
                elif r.get("type") == "choices":
                    vals[r.get("from_name")] = (v.get("choices") or [None])[0]
                elif r.get("type") == "textarea":
                    vals[r.get("from_name")] = " ".join(v.get("text") or [])
            yield f"ls-{who}", float(ann.get("lead_time") or 0), bool(ann.get("was_cancelled")), rec.get("data") or {}, vals
    elif "fields" in rec:
        by_user: dict[str, dict] = {}
        for q, resps in (rec.get("responses") or {}).items():
            for r in resps or []:
                by_user.setdefault(str(r.get("user_id")), {})[q] = r.get("value")
        for user, vals in by_user.items():
            yield f"argilla-{user}", 0.0, False, {**(rec.get("metadata") or {}), **(rec.get("fields") or {})}, vals
    else:
        raise InputError("neither a Label Studio task nor an Argilla record", "export from those tools as JSON",
                         path=path, line=i)


def import_file(src: str, labels: str, out: str, *, mode: str = "score", max_pairs_per_prompt: int = 3,
                seed: int = 0) -> dict:
    """Append the labels in LABELS (Label Studio or Argilla JSON) to OUT's event log as decisions of
    their annotators, then rebuild OUT. Units that match no item of SRC are counted, not guessed.

    Annotators are named "ls-USER" (Label Studio's completed_by) or "argilla-USER_ID"; a cancelled
    Label Studio annotation becomes a skip, a non-empty `flag` answer flags the unit's candidates.
    Returns {events (written), unmatched (units of no item or candidate of SRC), annotators
    (comma-joined, or "nobody"), records (judged records in OUT)}. Raises InputError (exit 1) when
    LABELS is not JSON or holds something that is neither a task nor a record, UsageError (exit 2)
    when OUT's event log holds another mode.
    """
    ds = load_dataset(src, mode, max_pairs_per_prompt=max_pairs_per_prompt, seed=seed)
    try:
        with open(labels, encoding="utf-8") as f:
            recs = json.load(f)
    except ValueError as err:
        raise InputError(f"not JSON ({err})", "give the tool's JSON export", path=labels) from None
    if isinstance(recs, dict):
        recs = recs.get("records") or recs.get("tasks") or [recs]
    if not isinstance(recs, list):
        raise InputError("the labels are neither a list of tasks/records nor an object holding one",
                         "give the tool's JSON export", path=labels)
    decided = []   # read every record before the first event is written: a bad record appends nothing
    for i, rec in enumerate(recs, 1):
        try:
            if not isinstance(rec, dict):
                raise TypeError(type(rec).__name__)
            for d in _decisions(rec, labels, i):
                if not isinstance(d[3], dict) or not isinstance(d[4], dict):
                    raise TypeError("its data/fields is not an object")
                decided.append(d)
        except (TypeError, AttributeError, ValueError) as err:
            raise InputError(f"record {i} has an unexpected shape ({err})",
                             "give the tool's unmodified JSON export", path=labels) from None
    log = EventLog(events_path(out), new_header(ds, mode, rubric_info(f"imported from {labels}", "imported"), seed))
    n, unmatched, who = 0, 0, set()
    for annotator, seconds, cancelled, data, vals in decided:
        key = data.get("item") or data.get("prompt_id")
        item = ds.item_of(key) if key else None
        if item is None:
            unmatched += 1
            continue
        src_tag = {"source": "labelstudio" if annotator.startswith("ls-") else "argilla"}
        who.add(annotator)
        if cancelled:
            log.add("skip", annotator, item.key, seconds=seconds, **src_tag)
            n += 1
            continue
        cands = [data.get("candidate_a"), data.get("candidate_b")] if mode == "pairwise" \
            else [data.get("candidate_id")]
        if any(c not in item.cids for c in cands):
            unmatched += 1
            continue
        if vals.get("flag"):
            for c in cands:
                log.add("flag", annotator, item.key, cand=c, reason=str(vals["flag"])[:500], seconds=seconds,
                        **src_tag)
                n += 1
            continue
        if mode == "pairwise" and vals.get("verdict") in ("A", "B", "tie"):
            v = vals["verdict"]
            log.add("label", annotator, item.key, cand=cands[1] if v == "B" else cands[0], value=v,
                    first=cands[0], seconds=seconds, **src_tag)
            n += 1
        elif mode == "score" and vals.get("score") in (1, 2, 3, 4, 5):
            log.add("label", annotator, item.key, cand=cands[0], value=int(vals["score"]), seconds=seconds,
                    **src_tag)
            n += 1
    records = write_output(ds, log, out)
    return {"events": n, "unmatched": unmatched, "annotators": ", ".join(sorted(who)) or "nobody",
            "records": records}
