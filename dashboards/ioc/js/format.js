// Vietnamese formatting: numbers (94,6 %; 3.600), times in
// Asia/Ho_Chi_Minh, relative ages ("2 phút trước").

export const TZ = "Asia/Ho_Chi_Minh";
const NBSP = "\u00a0";

const num1 = new Intl.NumberFormat("vi-VN", { maximumFractionDigits: 1 });
const num0 = new Intl.NumberFormat("vi-VN", { maximumFractionDigits: 0 });
const timeFmt = new Intl.DateTimeFormat("vi-VN", {
  timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const hmFmt = new Intl.DateTimeFormat("vi-VN", {
  timeZone: TZ, hour: "2-digit", minute: "2-digit", hour12: false,
});
const dateFmt = new Intl.DateTimeFormat("vi-VN", {
  timeZone: TZ, weekday: "long", day: "2-digit", month: "2-digit", year: "numeric",
});
const dayMonthFmt = new Intl.DateTimeFormat("vi-VN", { timeZone: TZ, day: "2-digit", month: "2-digit" });
const fullFmt = new Intl.DateTimeFormat("vi-VN", {
  timeZone: TZ, day: "2-digit", month: "2-digit", year: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});

/** A number in Vietnamese style: 94,6 or 3.600. */
export function number(n, digits = 1) {
  return (digits === 0 ? num0 : num1).format(n);
}

/** A value with its unit: "94,6 %", "12 hồ sơ". `null` is no data. */
export function withUnit(value, unit) {
  if (value === null || value === undefined) return null;
  if (unit === "%") return number(value) + NBSP + "%";
  if (unit === "s") return duration(value);
  return unit ? number(value) + NBSP + unit : number(value);
}

/** Seconds as "5 phút", "2 giờ 10 phút". */
export function duration(secs) {
  const s = Math.max(0, Math.round(secs));
  if (s < 60) return s + NBSP + "giây";
  const m = Math.floor(s / 60);
  if (m < 60) return m + NBSP + "phút";
  const h = Math.floor(m / 60);
  if (h < 24) return h + NBSP + "giờ" + (m % 60 ? " " + (m % 60) + NBSP + "phút" : "");
  const d = Math.floor(h / 24);
  return d + NBSP + "ngày" + (h % 24 ? " " + (h % 24) + NBSP + "giờ" : "");
}

/** "vừa xong", "2 phút trước" from an RFC 3339 time (or Date). */
export function ago(t, now = Date.now()) {
  if (!t) return "chưa từng";
  const ms = now - new Date(t).getTime();
  if (ms < 10_000) return "vừa xong";
  return duration(ms / 1000) + " trước";
}

export const time = (t) => timeFmt.format(new Date(t));
export const hm = (t) => hmFmt.format(new Date(t));
export const date = (t) => dateFmt.format(new Date(t));
/** "15/11". */
export function dayMonth(t) {
  const p = Object.fromEntries(dayMonthFmt.formatToParts(new Date(t)).map((x) => [x.type, x.value]));
  return `${p.day}/${p.month}`;
}
export const full = (t) => fullFmt.format(new Date(t));
const dmyFmt = new Intl.DateTimeFormat("vi-VN", { timeZone: TZ, day: "2-digit", month: "2-digit", year: "numeric" });
/** "09:30 ngày 14/07/2026" in Asia/Ho_Chi_Minh (bulletin issue times). */
export function dateTime(t) {
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  const p = Object.fromEntries(dmyFmt.formatToParts(d).map((x) => [x.type, x.value]));
  return `${hmFmt.format(d)} ngày ${p.day}/${p.month}/${p.year}`;
}

/** Start of the local (+07:00) day holding `t`, as a Date. */
export function localMidnight(t = Date.now()) {
  const offset = 7 * 3600_000; // Việt Nam has no daylight saving time.
  const local = new Date(t).getTime() + offset;
  return new Date(local - (local % 86_400_000) - offset);
}

const OPS = { ">": "trên", ">=": "từ", "<": "dưới", "<=": "tối đa", "==": "bằng" };

/** "Mục tiêu: trên 90 %". */
export function target(t, unit) {
  if (!t) return "Không đặt mục tiêu";
  const v = withUnit(t.value, unit);
  return "Mục tiêu: " + OPS[t.op] + " " + v + (t.op === ">=" ? " trở lên" : "");
}
