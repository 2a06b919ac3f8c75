// SVG elements for the maps and sparklines (the commune screen and the
// province screen, which imports it as ../common/js/svg.js).

const NS = "http://www.w3.org/2000/svg";

/** An SVG element `name` with `attrs`, and `text` when given. */
export function svgEl(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}
