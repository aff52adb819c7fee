// Small SVG charts for the quality page: horizontal bars and lines, no library.
// Every mark carries data-* attributes (value, verdict) so tests can read what is drawn.

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2457c5", "#e07b00", "#1a9e45", "#a03cdc", "#d0312d", "#5f6b7a"];

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

export function verdictOf(value) {
  if (value === null || value === undefined) return "n/a";
  if (value > 0.8) return "excellent";
  if (value < 0.6) return "clarify";
  return "good";
}

// rows: [{label, value (0..1 or null)}]; dashed lines at the 0.6 and 0.8 thresholds.
export function bars(container, rows, { empty = "nothing to show yet" } = {}) {
  container.replaceChildren();
  if (!rows.length) {
    container.textContent = empty;
    return;
  }
  const left = 140, width = 600, rowH = 26, top = 20;
  const height = top + rows.length * rowH + 10;
  const svg = el("svg", { viewBox: `0 0 ${left + width + 60} ${height}`, role: "img" });
  const x = (v) => left + Math.max(0, Math.min(1, v)) * width;
  svg.append(el("line", { class: "axis", x1: left, y1: top - 4, x2: left, y2: height - 6 }));
  for (const t of [0.6, 0.8]) {
    svg.append(el("line", { class: "threshold", x1: x(t), y1: top - 8, x2: x(t), y2: height - 6 }));
    svg.append(el("text", { x: x(t) - 8, y: top - 10 }, String(t)));
  }
  rows.forEach((row, i) => {
    const y = top + i * rowH;
    const verdict = verdictOf(row.value);
    svg.append(el("text", { x: left - 8, y: y + 16, "text-anchor": "end" }, row.label));
    const bar = el("rect", {
      class: `bar bar-${verdict}`, x: left, y: y + 4, height: rowH - 8,
      width: row.value === null ? 0 : Math.max(1, x(row.value) - left),
      "data-label": row.label, "data-value": row.value ?? "", "data-verdict": verdict,
    });
    svg.append(bar);
    const shown = row.value === null ? "n/a" : row.value.toFixed(2);
    svg.append(el("text", { x: (row.value === null ? left : x(row.value)) + 6, y: y + 16 }, shown));
  });
  container.append(svg);
}

// points: [{series, x (ISO day), y (0..1)}] -> one polyline per series.
export function lines(container, points, { empty = "nothing to show yet" } = {}) {
  container.replaceChildren();
  if (!points.length) {
    container.textContent = empty;
    return;
  }
  const days = [...new Set(points.map((p) => p.x))].sort();
  const series = [...new Set(points.map((p) => p.series))].sort();
  const left = 40, width = 640, top = 10, height = 180;
  const svg = el("svg", { viewBox: `0 0 ${left + width + 220} ${top + height + 30}`, role: "img" });
  const px = (day) => left + (days.length === 1 ? width / 2 : (days.indexOf(day) / (days.length - 1)) * width);
  const py = (v) => top + (1 - v) * height;
  svg.append(el("line", { class: "axis", x1: left, y1: py(0), x2: left + width, y2: py(0) }));
  for (const t of [0, 0.5, 1]) svg.append(el("text", { x: 4, y: py(t) + 4 }, String(t)));
  svg.append(el("text", { x: left, y: py(0) + 18 }, days[0]));
  if (days.length > 1) svg.append(el("text", { x: left + width - 70, y: py(0) + 18 }, days.at(-1)));
  series.forEach((name, i) => {
    const color = COLORS[i % COLORS.length];
    const mine = points.filter((p) => p.series === name).sort((a, b) => (a.x < b.x ? -1 : 1));
    const path = mine.map((p) => `${px(p.x)},${py(p.y)}`).join(" ");
    svg.append(el("polyline", { class: "line", points: path, stroke: color, "data-series": name }));
    for (const p of mine) {
      svg.append(el("circle", { cx: px(p.x), cy: py(p.y), r: 3, fill: color, "data-series": name, "data-value": p.y }));
    }
    svg.append(el("text", { x: left + width + 16, y: top + 14 + i * 18, fill: color }, name));
  });
  container.append(svg);
}
