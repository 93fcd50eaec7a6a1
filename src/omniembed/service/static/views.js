// Pictures of embeddings: the cosine heatmap (a real <table>), nearest neighbours, a PCA scatter (SVG) and
// segment timelines. Pure functions of the vectors; no library.

const SVG = "http://www.w3.org/2000/svg";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v);  // CSSOM: the page's CSP refuses style attributes
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat(Infinity)) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, String(v));
  }
  for (const child of children.flat(Infinity)) if (child) node.append(child);
  return node;
}

// -- maths ----------------------------------------------------------------------------------------

export function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

export function norm(a) {
  let s = 0;
  for (const x of a) s += x * x;
  return Math.sqrt(s);
}

export function cosineMatrix(vectors) {
  return vectors.map((a) => vectors.map((b) => cosine(a, b)));
}

// Symmetric eigen-decomposition by cyclic Jacobi rotations (the Gram matrix is small: one row per input).
function jacobiEigen(m) {
  const n = m.length;
  const a = m.map((row) => row.slice());
  const v = a.map((_, i) => a.map((__, j) => (i === j ? 1 : 0)));
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p][q] * a[p][q];
    if (off < 1e-20) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        if (Math.abs(a[p][q]) < 1e-15) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k][p], akq = a[k][q];
          a[k][p] = c * akp - s * akq; a[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p][k], aqk = a[q][k];
          a[p][k] = c * apk - s * aqk; a[q][k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k][p], vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq; v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = a.map((_, i) => i).sort((i, j) => a[j][j] - a[i][i]);
  return { values: order.map((i) => Math.max(a[i][i], 0)), vectors: order.map((i) => v.map((row) => row[i])) };
}

// The first two principal components of the rows, via the centred Gram matrix (n x n, n = inputs).
export function pca2(vectors) {
  const n = vectors.length, d = vectors[0].length;
  const mean = new Float64Array(d);
  for (const v of vectors) for (let i = 0; i < d; i++) mean[i] += v[i] / n;
  const centred = vectors.map((v) => Float64Array.from(v, (x, i) => x - mean[i]));
  const gram = centred.map((a) => centred.map((b) => { let s = 0; for (let i = 0; i < d; i++) s += a[i] * b[i]; return s; }));
  const { values, vectors: eig } = jacobiEigen(gram);
  const total = values.reduce((s, x) => s + x, 0) || 1;
  const axes = [0, 1].map((k) => {
    const u = eig[k] || new Array(n).fill(0);
    const big = u.reduce((best, x) => (Math.abs(x) > Math.abs(best) ? x : best), 0);
    const sign = big < 0 ? -1 : 1;  // a stable orientation from run to run
    return u.map((x) => sign * x * Math.sqrt(values[k] || 0));
  });
  return { points: vectors.map((_, i) => [axes[0][i], axes[1][i]]), explained: [0, 1].map((k) => (values[k] || 0) / total) };
}

// -- colour ---------------------------------------------------------------------------------------

// -1 red, 0 white, 1 blue; dark text on light cells, white text on dark ones.
export function cosineColour(value) {
  const t = Math.max(-1, Math.min(1, value));
  const [r, g, b] = t >= 0 ? [255 - 222 * t, 255 - 160 * t, 255 - 75 * t] : [255 + 30 * t, 255 + 200 * t, 255 + 200 * t];
  return { background: `rgb(${r | 0}, ${g | 0}, ${b | 0})`, ink: Math.abs(t) > 0.55 ? "#fff" : "#111" };
}

// -- views ----------------------------------------------------------------------------------------

export function heatmap(items, matrix, model, onHover) {
  const head = el("tr", {}, el("th", { scope: "col" }, el("span", { class: "sr-only", text: "input" })),
    items.map((it) => el("th", { scope: "col", title: it.label, text: `#${it.n}` })));
  const rows = items.map((row, i) => el("tr", {},
    el("th", { scope: "row", title: row.label, text: `#${row.n} ${row.short}` }),
    matrix[i].map((value, j) => {
      const colour = cosineColour(value);
      const cell = el("td", {
        "data-row": row.n, "data-col": items[j].n, "data-value": value.toFixed(6),
        title: `cosine(#${row.n}, #${items[j].n}) = ${value.toFixed(4)}`,
        style: { background: colour.background, color: colour.ink },
        text: value.toFixed(2),
      });
      cell.addEventListener("mouseenter", () => onHover(row, items[j], value));
      return cell;
    })));
  return el("table", { class: "heatmap", "data-model": model },
    el("caption", { text: `Cosine similarity between the inputs embedded with ${model} (1 = same direction)` }),
    el("thead", {}, head), el("tbody", {}, rows));
}

export function neighbours(items, matrix, k = 3) {
  const list = el("ol", { class: "neighbours" });
  items.forEach((it, i) => {
    const near = items.map((other, j) => ({ other, value: matrix[i][j] })).filter((x, j) => j !== i)
      .sort((a, b) => b.value - a.value).slice(0, k);
    list.append(el("li", { "data-input": it.n },
      el("span", { class: "who", text: `#${it.n} ${it.short}` }),
      near.length ? el("ol", {}, near.map(({ other, value }) =>
        el("li", { "data-neighbour": other.n, text: `#${other.n} ${other.short} (${value.toFixed(3)})` })))
        : el("span", { text: " (no other input)" })));
  });
  return list;
}

// The scatter's points; each label is placed by placeLabels once the SVG is on the page (it measures them).
export function scatter(items, vectors, model, onHover = () => {}) {
  const { points, explained } = pca2(vectors);
  const w = 480, h = 320, pad = 36;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const span = (v) => [Math.min(...v), Math.max(...v)];
  const [x0, x1] = span(xs), [y0, y1] = span(ys);
  const flat = (lo, hi) => hi - lo < 1e-9;  // one component carries all the variance: centre the other
  const sx = (x) => (flat(x0, x1) ? w / 2 : pad + ((x - x0) / (x1 - x0)) * (w - 2 * pad));
  const sy = (y) => (flat(y0, y1) ? h / 2 : h - pad - ((y - y0) / (y1 - y0)) * (h - 2 * pad));
  const pct = explained.map((e) => `${(100 * e).toFixed(0)}%`);
  const label = `PCA of the ${items.length} ${model} vectors: component 1 (${pct[0]} of the variance) across, component 2 (${pct[1]}) up`;
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": label, class: "scatter" },
    svg("rect", { x: 0.5, y: 0.5, width: w - 1, height: h - 1, class: "frame" }),
    svg("text", { x: w / 2, y: h - 8, "text-anchor": "middle", class: "axis", text: `PC1 (${pct[0]})` }),
    svg("text", { x: 12, y: h / 2, transform: `rotate(-90 12 ${h / 2})`, "text-anchor": "middle", class: "axis", text: `PC2 (${pct[1]})` }));
  items.forEach((it, i) => {
    const x = sx(points[i][0]), y = sy(points[i][1]);
    const g = svg("g", { class: `point ${it.modality}`, "data-input": it.n, "data-x": x, "data-y": y,
      "data-label": `#${it.n} ${it.short}`, "data-thumb": it.thumb && it.modality === "image" ? it.thumb : "" },
      svg("title", { text: `#${it.n} ${it.label}: (${points[i][0].toFixed(3)}, ${points[i][1].toFixed(3)})` }),
      svg("circle", { cx: x, cy: y, r: 4 }), svg("g", { class: "label" }));
    g.addEventListener("mouseenter", () => onHover(it, points[i]));
    root.append(g);
  });
  return root;
}

const overlap = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

// Each point's label, in input order, goes to the first place beside its point (right, left, above, below, then
// the diagonals) where it stays in the frame and touches no axis title, no point and no label placed before it;
// where the whole label fits nowhere, "#n" alone is tried; where that fits nowhere either, the label is hidden
// (data-placed="hidden") and shows only while the point is hovered. Images: the thumbnail and "#n", then "#n".
export function placeLabels(root) {
  const [, , w, h] = root.getAttribute("viewBox").split(" ").map(Number);
  const pad = 2, gap = 6;
  const box = (b, margin = 0) => ({ x: b.x - margin, y: b.y - margin, w: b.width + 2 * margin, h: b.height + 2 * margin });
  const taken = [...root.querySelectorAll(".axis")].map((t) => {
    const b = t.getBBox();  // the PC2 title is turned a quarter: its box turns with it
    return t.hasAttribute("transform") ? { x: 12 - b.height / 2, y: h / 2 - b.width / 2, w: b.height, h: b.width } : box(b);
  });
  const groups = [...root.querySelectorAll("g.point")];
  for (const g of groups) taken.push({ x: +g.dataset.x - 5, y: +g.dataset.y - 5, w: 10, h: 10 });
  for (const g of groups) {
    const x = +g.dataset.x, y = +g.dataset.y, n = `#${g.dataset.input}`;
    const label = g.querySelector("g.label");
    const variants = g.dataset.thumb
      ? [[svg("image", { href: g.dataset.thumb, x: 0, y: 0, width: 26, height: 26, preserveAspectRatio: "xMidYMid slice" }),
        svg("text", { x: 29, y: 17, text: n })], [svg("text", { x: 0, y: 0, text: n })]]
      : [[svg("text", { x: 0, y: 0, text: g.dataset.label })], [svg("text", { x: 0, y: 0, text: n })]];
    let placed = null;
    for (const [k, parts] of variants.entries()) {
      label.replaceChildren(...parts);
      const b = label.getBBox();
      const spots = [[x + gap, y - b.height / 2], [x - gap - b.width, y - b.height / 2], [x - b.width / 2, y - gap - b.height],
        [x - b.width / 2, y + gap], [x + gap - 2, y - gap + 2 - b.height], [x - gap + 2 - b.width, y - gap + 2 - b.height],
        [x + gap - 2, y + gap - 2], [x - gap + 2 - b.width, y + gap - 2]];
      for (const [left, top] of spots) {
        const r = { x: left, y: top, w: b.width, h: b.height };
        if (r.x < pad || r.y < pad || r.x + r.w > w - pad || r.y + r.h > h - pad || taken.some((t) => overlap(r, t))) continue;
        placed = { r, dx: left - b.x, dy: top - b.y, kind: k ? "number" : "full" };
        break;
      }
      if (placed) break;
    }
    if (!placed) {  // shown on hover only: beside the point, kept in the frame
      label.replaceChildren(...variants[0]);
      const b = label.getBBox();
      const left = Math.min(Math.max(x + gap, pad), w - pad - b.width), top = Math.min(Math.max(y - b.height / 2, pad), h - pad - b.height);
      placed = { r: null, dx: left - b.x, dy: top - b.y, kind: "hidden" };
    }
    label.setAttribute("transform", `translate(${placed.dx.toFixed(1)} ${placed.dy.toFixed(1)})`);
    g.dataset.placed = placed.kind;
    if (placed.r) taken.push(placed.r);
  }
}

// The colour key of segments and clips: the cosine of each with the whole input, as the bars are coloured.
export const LEGEND = [[1, "1: same direction as the whole"], [0.75, "0.75"], [0.5, "0.5"], [0.25, "0.25"],
  [0, "0: unrelated"], [-0.5, "−0.5"], [-1, "−1: opposite"]];

export function legend(whole) {
  return el("div", { class: "legend" },
    el("span", { class: "legend-title", text: `Colour: cosine with the whole ${whole}` }),
    el("ul", { "aria-label": `Colour key: cosine with the whole ${whole}` }, LEGEND.map(([value, text]) =>
      el("li", { "data-value": value },
        el("span", { class: "swatch", "aria-hidden": "true", style: { background: cosineColour(value).background } }), text))));
}

// Segments of an audio clip (or clips of a video) on a time axis, each coloured by its cosine with the whole
// input's vector; each bar keeps its start, end and cosine in data-start, data-end and data-value.
export function timeline(it, segments, pooled, whole = "clip") {
  const end = Math.max(...segments.map((s) => s.end_offset_sec ?? s.start_offset_sec ?? 0), 0.001);
  const w = 480, h = 44;
  const parts = whole === "video" ? "clips" : "segments";
  const label = `${segments.length} ${parts} of #${it.n} over ${end.toFixed(1)} s, coloured by cosine with the whole ${whole}`;
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": label, class: "timeline", "data-input": it.n });
  segments.forEach((s) => {
    const start = s.start_offset_sec ?? 0, stop = s.end_offset_sec ?? end;
    const value = pooled && s.float ? cosine(s.float, pooled) : 1;
    const x = (start / end) * w, width = Math.max(((stop - start) / end) * w - 1, 1);
    root.append(svg("rect", { x, y: 4, width, height: 24, fill: cosineColour(value).background, class: "segment",
      "data-start": start, "data-end": stop, "data-value": value.toFixed(6) },
      svg("title", { text: `${start.toFixed(2)}–${stop.toFixed(2)} s: cosine with the whole ${whole} ${value.toFixed(3)}` })));
  });
  root.append(svg("text", { x: 0, y: h - 2, class: "axis", text: "0 s" }),
    svg("text", { x: w, y: h - 2, "text-anchor": "end", class: "axis", text: `${end.toFixed(1)} s` }));
  return root;
}
