// A path's last minutes as a small SVG chart: RTT p50 (line), p95 (faint line), loss (bars,
// 0..100 % of the height) and the time the path was down/degraded/drained (shaded). No library:
// a Series keeps the points, drawChart turns them into <path>/<rect> elements.

const SVG = "http://www.w3.org/2000/svg";
export const WIDTH = 300;   // viewBox units; the SVG is stretched to its box (non-scaling strokes)
export const HEIGHT = 70;

// One point: {t (epoch s), span (s it stands for), rtt, rtt95 (ms|null), loss (%|null), state}.
export class Series {
  constructor(windowS) {
    this.windowS = windowS;
    this.points = [];
  }

  add(p) {
    const pts = this.points;
    if (!pts.length || p.t > pts[pts.length - 1].t) {
      pts.push(p);
    } else {
      // history arrives after the first live points: keep the order, drop exact duplicates
      let i = pts.length;
      while (i > 0 && pts[i - 1].t > p.t) i--;
      if (i > 0 && pts[i - 1].t === p.t) return;
      pts.splice(i, 0, p);
    }
  }

  trim(now) {
    const from = now - this.windowS - 15;
    let n = 0;
    while (n < this.points.length && this.points[n].t < from) n++;
    if (n) this.points.splice(0, n);
  }

  latest() {
    return this.points.length ? this.points[this.points.length - 1] : null;
  }
}

// The top of the RTT axis: 1, 2, 5 x 10^n ms just above the highest value shown.
export function niceCeil(v) {
  if (!(v > 0)) return 1;
  const e = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * e >= v) return m * e;
  return 10 * e;
}

function el(name, attrs) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

export function createChart(label) {
  const svg = el("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none", role: "img" });
  svg.setAttribute("aria-label", label);
  return svg;
}

const r1 = (v) => Math.round(v * 10) / 10;

// Redraws `svg` with the points of the last `windowS` seconds before `now`; returns the RTT
// axis top in ms (for the caller's scale label).
export function drawChart(svg, series, now) {
  const w = series.windowS;
  const t0 = now - w;
  const x = (t) => r1(Math.max(0, Math.min(WIDTH, ((t - t0) / w) * WIDTH)));
  const pts = series.points.filter((p) => p.t >= t0 - p.span);
  let top = 0;
  for (const p of pts) top = Math.max(top, p.rtt95 ?? 0, p.rtt ?? 0);
  top = niceCeil(top * 1.1);
  const y = (ms) => r1(HEIGHT - 2 - (Math.min(ms, top) / top) * (HEIGHT - 4));

  const parts = [];
  for (const frac of [0.5]) {
    parts.push(el("line", { class: "grid", x1: 0, x2: WIDTH, y1: y(top * frac), y2: y(top * frac) }));
  }
  for (const p of pts) {
    const xa = x(p.t - p.span);
    const wd = Math.max(0.8, x(p.t) - xa);
    if (p.state === "down" || p.state === "degraded" || p.state === "drained") {
      parts.push(el("rect", { class: `s-${p.state}`, x: xa, y: 0, width: wd, height: HEIGHT }));
    }
    if (p.loss != null && p.loss > 0) {
      const h = Math.max(1, r1((Math.min(p.loss, 100) / 100) * HEIGHT));
      parts.push(el("rect", { class: "loss", x: xa, y: r1(HEIGHT - h), width: wd, height: h }));
    }
  }
  for (const [key, cls] of [["rtt95", "rtt95"], ["rtt", "rtt"]]) {
    let d = "";
    let prev = null;
    for (const p of pts) {
      const v = p[key];
      if (v == null) { prev = null; continue; }
      const gap = prev !== null && p.t - prev.t > 2 * p.span + 1;
      d += `${prev === null || gap ? "M" : "L"}${x(p.t)} ${y(v)}`;
      prev = p;
    }
    if (d) parts.push(el("path", { class: cls, d }));
  }
  svg.replaceChildren(...parts);
  return top;
}
