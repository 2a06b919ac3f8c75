// The printable report page, /reports/{period}: fetches the sealed
// revision as the administrative document (server-rendered, the same
// bytes as `GET /api/reports/{period}/export?format=html`), shows it with
// the A4 print stylesheet, and offers printing (the browser's "Save as
// PDF") and the other exports.

import { url } from "./base.js";

const params = new URLSearchParams(location.search);
let token = params.get("token") || "";
try {
  if (!token) token = localStorage.getItem("ioc.token") || "";
} catch (e) {
  // Storage may be disabled: the URL token still works.
}
const period = decodeURIComponent((/\/reports\/([^/]+)\/?$/.exec(location.pathname) || [])[1] || "");
const revision = params.get("revision");
const $ = (id) => document.getElementById(id);

function api(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  return fetch(url(path), { headers, cache: "no-store" });
}

function exportUrl(format) {
  const q = new URLSearchParams({ format });
  if (revision) q.set("revision", revision);
  return `/api/reports/${encodeURIComponent(period)}/export?${q}`;
}

async function errorText(r) {
  try {
    const body = await r.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (e) {
    // Not JSON.
  }
  if (r.status === 401 || r.status === 403) return "Cần đăng nhập (mở màn hình điều hành và đăng nhập trước).";
  return `Lỗi HTTP ${r.status}`;
}

function fail(text) {
  const s = $("report-status");
  s.textContent = text;
  s.classList.add("error");
}

async function download(format) {
  const r = await api(exportUrl(format));
  if (!r.ok) return fail(await errorText(r));
  const disposition = r.headers.get("Content-Disposition") || "";
  const m = /filename="([^"]+)"/.exec(disposition);
  const blob = await r.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = m ? m[1] : `bao-cao-${period}.${format}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

const STATES = {
  submitted: "Đã đưa vào hàng đợi gửi tỉnh",
  acknowledged: "Tỉnh đã nhận",
  submission_failed: "Gửi tỉnh không thành công",
};

async function showSubmission() {
  const r = await api(`/api/reports/${encodeURIComponent(period)}/submission`);
  if (!r.ok) return;
  const body = await r.json();
  const s = body.submission;
  $("submission").textContent = s ? (STATES[s.state] || s.state) : "Chưa gửi tỉnh";
}

async function load() {
  if (!period) return fail("Thiếu kỳ báo cáo trong địa chỉ (ví dụ /reports/2026-06).");
  document.title = `Báo cáo kỳ ${period}`;
  const r = await api(exportUrl("html"));
  if (!r.ok) return fail(await errorText(r));
  const html = await r.text();
  const doc = new DOMParser().parseFromString(html, "text/html");
  const article = doc.querySelector("article.nd30");
  if (!article) return fail("Máy chủ trả về văn bản không đúng dạng.");
  $("report").replaceChildren(document.adoptNode(article));
  $("report-status").hidden = true;
  document.body.dataset.ready = "1";
  for (const [id, f] of [["btn-xlsx", "xlsx"], ["btn-csv", "csv"], ["btn-dhis2", "dhis2"]]) {
    $(id).disabled = false;
    $(id).addEventListener("click", () => download(f));
  }
  $("btn-print").disabled = false;
  $("btn-print").addEventListener("click", () => window.print());
  showSubmission();
}

load();
