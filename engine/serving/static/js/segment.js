// Click-to-segment: a stack of prompts, each with the mask it produced. A new click
// sends every point so far (and the box, if any) plus the last mask's id, so the
// server refines that mask; undo pops the last step and shows the mask before it.

import { ApiError, post } from "./api.js";

const EMPTY = Object.freeze({ points: [], labels: [], box: null, mask: null, prompt: null });

export function createPrompt() {
  return { steps: [], dragBox: null, pending: Promise.resolve() };
}

export function top(prompt) {
  return prompt.steps.length ? prompt.steps[prompt.steps.length - 1] : EMPTY;
}

export function clear(prompt) {
  prompt.steps = [];
  prompt.dragBox = null;
}

export function undo(prompt) {
  prompt.steps.pop();
}

// The scene's view of the prompt (canvas.render).
export function scenePrompt(prompt) {
  const step = top(prompt);
  return { points: step.points, labels: step.labels, box: step.box, mask: step.mask,
    dragBox: prompt.dragBox };
}

async function send(itemId, step, previousMaskId) {
  const body = { item_id: itemId };
  if (step.points.length) {
    body.points_xy = step.points;
    body.point_labels = step.labels;
  }
  if (step.box) body.box_xyxy = step.box;
  if (previousMaskId) body.previous_mask_id = previousMaskId;
  try {
    return (await post("/interactive/segment", body)).data;
  } catch (err) {
    // The server forgets old masks; the prompt alone still gives a mask.
    if (err instanceof ApiError && err.status === 404 && previousMaskId) {
      return send(itemId, step, null);
    }
    throw err;
  }
}

// Add a click (positive or not) or a box; resolves to the new step once its mask
// is back. Requests run one after another, in the order of the clicks.
export function extend(prompt, itemId, { point = null, positive = true, box = null }) {
  const run = async () => {
    const last = top(prompt);
    const step = {
      points: point ? [...last.points, point] : last.points,
      labels: point ? [...last.labels, positive ? 1 : 0] : last.labels,
      box: box ?? last.box,
      mask: null,
      prompt: null,
    };
    const out = await send(itemId, step, last.mask ? last.mask.mask_id : null);
    step.mask = out.masks[0];
    step.prompt = out.prompt;
    step.ms = out.decode_ms + (out.encode_ms ?? 0);
    prompt.steps.push(step);
    return step;
  };
  const next = prompt.pending.then(run, run);
  prompt.pending = next.catch(() => undefined);
  return next;
}
