// The side panels and the item bar: plain DOM, refreshed from the Review's state.
// Data attributes on the list items are the page's contract with its tests.

import { labelHue } from "./canvas.js";

const $ = (id) => document.getElementById(id);

function option(label) {
  const el = document.createElement("option");
  el.value = label;
  el.textContent = label;
  return el;
}

export function fillLabels(labels) {
  for (const id of ["label-select", "segment-label", "span-label"]) {
    const select = $(id);
    select.replaceChildren(...labels.map(option));
    select.disabled = labels.length === 0 && id !== "label-select";
    select.title = labels.length ? "" : "this item has no label set (no prediction yet)";
  }
}

function regionText(region) {
  if (!region) return "whole item";
  if (region.kind === "span") return `“${region.text ?? ""}” [${region.start}, ${region.end})`;
  const [x1, y1, x2, y2] = region.box_xyxy.map((v) => Math.round(v));
  return `${region.kind} ${x1},${y1} – ${x2},${y2}`;
}

export function renderSuggestionList(suggestions, onSelect) {
  const list = $("suggestions");
  const rows = suggestions.map((s) => {
    const li = document.createElement("li");
    li.dataset.suggestionId = String(s.suggestion_id);
    li.dataset.label = s.label;
    li.dataset.score = String(s.score);
    li.dataset.status = s.status;
    li.dataset.kind = s.region ? s.region.kind : "item";
    li.dataset.visible = String(s.visible);
    li.dataset.selected = String(s.selected);
    li.hidden = !s.visible;
    li.setAttribute("aria-selected", String(s.selected));
    li.style.setProperty("--hue", String(labelHue(s.label)));
    const name = document.createElement("b");
    name.textContent = s.label;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `${(s.score * 100).toFixed(0)}%`;
    const where = document.createElement("span");
    where.className = "where";
    where.textContent = regionText(s.region?.kind === "box" ? { ...s.region, box_xyxy: s.box } : s.region);
    const status = document.createElement("span");
    status.className = `status status-${s.status}`;
    status.textContent = s.status;
    const doubt = document.createElement("span");
    doubt.className = "uncertainty";
    li.dataset.uncertainty = s.uncertainty == null ? "" : String(s.uncertainty);
    doubt.textContent = s.uncertainty == null ? "" : `u ${s.uncertainty.toFixed(2)}`;
    const classes = (s.top_classes ?? []).map((c) => `${c.label} ${(c.prob * 100).toFixed(0)}%`);
    li.dataset.topClasses = classes.join(", ");
    li.title = classes.length
      ? `uncertainty ${s.uncertainty?.toFixed(3) ?? "–"} · top classes: ${classes.join(", ")}`
      : "";
    li.append(name, score, status, doubt, where);
    li.addEventListener("click", () => onSelect(s.suggestion_id));
    return li;
  });
  list.replaceChildren(...rows);
  const shown = suggestions.filter((s) => s.visible).length;
  list.dataset.shown = String(shown);
  list.dataset.hiddenCount = String(suggestions.length - shown);
}

export function renderAdded(added) {
  $("added").replaceChildren(...added.map((a) => {
    const li = document.createElement("li");
    li.dataset.kind = a.region.kind;
    li.dataset.label = a.label;
    li.textContent = `${a.label} · ${regionText(a.region)}`;
    return li;
  }));
}

export function renderInfo(review) {
  const { item, lease, mode } = review;
  const info = $("item-info");
  const why = $("why");
  info.dataset.itemId = item ? item.item_id : "";
  info.dataset.kind = item ? item.kind : "";
  info.textContent = item ? `${item.kind} ${item.item_id.slice(0, 12)}` : "";
  info.title = item ? item.item_id : "";
  why.dataset.score = lease?.score ?? "";
  why.dataset.rank = lease?.rank ?? "";
  why.textContent = lease
    ? `uncertainty ${lease.score === null ? "–" : lease.score.toFixed(3)} · rank ${lease.rank ?? "–"}`
    : "";
  why.title = "why it is here: its queue score (higher = label first) and its place in the queue";
  const image = review.kind === "image";
  $("mode-name").textContent = mode;
  $("mode").setAttribute("aria-pressed", String(mode === "segment"));
  $("mode").disabled = !image;
  document.body.dataset.mode = image ? mode : "";
  for (const id of ["next", "skip", "accept-all"]) $(id).disabled = !item && id !== "next";
  const s = review.selectedSuggestion();
  $("accept").disabled = !s;
  $("reject").disabled = !s;
  $("label-select").disabled = !s;
  const top = (s?.top_classes ?? []).slice(0, 3).map((c) => `${c.label} ${(c.prob * 100).toFixed(0)}%`);
  $("selected-info").textContent = s
    ? `${review.current(s).label} ${(s.score * 100).toFixed(0)}% · ${s.status}` +
      (top.length ? ` · ${top.join(", ")}` : "")
    : "Nothing selected";
  if (s) $("label-select").value = review.current(s).label;
  const step = review.prompt.steps.length;
  $("segment-accept").disabled = !step;
  $("segment-undo").disabled = !step;
  $("segment-clear").disabled = !step;
  const picked = review.textSelection;
  $("span-add").disabled = !picked;
  $("span-info").textContent = picked
    ? `Selected “${picked.text}” [${picked.start}, ${picked.end})`
    : "Select text with the mouse to add an entity.";
}
