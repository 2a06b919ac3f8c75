// The villages map: an SVG drawn from the coordinates in the config (no
// tiles, no internet). Villages without coordinates are laid out in a grid
// below the map (or as the whole map when none has coordinates).

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

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
 * @param {Map<string, {state:string, label:string, counts:string}>} status per village id
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
  for (const v of villages) {
    const [cx, cy] = pos.get(v.id);
    const st = status.get(v.id) || { state: "none", label: "Không có thiết bị", counts: "" };
    const g = el("g", { class: "village", "data-village": v.id, "data-state": st.state,
      transform: `translate(${cx.toFixed(1)},${cy.toFixed(1)})` });
    g.append(el("title", {}, `${v.name}: ${st.label}${v.dead_zone ? " · vùng lõm sóng" : ""}`));
    if (v.dead_zone) g.append(el("circle", { r: r + 7, class: "dead-zone-ring" }));
    g.append(el("circle", { r, class: "village-dot" }));
    if (st.state === "offline" || st.state === "fault") {
      g.append(el("text", { class: "village-mark", y: 1 }, "!"));
    } else if (st.state === "unknown") {
      g.append(el("text", { class: "village-mark", y: 1 }, "?"));
    }
    const name = el("text", { class: "village-name" + (many ? " small" : ""), y: r + (many ? 15 : 22) },
      shortName(v));
    g.append(name);
    const counts = [st.counts, v.dead_zone ? "lõm sóng" : ""].filter(Boolean).join(" · ");
    if (counts) {
      g.append(el("text", { class: "village-counts" + (many ? " small" : ""), y: r + (many ? 29 : 42) }, counts));
    }
    svg.append(g);
  }
  return { svg, gridded: without.length };
}
