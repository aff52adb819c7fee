// The text stage: entity spans highlighted and labelled; the mouse selection as
// character offsets. Offsets count code points, as the server (Python) does.

function covering(spans, a, b) {
  return spans.filter((s) => s.start <= a && s.end >= b);
}

// spans: [{key, suggestion_id|null, label, status, start, end, selected}]
export function renderText(container, text, spans) {
  const chars = Array.from(text);
  const cuts = new Set([0, chars.length]);
  for (const s of spans) {
    cuts.add(Math.max(0, Math.min(chars.length, s.start)));
    cuts.add(Math.max(0, Math.min(chars.length, s.end)));
  }
  const points = [...cuts].sort((x, y) => x - y);
  container.replaceChildren();
  for (let i = 0; i + 1 < points.length; i += 1) {
    const [a, b] = [points[i], points[i + 1]];
    const over = covering(spans, a, b);
    const el = document.createElement(over.length ? "mark" : "span");
    el.dataset.start = String(a);
    el.dataset.end = String(b);
    el.textContent = chars.slice(a, b).join("");
    if (over.length) {
      const span = over.find((s) => s.selected) ?? over[0];
      el.dataset.key = span.key;
      el.dataset.label = span.label;
      el.className = `entity status-${span.status}${span.selected ? " selected" : ""}`;
      if (span.end === b) el.dataset.tag = `${span.label}${span.status === "pending" ? "" : ` · ${span.status}`}`;
    }
    container.append(el);
  }
}

function pointOffset(container, node, offset) {
  if (node.nodeType === Node.TEXT_NODE) {
    const segment = node.parentElement.closest("[data-start]");
    return Number(segment.dataset.start) + Array.from(node.data.slice(0, offset)).length;
  }
  if (node === container) {
    const child = container.children[offset];
    return child ? Number(child.dataset.start) : Array.from(container.textContent).length;
  }
  const segment = node.closest("[data-start]");
  return Number(offset === 0 ? segment.dataset.start : segment.dataset.end);
}

// The selection inside the container as {start, end, text}, trimmed of white space.
export function selectionOffsets(container, text) {
  const selection = window.getSelection();
  if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return null;
  const range = selection.getRangeAt(0);
  if (!container.contains(range.startContainer) || !container.contains(range.endContainer)) {
    return null;
  }
  let start = pointOffset(container, range.startContainer, range.startOffset);
  let end = pointOffset(container, range.endContainer, range.endOffset);
  const chars = Array.from(text);
  while (start < end && /\s/u.test(chars[start])) start += 1;
  while (end > start && /\s/u.test(chars[end - 1])) end -= 1;
  if (end <= start) return null;
  return { start, end, text: chars.slice(start, end).join("") };
}
