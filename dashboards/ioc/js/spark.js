// Sparklines as inline SVG: a series of {t (ms), v (number|null)} over a
// fixed time domain, an optional dashed target line, the last point marked.

import { svgEl as el } from "./svg.js";

const W = 200;
const H = 44;
const PAD = 4;

/**
 * @param {{t:number, v:number|null}[]} points sorted by t
 * @param {{from:number, to:number, percent:boolean, target:number|null, label:string}} opts
 */
export function sparkline(points, opts) {
  const svg = el("svg", {
    viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", class: "spark",
    role: "img", "aria-label": opts.label,
  });
  const vals = points.filter((p) => p.v !== null && Number.isFinite(p.v));
  const span = Math.max(1, opts.to - opts.from);
  let max = opts.percent ? 100 : Math.max(1, ...vals.map((p) => p.v));
  if (opts.target !== null && !opts.percent) max = Math.max(max, opts.target);
  const x = (t) => PAD + ((t - opts.from) / span) * (W - 2 * PAD);
  const y = (v) => H - PAD - (v / max) * (H - 2 * PAD);
  svg.append(el("line", { x1: PAD, x2: W - PAD, y1: H - PAD, y2: H - PAD, class: "spark-axis" }));
  if (opts.target !== null && opts.target !== undefined) {
    const ty = y(opts.target);
    svg.append(el("line", { x1: PAD, x2: W - PAD, y1: ty, y2: ty, class: "spark-target" }));
  }
  // Gaps (null) split the line into runs.
  let run = [];
  const runs = [];
  for (const p of points) {
    if (p.v === null || !Number.isFinite(p.v)) {
      if (run.length) runs.push(run);
      run = [];
    } else {
      run.push(p);
    }
  }
  if (run.length) runs.push(run);
  for (const r of runs) {
    const pts = r.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    if (r.length === 1) {
      svg.append(el("circle", { cx: x(r[0].t), cy: y(r[0].v), r: 2, class: "spark-dot" }));
    } else {
      svg.append(el("polyline", { points: pts, class: "spark-line" }));
    }
  }
  const last = vals[vals.length - 1];
  if (last) svg.append(el("circle", { cx: x(last.t), cy: y(last.v), r: 3.5, class: "spark-last" }));
  return svg;
}
