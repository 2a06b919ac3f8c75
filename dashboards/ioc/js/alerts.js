// The alerts area of the wall screen (docs/SCREEN.md "Alerts"): official
// warnings in force (live `warnings` key, PROTOCOL §7.8) in the colours of
// the disaster risk levels of QĐ 18/2021/QĐ-TTg, with their villages,
// issuer, issue time and acknowledgement state (from the `alerts` family:
// the alert a warning raises has `warning:{chain}` as fingerprint). A
// level ≥ 3 warning not yet acknowledged takes over the left of the
// screen (KPIs and feed); the village map stays visible beside it, with
// the warned villages ringed in the level's colour.

import * as fmt from "./format.js";

/** Cấp độ rủi ro thiên tai, Quyết định 18/2021/QĐ-TTg Điều 4. */
export const RISK_LEVEL = {
  1: "Cấp độ 1 — rủi ro thấp",
  2: "Cấp độ 2 — rủi ro trung bình",
  3: "Cấp độ 3 — rủi ro lớn",
  4: "Cấp độ 4 — rủi ro rất lớn",
  5: "Cấp độ 5 — thảm họa",
};
/** Map colours of Phụ lục XII (the server sends them too: `colour`). */
const COLOUR = { 1: "#7ec8f0", 2: "#f5e663", 3: "#f28c28", 4: "#d7191c", 5: "#7b2d8e" };
/** A warning of this level or above takes over the screen until acknowledged. */
export const TAKEOVER_LEVEL = 3;
/** Rows of the alerts strip (the layout below shrinks by as much). */
const STRIP_ROWS = 2;

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

/** Every alert value of the `alerts` family (one per key, or lists). */
function allAlerts(alerts) {
  const out = [];
  for (const v of alerts.values()) {
    if (!v) continue;
    if (Array.isArray(v.alerts)) out.push(...v.alerts);
    else out.push(v);
  }
  return out.filter(Boolean);
}

/** The alert a warning raised: same chain (fingerprint) or same bulletin. */
export function alertFor(w, alerts) {
  let best = null;
  for (const a of allAlerts(alerts)) {
    if (a.kind && a.kind !== "warning") continue;
    const d = a.details || {};
    const fp = String(a.fingerprint || "");
    // The alerts room's fingerprint is `warning:{chain}`; its details name
    // the bulletin in force.
    const same = fp === "warning:" + w.chain || fp === w.chain || d.bulletin === w.id
      || a.reference === w.id;
    if (!same) continue;
    // The firing one wins over an older resolved one.
    if (!best || (best.state === "resolved" && a.state !== "resolved")) best = a;
  }
  return best;
}

/** Acknowledgement of a warning: {acked, by, at, handled}. */
export function ackOf(w, alerts) {
  const a = alertFor(w, alerts);
  if (!a) return { acked: false, handled: false };
  const acked = !!a.acked_at || a.acknowledged === true || /(^|_)ack$/.test(String(a.status || ""));
  return { acked, by: a.acked_by || null, at: a.acked_at || null, handled: acked || a.state === "resolved" };
}

/** Active warnings for the commune (not "not for this commune"), highest level first. */
export function activeWarnings(warnings) {
  return (warnings || []).filter((w) => w && w.state === "active")
    .sort((a, b) => (b.level || 0) - (a.level || 0) || String(b.sent).localeCompare(String(a.sent)));
}

/** village id -> {level, colour} of the highest active warning covering it. */
export function warnedVillages(warnings) {
  const out = new Map();
  for (const w of activeWarnings(warnings)) {
    const level = Number(w.level) || 0;
    for (const v of w.villages || []) {
      const cur = out.get(v);
      if (!cur || level > cur.level) out.set(v, { level, colour: colourOf(w) });
    }
  }
  return out;
}

function levelOf(w) {
  const n = Number(w.level);
  return n >= 1 && n <= 5 ? n : 0;
}

function colourOf(w) {
  return w.colour || COLOUR[levelOf(w)] || "#9fb0c0";
}

function hazardName(w) {
  return w.hazard_vi || w.event || "Cảnh báo thiên tai";
}

function villageNames(w, names) {
  const list = (w.villages || []).map((v) => names.get(v) || v);
  return list.length ? list.join(", ") : "Toàn xã";
}

function issued(w) {
  const who = w.sender_name || "Không rõ cơ quan ban hành";
  return w.sent ? `${who} · ban hành lúc ${fmt.dateTime(w.sent)}` : who;
}

function ackText(ack) {
  if (!ack.acked) return "Chưa xác nhận";
  const parts = ["Đã xác nhận"];
  if (ack.by) parts.push(ack.by);
  if (ack.at) parts.push("lúc " + fmt.hm(ack.at));
  return parts.join(" · ");
}

function setLevel(e, w) {
  const lv = levelOf(w);
  e.dataset.level = String(lv);
  e.classList.add("level-" + (lv || 0));
  e.style.setProperty("--lv", colourOf(w));
}

/** One row of the alerts strip. */
function warningRow(w, names, alerts) {
  const ack = ackOf(w, alerts);
  const row = h("div", "alert warning");
  row.dataset.warning = w.id;
  row.dataset.chain = w.chain || w.id;
  row.dataset.ack = String(ack.acked);
  setLevel(row, w);
  row.append(h("span", "alert-level", levelOf(w) ? RISK_LEVEL[levelOf(w)] : "Chưa rõ cấp độ"));
  row.append(h("span", "alert-title", hazardName(w)));
  row.append(h("span", "alert-area", villageNames(w, names)));
  row.append(h("span", "alert-time", issued(w)));
  row.append(h("span", "alert-ack" + (ack.acked ? " acked" : ""), ackText(ack)));
  row.title = w.headline_vi || w.event || "";
  return row;
}

/** Firing alerts of the commune's own rules, in one summary row. */
function internalRow(internal) {
  const unacked = internal.filter((a) => !a.acked_at).length;
  const row = h("div", "alert internal");
  row.dataset.internal = String(internal.length);
  row.append(h("span", "alert-level", "Cảnh báo nội bộ"));
  const newest = [...internal].sort((a, b) => String(b.last_seen || "").localeCompare(String(a.last_seen || "")))[0];
  row.append(h("span", "alert-title", newest.title || newest.kind || "Cảnh báo"));
  const more = internal.length > 1 ? `${fmt.number(internal.length, 0)} cảnh báo đang hoạt động` : "";
  row.append(h("span", "alert-area", more));
  row.append(h("span", "alert-ack" + (unacked ? "" : " acked"),
    unacked ? `${fmt.number(unacked, 0)} chưa xác nhận` : "Đã xác nhận"));
  return row;
}

/**
 * Fill the strip above the header. Returns whether it shows anything.
 * @param {HTMLElement} box #alerts
 * @param {object[]} warnings the `warnings` list
 * @param {Map<string, object>} alerts the `alerts` family's values
 * @param {Map<string, string>} names village id -> short name
 */
export function renderStrip(box, warnings, alerts, names) {
  const active = activeWarnings(warnings);
  const internal = allAlerts(alerts).filter((a) => a.kind && a.kind !== "warning"
    && a.official !== true && a.state !== "resolved");
  const rows = [];
  // Warnings first; the internal summary only when a row is left.
  const shown = active.length > STRIP_ROWS ? active.slice(0, STRIP_ROWS - 1) : active;
  for (const w of shown) rows.push(warningRow(w, names, alerts));
  if (active.length > shown.length) {
    const rest = active.slice(shown.length);
    const row = h("div", "alert warning more");
    setLevel(row, rest[0]);
    row.append(h("span", "alert-level", `+${fmt.number(rest.length, 0)} cảnh báo khác`));
    row.append(h("span", "alert-area", rest.map((w) => `${hazardName(w)} (cấp độ ${levelOf(w) || "?"})`).join(" · ")));
    rows.push(row);
  }
  if (internal.length && rows.length < STRIP_ROWS) rows.push(internalRow(internal));
  box.replaceChildren(...rows);
  box.hidden = rows.length === 0;
  return rows.length > 0;
}

/**
 * The takeover: the highest new level ≥ 3 warning not yet acknowledged,
 * over the KPIs and the feed. Returns whether it shows.
 * @param {?{onAck: (alertId) => void, error: string}} ack for an operator
 *        at a browser (never in kiosk mode): a button that acknowledges
 *        the warning's alert, once the alerts room has raised it
 */
export function renderTakeover(box, warnings, alerts, names, ack = null) {
  const due = activeWarnings(warnings)
    .filter((w) => levelOf(w) >= TAKEOVER_LEVEL && !ackOf(w, alerts).handled);
  if (!due.length) {
    box.hidden = true;
    box.replaceChildren();
    delete box.dataset.warning;
    return false;
  }
  const w = due[0];
  const lv = levelOf(w);
  box.className = "takeover";
  setLevel(box, w);
  box.dataset.warning = w.id;
  box.dataset.chain = w.chain || w.id;
  const band = h("div", "to-band");
  band.append(h("span", "to-kind", "Cảnh báo thiên tai"), h("span", "to-level", RISK_LEVEL[lv]));
  const parts = [band, h("div", "to-hazard", hazardName(w))];
  if (w.event && w.event !== hazardName(w)) parts.push(h("div", "to-event", w.event));
  if (w.headline_vi) parts.push(h("div", "to-headline", w.headline_vi));
  const vil = h("div", "to-villages");
  vil.append(h("span", "to-label", "Thôn/bản bị ảnh hưởng"), h("strong", "", villageNames(w, names)));
  parts.push(vil);
  const src = h("div", "to-issuer");
  src.append(h("span", "to-label", "Cơ quan ban hành"), h("span", "", w.sender_name || "Không rõ"));
  parts.push(src);
  const when = h("div", "to-when");
  when.append(h("span", "to-label", "Ban hành lúc"), h("span", "", w.sent ? fmt.dateTime(w.sent) : "Không rõ"));
  if (w.expires) when.append(h("span", "to-label", "Hiệu lực đến"), h("span", "", fmt.dateTime(w.expires)));
  parts.push(when);
  const pending = h("div", "to-ack");
  pending.append(h("strong", "", "Chưa xác nhận"),
    h("span", "", "Cán bộ trực ban xác nhận cảnh báo trên hệ thống để thu nhỏ thông báo này."));
  const alert = alertFor(w, alerts);
  if (ack && alert && alert.id !== undefined) {
    const b = h("button", "to-ack-button", "Xác nhận cảnh báo");
    b.type = "button";
    b.dataset.alert = String(alert.id);
    b.addEventListener("click", () => {
      b.disabled = true;
      ack.onAck(alert.id);
    });
    pending.append(b);
    if (ack.error) pending.append(h("span", "to-ack-error", ack.error));
  }
  parts.push(pending);
  if (due.length > 1) parts.push(h("div", "to-more", `Và ${fmt.number(due.length - 1, 0)} cảnh báo cấp độ ${TAKEOVER_LEVEL} trở lên khác chưa xác nhận`));
  box.replaceChildren(...parts);
  box.hidden = false;
  return true;
}

/** Bulletins received that cover no village of the commune (footer note). */
export function notForCommune(warnings) {
  return (warnings || []).filter((w) => w && w.state === "not_for_commune").length;
}

/**
 * The alert indicators for the footer (`alerts` value, PROTOCOL §7.9):
 * firing alerts not yet acknowledged, and the median time to acknowledge
 * over the last 30 days, each only when there is something to say.
 */
export function alertIndicators(alerts) {
  let board = null;
  for (const v of alerts.values()) if (v && v.by_status) board = v;
  if (!board) return [];
  const out = [];
  const unack = Number(board.by_status.firing_unack || 0);
  if (unack) out.push(`Cảnh báo chưa xác nhận: ${fmt.number(unack, 0)}`);
  const t = board.time_to_ack_s || {};
  if (t.count && typeof t.median === "number") {
    out.push(`Thời gian xác nhận cảnh báo (trung vị 30 ngày): ${fmt.duration(t.median)}`);
  }
  return out;
}
