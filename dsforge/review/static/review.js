// dsforge review page. Text from the data is only ever set with textContent; the only HTML
// inserted is what the server rendered from markdown with raw HTML escaped (candidate.html,
// message.html, rubric_html). The Content-Security-Policy forbids inline scripts besides.
"use strict";

const params = new URLSearchParams(location.search);
let S = null;            // last state from the server
let focus = 0;           // focused candidate index
let shownAt = performance.now();
let showInfo = false;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function safeHtml(html) {
  // server-rendered markdown (raw HTML escaped there); parsed inert, then adopted
  const doc = new DOMParser().parseFromString(html, "text/html");
  const frag = document.createDocumentFragment();
  for (const n of Array.from(doc.body.childNodes)) frag.append(document.adoptNode(n));
  return frag;
}

function msg(text, bad) {
  const m = $("msg");
  m.textContent = text || "";
  m.className = bad ? "bad" : "";
}

async function api(path, body) {
  const q = "annotator=" + encodeURIComponent(params.get("annotator") || "");
  const opts = body ? {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body)} : {};
  const r = await fetch(path + (body ? "" : "?" + q), opts);
  const data = await r.json();
  if (!r.ok) throw new Error(data.error + (data.hint ? " — " + data.hint : ""));
  return data;
}

async function load() {
  try { show(await api("/api/state")); } catch (e) { msg(e.message, true); }
}

// Actions run one after another (a fast typist's keys are queued, never dropped); each reads the
// state and focus when its turn comes, so "4 2 5" scores three answers in a row.
let queue = Promise.resolve();

function act(action, extra) {
  const run = async () => {
    if (!S || (action !== "undo" && !S.item)) return;
    const x = typeof extra === "function" ? extra() : (extra || {});
    if (x === null) return;
    const seconds = (performance.now() - shownAt) / 1000;
    const body = Object.assign({annotator: S.annotator, action, item: S.item ? S.item.key : null,
                                seconds: Math.round(seconds * 1000) / 1000}, x);
    try {
      const prev = S.item ? S.item.key : null;
      const next = await api("/api/act", body);
      shownAt = performance.now();
      show(next, prev);
      msg(action === "undo" ? "undone" : "");
    } catch (e) {
      msg(e.message, true);
    }
  };
  queue = queue.then(run);
  return queue;
}

const KEYS = {
  score: [["1 – 5", "score the focused answer (then focus moves on)"], ["← → / j k / Tab", "move focus"]],
  rank: [["b", "focused answer is the best"], ["w", "focused answer is the worst"], ["← → / j k / 1 – 9", "move focus"]],
  pairwise: [["a", "A (left) is better"], ["b", "B (right) is better"], ["t", "tie"], ["← → / j k", "move focus"]],
  all: [["f", "flag the focused answer as unusable (asks why)"], ["s", "skip this item"], ["n", "next item (come back later)"],
        ["u / z", "undo your last decision"], ["i", "show / hide model, temperature, judge score"], ["?", "this help"]],
};

function show(state, prevKey) {
  S = state;
  $("who").textContent = state.annotator;
  $("mode").textContent = state.mode;
  const pct = state.total ? (100 * state.done / state.total) : 100;
  $("fill").style.width = pct.toFixed(1) + "%";
  $("count").textContent = `${state.done} / ${state.total} done · ${state.left} left` + (state.skipped ? ` · ${state.skipped} skipped` : "");
  $("b-undo").disabled = !state.can_undo;
  const rb = $("rubric-body");
  rb.replaceChildren(safeHtml(state.rubric_html));
  const keys = $("keys");
  keys.replaceChildren(...KEYS[state.mode].concat(KEYS.all).map(([k, d]) => el("tr", {}, el("td", {}, el("kbd", {}, k)), el("td", {}, d))));
  const item = state.item;
  $("done").hidden = !!item;
  $("prompt").hidden = $("cands").hidden = !item;
  $("status").hidden = !item;
  if (!item) { $("prompt").replaceChildren(); $("cands").replaceChildren(); return; }
  if (item.key !== prevKey) { focus = firstOpen(item); shownAt = performance.now(); }
  renderPrompt(item);
  renderCands(item);
}

function firstOpen(item) {
  if (S.mode !== "score") return 0;
  const i = item.candidates.findIndex((c) => c.label === null && c.flag === null);
  return i < 0 ? 0 : i;
}

function renderPrompt(item) {
  const parts = item.messages.map((m, i) => {
    const last = i === item.messages.length - 1;
    return el("div", {class: "turn " + m.role + (last ? " last" : "")},
              el("div", {class: "role"}, m.role), el("div", {class: "md"}, safeHtml(m.html)));
  });
  $("prompt").replaceChildren(el("div", {class: "item-no"}, `item ${item.index + 1} · prompt ${item.prompt_id.slice(0, 10)}`), ...parts);
  $("prompt").scrollTop = $("prompt").scrollHeight;   // the question being answered is the last turn: keep it in view
  const st = [];
  if (item.skipped) st.push("you skipped this item");
  if (item.complete) st.push("labelled — change it, or press n for the next item");
  if (S.mode === "pairwise" && item.verdict) st.push("verdict: " + (item.verdict === "tie" ? "tie" : item.verdict + " is better"));
  $("status").textContent = st.join(" · ");
}

function labelText(c) {
  if (c.flag !== null) return "flagged: " + c.flag;
  if (c.label === null || c.label === undefined) return "";
  if (S.mode === "score") return "score " + c.label;
  if (S.mode === "rank") return c.label;
  return "";
}

function renderCands(item) {
  const cards = item.candidates.map((c, i) => {
    const head = el("div", {class: "card-head"}, el("span", {class: "slot"}, c.slot), el("span", {class: "chars"}, `${c.chars} chars`));
    const controls = el("div", {class: "controls"});
    if (S.mode === "score") {
      for (const v of [1, 2, 3, 4, 5]) {
        controls.append(el("button", {class: "sc" + (c.label === v ? " on" : ""), title: `score ${v}`,
                                      onclick: () => { focus = i; act("label", {cand: c.cid, value: v}); }}, String(v)));
      }
    } else if (S.mode === "rank") {
      controls.append(el("button", {class: c.label === "best" ? "on" : "", onclick: () => { focus = i; act("label", {cand: c.cid, value: "best"}); }}, "best"),
                      el("button", {class: c.label === "worst" ? "on" : "", onclick: () => { focus = i; act("label", {cand: c.cid, value: "worst"}); }}, "worst"));
    } else {
      const v = i === 0 ? "A" : "B";
      controls.append(el("button", {class: item.verdict === v ? "on" : "", onclick: () => verdict(v)}, `${v} is better`));
      if (i === 0) controls.append(el("button", {class: item.verdict === "tie" ? "on" : "", onclick: () => verdict("tie")}, "tie"));
    }
    controls.append(el("button", {class: "flagb", title: "flag as unusable (f)", onclick: () => { focus = i; openFlag(); }}, "flag"));
    head.append(controls);
    const state = el("div", {class: "label"}, labelText(c));
    const meta = el("div", {class: "meta"}, Object.entries(c.meta).map(([k, v]) => `${k}: ${v}`).join(" · ") || "no metadata");
    meta.hidden = !showInfo;
    const body = el("div", {class: "md body", tabindex: "-1"}, safeHtml(c.html));
    const cls = "card" + (i === focus ? " focus" : "") + (c.flag !== null ? " flagged" : "") +
                (c.label !== null && c.label !== undefined ? " labelled" : "");
    return el("article", {class: cls, "data-cid": c.cid, onclick: () => { if (focus !== i) { focus = i; renderCands(item); } }},
              head, state, meta, body);
  });
  $("cands").replaceChildren(...cards);
  $("cands").className = S.mode === "pairwise" ? "pair" : "";
}

function verdict(v) {
  act("label", () => {
    const c = S.item.candidates;
    return {cand: v === "B" ? c[1].cid : c[0].cid, value: v, first: c[0].cid};
  });
}

function openFlag() {
  if (!S || !S.item) return;
  $("flag-slot").textContent = S.item.candidates[focus].slot;
  $("flag").hidden = false;
  $("flag-reason").value = "";
  $("flag-reason").focus();
}

function closeFlag() { $("flag").hidden = true; $("flag-reason").blur(); }

function moveFocus(d) {
  if (!S || !S.item) return;
  const n = S.item.candidates.length;
  focus = (focus + d + n) % n;
  renderCands(S.item);
  const card = $("cands").children[focus];
  if (card && card.scrollIntoView) card.scrollIntoView({block: "nearest"});
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (!$("help").hidden) { if (e.key === "Escape" || e.key === "?") $("help").hidden = true; return; }
  if (!$("flag").hidden) { if (e.key === "Escape") closeFlag(); return; }   // typing a reason
  const k = e.key;
  const item = S && S.item;
  let handled = true;
  if (k === "u" || k === "z") act("undo");
  else if (k === "?") $("help").hidden = false;
  else if (k === "i") { showInfo = !showInfo; if (item) renderCands(item); }
  else if (!item) handled = false;
  else if (k === "s") act("skip");
  else if (k === "n") act("next");
  else if (k === "f") openFlag();
  else if (k === "ArrowRight" || k === "j" || (k === "Tab" && !e.shiftKey)) moveFocus(1);
  else if (k === "ArrowLeft" || k === "k" || (k === "Tab" && e.shiftKey)) moveFocus(-1);
  else if (S.mode === "score" && /^[1-5]$/.test(k)) {
    let key = null;
    act("label", () => { key = S.item.key; return {cand: S.item.candidates[focus].cid, value: Number(k)}; }).then(() => {
      if (S.item && S.item.key === key) { focus = firstOpen(S.item); renderCands(S.item); }
    });
  }
  else if (S.mode === "rank" && (k === "b" || k === "w")) act("label", () => ({cand: S.item.candidates[focus].cid, value: k === "b" ? "best" : "worst"}));
  else if (S.mode === "rank" && /^[1-9]$/.test(k) && Number(k) <= item.candidates.length) { focus = Number(k) - 1; renderCands(item); }
  else if (S.mode === "pairwise" && (k === "a" || k === "b" || k === "t")) verdict(k === "t" ? "tie" : k.toUpperCase());
  else handled = false;
  if (handled) e.preventDefault();
}

document.addEventListener("DOMContentLoaded", () => {
  document.addEventListener("keydown", onKey);
  $("b-undo").addEventListener("click", () => act("undo"));
  $("b-skip").addEventListener("click", () => act("skip"));
  $("b-next").addEventListener("click", () => act("next"));
  $("b-info").addEventListener("click", () => { showInfo = !showInfo; if (S && S.item) renderCands(S.item); });
  $("b-help").addEventListener("click", () => { $("help").hidden = false; });
  $("help-close").addEventListener("click", () => { $("help").hidden = true; });
  $("flag-cancel").addEventListener("click", closeFlag);
  $("flag").addEventListener("submit", (e) => {
    e.preventDefault();
    const reason = $("flag-reason").value.trim() || "unusable";
    closeFlag();
    act("flag", () => ({cand: S.item.candidates[focus].cid, reason}));
  });
  load();
});
