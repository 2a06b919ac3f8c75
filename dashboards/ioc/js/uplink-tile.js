// The wall screen's uplink tile (in the footer): whether the journal has
// reached the province (docs/PROVINCE.md), and how far behind it is.
// Reads GET /readyz (public) every 15 s; hidden when no uplink is set.

import * as fmt from "./format.js";
import { url } from "./base.js";

/** The tile's text and state from /readyz's `uplink` object. */
export function uplinkText(u) {
  if (!u) return null;
  const lag = Number(u.lag_entries) || 0;
  const secs = Number(u.lag_seconds) || 0;
  if (lag === 0 && u.up) return { state: "ok", text: "Tỉnh: đã đồng bộ" };
  const waiting = `${fmt.number(lag, 0)} bản ghi chờ gửi`;
  if (!u.up) {
    const behind = lag === 0 ? "" : `, chậm ${fmt.duration(secs)} (${waiting})`;
    return { state: "down", text: `Tỉnh: mất kết nối${behind}` };
  }
  return { state: "behind", text: `Tỉnh: đang gửi, chậm ${fmt.duration(secs)} (${waiting})` };
}

async function refresh() {
  const el = document.getElementById("uplink-tile");
  if (!el) return;
  try {
    const r = await fetch(url("/readyz"), { cache: "no-store" });
    const body = await r.json();
    const t = uplinkText(body.uplink);
    el.hidden = !t;
    if (t) {
      el.textContent = t.text;
      el.dataset.state = t.state;
    }
  } catch (e) {
    // The server is away: the connection banner says so.
  }
}

refresh();
setInterval(refresh, 15000);
