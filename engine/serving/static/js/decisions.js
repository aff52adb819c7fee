// What a person decides on the current item, sent to POST /feedback: accept / reject /
// edit a suggestion (its label, its box's corners), a mask from click-to-segment, a
// span from the text selection. Review (review.js) extends this with the queue and the
// screen; these methods use its state (item, suggestions, edits, prompt) and refresh().

import { clientKey, post } from "./api.js";
import { renderInfo } from "./panels.js";
import * as seg from "./segment.js";
import { selectionOffsets } from "./text.js";

const $ = (id) => document.getElementById(id);
const STATUS_OF = { accept: "accepted", reject: "rejected", edit: "edited" };

function stepInfo(step) {
  const m = step.mask;
  return `${m.area_px} px · IoU ${m.predicted_iou.toFixed(2)} · ${step.prompt} · `
    + `${step.ms.toFixed(0)} ms`;
}

export class Editor {
  // Save edits still waiting for their pause (arrow keys, the label list) now.
  async flushEdits() {
    for (const [id, edit] of this.edits) {
      if (!edit.timer) continue;
      clearTimeout(edit.timer);
      edit.timer = null;
      await this.decide("edit", this.suggestions.find((s) => s.suggestion_id === id));
    }
  }

  // ---- decisions --------------------------------------------------------------------

  // POST /feedback; true when recorded. A 409 while leaving (someone else holds the
  // item now) is shown and the person moves on anyway.
  async send(body, { leaving = false } = {}) {
    try {
      await post("/feedback", { client_key: clientKey(), item_id: this.item.item_id, ...body });
      this.onDecision();
      return true;
    } catch (err) {
      this.onError(err);
      return leaving && err.status === 409;
    }
  }

  selectedSuggestion() {
    return this.suggestions.find((s) => s.suggestion_id === this.selected) ?? null;
  }

  regionOf(s) {
    const edit = this.edits.get(s.suggestion_id);
    if (s.region?.kind === "box") return { kind: "box", box_xyxy: edit?.box ?? s.region.box_xyxy };
    if (s.region?.kind === "span") return { kind: "span", start: s.region.start, end: s.region.end };
    if (s.region?.kind === "mask") {
      const { mask_rle, height_px, width_px, box_xyxy } = s.region;
      return { kind: "mask", mask_rle, height_px, width_px, box_xyxy };
    }
    return null;
  }

  async decide(action, s = this.selectedSuggestion()) {
    if (!s) return;
    const edit = this.edits.get(s.suggestion_id);
    if (edit?.timer) {
      clearTimeout(edit.timer);
      edit.timer = null;
    }
    const body = { suggestion_id: s.suggestion_id, action };
    if (action === "accept" && edit?.dirty) body.action = "edit";
    if (body.action === "edit") {
      body.label = edit?.label ?? s.label;
      const region = this.regionOf(s);
      if (region) body.region = region;
    }
    if (await this.send(body)) {
      s.status = STATUS_OF[body.action];
      if (edit) edit.dirty = false;
      this.refresh();
    }
  }

  async acceptAll() {
    const pending = this.suggestions.filter((s) => s.score >= this.minScore && s.status === "pending");
    for (const s of pending) await this.decide("accept", s);
  }

  editOf(id) {
    if (!this.edits.has(id)) this.edits.set(id, { dirty: false });
    return this.edits.get(id);
  }

  // A label picked for the selected suggestion (select box or digit key): saved as an edit.
  relabel(label, { delayMs = 0 } = {}) {
    const s = this.selectedSuggestion();
    if (!s || !label) return;
    const edit = this.editOf(s.suggestion_id);
    edit.label = label;
    edit.dirty = true;
    this.refresh();
    this.saveSoon(s, delayMs);
  }

  saveSoon(s, delayMs) {
    const edit = this.editOf(s.suggestion_id);
    if (edit.timer) clearTimeout(edit.timer);
    edit.timer = setTimeout(() => { edit.timer = null; this.decide("edit", s); }, delayMs);
  }

  // A corner drag (saved when dropped) or an arrow-key nudge (saved after a pause).
  moveBox(id, box, done, delayMs = 0) {
    const s = this.suggestions.find((x) => x.suggestion_id === id);
    if (!s || s.region?.kind !== "box") return;
    const w = this.view.image.naturalWidth;
    const h = this.view.image.naturalHeight;
    const [x1, y1, x2, y2] = box;
    const clamped = [Math.max(0, x1), Math.max(0, y1), Math.min(w, x2), Math.min(h, y2)]
      .map((v) => Math.round(v * 10) / 10);
    const edit = this.editOf(id);
    edit.box = clamped;
    edit.dirty = true;
    if (done) {
      this.refresh();
      this.saveSoon(s, delayMs);
    } else {
      this.draw();
    }
  }

  nudge(dx, dy, resize) {
    const s = this.selectedSuggestion();
    if (!s || s.region?.kind !== "box") return;
    const [x1, y1, x2, y2] = this.current(s).box;
    const box = resize ? [x1, y1, Math.max(x1 + 1, x2 + dx), Math.max(y1 + 1, y2 + dy)]
      : [x1 + dx, y1 + dy, x2 + dx, y2 + dy];
    this.moveBox(s.suggestion_id, box, true, 800);
  }

  // ---- click-to-segment -------------------------------------------------------------

  async segment(prompt) {
    if (this.mode !== "segment" || !this.item) return;
    const item = this.item;
    const target = this.prompt;
    $("segment-info").textContent = "segmenting…";
    try {
      const step = await seg.extend(target, item.item_id, prompt);
      if (this.item !== item) return;
      $("segment-info").textContent = stepInfo(step);
    } catch (err) {
      $("segment-info").textContent = "no mask";
      this.onError(err);
    }
    this.refresh();
  }

  undoSegment() {
    seg.undo(this.prompt);
    const step = seg.top(this.prompt);
    $("segment-info").textContent = step.mask ? `undone: ${stepInfo(step)}` : "prompt cleared";
    this.refresh();
  }

  clearSegment() {
    seg.clear(this.prompt);
    this.refresh();
  }

  async acceptMask() {
    const step = seg.top(this.prompt);
    const label = $("segment-label").value;
    if (!step.mask || !label) return;
    const m = step.mask;
    const region = { kind: "mask", mask_rle: m.mask_rle, height_px: m.size_hw[0],
      width_px: m.size_hw[1], box_xyxy: m.box_xyxy };
    if (await this.send({ suggestion_id: null, action: "edit", label, region })) {
      this.added.push({ key: `m${m.mask_id}`, label, region });
      seg.clear(this.prompt);
      $("segment-info").textContent = `added a ${label} mask`;
      this.refresh();
    }
  }

  // ---- spans ------------------------------------------------------------------------

  readSelection() {
    if (this.kind !== "text") return;
    const picked = selectionOffsets($("text"), this.item.text);
    if (picked) this.textSelection = picked;
    renderInfo(this);
  }

  async addSpan() {
    const picked = this.textSelection;
    const label = $("span-label").value;
    if (!picked || !label || this.kind !== "text") return;
    const region = { kind: "span", start: picked.start, end: picked.end };
    if (await this.send({ suggestion_id: null, action: "edit", label, region })) {
      this.added.push({ key: `a${this.added.length}`, label, region: { ...region, text: picked.text } });
      this.textSelection = null;
      window.getSelection()?.removeAllRanges();
      this.refresh();
    }
  }
}
