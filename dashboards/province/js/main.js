// The province wall screen (docs/SCREEN.md, "Province"): every commune
// with its key indicators against the 2026 targets, device health, uplink
// state, gaps, this period's report and its warnings in force, on tiles and
// on a map; a click opens the commune's own screen (`/site/{id}/`). Read
// from `GET /api/province/overview` every few seconds, from the instance in
// use; when it stops answering, from the next one (js/instances.js).

import * as fmt from "../common/js/format.js";
import { Instances, displayName } from "./instances.js";
import { drawMap } from "./map.js";

// ---------------------------------------------------------------------------
// Configuration of the screen.
// ---------------------------------------------------------------------------

/** How often the overview is read. */
const POLL_MS = 3000;
/** How long one read may take before the instance counts as not answering. */
const TIMEOUT_MS = 4000;
/** How often the other instances are asked whether they answer. */
const PROBE_MS = 30000;
/** Beyond this lag (seconds since the commune's last entry) its link is
 * down, unless the server says (`stale`, from `province.stale_after_s`). */
const LAG_DOWN_S = 300;
/** With more communes than fit, pages of tiles turn every so often. */
const PAGE_MS = 15000;
/** The smallest tile (canvas pixels): below, tiles go to further pages. */
const TILE_MIN = { w: 190, h: 124 };
/** Key indicators shown on a tile, in order, with their short labels
 * (explained in the panel's legend): the first `CHIPS` the commune has,
 * beside its device chip (cameras and loudspeakers up, of all). */
const KEY_INDICATORS = [
  ["dossier_online_ratio", "HSTT", "hồ sơ nộp trực tuyến"],
  ["dossier_on_time_ratio", "ĐH", "hồ sơ giải quyết đúng hạn"],
  ["dossier_online_payment_ratio", "TTTT", "thanh toán trực tuyến"],
  ["camera_online", "CAM", "camera hoạt động"],
  ["speaker_online", "LOA", "cụm loa hoạt động"],
];
const CHIPS = 3;

const STATUS_TEXT = { met: "Đạt", not_met: "Chưa đạt", no_data: "Chưa có dữ liệu", none: "Theo dõi" };
const REPORT_TEXT = {
  verified: "đã báo cáo",
  late: "nộp muộn",
  corrected: "đã đính chính",
  refused: "bị từ chối",
  missing: "chưa báo cáo",
};
const LEVEL_TEXT = { 1: "rủi ro nhỏ", 2: "rủi ro trung bình", 3: "rủi ro lớn", 4: "rủi ro rất lớn", 5: "thảm họa" };

// ---------------------------------------------------------------------------
// URL options: ?kiosk=1&token=T (the token is remembered on this browser).
// ---------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
const kiosk = ["1", "true", "yes"].includes((params.get("kiosk") || "").toLowerCase());
let token = params.get("token") || "";
try {
  if (token) localStorage.setItem("ioc.token", token);
  else token = localStorage.getItem("ioc.token") || "";
} catch (e) {
  // Storage may be disabled (private mode): the URL token still works.
}

/** This instance's base URL: the page is `{base}/province/`. */
const own = new URL("../../", import.meta.url).href.replace(/\/+$/, "");
const instances = new Instances(own, { timeoutMs: TIMEOUT_MS, token });

// ---------------------------------------------------------------------------
// State.
// ---------------------------------------------------------------------------

const state = {
  /** The last overview read (kept, greyed, while no instance answers). */
  overview: null,
  /** Which instance it came from. */
  from: "",
  lastOkAt: null,
  /** "connecting" | "live" | "stale" (failing over) | "disconnected". */
  conn: "connecting",
  /** While failing over: {from, to}. */
  trying: null,
  /** Every switch made: {from, to, at}. */
  switches: [],
  unauthorized: false,
  /** The last banner titles shown (tests, debugging), at most 20. */
  notices: [],
  reads: 0,
  page: 0,
  pageTurnedAt: Date.now(),
};

const $ = (id) => document.getElementById(id);

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

// ---------------------------------------------------------------------------
// What a site object says, in Vietnamese.
// ---------------------------------------------------------------------------

/** The highest QĐ 18 level with a warning in force, 0 for none. */
export function topLevel(site) {
  const w = site.warnings || {};
  for (let l = 5; l >= 1; l -= 1) if (Number(w[l]) > 0) return l;
  return 0;
}

/** Uplink state: {state: ok|down|none|broken, text}. */
export function uplinkOf(site) {
  if (site.status === "broken") return { state: "broken", text: "cấu hình lỗi" };
  if (site.lag_s === null || site.lag_s === undefined) return { state: "none", text: "chưa nhận dữ liệu" };
  const stale = typeof site.stale === "boolean" ? site.stale : site.lag_s > LAG_DOWN_S;
  if (stale) return { state: "down", text: `mất kết nối ${fmt.duration(site.lag_s)}` };
  return { state: "ok", text: "trực tuyến" };
}

/** "11/2026" from "2026-11". */
function periodText(p) {
  const m = /^(\d{4})-(\d{2})$/.exec(p || "");
  return m ? `${Number(m[2])}/${m[1]}` : p || "";
}

/** This period's report: {state, text}. */
export function reportOf(site) {
  const r = site.report;
  if (!r) return { state: "missing", text: "Báo cáo: chưa báo cáo" };
  let t = REPORT_TEXT[r.status] || r.status;
  if (r.status === "corrected" && r.revision) t += ` (lần ${fmt.number(r.revision, 0)})`;
  if (r.status === "refused" && r.reason) t += `: ${r.reason}`;
  return { state: r.status, text: `Báo cáo ${periodText(r.period)}: ${t}` };
}

/** Missing entries over all gaps. */
function gapCount(site) {
  if (typeof site.missing === "number") return site.missing;
  return (site.gaps || []).reduce((n, g) => n + Math.max(0, Number(g.to) - Number(g.from) + 1), 0);
}

function statusOf(ind) {
  if (ind.value === null || ind.value === undefined) return "no_data";
  if (ind.target === null || ind.target === undefined) return "none";
  if (ind.status === "met" || ind.status === "not_met" || ind.status === "no_data") return ind.status;
  if (ind.met === true) return "met";
  if (ind.met === false) return "not_met";
  return "no_data";
}

/** The indicator's name (`name`; `label` in the first contract). */
function nameOf(ind) {
  return String(ind.name || ind.label || ind.id);
}

function targetText(ind) {
  const t = ind.target;
  if (t === null || t === undefined) return "không đặt mục tiêu";
  if (typeof t === "object") return fmt.target(t, ind.unit).replace(/^Mục tiêu/, "mục tiêu");
  return `mục tiêu ${t}`;
}

/** The site's chips: its key indicators (or, without any, its first ones). */
function chipsOf(site) {
  const list = site.indicators || [];
  const byId = new Map(list.map((i) => [i.id, i]));
  const picked = KEY_INDICATORS.filter(([id]) => byId.has(id))
    .map(([id, abbr]) => ({ ind: byId.get(id), abbr }));
  if (!picked.length) {
    for (const ind of list.filter((i) => i.target !== null && i.target !== undefined)) {
      picked.push({ ind, abbr: nameOf(ind).split(/\s+/).slice(0, 2).join(" ") });
    }
  }
  return picked.slice(0, CHIPS);
}

function siteHref(base, id) {
  const q = new URLSearchParams();
  if (kiosk) q.set("kiosk", "1");
  // Another origin has its own storage: it gets the token in the address.
  if (token && new URL(base).origin !== location.origin) q.set("token", token);
  const qs = q.toString();
  return `${base}/site/${encodeURIComponent(id)}/${qs ? "?" + qs : ""}`;
}

// ---------------------------------------------------------------------------
// Reading.
// ---------------------------------------------------------------------------

async function poll() {
  const res = await instances.read("/api/province/overview", (from, to) => {
    // Already without any instance: stay so until one answers (no flapping
    // between "switching" and "retrying" on every read).
    if (state.conn === "disconnected") return;
    state.trying = { from, to };
    state.conn = "stale";
    render();
  });
  state.trying = null;
  state.reads += 1;
  if (res.ok) {
    state.overview = res.data;
    state.from = res.base;
    state.lastOkAt = new Date();
    state.conn = "live";
    state.unauthorized = false;
    if (res.switched) state.switches.push({ ...res.switched, at: new Date() });
  } else {
    state.conn = "disconnected";
    state.unauthorized = /HTTP 40[13]/.test(res.error);
  }
  render();
  setTimeout(poll, POLL_MS);
}

/** Now and then: which other instances answer (the footer names them). */
async function probe() {
  if (state.overview) {
    await instances.probe("/api/province/overview");
    renderFooter();
  }
  setTimeout(probe, state.overview ? PROBE_MS : POLL_MS);
}

// ---------------------------------------------------------------------------
// Rendering.
// ---------------------------------------------------------------------------

function sitesSorted() {
  const sites = (state.overview && state.overview.sites) || [];
  return [...sites].sort((a, b) => String(a.name || a.id).localeCompare(String(b.name || b.id), "vi"));
}

function renderHeader() {
  const o = state.overview;
  $("province").textContent = o ? o.province.name : "Đang tải…";
  const sites = sitesSorted();
  const box = $("counts");
  if (!o) {
    box.replaceChildren();
    return;
  }
  const periods = sites.map((s) => s.report && s.report.period).filter(Boolean);
  const period = periods.sort().pop() || "";
  const reported = sites.filter((s) => s.report && ["verified", "late", "corrected"].includes(s.report.status)).length;
  const down = sites.filter((s) => ["down", "none"].includes(uplinkOf(s).state)).length;
  const broken = sites.filter((s) => s.status === "broken").length;
  const items = [];
  const count = (cls, label, value) => {
    const e = h("div", "count " + cls);
    e.append(h("span", "count-label", label), " ", h("span", "count-value", value));
    return e;
  };
  items.push(count("reported", `Đã báo cáo kỳ ${periodText(period)}`,
    `${fmt.number(reported, 0)}/${fmt.number(sites.length, 0)} xã`));
  items.push(count(down ? "down bad" : "down", "Mất kết nối", `${fmt.number(down, 0)} xã`));
  if (broken) items.push(count("broken bad", "Cấu hình lỗi", `${fmt.number(broken, 0)} xã`));
  const levels = h("div", "count warnings");
  levels.append(h("span", "count-label", "Cảnh báo thiên tai"), " ");
  const chips = h("span", "count-value levels");
  for (let l = 5; l >= 1; l -= 1) {
    const n = sites.filter((s) => topLevel(s) === l).length;
    if (!n) continue;
    const c = h("span", `lv lv-${l}`, `Cấp ${l}: ${fmt.number(n, 0)} xã`);
    c.dataset.level = String(l);
    chips.append(c, " ");
  }
  if (!chips.children.length) chips.append(h("span", "none", "không có"));
  levels.append(chips);
  items.push(levels);
  box.replaceChildren(...items);
}

/** Columns, rows and tile size for `n` tiles in `w`×`h`. */
function tileGrid(n, w, h, gap) {
  let best = null;
  for (let cols = 1; cols <= 12; cols += 1) {
    const rows = Math.ceil(n / cols);
    const tw = (w - gap * (cols - 1)) / cols;
    // Few communes: tiles grow, up to half again the smallest, no more
    // (a tile is a few lines of text, not a poster).
    const th = Math.min((h - gap * (rows - 1)) / rows, tw * 0.75, TILE_MIN.h * 1.5);
    if (tw < TILE_MIN.w || th < TILE_MIN.h) continue;
    const score = Math.min(tw / 1.6, th);
    if (!best || score > best.score) best = { cols, rows, tw, th, score };
  }
  return best;
}

function renderTiles() {
  const box = $("site-tiles");
  const sites = sitesSorted();
  const base = state.from || instances.base;
  if (!sites.length) {
    box.replaceChildren(h("div", "empty", state.overview ? "Chưa cấu hình xã nào." : "Đang tải…"));
    $("page").textContent = "";
    return;
  }
  const gap = 10;
  const W = box.clientWidth, H = box.clientHeight;
  // How many fit on one page at the smallest tile; then pages turn.
  const perPage = Math.max(1, Math.floor((W + gap) / (TILE_MIN.w + gap)) * Math.floor((H + gap) / (TILE_MIN.h + gap)));
  const pages = Math.max(1, Math.ceil(sites.length / perPage));
  if (Date.now() - state.pageTurnedAt > PAGE_MS) {
    state.page += 1;
    state.pageTurnedAt = Date.now();
  }
  const page = state.page % pages;
  const shown = sites.slice(page * perPage, (page + 1) * perPage);
  $("page").textContent = pages > 1 ? `Trang ${page + 1}/${pages}` : "";
  const g = tileGrid(shown.length, W, H, gap) || { cols: Math.max(1, Math.floor((W + gap) / (TILE_MIN.w + gap))), th: TILE_MIN.h };
  box.style.gridTemplateColumns = `repeat(${g.cols}, minmax(0, 1fr))`;
  box.style.gridAutoRows = `${Math.floor(g.th)}px`;
  box.style.setProperty("--k", String(Math.max(1, Math.min(1.5, g.th / TILE_MIN.h))));
  const used = new Set();
  box.replaceChildren(...shown.map((s) => tile(s, base, used)));
  legend(used);
}

function tile(s, base, used) {
  const a = h("a", "site");
  a.href = siteHref(base, s.id);
  a.dataset.site = s.id;
  const up = uplinkOf(s);
  const level = topLevel(s);
  const rep = reportOf(s);
  a.dataset.uplink = up.state;
  a.dataset.level = String(level);
  a.dataset.report = rep.state;
  const head = h("div", "site-head");
  head.append(h("span", "site-name", s.name || s.id));
  if (level) {
    const n = Object.values(s.warnings || {}).reduce((x, y) => x + Number(y || 0), 0);
    const w = h("span", `site-warn lv lv-${level}`, `Cấp ${level}`);
    w.title = `Cảnh báo thiên tai cấp độ ${level} (${LEVEL_TEXT[level]}): ${fmt.number(n, 0)} bản tin còn hiệu lực`;
    head.append(" ", w);
  }
  a.append(head);
  const line = h("div", "site-line");
  const gaps = gapCount(s);
  const upEl = h("span", "site-uplink", up.state === "ok" ? "Trực tuyến" : up.text[0].toUpperCase() + up.text.slice(1));
  upEl.dataset.state = up.state;
  if (s.last_entry_at) upEl.title = `Bản ghi cuối lúc ${fmt.full(s.last_entry_at)}`;
  line.append(upEl);
  if (gaps) {
    const g = h("span", "site-gaps", `thiếu ${fmt.number(gaps, 0)} bản ghi`);
    g.title = "Khoảng thiếu trong nhật ký của xã (số thứ tự): "
      + s.gaps.map((x) => `${fmt.number(x.from, 0)}–${fmt.number(x.to, 0)}`).join(", ");
    line.append(" ", g);
  }
  a.append(line);
  if (s.status === "broken") {
    const e = h("div", "site-error", s.error || "Cấu hình của xã không nạp được.");
    e.title = s.error || "";
    a.append(e);
  } else {
    const chips = h("div", "site-kpis live");
    for (const { ind, abbr } of chipsOf(s)) {
      used.add(abbr);
      const st = statusOf(ind);
      const c = h("span", "chip");
      c.dataset.status = st;
      c.dataset.indicator = ind.id;
      const v = fmt.withUnit(ind.value, ind.unit);
      c.append(h("b", "", abbr), " " + (v === null ? "—" : v.replace(/\u00a0%$/, "%")));
      c.title = `${nameOf(ind)}: ${v === null ? "chưa có dữ liệu" : v} — ${STATUS_TEXT[st]} (${targetText(ind)})`;
      chips.append(c, " ");
    }
    if (s.devices) {
      const d = s.devices;
      const c = h("span", "chip dev");
      c.dataset.status = !d.total ? "no_data" : d.up < d.total ? "not_met" : "met";
      c.append(h("b", "", "TB"), ` ${fmt.number(d.up, 0)}/${fmt.number(d.total, 0)}`);
      c.title = `Thiết bị hoạt động: ${fmt.number(d.up, 0)}/${fmt.number(d.total, 0)}`;
      chips.append(c);
      used.add("TB");
    }
    a.append(chips);
  }
  const foot = h("div", "site-report", rep.text);
  foot.dataset.state = rep.state;
  foot.title = rep.text;
  a.append(foot);
  a.title = `${s.name}: mở màn hình của xã`;
  return a;
}

function legend(used) {
  const parts = KEY_INDICATORS.filter(([, abbr]) => used.has(abbr)).map(([, abbr, text]) => `${abbr}: ${text}`);
  if (used.has("TB")) parts.push("TB: thiết bị hoạt động/tổng số");
  $("kpi-legend").textContent = parts.length ? "Chỉ tiêu năm 2026: " + parts.join(" · ") : "";
}

let mapKey = "";
function renderMap() {
  const box = $("map");
  const sites = sitesSorted();
  const base = state.from || instances.base;
  const items = sites.map((s) => {
    const up = uplinkOf(s);
    const level = topLevel(s);
    const tip = [level ? `cảnh báo cấp độ ${level}` : "không có cảnh báo", up.text].join(" · ");
    return { id: s.id, name: s.name || s.id, lat: s.lat, lon: s.lon, level,
      down: up.state === "down" || up.state === "none", broken: up.state === "broken",
      href: siteHref(base, s.id), tip };
  });
  // The legend first: the map takes the height it leaves.
  const gridded = items.filter((s) => !(Number.isFinite(s.lat) && Number.isFinite(s.lon))).length;
  const legKey = JSON.stringify([items.length, gridded]);
  const legBox = $("map-legend");
  if (legBox.dataset.key !== legKey) {
    legBox.dataset.key = legKey;
    legBox.replaceChildren(...mapLegend(items.length, gridded));
  }
  const rect = { width: box.clientWidth, height: box.clientHeight };
  const key = JSON.stringify([items, Math.round(rect.width), Math.round(rect.height)]);
  if (key === mapKey) return;
  mapKey = key;
  if (!items.length) {
    box.replaceChildren(h("div", "empty", state.overview ? "Chưa cấu hình xã nào." : "Đang tải bản đồ…"));
    return;
  }
  box.replaceChildren(drawMap(items, rect).svg);
}

function mapLegend(total, gridded) {
  const leg = [];
  for (let l = 1; l <= 5; l += 1) {
    const s = h("span", "legend-item");
    const sw = h("span", "swatch");
    sw.style.background = `var(--risk-${l})`;
    s.append(sw, h("span", "", `Cấp ${l}`));
    leg.push(s);
  }
  const none = h("span", "legend-item");
  none.append(h("span", "swatch"), h("span", "", "Không có cảnh báo"));
  const down = h("span", "legend-item");
  down.append(h("span", "swatch down"), h("span", "", "Mất kết nối"));
  leg.push(none, down);
  if (gridded) {
    leg.push(h("span", "legend-note", gridded === total
      ? "Cấu hình chưa có toạ độ xã: các xã được xếp theo lưới."
      : `${fmt.number(gridded, 0)} xã chưa có toạ độ: xếp theo lưới ở phía dưới.`));
  }
  return leg;
}

function renderConn() {
  const s = state.conn;
  document.body.dataset.conn = s;
  const name = instances.label(state.from || instances.base);
  const text = {
    live: `Máy chủ ${name} · trực tuyến`,
    stale: "Đang chuyển máy chủ…",
    disconnected: "Mất kết nối",
    connecting: "Đang kết nối…",
  }[s];
  $("conn-text").textContent = text;
  const banner = $("conn-banner");
  banner.hidden = s === "live" || s === "connecting";
  let title = "";
  let detail = state.lastOkAt
    ? `Đang hiển thị số liệu lúc ${fmt.time(state.lastOkAt)} (${fmt.ago(state.lastOkAt)})`
    : "Chưa nhận được số liệu";
  if (state.unauthorized) {
    title = "Màn hình chưa được cấp quyền xem dữ liệu";
    detail = token
      ? "Mã truy cập không hợp lệ hoặc đã bị thu hồi: xin quản trị viên cấp mã mới."
      : "Mở màn hình bằng địa chỉ có mã truy cập: /province/?kiosk=1&token=…";
  } else if (s === "stale" && state.trying) {
    title = `Mất kết nối tới máy chủ tỉnh ${instances.label(state.trying.from)}, đang chuyển sang ${instances.label(state.trying.to)}…`;
  } else if (s === "disconnected") {
    const others = instances.list.length > 1 ? " và các máy chủ dự phòng" : "";
    title = `Mất kết nối tới máy chủ tỉnh ${name}${others} — đang thử lại…`;
  }
  $("conn-banner-title").textContent = title;
  if (title && state.notices[state.notices.length - 1] !== title) {
    state.notices.push(title);
    if (state.notices.length > 20) state.notices.shift();
  }
  $("conn-banner-detail").textContent = detail;
}

function renderFooter() {
  const cur = state.from || instances.base;
  const parts = [`Máy chủ đang dùng: ${instances.label(cur)} (${new URL(cur).host})`];
  const alive = instances.alive || new Map();
  const spare = instances.list.filter((b) => b !== cur).map((b) => instances.label(b)
    + (alive.has(b) ? (alive.get(b) ? " (sẵn sàng)" : " (không trả lời)") : ""));
  if (spare.length) parts.push(`dự phòng: ${spare.join(", ")}`);
  const last = state.switches[state.switches.length - 1];
  if (last) {
    parts.push(`đã chuyển từ máy chủ ${instances.label(last.from)} sang ${instances.label(last.to)} lúc ${fmt.time(last.at)}`);
  }
  $("server").textContent = parts.join(" · ");
  const o = state.overview;
  $("updated").textContent = o && o.now ? `Số liệu lúc ${fmt.time(o.now)}` : "";
}

function render() {
  renderConn();
  renderHeader();
  renderTiles();
  renderMap();
  renderFooter();
}

function tick() {
  const now = new Date();
  $("clock-time").textContent = fmt.time(now);
  $("clock-date").textContent = fmt.date(now);
  if (state.conn !== "live") renderConn();
  if (Date.now() - state.pageTurnedAt > PAGE_MS) renderTiles();
}

// ---------------------------------------------------------------------------
// Kiosk mode and start.
// ---------------------------------------------------------------------------

function goFullscreen() {
  const el = document.documentElement;
  if (document.fullscreenElement || !el.requestFullscreen) return;
  el.requestFullscreen().catch(() => {
    // Not allowed without a user gesture (start the browser full screen).
  });
}

if (kiosk) {
  document.body.classList.add("kiosk");
  goFullscreen();
  for (const ev of ["pointerdown", "keydown"]) document.addEventListener(ev, goFullscreen, { once: true });
}
$("btn-fullscreen").addEventListener("click", goFullscreen);
window.addEventListener("resize", () => {
  mapKey = "";
  render();
});

tick();
setInterval(tick, 1000);
render();
poll();
setTimeout(probe, POLL_MS);
// For tests and debugging in the browser console.
window.iocProvince = { state, instances, displayName };
