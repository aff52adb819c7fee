// Mouse (pointer) input on the image: select and drag box corners in "select" mode;
// click, shift-click and drag a box in "segment" mode. A press that moves more than
// DRAG_PX screen pixels is a drag.

import { hitTest, moveCorner, toImage } from "./canvas.js";

export const DRAG_PX = 4;

// on: {mode(), scene(), select(id|null), corner(id, box, done), point(x, y, positive),
//      box(box_xyxy), preview(box_xyxy|null)}
export function attachPointer(view, on) {
  const canvas = view.canvas;
  let press = null;

  const boxOf = (a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]),
    Math.max(a[0], b[0]), Math.max(a[1], b[1])];

  canvas.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0 || !view.image) return;
    canvas.setPointerCapture(ev.pointerId);
    canvas.focus();
    const at = toImage(view, ev.clientX, ev.clientY);
    press = { at, cx: ev.clientX, cy: ev.clientY, shift: ev.shiftKey, moved: false, hit: null };
    if (on.mode() !== "select") return;
    const hit = hitTest(view, on.scene(), at[0], at[1]);
    press.hit = hit;
    on.select(hit ? hit.id : null);
    if (hit && hit.corner >= 0) {
      press.startBox = on.scene().suggestions.find((s) => s.suggestion_id === hit.id).box;
    }
  });

  canvas.addEventListener("pointermove", (ev) => {
    if (!press) return;
    if (Math.hypot(ev.clientX - press.cx, ev.clientY - press.cy) > DRAG_PX) press.moved = true;
    if (!press.moved) return;
    const at = toImage(view, ev.clientX, ev.clientY);
    if (on.mode() === "segment") on.preview(boxOf(press.at, at));
    else if (press.startBox) {
      on.corner(press.hit.id, moveCorner(press.startBox, press.hit.corner, at[0], at[1]), false);
    }
  });

  const finish = (ev, cancelled) => {
    if (!press) return;
    const done = press;
    press = null;
    if (cancelled) {
      on.preview(null);
      return;
    }
    const at = toImage(view, ev.clientX, ev.clientY);
    if (on.mode() === "segment") {
      on.preview(null);
      if (done.moved) on.box(boxOf(done.at, at));
      else on.point(done.at[0], done.at[1], !done.shift);
    } else if (done.startBox && done.moved) {
      on.corner(done.hit.id, moveCorner(done.startBox, done.hit.corner, at[0], at[1]), true);
    }
  };
  canvas.addEventListener("pointerup", (ev) => finish(ev, false));
  canvas.addEventListener("pointercancel", (ev) => finish(ev, true));
}
