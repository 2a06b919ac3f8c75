// The /api/ws client (docs/PROTOCOL.md §7): subscribes, gathers snapshot
// pages, applies updates in order, keeps `epoch` and the last `seq` for a
// resume, reconnects with exponential backoff (1 s → 30 s) and reports
// the connection state. An update item carries only the fields that
// changed: it is merged into the whole item of the snapshot, so values
// always go whole to `onItems(items, {replace, id})`.

import { wsUrl } from "./base.js";

const BACKOFF_MIN = 1000;
const BACKOFF_MAX = 30_000;

export class Live {
  /**
   * @param {object} opts
   * @param {string} opts.token  kiosk/user token, or "" (sent as ?token=)
   * @param {Array<{id:string, keys:string[], optional?:boolean}>} opts.subscriptions
   * @param {(items:any[], how:{id:string, replace:boolean}) => void} opts.onItems
   * @param {(state:string, info:object) => void} opts.onState
   *        state: "connecting" | "live" | "stale" | "disconnected"
   * @param {(frame:object) => void} [opts.onHello]
   * @param {(id:string, frame:object) => void} [opts.onRefused]
   * @param {(frame:object) => void} [opts.onUnauthorized]
   */
  constructor(opts) {
    this.opts = opts;
    this.epoch = null;
    this.seq = null;
    this.heartbeatMs = 15_000;
    this.backoff = BACKOFF_MIN;
    this.pages = new Map(); // subscription id -> items gathered so far
    this.items = new Map(); // key -> the whole item, with every update merged
    this.lastFrameAt = 0;
    this.lastDataAt = null;
    this.state = "connecting";
    this.ws = null;
    this.retryTimer = null;
    /** Counters, for the screen's tests and for debugging. */
    this.stats = { connects: 0, snapshots: 0, resyncs: 0, resumed: 0 };
    this.watchdog = setInterval(() => this.checkStale(), 1000);
  }

  url() {
    const q = this.opts.token ? "?token=" + encodeURIComponent(this.opts.token) : "";
    return wsUrl("/api/ws") + q;
  }

  start() {
    this.connect();
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.opts.onState(state, { lastDataAt: this.lastDataAt, retryInMs: this.retryInMs });
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (e) {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    this.pages.clear();
    ws.onmessage = (ev) => this.onMessage(ws, ev);
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.scheduleRetry();
    };
    // An error is always followed by close; nothing to do here.
    ws.onerror = () => {};
  }

  scheduleRetry() {
    if (this.retryTimer) return;
    const wait = this.backoff * (0.8 + Math.random() * 0.4);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX);
    this.retryInMs = wait;
    this.setState("disconnected");
    this.opts.onState(this.state, { lastDataAt: this.lastDataAt, retryInMs: wait });
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  /** No frame nor heartbeat for two heartbeats: stale, and reconnect. */
  checkStale() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || !this.lastFrameAt) return;
    const silent = Date.now() - this.lastFrameAt;
    if (silent > 2 * this.heartbeatMs) {
      this.setState("stale");
      const ws = this.ws;
      this.ws = null;
      ws.close();
      this.scheduleRetry();
    }
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  subscribeAll(hello) {
    const resume = this.epoch === hello.epoch && this.seq !== null
      ? { epoch: this.epoch, seq: this.seq } : null;
    this.epoch = hello.epoch;
    for (const s of this.opts.subscriptions) {
      const cmd = { type: "subscribe", id: s.id, keys: s.keys };
      if (resume) cmd.resume = resume;
      this.send(cmd);
    }
  }

  onMessage(ws, ev) {
    if (this.ws !== ws) return;
    let f;
    try {
      f = JSON.parse(ev.data);
    } catch (e) {
      return;
    }
    this.lastFrameAt = Date.now();
    switch (f.type) {
      case "hello":
        this.stats.connects += 1;
        this.heartbeatMs = (f.heartbeat_s || 15) * 1000;
        this.backoff = BACKOFF_MIN;
        this.opts.onHello && this.opts.onHello(f, this.epoch !== null && this.epoch !== f.epoch);
        this.subscribeAll(f);
        break;
      case "snapshot": {
        const got = this.pages.get(f.id) || [];
        got.push(...f.items);
        if (f.page < f.pages) {
          this.pages.set(f.id, got);
          break;
        }
        this.pages.delete(f.id);
        for (const it of got) this.items.set(it.key, it);
        this.stats.snapshots += 1;
        if (f.resync) this.stats.resyncs += 1;
        this.opts.onItems(got, { id: f.id, replace: true, resync: !!f.resync, at: f.at });
        this.advance(f.seq);
        break;
      }
      case "resumed":
        this.stats.resumed += 1;
        this.markLive();
        break;
      case "update":
        this.opts.onItems(f.items.map((it) => this.merge(it)), { id: null, replace: false, at: f.at });
        // Every page of a split update carries the same seq; the last page
        // completes the step.
        if (!f.pages || f.page === f.pages) this.advance(f.seq);
        else this.markLive();
        break;
      case "heartbeat":
      case "pong":
        if (this.state === "stale") this.setState("live");
        break;
      case "error":
        if (f.code === "unauthorized") {
          this.opts.onUnauthorized && this.opts.onUnauthorized(f);
        } else if (f.code === "unknown_key" && f.id) {
          this.opts.onRefused && this.opts.onRefused(f.id, f);
        }
        break;
      default:
        break;
    }
  }

  /**
   * An update item is whole (it has `scope`, like a snapshot's) or a
   * change: `value` holds only the fields that change, and the value's own
   * `updated_at`, when it has one, is the item's (PROTOCOL §7.3).
   */
  merge(it) {
    const cur = this.items.get(it.key);
    let out = it;
    if (it.scope === undefined && cur) {
      const old = cur.value;
      let value = it.value;
      if (old && typeof old === "object" && value && typeof value === "object") {
        value = Object.assign({}, old, value);
        if ("updated_at" in old && !("updated_at" in it.value)) value.updated_at = it.updated_at;
      }
      out = { key: it.key, scope: cur.scope, updated_at: it.updated_at, value };
    }
    this.items.set(it.key, out);
    return out;
  }

  advance(seq) {
    if (typeof seq === "number" && (this.seq === null || seq > this.seq)) this.seq = seq;
    this.markLive();
  }

  markLive() {
    this.lastDataAt = new Date();
    this.setState("live");
  }
}
