// Fit the wall layout to the display. The layout is drawn for 1920×1080
// and scaled with CSS `zoom` (fonts and lines are drawn at the final size,
// not stretched), so every panel stays on screen, without scrolling, on
// any 16:9 display from 1280×720 to 3840×2160; other shapes get a margin.
// Below 1024×576 (a phone, a small window) the page flows in one scrolling
// column instead (screen.css).
const W = 1920;
const H = 1080;

function fit() {
  const root = document.documentElement;
  const wide = innerWidth >= 1024 && innerHeight >= 576;
  root.classList.toggle("fit", wide);
  const s = wide ? Math.min(innerWidth / W, innerHeight / H) : 1;
  document.body.style.zoom = wide ? String(s) : "";
  root.style.setProperty("--fit", String(s));
}

addEventListener("resize", fit);
fit();
