// The coverage panel of the wall screen (docs/SCREEN.md "Broadcasts"):
// while a loudspeaker broadcast is in force (drafted, or approved and
// going out) or a village head still has to be called, it takes the place
// of the device panel. Fed by the live `broadcasts` key (PROTOCOL §7.10,
// the same document as GET /api/broadcasts): the broadcast shown (approved
// before drafts, emergencies first, newest first), village by village with
// each cluster's state, the manual tasks with the village head's name and
// phone number from the site config, and the indicators.

import * as fmt from "./format.js";

/** Cluster states (docs/PROTOCOL.md §9.4). */
export const CLUSTER_STATE = {
  planned: "Chờ duyệt",
  pending: "Chờ gửi",
  sent: "Đã gửi lệnh",
  acknowledged: "Đã nhận lệnh",
  playing: "Đang phát",
  completed: "Đã phát xong",
  failed: "Phát lỗi",
  unreachable: "Không liên lạc được",
  manual: "Đài FE, bật tay",
  expired: "Hết hạn",
  cancelled: "Đã hủy",
};

/** Village states. */
export const VILLAGE_STATE = {
  planned: "Chờ duyệt",
  in_progress: "Đang gửi lệnh",
  reached: "Đã phát tới",
  reached_manually: "Đã báo qua trưởng thôn",
  manual: "Cần gọi trưởng thôn",
  unreached: "Chưa tới được",
  cancelled: "Đã hủy",
};

/** Broadcast states. */
export const BROADCAST_STATE = {
  draft: "Chờ cán bộ duyệt",
  approved: "Đang phát",
  completed: "Đã phát xong",
  cancelled: "Đã hủy",
  superseded: "Đã thay bằng bản tin mới",
  expired: "Hết hạn",
};

/** Why a village needs a call. */
const TASK_REASON = {
  fe_only: "chỉ có đài FE",
  no_cluster: "không có cụm loa",
  unreachable: "cụm loa không liên lạc được",
};

const PRIORITY_RANK = { emergency: 0, priority: 1, routine: 2 };

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

/** Broadcasts in force, the one to show first: approved before drafts,
 * emergencies first, then the newest. */
export function inForce(overview) {
  const list = (overview && Array.isArray(overview.broadcasts)) ? overview.broadcasts : [];
  return list.filter((b) => b && (b.state === "approved" || b.state === "draft"))
    .sort((a, b) => (a.state === "approved" ? 0 : 1) - (b.state === "approved" ? 0 : 1)
      || (PRIORITY_RANK[a.priority] ?? 3) - (PRIORITY_RANK[b.priority] ?? 3)
      || b.id - a.id);
}

/** Whether the panel has anything to show. */
export function active(overview) {
  return inForce(overview).length > 0 || openTasks(overview).length > 0;
}

function openTasks(overview) {
  return (overview && Array.isArray(overview.tasks)) ? overview.tasks.filter((t) => t.state === "open") : [];
}

function taskRow(t, act) {
  const row = h("li", "cov-task");
  row.dataset.task = String(t.id);
  row.dataset.village = t.village;
  row.append(h("span", "cov-task-village", t.village_name || t.village));
  const who = h("span", "cov-task-head");
  if (t.head_name || t.head_phone) {
    who.append(h("span", "cov-head-name", t.head_name || "Trưởng thôn"));
    if (t.head_phone) who.append(h("strong", "cov-head-phone", t.head_phone));
  } else {
    who.append(h("span", "cov-head-missing", "Chưa có số trưởng thôn trong cấu hình"));
  }
  row.append(who);
  row.append(h("span", "cov-task-reason", TASK_REASON[t.reason] || t.reason));
  if (act) {
    const b = h("button", "cov-task-done", "Đã gọi");
    b.type = "button";
    b.addEventListener("click", () => {
      b.disabled = true;
      act.onDone(t.id);
    });
    row.append(b);
  }
  return row;
}

function villageRow(v, clusters) {
  const row = h("li", "cov-village");
  row.dataset.village = v.village;
  row.dataset.state = v.state;
  row.append(h("span", "cov-village-name", (v.name || v.village) + (v.dead_zone ? " (lõm sóng)" : "")));
  row.append(h("span", "cov-village-state", VILLAGE_STATE[v.state] || v.state));
  const chips = h("span", "cov-clusters");
  for (const c of clusters.filter((c) => c.village === v.village)) {
    const chip = h("span", "cov-cluster", c.speaker);
    chip.dataset.speaker = c.speaker;
    chip.dataset.state = c.state;
    chip.title = CLUSTER_STATE[c.state] || c.state;
    chip.append(h("span", "cov-cluster-state", CLUSTER_STATE[c.state] || c.state));
    chips.append(chip);
  }
  if (!chips.childElementCount) chips.append(h("span", "cov-cluster none", "Không có cụm loa"));
  row.append(chips);
  return row;
}

function indicatorsLine(ind) {
  if (!ind) return null;
  const parts = [];
  const bp = ind.by_priority || {};
  parts.push(`Bản tin đã duyệt: khẩn cấp ${fmt.number(bp.emergency || 0, 0)}, ưu tiên ${fmt.number(bp.priority || 0, 0)}, thông thường ${fmt.number(bp.routine || 0, 0)}`);
  const first = ind.issue_to_first_ack_s && ind.issue_to_first_ack_s.latest;
  parts.push("Từ ban hành đến lần phát đầu: " + (first === null || first === undefined ? "chưa có" : fmt.duration(first)));
  parts.push("Thôn tới được trong 15 phút: " + (ind.reached_15min_pct === null || ind.reached_15min_pct === undefined
    ? "chưa có" : `${fmt.number(ind.reached_15min_pct)}\u00a0% (${fmt.number(ind.villages_reached_15min || 0, 0)}/${fmt.number(ind.villages_covered || 0, 0)})`));
  parts.push(`Cụm loa không liên lạc được: ${fmt.number(ind.clusters_unreachable || 0, 0)}`);
  const e = h("div", "cov-indicators");
  e.dataset.unreachable = String(ind.clusters_unreachable || 0);
  e.textContent = parts.join(" · ");
  return e;
}

/**
 * Fill the coverage panel. Returns whether it shows.
 * @param {HTMLElement} box #coverage
 * @param {?object} overview the `broadcasts` value
 * @param {?{onDone: (taskId) => void, error: string}} act for an operator at
 *        a browser (never in kiosk mode): a button that marks a task done
 */
export function renderCoverage(box, overview, act = null) {
  if (!active(overview)) {
    box.hidden = true;
    box.replaceChildren();
    return false;
  }
  const parts = [h("h2", "", "Phát thanh cảnh báo — mức độ bao phủ")];
  const list = inForce(overview);
  const b = list[0];
  if (b) {
    const head = h("div", "cov-head");
    head.dataset.broadcast = String(b.id);
    head.dataset.priority = b.priority;
    head.dataset.state = b.state;
    head.append(h("span", "cov-priority", b.priority_label || b.priority));
    head.append(h("span", "cov-state", BROADCAST_STATE[b.state] || b.state));
    const total = (b.coverage || []).length;
    head.append(h("span", "cov-reached", `Đã tới ${fmt.number(b.villages_reached || 0, 0)}/${fmt.number(total, 0)} thôn, bản`));
    if (b.issued) head.append(h("span", "cov-issued", "Bản tin ban hành lúc " + fmt.dateTime(b.issued)));
    if (list.length > 1) head.append(h("span", "cov-more", `+${fmt.number(list.length - 1, 0)} bản tin khác`));
    parts.push(head);
    const text = h("div", "cov-text", b.text_vi || "");
    if (b.text_ethnic) text.append(h("span", "cov-ethnic", ` · Tiếng ${b.language || "dân tộc"}: ${b.text_ethnic}`));
    parts.push(text);
  }
  const tasks = openTasks(overview);
  if (tasks.length) {
    parts.push(h("div", "cov-sub", `Cần gọi trưởng thôn, bản (${fmt.number(tasks.length, 0)})`));
    const ul = h("ul", "cov-tasks");
    for (const t of tasks) ul.append(taskRow(t, act));
    parts.push(ul);
    if (act && act.error) parts.push(h("div", "cov-error", act.error));
  }
  if (b) {
    const ul = h("ul", "cov-villages");
    for (const v of b.coverage || []) ul.append(villageRow(v, b.clusters || []));
    parts.push(ul);
  }
  const ind = indicatorsLine(overview.indicators);
  if (ind) parts.push(ind);
  box.replaceChildren(...parts);
  box.hidden = false;
  return true;
}
