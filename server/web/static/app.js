// Toasts: from the server (HX-Trigger: {"toast": {...}}) or rendered into the page after a redirect.
(function () {
  "use strict";

  function fadeLater(toast) {
    setTimeout(function () {
      toast.classList.add("fading");
      setTimeout(function () { toast.remove(); }, 500);
    }, 4500);
  }

  function showToast(message, level) {
    var box = document.getElementById("toasts");
    if (!box) { return; }
    var toast = document.createElement("div");
    toast.className = "toast toast-" + (level || "info");
    toast.setAttribute("role", level === "error" ? "alert" : "status");
    toast.textContent = message;  // text, never HTML: messages may echo user input
    box.appendChild(toast);
    fadeLater(toast);
  }

  document.addEventListener("toast", function (event) {
    var detail = event.detail || {};
    showToast(detail.message || "", detail.level);
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#toasts .toast").forEach(fadeLater);
  });
})();
