// The IOC wall screen: every panel is fed by the /api/ws live stream.
// REST is read only for the registry (commune, villages) and, once per
// connection / day / report period, for the indicator history that seeds
// the trend lines, which live updates then extend. See docs/SCREEN.md.

import * as fmt from "./format.js";
import { wireFullscreen } from "./fullscreen.js";
import { rootUrl, url } from "./base.js";
import { Live } from "./live.js";
import { drawMap, shortName } from "./map.js";
import { alertIndicators, notForCommune, renderStrip, renderTakeover, warnedVillages } from "./alerts.js";
import { sparkline } from "./spark.js";
import { renderCoverage } from "./coverage.js";

// ---------------------------------------------------------------------------
// Configuration of the screen (change the layout here, see docs/SCREEN.md).
// ---------------------------------------------------------------------------

/** Key indicators, in tile order; tiles appear for the ids the commune has. */
const KEY_INDICATORS = [
  "dossier_online_ratio",
  "dossier_on_time_ratio",
  "dossier_online_payment_ratio",
  "dossier_direct_ratio",
  "camera_online",
  "speaker_online",
  "broadcast_sessions",
  "dossiers_received",
];
/** Kinds of indicator the server keeps history for (PROTOCOL §6.3);
 * availability, latest and freshness are computed "now". */
const HISTORY_KINDS = new Set(["count", "ratio", "dead_letters"]);
/** Device tiles shown at most when the page scrolls (laptop); on the wall
 * screen as many as fit. Problems come first; the rest are summarised. */
const MAX_DEVICE_TILES = 36;
/** Events shown in the feed. */
const FEED_ROWS = 30;

const STATUS_TEXT = { met: "Đạt", not_met: "Chưa đạt", no_data: "Chưa có dữ liệu", none: "Theo dõi" };
const DEVICE_STATE = {
  online: "Hoạt động",
  broadcasting: "Đang phát",
  offline: "Mất kết nối",
  fault: "Lỗi",
  unknown: "Chưa có tín hiệu",
  unmonitored: "Không giám sát",
};
const CLASS_NAME = { camera: "Camera", speaker: "Cụm loa", sensor: "Cảm biến" };
const CLASS_SHORT = { camera: "camera", speaker: "loa", sensor: "cảm biến" };
/** Worse states first: the village takes the worst of its devices. */
const SEVERITY = { offline: 5, fault: 4, unknown: 3, broadcasting: 1, online: 0 };

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

// ---------------------------------------------------------------------------
// State.
// ---------------------------------------------------------------------------

const state = {
  commune: null,
  villages: [],
  /** key -> indicator value (indicator:{id}:{window}:commune). */
  indicators: new Map(),
  /** device id -> device view. */
  devices: new Map(),
  /** scope -> events, newest first. */
  feeds: new Map(),
  /** key -> alert values (the `alerts` family: acknowledgement state). */
  alerts: new Map(),
  /** Official warnings in force (the `warnings` key, PROTOCOL §7.8). */
  warnings: [],
  /** Snapshots of the `warnings` subscription applied (tests, debugging). */
  warningSnapshots: 0,
  /** Loudspeaker broadcasts with their coverage (the `broadcasts` key,
   * PROTOCOL §7.10); null until the server sends it. */
  broadcasts: null,
  /** The last "task done" that failed, shown on the coverage panel. */
  taskError: "",
  /** The signed-in person's role (not in kiosk mode): operators and admins
   * may acknowledge a warning's alert from the screen. */
  role: null,
  /** The last acknowledgement that failed, shown on the takeover. */
  ackError: "",
  /** id -> {today: Map(t -> v), period: Map(t -> v)} cumulative trends. */
  trends: new Map(),
  historyFor: "",
  conn: "connecting",
  lastDataAt: null,
  retryInMs: 0,
  retryAt: 0,
  /** The server refused our token (or we have none and it needs one). */
  unauthorized: false,
  seenFeed: new Set(),
};

const $ = (id) => document.getElementById(id);

function indicator(id, window) {
  return state.indicators.get(`indicator:${id}:${window}:commune`) || null;
}

// ---------------------------------------------------------------------------
// REST: registry and history (never polled).
// ---------------------------------------------------------------------------

async function getJSON(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(path, { headers, cache: "no-store" });
  if (r.status === 401 || r.status === 403) {
    state.unauthorized = true;
    renderConn();
  }
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

/** Who is signed in (a person at a browser; a kiosk never acknowledges). */
async function loadRole() {
  if (kiosk || !token) return;
  try {
    const me = await getJSON(rootUrl("/api/auth/me"));
    state.role = me.role || null;
    schedule();
  } catch (e) {
    // Not known: no acknowledge button.
  }
}

/** Acknowledge an alert (operator): POST /api/alerts/{id}/ack. */
async function acknowledge(alertId) {
  state.ackError = "";
  try {
    const r = await fetch(url(`/api/alerts/${encodeURIComponent(alertId)}/ack`), {
      method: "POST",
      headers: { Authorization: "Bearer " + token },
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      state.ackError = (body.error && body.error.message) || `Không xác nhận được (mã ${r.status}).`;
    }
  } catch (e) {
    state.ackError = "Không kết nối được tới máy chủ.";
  }
  schedule();
}

/** Mark a manual task done (operator): POST /api/tasks/{id}/done. */
async function taskDone(taskId) {
  state.taskError = "";
  try {
    const r = await fetch(url(`/api/tasks/${encodeURIComponent(taskId)}/done`), {
      method: "POST",
      headers: { Authorization: "Bearer " + token },
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      state.taskError = (body.error && body.error.message) || `Không ghi nhận được (mã ${r.status}).`;
    }
  } catch (e) {
    state.taskError = "Không kết nối được tới máy chủ.";
  }
  schedule();
}

async function loadRegistry() {
  try {
    const [commune, villages] = await Promise.all([getJSON(url("/api/commune")), getJSON(url("/api/villages"))]);
    state.commune = commune;
    state.villages = villages;
    schedule();
  } catch (e) {
    // Disconnected again: the next connection retries.
  }
}

function bucketStart(t, hourly) {
  return hourly ? Math.floor(t / 3600_000) * 3600_000 : fmt.localMidnight(t).getTime();
}

/** Cumulative series from history buckets: a running sum, or a running ratio. */
function cumulative(buckets) {
  const out = new Map();
  let n = 0, d = 0, any = false;
  for (const b of buckets) {
    const t = new Date(b.start).getTime();
    if (b.denominator !== undefined) {
      n += b.numerator || 0;
      d += b.denominator || 0;
      out.set(t, d > 0 ? (100 * n) / d : null);
    } else {
      any = true;
      n += b.value || 0;
      out.set(t, any ? n : null);
    }
  }
  return out;
}

async function loadHistory() {
  const month = indicator(KEY_INDICATORS.find((id) => indicator(id, "month")) || "", "month");
  const dayStart = fmt.localMidnight();
  const tag = `${month ? month.period : ""}|${dayStart.toISOString()}`;
  state.historyFor = tag;
  const ids = KEY_INDICATORS.filter((id) => HISTORY_KINDS.has(indicator(id, "month")?.kind));
  await Promise.all(ids.map(async (id) => {
    try {
      const m = indicator(id, "month");
      const q = (from, step) => url(`/api/indicators/${encodeURIComponent(id)}/history?from=${encodeURIComponent(from)}&step=${step}`);
      const [today, period] = await Promise.all([
        getJSON(q(dayStart.toISOString(), "1h")),
        getJSON(q(m.from, "1d")),
      ]);
      state.trends.set(id, { today: cumulative(today.buckets), period: cumulative(period.buckets) });
    } catch (e) {
      // Keep what we had; live updates still extend it.
    }
  }));
  // Live values newer than the history win for the current buckets.
  for (const id of KEY_INDICATORS) extendTrend(id);
  schedule();
}

/** Put the live value at the current hour (today) and day (period). */
function extendTrend(id) {
  const today = indicator(id, "today");
  const month = indicator(id, "month");
  if (!today && !month) return;
  let tr = state.trends.get(id);
  if (!tr) {
    tr = { today: new Map(), period: new Map() };
    state.trends.set(id, tr);
  }
  const now = Date.now();
  if (today && today.value !== undefined) tr.today.set(bucketStart(now, true), today.value);
  if (month && month.value !== undefined) tr.period.set(bucketStart(now, false), month.value);
}

// ---------------------------------------------------------------------------
// Live stream.
// ---------------------------------------------------------------------------

function applyItems(items, how) {
  state.unauthorized = false;
  if (how.replace && how.id === "main") {
    state.indicators.clear();
    state.devices.clear();
    state.feeds.clear();
  }
  if (how.replace && how.id === "alerts") state.alerts.clear();
  if (how.replace && how.id === "broadcasts") state.broadcasts = null;
  if (how.replace && how.id === "warnings") {
    state.warnings = [];
    state.warningSnapshots += 1;
  }
  const touched = new Set();
  for (const it of items) {
    const [family, a] = it.key.split(":");
    if (family === "indicator") {
      state.indicators.set(it.key, it.value);
      touched.add(a);
    } else if (family === "device") {
      state.devices.set(it.value.id, it.value);
    } else if (family === "feed") {
      state.feeds.set(it.scope, (it.value && it.value.events) || []);
    } else if (family === "broadcasts") {
      state.broadcasts = it.value || null;
    } else if (family === "warnings") {
      state.warnings = (it.value && Array.isArray(it.value.warnings)) ? it.value.warnings : [];
    } else if (family.startsWith("alert")) {
      if (it.value === null) state.alerts.delete(it.key);
      else state.alerts.set(it.key, it.value);
    }
  }
  for (const id of touched) if (KEY_INDICATORS.includes(id)) extendTrend(id);
  if (how.replace && how.id === "main") {
    const month = indicator(KEY_INDICATORS.find((id) => indicator(id, "month")) || "", "month");
    const tag = `${month ? month.period : ""}|${fmt.localMidnight().toISOString()}`;
    if (how.resync || tag !== state.historyFor || !state.trends.size) loadHistory();
  } else {
    // A new day or report period re-seeds the trends once.
    const month = indicator(KEY_INDICATORS.find((id) => indicator(id, "month")) || "", "month");
    const tag = `${month ? month.period : ""}|${fmt.localMidnight().toISOString()}`;
    if (state.historyFor && tag !== state.historyFor) loadHistory();
  }
  schedule();
}

const live = new Live({
  token,
  subscriptions: [
    { id: "main", keys: ["indicator:*:month:commune", "indicator:*:today:commune", "device", "feed"] },
    // Official warnings in force, and the alerts (acknowledgement state).
    // A server without one of them refuses it (unknown_key): nothing of it
    // is shown, nothing is invented.
    { id: "warnings", keys: ["warnings"] },
    { id: "alerts", keys: ["alerts"] },
    // Loudspeaker broadcasts and their coverage (the coverage panel).
    { id: "broadcasts", keys: ["broadcasts"] },
  ],
  onItems: applyItems,
  // The registry can change with a restart: read it on every connection.
  onHello: () => {
    loadRegistry();
    loadRole();
  },
  onUnauthorized: () => {
    state.unauthorized = true;
    renderConn();
  },
  onRefused: (id) => {
    if (id === "alerts") state.alerts.clear();
    if (id === "warnings") state.warnings = [];
    if (id === "broadcasts") state.broadcasts = null;
    schedule();
  },
  onState: (s, info) => {
    state.conn = s;
    state.lastDataAt = info.lastDataAt || state.lastDataAt;
    state.retryInMs = info.retryInMs || 0;
    state.retryAt = state.retryInMs ? Date.now() + state.retryInMs : 0;
    renderConn();
    schedule();
  },
});

// ---------------------------------------------------------------------------
// Rendering.
// ---------------------------------------------------------------------------

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    render();
  });
}

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

const ICONS = {
  met: '<svg viewBox="0 0 24 24" class="icon" aria-hidden="true"><path d="M4 12.5l5 5L20 6.5" fill="none" stroke="currentColor" stroke-width="3.2" stroke-linecap="round" stroke-linejoin="round"/></svg>',
  not_met: '<svg viewBox="0 0 24 24" class="icon" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18" fill="none" stroke="currentColor" stroke-width="3.2" stroke-linecap="round"/></svg>',
  no_data: '<svg viewBox="0 0 24 24" class="icon" aria-hidden="true"><path d="M5 12h14" fill="none" stroke="currentColor" stroke-width="3.2" stroke-linecap="round"/></svg>',
  none: '<svg viewBox="0 0 24 24" class="icon" aria-hidden="true"><circle cx="12" cy="12" r="4" fill="currentColor"/></svg>',
};

function statusOf(v) {
  if (!v) return "no_data";
  if (v.status === "no_data") return "no_data";
  if (!v.target) return "none";
  return v.status;
}

function renderKpis() {
  const box = $("kpi-tiles");
  const tiles = [];
  for (const id of KEY_INDICATORS) {
    const m = indicator(id, "month");
    if (!m) continue;
    const t = indicator(id, "today");
    const st = statusOf(m);
    const tile = h("article", "kpi");
    tile.dataset.indicator = id;
    tile.dataset.status = st;
    tile.append(h("div", "kpi-name", m.name));
    const shown = fmt.withUnit(m.value, m.unit);
    const value = h("div", "kpi-value live" + (shown === null ? " nodata" : ""));
    if (shown === null) {
      value.textContent = "Chưa có dữ liệu";
    } else {
      // The number large, the unit smaller: "27 hồ sơ" still fits a tile.
      const cut = shown.indexOf("\u00a0");
      value.append(cut < 0 ? shown : shown.slice(0, cut));
      if (cut >= 0) value.append(h("span", m.unit === "%" ? "unit pct" : "unit", shown.slice(cut)));
    }
    tile.append(value);
    const badge = h("div", "kpi-status");
    badge.innerHTML = ICONS[st];
    badge.append(h("span", "", STATUS_TEXT[st]));
    tile.append(badge);
    tile.append(h("div", "kpi-target", fmt.target(m.target, m.unit)));
    const parts = [];
    if (m.numerator !== undefined && m.denominator !== undefined && m.denominator !== null) {
      parts.push(`${fmt.number(m.numerator, 0)}/${fmt.number(m.denominator, 0)}`);
    }
    if (t && id !== "camera_online" && id !== "speaker_online") {
      const tv = fmt.withUnit(t.value, t.unit);
      parts.push("Hôm nay: " + (tv === null ? "chưa có" : tv));
    }
    tile.append(h("div", "kpi-detail live", parts.join(" · ")));
    tile.append(renderTrends(id, m));
    tiles.push(tile);
  }
  if (!tiles.length) tiles.push(h("div", "empty", state.conn === "live" ? "Chưa cấu hình chỉ tiêu chính." : "Đang tải…"));
  box.replaceChildren(...tiles);
}

function renderTrends(id, m) {
  const wrap = h("div", "kpi-trends");
  const tr = state.trends.get(id);
  const percent = m.unit === "%";
  const target = m.target ? m.target.value : null;
  const dayFrom = fmt.localMidnight().getTime();
  const series = [
    { label: "Hôm nay", map: tr && tr.today, from: dayFrom, to: dayFrom + 86_400_000 },
    { label: "Kỳ " + (m.period ? m.period.split("-").reverse().join("/") : "báo cáo"), map: tr && tr.period,
      from: new Date(m.from).getTime(), to: new Date(m.to).getTime() },
  ];
  for (const s of series) {
    const fig = h("figure", "trend");
    fig.append(h("figcaption", "", s.label));
    const points = s.map ? [...s.map.entries()].sort((a, b) => a[0] - b[0]).map(([t, v]) => ({ t, v })) : [];
    fig.append(sparkline(points, { from: s.from, to: s.to, percent, target, label: `${m.name}: ${s.label}` }));
    wrap.append(fig);
  }
  return wrap;
}

function deviceState(d) {
  if (!d.reporting) return "unmonitored";
  return d.state in SEVERITY ? d.state : "unknown";
}

function villageStatus() {
  const warned = warnedVillages(state.warnings);
  const out = new Map();
  for (const v of state.villages) out.set(v.id, { worst: -1, counts: { camera: 0, speaker: 0, sensor: 0 }, problems: 0 });
  for (const d of state.devices.values()) {
    const s = out.get(d.village);
    if (!s) continue;
    s.counts[d.class] = (s.counts[d.class] || 0) + 1;
    const ds = deviceState(d);
    if (ds === "unmonitored") continue;
    if (SEVERITY[ds] >= 4) s.problems += 1;
    s.worst = Math.max(s.worst, SEVERITY[ds]);
  }
  const byNum = Object.fromEntries(Object.entries(SEVERITY).map(([k, v]) => [v, k]));
  const result = new Map();
  for (const [id, s] of out) {
    const st = s.worst < 0 ? "none" : byNum[s.worst];
    const counts = Object.entries(s.counts).filter(([, n]) => n > 0)
      .map(([c, n]) => `${n} ${CLASS_SHORT[c]}`).join(" · ");
    let label = s.worst < 0 ? "Không có thiết bị giám sát" : DEVICE_STATE[st];
    if (s.problems) label += ` (${s.problems} thiết bị có sự cố)`;
    const w = warned.get(id);
    if (w) label += ` · cảnh báo thiên tai cấp độ ${w.level}`;
    result.set(id, { state: st, label, counts, warning: w || null });
  }
  return result;
}

let mapKey = "";
function renderMap() {
  const box = $("map");
  const status = villageStatus();
  // Layout size (CSS pixels before js/fit.js's zoom), so the map scales
  // with the rest of the screen.
  const rect = { width: box.clientWidth, height: box.clientHeight };
  const key = JSON.stringify([state.villages, [...status], Math.round(rect.width), Math.round(rect.height)]);
  if (key === mapKey) return;
  mapKey = key;
  if (!state.villages.length) {
    box.replaceChildren(h("div", "empty", "Đang tải danh sách thôn/bản…"));
    return;
  }
  const { svg, gridded } = drawMap(state.villages, status, { width: rect.width, height: rect.height });
  box.replaceChildren(svg);
  const legend = $("map-legend");
  const items = [
    ["online", "Hoạt động"], ["offline", "Mất kết nối / lỗi"], ["unknown", "Chưa có tín hiệu"],
    ["none", "Không có thiết bị"], ["dead", "Vùng lõm sóng"],
  ].map(([k, t]) => {
    const s = h("span", "legend-item");
    s.append(h("span", "swatch " + k), h("span", "", t));
    return s;
  });
  const warned = [...status.values()].filter((s) => s.warning);
  if (warned.length) {
    const top = warned.reduce((a, b) => (b.warning.level > a.warning.level ? b : a)).warning;
    const s = h("span", "legend-item warned");
    const sw = h("span", "swatch warning");
    sw.style.borderColor = top.colour;
    s.append(sw, h("span", "", "Có cảnh báo thiên tai"));
    items.push(s);
  }
  const notes = [];
  if (state.villages.some((v) => v.placeholder)) notes.push("* bản chưa đặt tên (cần xã bổ sung)");
  if (gridded) {
    notes.push(gridded === state.villages.length
      ? "Cấu hình chưa có toạ độ thôn/bản: các thôn/bản được xếp theo lưới."
      : `${gridded} thôn/bản chưa có toạ độ: xếp theo lưới ở phía dưới.`);
  }
  legend.replaceChildren(...items, ...notes.map((n) => h("span", "legend-note", n)));
}

/** How many device tiles fit the panel (the wall layout does not scroll). */
function deviceCapacity() {
  const box = $("device-tiles");
  const style = getComputedStyle(box);
  if (style.overflowY !== "hidden" || box.clientHeight < 10) return MAX_DEVICE_TILES;
  const row = parseFloat(style.gridAutoRows) || 66;
  const gap = parseFloat(style.rowGap) || 8;
  const cols = style.gridTemplateColumns.split(" ").length || 3;
  const rows = Math.max(1, Math.floor((box.clientHeight + gap) / (row + gap)));
  return rows * cols;
}

function renderDevices() {
  const devices = [...state.devices.values()].filter((d) => d.registered);
  const order = new Map([...state.devices.keys()].map((k, i) => [k, i]));
  const summary = [];
  for (const cls of ["camera", "speaker", "sensor"]) {
    const all = devices.filter((d) => d.class === cls);
    if (!all.length) continue;
    const monitored = all.filter((d) => d.reporting);
    const up = monitored.filter((d) => d.state === "online" || d.state === "broadcasting").length;
    const line = h("div", "dev-sum");
    line.dataset.class = cls;
    line.append(h("span", "dev-sum-name", CLASS_NAME[cls]));
    line.append(h("span", "dev-sum-value live", `${fmt.number(up, 0)}/${fmt.number(monitored.length, 0)} hoạt động`));
    const extra = [];
    const off = monitored.filter((d) => d.state === "offline").length;
    const fault = monitored.filter((d) => d.state === "fault").length;
    const unk = monitored.filter((d) => deviceState(d) === "unknown").length;
    const bc = monitored.filter((d) => d.state === "broadcasting").length;
    if (off) extra.push(`${off} mất kết nối`);
    if (fault) extra.push(`${fault} lỗi`);
    if (unk) extra.push(`${unk} chưa có tín hiệu`);
    if (bc) extra.push(`${bc} đang phát`);
    if (all.length > monitored.length) extra.push(`${all.length - monitored.length} loa FE không giám sát`);
    line.append(h("span", "dev-sum-extra", extra.join(" · ")));
    summary.push(line);
  }
  $("device-summary").replaceChildren(...summary);
  const shown = devices.filter((d) => d.reporting)
    .sort((a, b) => (SEVERITY[deviceState(b)] ?? -1) - (SEVERITY[deviceState(a)] ?? -1)
      || order.get(a.id) - order.get(b.id));
  const tiles = [];
  const cap = deviceCapacity();
  const limit = shown.length > cap ? cap - 1 : shown.length;
  for (const d of shown.slice(0, limit)) {
    const ds = deviceState(d);
    const t = h("div", "dev");
    t.dataset.device = d.id;
    t.dataset.state = ds;
    t.append(h("div", "dev-name", d.name || d.id));
    const row = h("div", "dev-row");
    row.append(h("span", "dev-state", DEVICE_STATE[ds]));
    const ago = h("span", "dev-ago ago", d.last_seen ? fmt.ago(d.last_seen) : "");
    if (d.last_seen) ago.dataset.t = d.last_seen;
    row.append(ago);
    t.append(row);
    if (d.detail && d.registered) t.title = d.detail;
    tiles.push(t);
  }
  if (shown.length > limit) {
    const rest = shown.slice(limit);
    const ok = rest.filter((d) => SEVERITY[deviceState(d)] <= 1).length;
    tiles.push(h("div", "dev more", `+${fmt.number(rest.length, 0)} thiết bị khác` + (ok === rest.length ? " đang hoạt động" : "")));
  }
  if (!tiles.length) tiles.push(h("div", "empty", "Chưa có thiết bị."));
  $("device-tiles").replaceChildren(...tiles);
}

const LABELS = { person: "người", car: "ô tô", motorbike: "xe máy", motorcycle: "xe máy", bicycle: "xe đạp",
  truck: "xe tải", bus: "xe buýt", dog: "chó", cat: "mèo", cow: "trâu bò", buffalo: "trâu", fire: "lửa", smoke: "khói" };
const CHANNEL = { online: "trực tuyến", direct: "trực tiếp", postal: "bưu chính" };
const OUTCOME = { early: "trước hạn", on_time: "đúng hạn", late: "trễ hạn" };
const PAYMENT = { online: "trực tuyến", cash: "tiền mặt" };
const METRIC = { rain_mm: ["Lượng mưa", "mm"], water_level_cm: ["Mực nước", "cm"], temperature_c: ["Nhiệt độ", "°C"] };

/** [category, text] of one feed event, in Vietnamese; null to leave it out. */
function describe(e) {
  const a = e.attrs || {};
  const dev = e.device ? (state.devices.get(e.device)?.name || e.device) : "";
  const label = a.label ? (LABELS[a.label] || a.label) : "";
  switch (e.source) {
    case "procedure": {
      const id = a.dossier_id ? ` ${a.dossier_id}` : "";
      if (e.kind === "received") return ["Hồ sơ", `Tiếp nhận hồ sơ${id} (${CHANNEL[a.channel] || a.channel || "?"})`];
      if (e.kind === "resolved") return ["Hồ sơ", `Giải quyết hồ sơ${id}` + (a.outcome ? ` (${OUTCOME[a.outcome] || a.outcome})` : "")];
      if (e.kind === "paid") return ["Hồ sơ", `Thanh toán hồ sơ${id}` + (a.payment ? ` (${PAYMENT[a.payment] || a.payment})` : "")];
      return ["Hồ sơ", `Hồ sơ${id}: ${e.kind}`];
    }
    case "camera":
      if (e.kind.endsWith("_update") || e.kind === "frigate_available" || e.kind === "detection_end" || e.kind === "review_end") return null;
      if (e.kind === "detection" || e.kind === "review_new") {
        const n = a.count !== undefined && a.count !== 1 ? ` (${fmt.number(a.count, 0)})` : "";
        return ["Camera", `${dev}: phát hiện ${label || "đối tượng"}${n}`];
      }
      if (e.kind === "count") return ["Camera", `${dev}: đếm được ${fmt.number(a.count ?? 0, 0)} ${label || "đối tượng"}`];
      if (e.kind === "fire") return ["Cảnh báo", `${dev}: phát hiện cháy`];
      if (e.kind === "smoke") return ["Cảnh báo", `${dev}: phát hiện khói`];
      if (e.kind === "intrusion") return ["Cảnh báo", `${dev}: xâm nhập khu vực${a.zone ? " " + a.zone : ""}`];
      if (e.kind === "tamper") return ["Cảnh báo", `${dev}: camera bị che hoặc tác động`];
      if (e.kind === "status") break;
      return ["Camera", `${dev}: ${e.kind}`];
    case "speaker":
      if (e.kind === "session_start") {
        const pr = a.priority === "emergency" ? " khẩn cấp" : a.priority === "priority" ? " ưu tiên" : "";
        return ["Phát thanh", `${dev}: bắt đầu phát${pr}` + (a.content ? ` — ${a.content}` : "")];
      }
      if (e.kind === "session_end") {
        return ["Phát thanh", `${dev}: kết thúc phát` + (Number.isFinite(a.duration_s) ? ` (${fmt.duration(a.duration_s)})` : "")];
      }
      // Broadcast commands and their answers (PROTOCOL §9).
      if (e.kind === "command") {
        return ["Phát thanh", `${a.device_id || dev}: gửi lệnh phát bản tin số ${a.broadcast ?? "?"}`];
      }
      if (e.kind === "command_ack") {
        const st = { accepted: "đã nhận lệnh phát", duplicate: "lệnh đã nhận trước đó", busy: "đang bận, sẽ gửi lại",
          rejected: "từ chối lệnh", expired: "lệnh đã hết hạn", failed: "phát lỗi" }[a.status] || a.status;
        return ["Phát thanh", `${dev}: ${st}`];
      }
      break;
    case "sensor":
      if (e.kind === "telemetry") {
        const parts = Object.entries(a).filter(([, v]) => typeof v === "number")
          .map(([k, v]) => METRIC[k] ? `${METRIC[k][0]} ${fmt.number(v)} ${METRIC[k][1]}` : `${k} ${fmt.number(v)}`);
        return ["Cảm biến", `${dev}: ${parts.join(", ")}`];
      }
      break;
    default:
      break;
  }
  if (e.kind === "status") {
    const s = DEVICE_STATE[a.state] || a.state;
    return ["Thiết bị", `${dev}: ${s}` + (a.detail ? ` — ${a.detail}` : "")];
  }
  return [e.source, `${dev} ${e.kind}`];
}

function renderFeed() {
  const names = new Map(state.villages.map((v) => [v.id, shortName(v)]));
  const events = [...state.feeds.values()].flat()
    .sort((a, b) => String(b.received_at).localeCompare(String(a.received_at)));
  const rows = [];
  const seen = new Set();
  for (const e of events) {
    if (rows.length >= FEED_ROWS) break;
    const d = describe(e);
    if (!d) continue;
    const li = h("li", "ev");
    const key = e.id || `${e.received_at}|${e.source}|${e.kind}|${e.device || ""}`;
    seen.add(key);
    if (state.seenFeed.size && !state.seenFeed.has(key)) li.classList.add("new");
    li.dataset.source = e.source;
    li.append(h("span", "ev-time", fmt.time(e.ts)));
    li.append(h("span", "ev-cat cat-" + e.source, d[0]));
    li.append(h("span", "ev-text", d[1]));
    li.append(h("span", "ev-village", e.village ? (names.get(e.village) || e.village) : ""));
    rows.push(li);
  }
  state.seenFeed = seen.size ? seen : state.seenFeed;
  if (!rows.length) rows.push(h("li", "empty", state.conn === "live" ? "Chưa có sự kiện." : "Đang tải…"));
  $("feed").replaceChildren(...rows);
}

function renderAlerts() {
  const names = new Map(state.villages.map((v) => [v.id, shortName(v)]));
  const strip = renderStrip($("alerts"), state.warnings, state.alerts, names);
  const canAck = !kiosk && (state.role === "operator" || state.role === "admin");
  const takeover = renderTakeover($("takeover"), state.warnings, state.alerts, names,
    canAck ? { onAck: acknowledge, error: state.ackError } : null);
  document.body.classList.toggle("has-alerts", strip);
  document.body.classList.toggle("has-takeover", takeover);
  const canAct = !kiosk && (state.role === "operator" || state.role === "admin");
  const coverage = renderCoverage($("coverage"), state.broadcasts,
    canAct ? { onDone: taskDone, error: state.taskError } : null);
  document.body.classList.toggle("has-coverage", coverage);
}

function renderHeader() {
  if (state.commune) {
    const c = state.commune;
    $("commune").textContent = c.province ? `${c.name}, tỉnh ${c.province}` : c.name;
    document.title = `Trung tâm giám sát và điều hành thông minh — ${c.name}`;
  }
  const m = indicator(KEY_INDICATORS.find((id) => indicator(id, "month")) || "", "month");
  if (m && m.period) {
    const [y, mo] = m.period.split("-");
    const last = new Date(new Date(m.to).getTime() - 1);
    $("period").innerHTML = "";
    $("period").append(h("div", "period-label", `Kỳ báo cáo tháng ${Number(mo)}/${y}`),
      h("div", "period-range", `${fmt.dayMonth(m.from)} – ${fmt.dayMonth(last)}`));
  }
}

function renderFooter() {
  const parts = [];
  const dl = indicator("dead_letters", "today");
  if (dl && dl.value !== null) parts.push(`Bản tin lỗi hôm nay: ${fmt.number(dl.value, 0)}`);
  const fr = indicator("freshness_procedure", "month");
  if (fr) parts.push("Dữ liệu hồ sơ gần nhất: " + (fr.updated_at ? fmt.ago(fr.updated_at) : "chưa có"));
  const outside = notForCommune(state.warnings);
  if (outside) parts.push(`Bản tin cảnh báo không thuộc địa bàn xã: ${fmt.number(outside, 0)}`);
  parts.push(...alertIndicators(state.alerts));
  $("data-health").textContent = parts.join(" · ");
  $("last-data").textContent = state.lastDataAt ? "Dữ liệu cập nhật lúc " + fmt.time(state.lastDataAt) : "";
}

function renderConn() {
  const s = state.conn;
  document.body.dataset.conn = s;
  const text = { live: "Trực tuyến", stale: "Dữ liệu cũ", disconnected: "Mất kết nối", connecting: "Đang kết nối…" }[s];
  $("conn-text").textContent = text;
  const banner = $("conn-banner");
  const down = s === "disconnected" || s === "stale";
  banner.hidden = !down && !state.unauthorized;
  $("conn-banner-title").textContent = state.unauthorized
    ? "Màn hình chưa được cấp quyền xem dữ liệu"
    : "Mất kết nối tới máy chủ — đang thử kết nối lại…";
  // A person at a browser signs in here; a kiosk screen needs its token.
  $("login").hidden = !(state.unauthorized && !kiosk);
  $("btn-logout").hidden = kiosk || !token || state.unauthorized;
  if (state.unauthorized) {
    $("conn-banner-detail").textContent = token
      ? "Mã truy cập không hợp lệ hoặc đã bị thu hồi: xin quản trị viên cấp mã mới."
      : "Mở màn hình bằng địa chỉ có mã truy cập: /?kiosk=1&token=…";
  } else if (down) {
    const parts = [state.lastDataAt ? `Dữ liệu cuối lúc ${fmt.time(state.lastDataAt)}` : "Chưa nhận được dữ liệu"];
    const left = Math.ceil((state.retryAt - Date.now()) / 1000);
    parts.push(left > 0 ? `thử lại sau ${fmt.duration(left)}` : "đang thử lại");
    $("conn-banner-detail").textContent = parts.join(" · ");
  }
}

function render() {
  renderHeader();
  renderAlerts();
  renderKpis();
  renderMap();
  renderDevices();
  renderFeed();
  renderFooter();
}

/** Every second: the clock and the "… trước" ages. */
function tick() {
  const now = new Date();
  $("clock-time").textContent = fmt.time(now);
  $("clock-date").textContent = fmt.date(now);
  for (const e of document.querySelectorAll(".ago[data-t]")) e.textContent = fmt.ago(e.dataset.t, now.getTime());
  renderFooter();
  if (state.conn === "disconnected" || state.conn === "stale") renderConn();
}

// ---------------------------------------------------------------------------
// Kiosk mode and start.
// ---------------------------------------------------------------------------

wireFullscreen(kiosk, $("btn-fullscreen"));

/** Reload the page with `t` as the token (kept in this browser's storage;
 * in the URL only when storage is disabled). */
function reloadWith(t) {
  let stored = false;
  try {
    if (t) localStorage.setItem("ioc.token", t);
    else localStorage.removeItem("ioc.token");
    stored = true;
  } catch (e) {
    // Private mode: fall back to the URL.
  }
  const q = new URLSearchParams();
  if (kiosk) q.set("kiosk", "1");
  if (t && !stored) q.set("token", t);
  const qs = q.toString();
  location.replace(location.pathname + (qs ? "?" + qs : ""));
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = $("login-error");
  err.textContent = "";
  try {
    const r = await fetch(rootUrl("/api/auth/login"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("login-user").value, password: $("login-pass").value }),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      err.textContent = (body.error && body.error.message) || `Đăng nhập không được (mã ${r.status}).`;
      return;
    }
    reloadWith(body.token);
  } catch (e) {
    err.textContent = "Không kết nối được tới máy chủ.";
  }
});

$("btn-logout").addEventListener("click", async () => {
  try {
    await fetch(rootUrl("/api/auth/logout"), { method: "POST", headers: { Authorization: "Bearer " + token } });
  } catch (e) {
    // Signed out locally all the same.
  }
  reloadWith("");
});
window.addEventListener("resize", schedule);

tick();
setInterval(tick, 1000);
render();
live.start();
// For tests and debugging in the browser console.
window.iocScreen = { state, live };
