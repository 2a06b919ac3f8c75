// The province instances this screen reads from, and the failover between
// them (docs/SCREEN.md, "Province"). The page starts on the instance that
// served it; every overview names the others (`peers`), which are added to
// the list. When the instance in use does not answer, the others are tried
// in order and the first that answers becomes the one in use (and stays
// so while it answers: there is no switching back).

/** A base URL without its trailing slash ("http://10.0.0.2:8080"). */
export function normalise(base) {
  return String(base).trim().replace(/\/+$/, "");
}

/** "a" → "A"; a longer name as it is. */
export function displayName(name) {
  const n = String(name || "");
  return n.length <= 3 ? n.toUpperCase() : n;
}

export class Instances {
  /**
   * @param {string} own  base URL of the instance that served the page
   * @param {object} [opts]
   * @param {number} [opts.timeoutMs]  how long one request may take
   * @param {string} [opts.token]  sent as `Authorization: Bearer`
   * @param {typeof fetch} [opts.fetch]
   */
  constructor(own, opts = {}) {
    this.list = [normalise(own)];
    this.current = 0;
    /** base URL → the instance's own name (`instance` of its overview). */
    this.names = new Map();
    this.timeoutMs = opts.timeoutMs || 4000;
    this.token = opts.token || "";
    this.fetch = opts.fetch || ((...a) => fetch(...a));
  }

  get base() {
    return this.list[this.current];
  }

  /** The name shown for an instance: its own, or its host until it answered. */
  label(base) {
    const n = this.names.get(base);
    if (n) return displayName(n);
    try {
      return new URL(base).host;
    } catch (e) {
      return base;
    }
  }

  /** Add the peers an overview names (unknown ones at the end). */
  learn(base, overview) {
    if (overview && overview.instance) this.names.set(base, String(overview.instance));
    for (const p of (overview && overview.peers) || []) {
      const b = normalise(p);
      if (b && !this.list.includes(b)) this.list.push(b);
    }
  }

  /** GET `{base}{path}` as JSON within the timeout; throws on any failure. */
  async get(base, path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), this.timeoutMs);
    try {
      const headers = this.token ? { Authorization: "Bearer " + this.token } : {};
      const r = await this.fetch(base + path, { headers, cache: "no-store", signal: ctl.signal });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      return await r.json();
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Read `path` from every other instance (in the background, now and
   * then): learns their names and whether they answer, so the page can
   * name the standby before it needs it. `alive`: base URL → true/false.
   */
  async probe(path) {
    this.alive = this.alive || new Map();
    await Promise.all(this.list.filter((b) => b !== this.base).map(async (base) => {
      try {
        this.learn(base, await this.get(base, path));
        this.alive.set(base, true);
      } catch (e) {
        this.alive.set(base, false);
      }
    }));
  }

  /**
   * Read `path` from the instance in use; when it fails, or answers but is
   * cut from the stream (`stream.connected === false`: its data no longer
   * moves), from the next ones in order. The first that answers and is
   * connected to the stream is used; when none is, the first that answers
   * (the one in use first), marked `degraded`. `onTrying(from, to, why)` is
   * called before each other instance is tried (`why`: "down" or "stream";
   * the page says "đang chuyển sang …").
   * @returns {Promise<{ok:true, base:string, data:any, degraded:boolean,
   *                    switched:?{from:string,to:string,why:string}} |
   *                   {ok:false, base:string, error:string}>}
   */
  async read(path, onTrying = () => {}) {
    const from = this.base;
    let error = "";
    let why = "";
    let answered = null;
    for (let i = 0; i < this.list.length; i += 1) {
      const idx = (this.current + i) % this.list.length;
      const base = this.list[idx];
      if (i > 0) onTrying(from, base, why);
      let data;
      try {
        data = await this.get(base, path);
      } catch (e) {
        if (i === 0) {
          error = String((e && e.message) || e);
          why = "down";
        }
        if (this.alive && i > 0) this.alive.set(base, false);
        continue;
      }
      this.learn(base, data);
      if (this.alive) this.alive.set(base, true);
      const cut = !!(data && data.stream && data.stream.connected === false);
      if (!answered) answered = { idx, base, data, i };
      if (!cut) {
        this.current = idx;
        return { ok: true, base, data, degraded: false,
          switched: i > 0 ? { from, to: base, why } : null };
      }
      if (i === 0) why = "stream";
    }
    if (answered) {
      this.current = answered.idx;
      return { ok: true, base: answered.base, data: answered.data, degraded: true,
        switched: answered.i > 0 ? { from, to: answered.base, why } : null };
    }
    return { ok: false, base: from, error };
  }
}
