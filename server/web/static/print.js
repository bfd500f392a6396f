// The print view's 「打印」 button (the Content-Security-Policy allows no inline handlers).
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("[data-print]")) {
    button.addEventListener("click", () => window.print());
  }
});
