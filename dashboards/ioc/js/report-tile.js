// The wall screen's report tile (in the footer): how far the current
// report period has run, and the state of the last sealed report (sealed,
// sent to the province, acknowledged), with a link to its printable page.
// Reads GET /api/reports once a minute.

import { url } from "./base.js";

const params = new URLSearchParams(location.search);
let token = params.get("token") || "";
try {
  if (!token) token = localStorage.getItem("ioc.token") || "";
} catch (e) {
  // Storage may be disabled: the URL token still works.
}

const STATES = {
  open: "đang mở",
  sealed: "đã niêm phong, chưa gửi tỉnh",
  corrected: "đã đính chính, chưa gửi tỉnh",
  submitted: "đang gửi tỉnh",
  acknowledged: "tỉnh đã nhận",
  submission_failed: "gửi tỉnh không thành công",
};
const DAY = 86400000;
const pct = new Intl.NumberFormat("vi-VN", { maximumFractionDigits: 0 });

/** The tile's parts from the `periods` list (newest first), at `now`. */
export function tileParts(periods, now) {
  const current = periods.find((p) => p.kind === "month" &&
    Date.parse(p.window_start) <= now && now < Date.parse(p.window_end));
  const last = periods.find((p) => p.kind === "month" && p.state !== "open" && p.revision !== null);
  const parts = {};
  if (current) {
    const start = Date.parse(current.window_start);
    const end = Date.parse(current.window_end);
    const days = Math.round((end - start) / DAY);
    const day = Math.min(days, Math.floor((now - start) / DAY) + 1);
    parts.current = `Kỳ báo cáo ${current.period}: ngày ${day}/${days} (${pct.format((100 * (now - start)) / (end - start))} %)`;
  }
  if (last) {
    parts.last = { period: last.period, text: `Kỳ ${last.period}: ${STATES[last.state] || last.state}`, state: last.state };
  }
  return parts;
}

function render(el, parts) {
  el.replaceChildren();
  if (parts.current) el.append(parts.current);
  if (parts.last) {
    if (parts.current) el.append(" · ");
    const a = document.createElement("a");
    a.href = url(`/reports/${encodeURIComponent(parts.last.period)}`);
    a.textContent = parts.last.text;
    a.dataset.state = parts.last.state;
    el.append(a);
  }
}

async function refresh() {
  const el = document.getElementById("report-tile");
  if (!el) return;
  try {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const r = await fetch(url("/api/reports"), { headers, cache: "no-store" });
    if (!r.ok) return;
    const body = await r.json();
    render(el, tileParts(body.periods || [], Date.now()));
  } catch (e) {
    // The next refresh tries again; the rest of the screen shows the
    // connection state.
  }
}

if (typeof document !== "undefined") {
  refresh();
  setInterval(refresh, 60000);
}
