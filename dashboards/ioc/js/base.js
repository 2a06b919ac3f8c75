// Where this screen is mounted: at `/` on a commune's own box, at
// `/site/{commune}/` on the province's server (docs/SCREEN.md, "At the
// province"). Derived from this module's own address (`{base}/js/base.js`),
// so it holds for the wall screen (`{base}/`) and the printable report
// (`{base}/reports/{period}`) alike, and every request the screen makes
// follows the page: `url("/api/commune")` is `/api/commune` on the commune's
// box and `/site/xa-001/api/commune` at the province.

const here = new URL("../", import.meta.url).pathname.replace(/\/+$/, "");
const site = /^(.*)\/site\/([^/]+)$/.exec(here);

/** The path prefix of this screen: "" or "/site/xa-001". */
export const BASE = here;
/** The commune this screen shows at the province ("xa-001"), or null on
 * the commune's own box. */
export const SITE = site ? decodeURIComponent(site[2]) : null;
/** The server's own root (where its accounts are): "" on the commune's
 * box, the part before `/site/{commune}` at the province. */
export const ROOT = site ? site[1] : here;

/** A path of this screen's API: `url("/api/ws")`. */
export const url = (path) => BASE + path;
/** A path of the server's accounts (sign-in, sign-out, who am I). */
export const rootUrl = (path) => ROOT + path;

/** The WebSocket address of `path` under this screen's base. */
export function wsUrl(path) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return proto + "//" + location.host + BASE + path;
}
