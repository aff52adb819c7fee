// One item under review: lease it and show it with its suggestions. The decisions
// live in decisions.js, the drawing in canvas.js / text.js, the mouse in pointer.js,
// the lease in lease.js, click-to-segment's prompt in segment.js.

import { get, imageUrl, post } from "./api.js";
import { createView, fit, render, setImage } from "./canvas.js";
import { Editor } from "./decisions.js";
import { LeaseKeeper } from "./lease.js";
import { fillLabels, renderAdded, renderInfo, renderSuggestionList } from "./panels.js";
import { attachPointer } from "./pointer.js";
import * as seg from "./segment.js";
import { renderText } from "./text.js";

const $ = (id) => document.getElementById(id);

export class Review extends Editor {
  constructor({ onError, onDecision }) {
    super();
    this.onError = onError;
    this.onDecision = onDecision;
    this.view = createView($("canvas"));
    this.keeper = new LeaseKeeper($("lease"), onError);
    this.minScore = Number($("min-score").value);
    this.reset();
    attachPointer(this.view, {
      mode: () => this.mode,
      scene: () => this.scene(),
      select: (id) => this.select(id),
      corner: (id, box, done) => this.moveBox(id, box, done),
      point: (x, y, positive) => this.segment({ point: [x, y], positive }),
      box: (box) => this.segment({ box }),
      preview: (box) => { this.prompt.dragBox = box; this.draw(); },
    });
    // Refit when the stage changes size (window, the error banner coming and going).
    new ResizeObserver(() => { fit(this.view); this.draw(); }).observe($("canvas"));
    document.addEventListener("selectionchange", () => this.readSelection());
  }

  reset() {
    this.lease = null;
    this.item = null;
    this.suggestions = [];
    this.labels = [];
    this.selected = null;
    this.added = [];
    this.edits = new Map();
    this.prompt = seg.createPrompt();
    this.mode = "select";
    this.textSelection = null;
    if (this.blobUrl) URL.revokeObjectURL(this.blobUrl);
    this.blobUrl = null;
  }

  get kind() {
    return this.item ? this.item.kind : null;
  }

  // ---- the queue --------------------------------------------------------------------

  async next() {
    await this.flushEdits();
    if (this.item) {
      const done = await this.send({ suggestion_id: null, action: "accept" }, { leaving: true });
      if (!done) return;
    }
    await this.leaveAndLease();
  }

  async skip() {
    if (!this.item) return;
    await this.flushEdits();
    if (await this.send({ suggestion_id: null, action: "skip" }, { leaving: true })) {
      await this.leaveAndLease();
    }
  }

  async leaveAndLease() {
    await this.leave();
    const { status, data } = await post("/queue/next");
    if (status === 204) {
      this.show("empty");
      return;
    }
    await this.load(data);
  }

  async leave({ keepalive = false } = {}) {
    if (keepalive) {
      this.keeper.release({ keepalive: true });
      return;
    }
    await this.keeper.release();
    this.reset();
    this.show("start");
  }

  async load(lease) {
    this.reset();
    this.lease = lease;
    this.item = lease.item;
    this.keeper.start(lease);
    const id = encodeURIComponent(lease.item_id);
    const [suggestions, labels] = await Promise.all([
      get(`/items/${id}/suggestions?min_score=0`),
      get(`/items/${id}/labels`),
    ]);
    this.suggestions = suggestions.data;
    const names = [...labels.data.labels];
    for (const s of this.suggestions) if (!names.includes(s.label)) names.push(s.label);
    this.labels = names;
    if (this.item.kind === "image") {
      this.blobUrl = await imageUrl(this.item.image_url);
      const image = new Image();
      image.src = this.blobUrl;
      await image.decode();
      this.show("canvas");
      setImage(this.view, image);
      $("canvas").focus();
    } else {
      this.show("text");
      $("text").focus();
    }
    fillLabels(this.labels);
    this.refresh();
  }

  show(what) {
    for (const id of ["empty", "start", "canvas", "text"]) $(id).hidden = id !== what;
    $("segment-panel").hidden = !(what === "canvas" && this.mode === "segment");
    $("span-panel").hidden = what !== "text";
    if (what === "empty" || what === "start") this.refresh();
  }

  // ---- what is on screen ------------------------------------------------------------

  current(s) {
    const edit = this.edits.get(s.suggestion_id);
    const region = s.region;
    const box = edit?.box ?? (region && region.kind !== "span" ? region.box_xyxy : null);
    return { ...s, label: edit?.label ?? s.label, box,
      visible: s.score >= this.minScore, selected: s.suggestion_id === this.selected };
  }

  scene() {
    return { suggestions: this.suggestions.map((s) => this.current(s)), added: this.added,
      prompt: seg.scenePrompt(this.prompt) };
  }

  draw() {
    if (this.kind === "image") render(this.view, this.scene());
  }

  refresh() {
    const scene = this.scene();
    if (this.kind === "image") render(this.view, scene);
    if (this.kind === "text") {
      const spans = scene.suggestions.filter((s) => s.visible && s.region?.kind === "span")
        .map((s) => ({ ...s, key: `s${s.suggestion_id}`, start: s.region.start, end: s.region.end }));
      for (const a of this.added) spans.push({ ...a, status: "new", start: a.region.start, end: a.region.end });
      renderText($("text"), this.item.text, spans);
    }
    renderInfo(this);
    renderSuggestionList(scene.suggestions, (id) => this.select(id));
    renderAdded(this.added);
  }

  select(id) {
    const visible = this.suggestions.some((s) => s.suggestion_id === id && s.score >= this.minScore);
    this.selected = visible ? id : null;
    this.refresh();
  }

  cycle(step) {
    const ids = this.suggestions.filter((s) => s.score >= this.minScore).map((s) => s.suggestion_id);
    if (!ids.length) return;
    const at = ids.indexOf(this.selected);
    const next = at < 0 ? (step > 0 ? 0 : ids.length - 1) : (at + step + ids.length) % ids.length;
    this.select(ids[next]);
  }

  setMinScore(value) {
    this.minScore = Math.max(0, Math.min(1, Math.round(value * 100) / 100));
    $("min-score").value = String(this.minScore);
    $("min-score-value").textContent = this.minScore.toFixed(2);
    if (this.selected !== null) this.select(this.selected);
    else this.refresh();
  }

  toggleMode() {
    if (this.kind !== "image") return;
    this.mode = this.mode === "select" ? "segment" : "select";
    this.selected = null;
    $("segment-panel").hidden = this.mode !== "segment";
    this.refresh();
  }
}
