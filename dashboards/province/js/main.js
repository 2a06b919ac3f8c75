// The province wall screen (docs/SCREEN.md, "Province"): every commune
// with its key indicators against the 2026 targets, device health, uplink
// state, gaps, this period's report and its warnings in force, on tiles and
// on a map; a click opens the commune's own screen (`/site/{id}/`). Read
// from `GET /api/province/overview` every few seconds, from the instance in
// use; when it stops answering, from the next one (js/instances.js).

import * as fmt from "../common/js/format.js";
import { wireFullscreen } from "../common/js/fullscreen.js";
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
/** With more communes than fit, pages of rows turn every so often. */
const PAGE_MS = 15000;
/** Rows (canvas pixels): at least `ROW_MIN_H` high (two lines of text),
 * at most `ROW_MAX_H`; blocks of rows side by side, each at least
 * `BLOCK_MIN_W` wide, under a heading row `HEAD_H` high. */
const ROW_MIN_H = 38;
const ROW_MAX_H = 60;
const ROW_GAP = 3;
const BLOCK_MIN_W = 620;
const BLOCK_GAP = 16;
const HEAD_H = 30;
/** Key indicators, in order, with their column headings (explained in
 * their tooltips): the first `CHIPS` any commune has get a column, beside
 * the devices column (cameras, loudspeakers and sensors up, of all). */
const KEY_INDICATORS = [
  ["dossier_online_ratio", "Trực tuyến", "Tỷ lệ hồ sơ nộp trực tuyến"],
  ["dossier_on_time_ratio", "Đúng hạn", "Tỷ lệ hồ sơ giải quyết đúng hạn"],
  ["dossier_online_payment_ratio", "Thanh toán", "Tỷ lệ thanh toán trực tuyến"],
  ["camera_online", "Camera", "Tỷ lệ camera hoạt động"],
  ["speaker_online", "Loa", "Tỷ lệ cụm loa hoạt động"],
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
  /** While failing over: {from, to, why: "down" | "stream"}. */
  trying: null,
  /** The instance in use answers but is cut from the stream. */
  degraded: false,
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
  if (site.status === "broken") return { state: "broken", text: "cấu hình lỗi", word: "Cấu hình lỗi" };
  if (site.lag_s === null || site.lag_s === undefined) {
    return { state: "none", text: "chưa nhận dữ liệu", word: "Chưa kết nối", more: "chưa nhận dữ liệu" };
  }
  const stale = typeof site.stale === "boolean" ? site.stale : site.lag_s > LAG_DOWN_S;
  if (stale) {
    return { state: "down", text: `mất kết nối ${coarse(site.lag_s)}`, word: "Mất kết nối", more: coarse(site.lag_s) };
  }
  return { state: "ok", text: "trực tuyến", word: "Trực tuyến" };
}

/** A lag for a narrow column: "45 phút", "2 giờ", "3 ngày" (the exact
 * time of the last entry is in the tooltip). */
function coarse(secs) {
  const m = Math.floor(Math.max(0, secs) / 60);
  if (m < 60) return `${m}\u00a0phút`;
  if (m < 24 * 60) return `${Math.floor(m / 60)}\u00a0giờ`;
  return `${Math.floor(m / 1440)}\u00a0ngày`;
}

/** "11/2026" from "2026-11". */
function periodText(p) {
  const m = /^(\d{4})-(\d{2})$/.exec(p || "");
  return m ? `${Number(m[2])}/${m[1]}` : p || "";
}

/** This period's report: {state, text}. */
export function reportOf(site) {
  const r = site.report;
  if (!r) return { state: "missing", text: "Báo cáo: chưa báo cáo", short: "chưa báo cáo" };
  let t = REPORT_TEXT[r.status] || r.status;
  if (r.status === "corrected" && r.revision) t += ` (lần ${fmt.number(r.revision, 0)})`;
  if (r.status === "refused" && r.reason) t += `: ${r.reason}`;
  return { state: r.status, text: `Báo cáo ${periodText(r.period)}: ${t}`, short: t };
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
  const res = await instances.read("/api/province/overview", (from, to, why) => {
    // Already without any instance, or already degraded: stay so until one
    // answers well (no flapping on every read).
    if (state.conn === "disconnected" || state.degraded) return;
    state.trying = { from, to, why };
    state.conn = "stale";
    render();
  });
  state.trying = null;
  state.reads += 1;
  if (res.ok) {
    state.overview = res.data;
    state.from = res.base;
    state.lastOkAt = new Date();
    // Answered, but cut from the stream (and no other instance is better):
    // the data no longer moves.
    state.degraded = res.degraded;
    state.conn = res.degraded ? "stale" : "live";
    state.unauthorized = false;
    if (res.switched) state.switches.push({ ...res.switched, at: new Date() });
  } else {
    state.degraded = false;
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

/** The indicator columns: the first `CHIPS` key indicators any commune
 * has, in `KEY_INDICATORS` order (the same columns on every row). */
function columnsOf(sites) {
  const have = new Set();
  for (const s of sites) for (const i of s.indicators || []) have.add(i.id);
  return KEY_INDICATORS.filter(([id]) => have.has(id)).slice(0, CHIPS);
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
  const W = box.clientWidth, H = box.clientHeight;
  // Blocks of rows side by side, each with its column headings; as many
  // rows as fit at the smallest row height, then pages.
  const blocks = Math.max(1, Math.floor((W + BLOCK_GAP) / (BLOCK_MIN_W + BLOCK_GAP)));
  const rowsFit = Math.max(1, Math.floor((H - HEAD_H + ROW_GAP) / (ROW_MIN_H + ROW_GAP)));
  const perPage = blocks * rowsFit;
  const pages = Math.max(1, Math.ceil(sites.length / perPage));
  if (Date.now() - state.pageTurnedAt > PAGE_MS) {
    state.page += 1;
    state.pageTurnedAt = Date.now();
  }
  const page = state.page % pages;
  const shown = sites.slice(page * perPage, (page + 1) * perPage);
  $("page").textContent = pages > 1 ? `Trang ${page + 1}/${pages}` : "";
  const used = Math.min(blocks, Math.ceil(shown.length / rowsFit)) || 1;
  const rows = Math.ceil(shown.length / used);
  const rowH = Math.min(ROW_MAX_H, (H - HEAD_H - ROW_GAP * (rows - 1)) / rows);
  box.style.setProperty("--k", String(Math.max(1, Math.min(1.25, rowH / ROW_MIN_H))));
  box.style.setProperty("--row-h", `${Math.floor(rowH)}px`);
  const cols = columnsOf(sites);
  box.style.setProperty("--ncols", String(cols.length + 1));
  const reportPeriod = headerPeriod(sites);
  const out = [];
  for (let b = 0; b < used; b += 1) {
    const block = h("div", "block");
    block.append(headRow(cols, reportPeriod));
    for (const s of shown.slice(b * rows, (b + 1) * rows)) block.append(row(s, base, cols, reportPeriod));
    out.push(block);
  }
  box.replaceChildren(...out);
}

/** The report period most communes are at (the header's). */
function headerPeriod(sites) {
  const periods = sites.map((s) => s.report && s.report.period).filter(Boolean);
  return periods.sort().pop() || "";
}

function headRow(cols, period) {
  const r = h("div", "site-row head");
  const n = h("span", "c-name", "Xã · báo cáo");
  if (period) n.title = `Báo cáo kỳ ${periodText(period)}`;
  r.append(n, h("span", "c-link", "Kết nối"));
  for (const [, abbr, text] of cols) {
    const c = h("span", "c-ind", abbr);
    c.title = `${text} (chỉ tiêu năm 2026)`;
    r.append(c);
  }
  const d = h("span", "c-ind", "Thiết bị");
  d.title = "Thiết bị hoạt động / tổng số";
  r.append(d, h("span", "c-warn", "Cảnh báo"));
  return r;
}

function row(s, base, cols, period) {
  const a = h("a", "site site-row");
  a.href = siteHref(base, s.id);
  a.dataset.site = s.id;
  const up = uplinkOf(s);
  const level = topLevel(s);
  const rep = reportOf(s);
  a.dataset.uplink = up.state;
  a.dataset.level = String(level);
  a.dataset.report = rep.state;
  a.title = `${s.name || s.id}: mở màn hình của xã`;
  // Name, and this period's report under it.
  const name = h("span", "c-name");
  name.append(h("span", "site-name", s.name || s.id), " ");
  const r = h("span", "site-report", s.report && s.report.period === period ? rep.short : rep.text);
  r.dataset.state = rep.state;
  r.title = rep.text;
  name.append(r);
  // The link ("Mất kết nối", and for how long under it), and the gaps.
  const link = h("span", "c-link");
  const upEl = h("span", "site-uplink");
  upEl.dataset.state = up.state;
  upEl.title = s.last_entry_at ? `Bản ghi cuối lúc ${fmt.full(s.last_entry_at)}` : up.text;
  upEl.append(h("span", "up-state", up.word));
  const more = h("span", "up-more");
  if (up.more) more.append(up.more);
  const gaps = gapCount(s);
  if (gaps) {
    const g = h("span", "site-gaps", `thiếu ${fmt.number(gaps, 0)} bản ghi`);
    g.title = "Khoảng thiếu trong nhật ký của xã (số thứ tự): "
      + s.gaps.map((x) => `${fmt.number(x.from, 0)}–${fmt.number(x.to, 0)}`).join(", ");
    if (up.more) more.append(" · ");
    more.append(g);
  } else if (s.status === "broken") {
    const e = h("span", "site-error", s.error || "Tệp cấu hình của xã không nạp được.");
    e.title = s.error || "";
    more.append(e);
  }
  if (more.childNodes.length) upEl.append(" ", more);
  link.append(upEl);
  a.append(name, link);
  const byId = new Map((s.indicators || []).map((i) => [i.id, i]));
  for (const [id, abbr] of cols) {
    const ind = byId.get(id);
    const c = h("span", "chip live");
    c.dataset.indicator = id;
    if (!ind) {
      c.dataset.status = "absent";
      c.textContent = "";
      c.title = "Xã không có chỉ tiêu này";
    } else {
      const st = statusOf(ind);
      c.dataset.status = st;
      const v = fmt.withUnit(ind.value, ind.unit);
      c.textContent = v === null ? "—" : v.replace(/\u00a0%$/, "%");
      c.title = `${abbr} · ${nameOf(ind)}: ${v === null ? "chưa có dữ liệu" : v} — ${STATUS_TEXT[st]} (${targetText(ind)})`;
    }
    a.append(c);
  }
  const dev = h("span", "chip dev live");
  if (s.devices) {
    const d = s.devices;
    dev.dataset.status = !d.total ? "no_data" : d.up < d.total ? "not_met" : "met";
    dev.textContent = `${fmt.number(d.up, 0)}/${fmt.number(d.total, 0)}`;
    dev.title = `Thiết bị hoạt động: ${fmt.number(d.up, 0)}/${fmt.number(d.total, 0)}`;
  } else {
    dev.dataset.status = "absent";
  }
  a.append(dev);
  const warn = h("span", "c-warn");
  if (level) {
    const n = Object.values(s.warnings || {}).reduce((x, y) => x + Number(y || 0), 0);
    const w = h("span", `site-warn lv lv-${level}`, `Cấp ${level}`);
    w.title = `Cảnh báo thiên tai cấp độ ${level} (${LEVEL_TEXT[level]}): ${fmt.number(n, 0)} bản tin còn hiệu lực`;
    warn.append(w);
  }
  a.append(warn);
  return a;
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
    stale: state.degraded ? `Máy chủ ${name} · mất luồng dữ liệu` : "Đang chuyển máy chủ…",
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
    const from = instances.label(state.trying.from);
    title = state.trying.why === "stream"
      ? `Máy chủ tỉnh ${from} mất kết nối tới luồng dữ liệu, đang chuyển sang ${instances.label(state.trying.to)}…`
      : `Mất kết nối tới máy chủ tỉnh ${from}, đang chuyển sang ${instances.label(state.trying.to)}…`;
  } else if (s === "stale" && state.degraded) {
    title = `Máy chủ tỉnh ${name} mất kết nối tới luồng dữ liệu của các xã — số liệu không còn được cập nhật`;
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

wireFullscreen(kiosk, $("btn-fullscreen"));
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
window.iocProvince = { state, instances, displayName, render };
