// The map of the communes: an SVG drawn from each commune's `lat`/`lon`
// (no tiles, no internet: the box is offline). Each commune is a dot in
// the colour of the highest disaster-risk level of its warnings in force
// (QĐ 18/2021/QĐ-TTg Điều 4), neutral without one; a commune whose link is
// down gets a red ring and "!". Communes without coordinates are laid out
// in a grid below. A dot is a link to the commune's own screen.

import { svgEl as el } from "../common/js/svg.js";

/** "Xã Bình Lư" → "Bình Lư" (the map has no room for the prefix). */
export function shortName(name) {
  return String(name || "").replace(/^(xã|phường|thị trấn|đặc khu)\s+/i, "");
}

/**
 * @param {Array<{id:string, name:string, lat?:number, lon?:number, level:number,
 *   down:boolean, broken:boolean, href:string, tip:string}>} sites
 * @param {{width:number, height:number}} box  layout size
 * @returns {{svg: SVGElement, gridded: number}}
 */
export function drawMap(sites, box) {
  const W = Math.max(300, box.width);
  const H = Math.max(200, box.height);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "map-svg", role: "img",
    "aria-label": "Bản đồ các xã" });
  const ok = (s) => Number.isFinite(s.lat) && Number.isFinite(s.lon);
  const withPos = sites.filter(ok);
  const without = sites.filter((s) => !ok(s));
  const cols = Math.max(1, Math.floor(W / 150));
  const gridRows = Math.ceil(without.length / cols);
  const gridH = without.length ? (withPos.length ? Math.min(H * 0.4, gridRows * 56) : H - 10) : 0;
  const mapH = H - gridH;
  const pos = new Map();
  if (withPos.length) {
    const lat0 = withPos.reduce((a, s) => a + s.lat, 0) / withPos.length;
    const k = Math.cos((lat0 * Math.PI) / 180);
    const xs = withPos.map((s) => s.lon * k);
    const ys = withPos.map((s) => -s.lat);
    const minX = Math.min(...xs), maxX = Math.max(...xs);
    const minY = Math.min(...ys), maxY = Math.max(...ys);
    const pad = 48;
    const sx = (W - 2 * pad) / Math.max(1e-6, maxX - minX);
    const sy = (mapH - 2 * pad) / Math.max(1e-6, maxY - minY);
    const sc = Math.min(sx, sy);
    const offX = (W - sc * (maxX - minX)) / 2;
    const offY = (mapH - sc * (maxY - minY)) / 2;
    withPos.forEach((s, i) => pos.set(s.id, [offX + (xs[i] - minX) * sc, offY + (ys[i] - minY) * sc]));
  }
  if (without.length) {
    const top = H - gridH;
    const c = Math.max(1, Math.min(without.length, cols));
    const cellW = W / c;
    const cellH = gridH / Math.max(1, Math.ceil(without.length / c));
    without.forEach((s, i) => pos.set(s.id,
      [cellW * (i % c) + cellW / 2, top + cellH * Math.floor(i / c) + Math.min(cellH * 0.35, 20)]));
    if (withPos.length) svg.append(el("line", { x1: 10, x2: W - 10, y1: top - 4, y2: top - 4, class: "map-sep" }));
  }
  const many = sites.length > 40;
  const r = many ? 9 : 14;
  const nameSize = many ? 15 : 17;
  // Labels where they overlap neither a dot nor an earlier label: below,
  // above, right, left; communes with a warning or a problem first.
  const placed = sites.map((s) => {
    const [cx, cy] = pos.get(s.id);
    return { x0: cx - r - 3, y0: cy - r - 3, x1: cx + r + 3, y1: cy + r + 3 };
  });
  const hit = (b) => placed.some((p) => b.x0 < p.x1 && p.x0 < b.x1 && b.y0 < p.y1 && p.y0 < b.y1);
  const order = [...sites].sort((a, b) => (b.level + (b.down ? 0.5 : 0)) - (a.level + (a.down ? 0.5 : 0)));
  const labels = new Map();
  for (const s of order) {
    const [cx, cy] = pos.get(s.id);
    const w = shortName(s.name).length * nameSize * 0.56;
    const hgt = nameSize + 2;
    const gap = r + 5;
    const spots = [
      { x: 0, y: gap, anchor: "middle", b: [cx - w / 2, cy + gap, cx + w / 2, cy + gap + hgt] },
      { x: 0, y: -gap - hgt, anchor: "middle", b: [cx - w / 2, cy - gap - hgt, cx + w / 2, cy - gap] },
      { x: gap, y: -hgt / 2, anchor: "start", b: [cx + gap, cy - hgt / 2, cx + gap + w, cy + hgt / 2] },
      { x: -gap, y: -hgt / 2, anchor: "end", b: [cx - gap - w, cy - hgt / 2, cx - gap, cy + hgt / 2] },
    ];
    const spot = spots.find(({ b: [x0, y0, x1, y1] }) =>
      x0 >= 0 && x1 <= W && y0 >= 0 && y1 <= H && !hit({ x0, y0, x1, y1 }));
    if (!spot) continue; // Crowded: the name is in the tooltip.
    const [x0, y0, x1, y1] = spot.b;
    placed.push({ x0, y0, x1, y1 });
    labels.set(s.id, spot);
  }
  for (const s of sites) {
    const [cx, cy] = pos.get(s.id);
    const a = el("a", { href: s.href, class: "site-dot", "data-site": s.id, "data-level": s.level,
      "data-down": s.down ? "1" : "0", "data-broken": s.broken ? "1" : "0",
      transform: `translate(${cx.toFixed(1)},${cy.toFixed(1)})` });
    a.append(el("title", {}, `${s.name}: ${s.tip}`));
    if (s.down) a.append(el("circle", { r: r + 6, class: "down-ring" }));
    const dot = el("circle", { r, class: "dot" });
    if (s.level > 0) dot.style.fill = `var(--risk-${s.level})`;
    a.append(dot);
    if (s.down || s.broken) a.append(el("text", { class: "dot-mark" + (s.level >= 4 || !s.level ? " light" : ""), y: 1 }, s.broken ? "?" : "!"));
    else if (s.level > 0) a.append(el("text", { class: "dot-mark" + (s.level >= 4 ? " light" : ""), y: 1 }, String(s.level)));
    const lb = labels.get(s.id);
    if (lb) {
      a.append(el("text", { class: "site-label", x: lb.x, y: lb.y + nameSize * 0.85, "text-anchor": lb.anchor,
        "font-size": nameSize }, shortName(s.name)));
    }
    svg.append(a);
  }
  return { svg, gridded: without.length };
}
