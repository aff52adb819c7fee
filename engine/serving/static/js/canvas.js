// The image stage: the photo fitted into a canvas, suggestions drawn over it
// (boxes with label and confidence, masks as translucent overlays), the
// person's own new regions, and the click-to-segment prompt with its mask.

import { decodeMask } from "./rle.js";

const STATUS_COLORS = { accepted: "#1a9e45", rejected: "#d0312d", edited: "#e07b00" };
const PROMPT_COLOR = [0, 200, 255];
const ADDED_COLOR = [160, 60, 220];
export const CORNER_PX = 8; // how close (screen px) a press must be to grab a corner

export function labelHue(label) {
  let h = 0;
  for (const ch of label) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function labelColor(label, alpha = 1) {
  return `hsla(${labelHue(label)}, 85%, 50%, ${alpha})`;
}

function hslToRgb(h) {
  const f = (n) => {
    const k = (n + h / 30) % 12;
    return Math.round(255 * (0.5 - 0.425 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

export function createView(canvas) {
  return { canvas, ctx: canvas.getContext("2d"), image: null, scale: 1, ox: 0, oy: 0,
    masks: new Map() };
}

export function setImage(view, image) {
  view.image = image;
  view.masks.clear();
  fit(view);
}

// Scale and offset that fit the image into the canvas's CSS box (kept on the element).
export function fit(view) {
  const { canvas, image } = view;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  view.ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  if (!image) return;
  view.scale = Math.min(width / image.naturalWidth, height / image.naturalHeight);
  view.ox = (width - image.naturalWidth * view.scale) / 2;
  view.oy = (height - image.naturalHeight * view.scale) / 2;
  canvas.dataset.view = [view.scale, view.ox, view.oy].map((v) => v.toFixed(4)).join(",");
  canvas.dataset.width = image.naturalWidth;
  canvas.dataset.height = image.naturalHeight;
}

export function toImage(view, clientX, clientY) {
  const rect = view.canvas.getBoundingClientRect();
  const w = view.image ? view.image.naturalWidth : 0;
  const h = view.image ? view.image.naturalHeight : 0;
  const x = (clientX - rect.left - view.ox) / view.scale;
  const y = (clientY - rect.top - view.oy) / view.scale;
  return [Math.max(0, Math.min(w, x)), Math.max(0, Math.min(h, y))];
}

const sx = (view, x) => view.ox + x * view.scale;
const sy = (view, y) => view.oy + y * view.scale;

// An offscreen canvas at the image size with the mask's pixels in one colour.
function maskBitmap(view, key, region, rgb, alpha) {
  const cacheKey = `${key}:${rgb.join(",")}:${alpha}`;
  if (view.masks.has(cacheKey)) return view.masks.get(cacheKey);
  const { height_px: h, width_px: w } = region;
  const bits = decodeMask(region.mask_rle, h, w);
  const off = document.createElement("canvas");
  off.width = w;
  off.height = h;
  const ctx = off.getContext("2d");
  const data = ctx.createImageData(w, h);
  for (let i = 0; i < bits.length; i += 1) {
    if (!bits[i]) continue;
    data.data.set([rgb[0], rgb[1], rgb[2], Math.round(alpha * 255)], i * 4);
  }
  ctx.putImageData(data, 0, 0);
  view.masks.set(cacheKey, off);
  return off;
}

function drawMask(view, key, region, rgb, alpha) {
  const { ctx, image } = view;
  const bitmap = maskBitmap(view, key, region, rgb, alpha);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, view.ox, view.oy, image.naturalWidth * view.scale,
    image.naturalHeight * view.scale);
}

function drawTag(view, text, x, y, color) {
  const { ctx } = view;
  ctx.font = "12px system-ui, sans-serif";
  const width = ctx.measureText(text).width + 8;
  const top = y - 18 < 0 ? y : y - 18;
  ctx.fillStyle = color;
  ctx.fillRect(x, top, width, 18);
  ctx.fillStyle = "#fff";
  ctx.fillText(text, x + 4, top + 13);
}

function drawBox(view, box, color, { selected = false, dashed = false } = {}) {
  const { ctx } = view;
  const [x1, y1, x2, y2] = box;
  ctx.setLineDash(dashed ? [6, 4] : []);
  ctx.lineWidth = selected ? 3 : 2;
  ctx.strokeStyle = color;
  ctx.strokeRect(sx(view, x1), sy(view, y1), (x2 - x1) * view.scale, (y2 - y1) * view.scale);
  ctx.setLineDash([]);
  if (!selected) return;
  ctx.fillStyle = "#fff";
  for (const [cx, cy] of corners(box)) {
    ctx.fillRect(sx(view, cx) - 4, sy(view, cy) - 4, 8, 8);
    ctx.strokeRect(sx(view, cx) - 4, sy(view, cy) - 4, 8, 8);
  }
}

export function corners([x1, y1, x2, y2]) {
  return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]];
}

function drawSuggestion(view, s) {
  const status = s.status === "pending" ? null : STATUS_COLORS[s.status];
  const color = status ?? labelColor(s.label);
  const region = s.region;
  view.ctx.globalAlpha = s.status === "rejected" ? 0.5 : 1;
  if (region.kind === "mask") {
    drawMask(view, `s${s.suggestion_id}`, region, hslToRgb(labelHue(s.label)), 0.35);
  }
  drawBox(view, s.box, color, { selected: s.selected && region.kind === "box",
    dashed: region.kind === "mask" || s.status === "rejected" });
  const tag = `${s.label} ${(s.score * 100).toFixed(0)}%${s.status === "pending" ? "" : ` · ${s.status}`}`;
  // A mask's tag sits at its bottom-left corner: its box is often the parent box's.
  const tagY = region.kind === "mask" ? sy(view, s.box[3]) + 18 : sy(view, s.box[1]);
  drawTag(view, tag, sx(view, s.box[0]), tagY, color);
  if (s.selected && region.kind === "mask") drawBox(view, s.box, "#fff", { dashed: true });
  view.ctx.globalAlpha = 1;
}

function drawPrompt(view, prompt) {
  const { ctx } = view;
  if (prompt.mask) {
    const m = prompt.mask;
    const region = { mask_rle: m.mask_rle, height_px: m.size_hw[0], width_px: m.size_hw[1] };
    drawMask(view, `m${m.mask_id}`, region, PROMPT_COLOR, 0.45);
    ctx.strokeStyle = "rgb(0, 200, 255)";
    ctx.lineWidth = 2;
    for (const poly of m.polygons_xy) {
      ctx.beginPath();
      poly.forEach(([x, y], i) => (i ? ctx.lineTo(sx(view, x), sy(view, y))
        : ctx.moveTo(sx(view, x), sy(view, y))));
      ctx.closePath();
      ctx.stroke();
    }
  }
  const box = prompt.dragBox ?? prompt.box;
  if (box) drawBox(view, box, "rgb(0, 200, 255)", { dashed: true });
  prompt.points.forEach(([x, y], i) => {
    ctx.beginPath();
    ctx.arc(sx(view, x), sy(view, y), 6, 0, 2 * Math.PI);
    ctx.fillStyle = prompt.labels[i] ? "#1a9e45" : "#d0312d";
    ctx.fill();
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 2;
    ctx.stroke();
  });
}

// scene: {suggestions: [{suggestion_id, label, score, status, region, box, visible,
// selected}], added: [{key, label, region}], prompt: {points, labels, box, mask, dragBox}}
export function render(view, scene) {
  const { ctx, canvas, image } = view;
  ctx.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
  if (!image) return;
  ctx.drawImage(image, view.ox, view.oy, image.naturalWidth * view.scale,
    image.naturalHeight * view.scale);
  const drawn = [];
  for (const s of scene.suggestions) {
    if (!s.visible || !s.box) continue;
    drawSuggestion(view, s);
    drawn.push(s.suggestion_id);
  }
  for (const a of scene.added) {
    if (a.region.kind === "mask") drawMask(view, a.key, a.region, ADDED_COLOR, 0.4);
    const color = `rgb(${ADDED_COLOR.join(",")})`;
    drawBox(view, a.region.box_xyxy, color);
    drawTag(view, `${a.label} · new`, sx(view, a.region.box_xyxy[0]),
      sy(view, a.region.box_xyxy[1]), color);
  }
  drawPrompt(view, scene.prompt);
  canvas.dataset.drawn = drawn.join(",");
  canvas.dataset.added = String(scene.added.length);
  canvas.dataset.mask = scene.prompt.mask ? scene.prompt.mask.mask_id : "";
}

// The suggestion under a point (the smallest box around it), or the grabbed corner
// of the selected box: {id, corner} in image pixels; null when nothing is there.
export function hitTest(view, scene, x, y) {
  const reach = CORNER_PX / view.scale;
  const selected = scene.suggestions.find((s) => s.selected && s.visible && s.box);
  if (selected && selected.region.kind === "box") {
    const corner = corners(selected.box).findIndex(
      ([cx, cy]) => Math.abs(cx - x) <= reach && Math.abs(cy - y) <= reach);
    if (corner >= 0) return { id: selected.suggestion_id, corner };
  }
  let best = null;
  for (const s of scene.suggestions) {
    if (!s.visible || !s.box) continue;
    const [x1, y1, x2, y2] = s.box;
    if (x < x1 || x > x2 || y < y1 || y > y2) continue;
    const area = (x2 - x1) * (y2 - y1);
    if (!best || area < best.area) best = { id: s.suggestion_id, corner: -1, area };
  }
  return best && { id: best.id, corner: -1 };
}

// Move one corner of a box to (x, y), keeping x1 <= x2 and y1 <= y2.
export function moveCorner(box, corner, x, y) {
  const [ox, oy] = corners(box)[(corner + 2) % 4];
  return [Math.min(x, ox), Math.min(y, oy), Math.max(x, ox), Math.max(y, oy)];
}
