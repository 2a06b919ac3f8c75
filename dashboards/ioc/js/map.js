// The villages map: an SVG drawn from the coordinates in the config (no
// tiles, no internet). Villages without coordinates are laid out in a grid
// below the map (or as the whole map when none has coordinates).

import { svgEl as el } from "./svg.js";

/** A short label for the map: placeholders become "Bản 10*". */
export function shortName(v) {
  if (v.placeholder) {
    const n = (v.name.match(/\d+/) || [v.id])[0];
    return "Bản " + n + "*";
  }
  return v.name.replace(/\s*\(.*\)\s*$/, "");
}

/**
 * @param {object[]} villages from /api/villages
 * @param {Map<string, {state:string, label:string, counts:string, warning:?{level:number, colour:string}}>} status
 *        per village id (`warning`: the highest official warning covering it)
 * @param {{width:number, height:number}} box
 * @returns {{svg: SVGElement, gridded: number}}
 */
export function drawMap(villages, status, box) {
  const W = Math.max(300, box.width);
  const H = Math.max(200, box.height);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "map-svg", role: "img",
    "aria-label": "Bản đồ các thôn/bản" });
  const withPos = villages.filter((v) => Number.isFinite(v.lat) && Number.isFinite(v.lon));
  const without = villages.filter((v) => !(Number.isFinite(v.lat) && Number.isFinite(v.lon)));
  const pos = new Map();
  const gridRows = without.length ? Math.ceil(without.length / Math.max(1, Math.floor(W / 170))) : 0;
  const gridH = withPos.length ? Math.min(H * 0.45, gridRows * 74) : H;
  const mapH = H - (without.length ? gridH : 0);
  if (withPos.length) {
    const lat0 = withPos.reduce((s, v) => s + v.lat, 0) / withPos.length;
    const k = Math.cos((lat0 * Math.PI) / 180);
    const xs = withPos.map((v) => v.lon * k);
    const ys = withPos.map((v) => -v.lat);
    const minX = Math.min(...xs), maxX = Math.max(...xs);
    const minY = Math.min(...ys), maxY = Math.max(...ys);
    const padX = 56, padTop = 48, padBottom = 44;
    const sx = (W - 2 * padX) / Math.max(1e-6, maxX - minX);
    const sy = (mapH - padTop - padBottom) / Math.max(1e-6, maxY - minY);
    const s = Math.min(sx, sy);
    const offX = (W - s * (maxX - minX)) / 2;
    const offY = padTop + (mapH - padTop - padBottom - s * (maxY - minY)) / 2;
    withPos.forEach((v, i) => pos.set(v.id, [offX + (xs[i] - minX) * s, offY + (ys[i] - minY) * s]));
  }
  if (without.length) {
    const cols = Math.max(1, Math.min(without.length, Math.floor(W / 170)));
    const rows = Math.ceil(without.length / cols);
    // Below the map, or under the panel's title when there is no map.
    const top = withPos.length ? H - gridH : 40;
    const cellW = W / cols;
    const cellH = (H - top) / Math.max(1, rows);
    without.forEach((v, i) => {
      pos.set(v.id, [cellW * (i % cols) + cellW / 2, top + cellH * Math.floor(i / cols) + cellH * 0.38]);
    });
    if (withPos.length) {
      svg.append(el("line", { x1: 10, x2: W - 10, y1: top - 4, y2: top - 4, class: "map-sep" }));
    }
  }
  const many = villages.length > 20;
  const r = many ? 11 : 17;
  const nameSize = many ? 14 : 18;
  const countSize = many ? 11 : 14;
  // Labels are placed greedily where they overlap neither a dot nor an
  // earlier label: below, above, right, left. Villages with devices first.
  const placed = villages.map((v) => {
    const [cx, cy] = pos.get(v.id);
    return { x0: cx - r - 2, y0: cy - r - 2, x1: cx + r + 2, y1: cy + r + 2 };
  });
  const overlaps = (b) => placed.some((p) => b.x0 < p.x1 && p.x0 < b.x1 && b.y0 < p.y1 && p.y0 < b.y1);
  const order = [...villages].sort((a, b) =>
    ((status.get(b.id) || {}).counts ? 1 : 0) - ((status.get(a.id) || {}).counts ? 1 : 0));
  const labels = new Map();
  for (const v of order) {
    const [cx, cy] = pos.get(v.id);
    const st = status.get(v.id) || {};
    const counts = [st.counts, v.dead_zone ? "lõm sóng" : ""].filter(Boolean).join(" · ");
    const wName = shortName(v).length * nameSize * 0.56;
    const wCounts = counts.length * countSize * 0.52;
    const w = Math.max(wName, wCounts);
    const hgt = nameSize + 2 + (counts ? countSize + 2 : 0);
    const gap = r + 4;
    const spots = [
      { dx: 0, dy: gap, anchor: "middle", box: [cx - w / 2, cy + gap, cx + w / 2, cy + gap + hgt] },
      { dx: 0, dy: -gap - hgt, anchor: "middle", box: [cx - w / 2, cy - gap - hgt, cx + w / 2, cy - gap] },
      { dx: gap, dy: -hgt / 2, anchor: "start", box: [cx + gap, cy - hgt / 2, cx + gap + w, cy + hgt / 2] },
      { dx: -gap, dy: -hgt / 2, anchor: "end", box: [cx - gap - w, cy - hgt / 2, cx - gap, cy + hgt / 2] },
    ];
    let spot = spots.find((sp) => {
      const [x0, y0, x1, y1] = sp.box;
      return x0 >= 0 && x1 <= W && y0 >= 0 && y1 <= H && !overlaps({ x0, y0, x1, y1 });
    });
    let showCounts = !!counts;
    if (!spot) {
      // Crowded: the name alone below the dot (counts stay in the tooltip).
      spot = spots[0];
      showCounts = false;
    }
    const [x0, y0, x1, y1] = spot.box;
    placed.push({ x0, y0, x1, y1: showCounts ? y1 : y0 + nameSize + 2 });
    labels.set(v.id, { ...spot, counts: showCounts ? counts : "" });
  }
  for (const v of villages) {
    const [cx, cy] = pos.get(v.id);
    const st = status.get(v.id) || { state: "none", label: "Không có thiết bị", counts: "" };
    const g = el("g", { class: "village", "data-village": v.id, "data-state": st.state,
      transform: `translate(${cx.toFixed(1)},${cy.toFixed(1)})` });
    const tip = [st.label, st.counts, v.dead_zone ? "vùng lõm sóng" : ""].filter(Boolean).join(" · ");
    g.append(el("title", {}, `${v.name}: ${tip}`));
    if (st.warning) {
      // Under an official warning: a thick ring in the level's colour
      // (QĐ 18/2021 Phụ lục XII).
      g.setAttribute("data-warning-level", String(st.warning.level));
      g.append(el("circle", { r: r + 13, class: "warning-ring", stroke: st.warning.colour }));
    }
    if (v.dead_zone) g.append(el("circle", { r: r + 7, class: "dead-zone-ring" }));
    g.append(el("circle", { r, class: "village-dot" }));
    if (st.state === "offline" || st.state === "fault") {
      g.append(el("text", { class: "village-mark", y: 1 }, "!"));
    } else if (st.state === "unknown") {
      g.append(el("text", { class: "village-mark", y: 1 }, "?"));
    }
    const lb = labels.get(v.id);
    g.append(el("text", { class: "village-name" + (many ? " small" : ""), x: lb.dx,
      y: lb.dy + nameSize * 0.85, "text-anchor": lb.anchor }, shortName(v)));
    if (lb.counts) {
      g.append(el("text", { class: "village-counts" + (many ? " small" : ""), x: lb.dx,
        y: lb.dy + nameSize + 2 + countSize * 0.85, "text-anchor": lb.anchor }, lb.counts));
    }
    svg.append(g);
  }
  return { svg, gridded: without.length };
}
