// The review page: sign in, the progress line, the error banner, keys and buttons.

import * as api from "./api.js";
import { Review } from "./review.js";

const $ = (id) => document.getElementById(id);

function showError(err) {
  const text = err instanceof api.ApiError ? err.detail : String(err?.message ?? err);
  $("error-text").textContent = text;
  $("error").dataset.status = err instanceof api.ApiError ? String(err.status) : "";
  $("error").hidden = false;
  if (err instanceof api.ApiError && err.status === 401) signOut({ release: false });
}

function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

async function refreshProgress() {
  if (!api.token()) return;
  try {
    const since = encodeURIComponent(api.since());
    const { data } = await api.get(`/queue/progress?since=${since}`);
    const el = $("progress");
    el.hidden = false;
    Object.assign(el.dataset, { labeled: data.labeled, remaining: data.remaining, mine: data.mine });
    const pace = data.per_hour === null ? "" : ` · ${data.per_hour.toFixed(0)}/h`;
    el.textContent = `${data.labeled} labeled · ${data.remaining} left · `
      + `${data.mine} decisions by you${pace}`;
  } catch (err) {
    showError(err);
  }
}

const review = new Review({ onError: showError, onDecision: refreshProgress });

// Run an action; its error (the API's message) goes to the banner.
const act = (fn) => api.guarded(fn, showError);

async function start() {
  const fromLink = api.tokenFromFragment();
  if (fromLink) api.signIn(fromLink);
  if (!api.token()) {
    showLogin();
    return;
  }
  let me;
  try {
    me = (await api.get("/me")).data;
  } catch (err) {
    showError(err);
    return;
  }
  $("who-name").textContent = `${me.name} (${me.role}${me.service ? ", service token" : ""})`;
  $("who").dataset.name = me.name;
  $("who").hidden = false;
  $("to-quality").hidden = me.role === "annotator";
  $("login").hidden = true;
  $("review").hidden = false;
  review.show("start");
  document.body.dataset.signedIn = "true";
  refreshProgress();
}

function showLogin() {
  $("who").hidden = true;
  $("progress").hidden = true;
  $("review").hidden = true;
  $("login").hidden = false;
  document.body.dataset.signedIn = "false";
  $("token-input").focus();
}

async function signOut({ release = true } = {}) {
  if (release) await review.leave();
  else review.reset();
  api.signOut();
  showLogin();
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = $("token-input").value.trim();
  $("token-input").value = "";
  if (!value) return;
  clearError();
  api.signIn(value);
  start();
});
$("signout").addEventListener("click", act(() => signOut()));
$("error-close").addEventListener("click", clearError);
$("next").addEventListener("click", act(() => review.next()));
$("skip").addEventListener("click", act(() => review.skip()));
$("accept-all").addEventListener("click", act(() => review.acceptAll()));
$("mode").addEventListener("click", () => review.toggleMode());
$("accept").addEventListener("click", act(() => review.decide("accept")));
$("reject").addEventListener("click", act(() => review.decide("reject")));
$("label-select").addEventListener("change", (ev) => review.relabel(ev.target.value, { delayMs: 600 }));
$("label-select").addEventListener("blur", act(() => review.flushEdits()));
$("segment-accept").addEventListener("click", act(() => review.acceptMask()));
$("segment-undo").addEventListener("click", () => review.undoSegment());
$("segment-clear").addEventListener("click", () => review.clearSegment());
$("span-add").addEventListener("click", act(() => review.addSpan()));
$("min-score").addEventListener("input", (ev) => review.setMinScore(Number(ev.target.value)));
$("text").addEventListener("click", (ev) => {
  const key = ev.target.closest("mark")?.dataset.key;
  if (key?.startsWith("s") && window.getSelection().isCollapsed) review.select(Number(key.slice(1)));
});
// Leaving the page gives the lease back (keepalive: the request outlives the page).
window.addEventListener("pagehide", () => review.leave({ keepalive: true }));

const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

function stage() {
  return review.kind === "text" ? $("text") : $("canvas");
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || $("review").hidden) return;
  const inControl = ev.target.closest?.("input, select, textarea, button");
  if (ev.key === "Escape") {
    if (inControl) stage().focus();
    else if (review.prompt.steps.length) review.clearSegment();
    else review.select(null);
    clearError();
    return;
  }
  if (inControl && ev.target.tagName !== "BUTTON") return;
  if (ev.key === "Tab") {
    if (inControl || !review.item) return;
    ev.preventDefault();
    review.cycle(ev.shiftKey ? -1 : 1);
    return;
  }
  const segmenting = review.mode === "segment";
  const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  const actions = {
    n: () => review.next(),
    s: () => review.skip(),
    a: () => (ev.shiftKey ? review.acceptAll() : review.decide("accept")),
    r: () => review.decide("reject"),
    m: () => review.toggleMode(),
    z: () => review.undoSegment(),
    e: () => review.addSpan(),
    l: () => focusLabel(),
    "[": () => review.setMinScore(review.minScore - 0.05),
    "]": () => review.setMinScore(review.minScore + 0.05),
    Enter: () => (segmenting ? review.acceptMask() : review.decide("accept")),
  };
  if (ARROWS[key] && !segmenting) {
    const [dx, dy] = ARROWS[key].map((v) => v * (ev.shiftKey ? 10 : 1));
    ev.preventDefault();
    review.nudge(dx, dy, ev.altKey);
    return;
  }
  if (/^[1-9]$/.test(key) && review.selectedSuggestion()) {
    review.relabel(review.labels[Number(key) - 1]);
    return;
  }
  if (ev.target.tagName === "BUTTON" && (key === "Enter" || key === " ")) return;
  const action = actions[key === "{" ? "[" : key === "}" ? "]" : key];
  if (!action) return;
  ev.preventDefault();
  act(action)();
}

function focusLabel() {
  if (review.mode === "segment") $("segment-label").focus();
  else if (review.kind === "text" && review.textSelection) $("span-label").focus();
  else if (review.selectedSuggestion()) $("label-select").focus();
}

document.addEventListener("keydown", onKey);
start();
