// Full screen for a wall screen (the commune's and the province's, which
// imports it as ../common/js/fullscreen.js): the button asks for it; in
// kiosk mode it is asked at start and again at the first touch or key
// (browsers allow it only after a user gesture; a kiosk browser is usually
// started full screen anyway, `chromium --kiosk`).

function goFullscreen() {
  const el = document.documentElement;
  if (document.fullscreenElement || !el.requestFullscreen) return;
  el.requestFullscreen().catch(() => {
    // Not allowed without a user gesture.
  });
}

/** Wire `button`, and kiosk mode (the `kiosk` body class) when `kiosk`. */
export function wireFullscreen(kiosk, button) {
  if (kiosk) {
    document.body.classList.add("kiosk");
    goFullscreen();
    for (const ev of ["pointerdown", "keydown"]) document.addEventListener(ev, goFullscreen, { once: true });
  }
  button.addEventListener("click", goFullscreen);
}
