// The quality page (GET /quality): agreement per class, gold accuracy per person,
// acceptance per model version over time, the reviewer queue and calibration batches.
// Reviewers and admins only; it signs in with the review page's token (same tab).

import * as api from "./api.js";
import { bars, lines, verdictOf } from "./charts.js";

const $ = (id) => document.getElementById(id);
const fmt = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(2));

function showError(err) {
  $("error-text").textContent = err instanceof api.ApiError ? err.detail : String(err?.message ?? err);
  $("error").hidden = false;
}

const act = (fn) => api.guarded(fn, showError);

function item(text, attrs = {}) {
  const li = document.createElement("li");
  li.textContent = text;
  Object.assign(li.dataset, attrs);
  return li;
}

function renderOverall(report) {
  const a = report.agreement;
  $("kappa").textContent = fmt(a.fleiss_kappa);
  $("kappa-items").textContent = String(a.items);
  const badge = $("kappa-verdict");
  const verdict = verdictOf(a.fleiss_kappa);
  badge.className = `badge ${verdict}`;
  badge.dataset.verdict = verdict;
  badge.textContent = { excellent: "excellent", good: "good", clarify: "clarify the instructions", "n/a": "no data yet" }[verdict];
  $("alpha").textContent = fmt(a.krippendorff_alpha);
  const r = report.resolution;
  $("resolution").textContent = `${r.final_consensus} final by consensus, ${r.final_reviewer} by a `
    + `reviewer, ${r.review} waiting for review, ${r.open} still open; ${report.gold.items} gold items`;
  const list = $("attention-list");
  list.replaceChildren();
  for (const label of report.attention.classes) list.append(item(`class ${label}: agreement below 0.6`, { kind: "class", name: label }));
  for (const name of report.attention.people) list.append(item(`${name}: below 0.6 on gold or consensus`, { kind: "person", name }));
  if (!list.children.length) list.append(item("nothing below 0.6"));
}

function renderCharts(report) {
  bars($("chart-classes"), report.agreement.per_class.map((c) => ({ label: c.label, value: c.fleiss_kappa })));
  const people = report.people.filter((p) => p.gold_items > 0);
  bars($("chart-gold"), people.map((p) => ({ label: p.name, value: p.gold_accuracy })), { empty: "no decisions on gold items yet" });
  lines($("chart-acceptance"), report.models_over_time.map((m) => ({ series: m.model_version, x: m.day, y: m.acceptance_rate })),
    { empty: "no judged suggestions yet" });
}

function labelsText(labels) {
  if (!labels.length) return ["(no labels)"];
  return labels.map((l) => (l.region ? `${l.label} (${l.region.kind})` : l.label));
}

function renderCases(cases) {
  const box = $("cases");
  box.replaceChildren();
  if (!cases.length) {
    box.textContent = "nothing waiting";
    return;
  }
  for (const c of cases) {
    const row = document.createElement("div");
    row.className = "case";
    row.dataset.item = c.item_id;
    const title = document.createElement("div");
    title.textContent = `${c.item_id} (k = ${c.k})`;
    row.append(title);
    for (const d of c.decisions) {
      const card = document.createElement("div");
      card.className = `person${c.majority.includes(d.annotator) ? " majority" : ""}`;
      const name = document.createElement("b");
      name.textContent = d.annotator;
      const ul = document.createElement("ul");
      for (const text of labelsText(d.labels)) ul.append(item(text));
      const pick = document.createElement("button");
      pick.type = "button";
      pick.textContent = "Keep these";
      pick.dataset.pick = d.annotator;
      pick.addEventListener("click", act(async () => {
        await api.post(`/quality/review/${encodeURIComponent(c.item_id)}`, { pick: d.annotator });
        await load();
      }));
      card.append(name, ul, pick);
      row.append(card);
    }
    box.append(row);
  }
}

async function renderBatches(batches) {
  const body = $("batches").querySelector("tbody");
  body.replaceChildren();
  for (const b of batches) {
    const { data: r } = await api.get(`/quality/batches/${encodeURIComponent(b.batch_id)}/report`);
    const tr = document.createElement("tr");
    tr.dataset.batch = b.batch_id;
    const lowest = r.lowest_items.slice(0, 3).map((i) => `${i.item_id} ${fmt(i.agreement)}`).join(", ");
    for (const text of [b.batch_id, b.state, `${fmt(r.fleiss_kappa)} (${r.verdict})`, lowest || "–"]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const cell = document.createElement("td");
    if (b.state === "open") {
      const close = document.createElement("button");
      close.type = "button";
      close.textContent = "Close: start regular work";
      close.dataset.close = b.batch_id;
      close.addEventListener("click", act(async () => {
        await api.post(`/quality/batches/${encodeURIComponent(b.batch_id)}/close`);
        await load();
      }));
      cell.append(close);
    }
    tr.append(cell);
    body.append(tr);
  }
}

async function load() {
  const [report, cases, batches] = await Promise.all([
    api.get("/reports/quality"), api.get("/quality/review"), api.get("/quality/batches"),
  ]);
  renderOverall(report.data);
  renderCharts(report.data);
  renderCases(cases.data);
  await renderBatches(batches.data);
  document.body.dataset.loaded = String(Date.now());
}

async function start() {
  $("error-close").addEventListener("click", () => { $("error").hidden = true; });
  const fromLink = api.tokenFromFragment();
  if (fromLink) api.signIn(fromLink);
  if (!api.token()) {
    $("signin-first").hidden = false;
    return;
  }
  const { data: me } = await api.get("/me");
  $("who-name").textContent = `${me.name} (${me.role})`;
  $("who").hidden = false;
  if (me.role === "annotator") {
    showError("the quality page is for reviewers and admins");
    return;
  }
  $("report").hidden = false;
  $("calibration-form").addEventListener("submit", act(async (event) => {
    event.preventDefault();
    await api.post("/quality/batches", { size: Number($("calibration-size").value) });
    await load();
  }));
  await load();
}

act(start)();
