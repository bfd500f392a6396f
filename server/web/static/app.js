// The page's own behaviour, no framework:
// * the menu button that opens and closes the navigation on a phone;
// * toasts, from the server (HX-Trigger: {"toast": {...}}) or rendered into the page after a
//   redirect. Errors stay until closed and, when the server names fields, mark those fields.
(function () {
  "use strict";

  // --- the navigation menu (phones) ---

  function setMenu(open) {
    var button = document.getElementById("nav-toggle");
    if (!button) { return; }
    button.setAttribute("aria-expanded", open ? "true" : "false");
    document.body.classList.toggle("nav-open", open);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("#nav-toggle") : null;
    if (button) {
      setMenu(button.getAttribute("aria-expanded") !== "true");
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    var button = document.getElementById("nav-toggle");
    if (button && button.getAttribute("aria-expanded") === "true") {
      setMenu(false);
      button.focus();
    }
  });

  // --- wide tables: a table that scrolls inside its box can be scrolled from the keyboard ---

  function labelScrollers() {
    document.querySelectorAll(".table-wrap").forEach(function (box) {
      var scrolls = box.scrollWidth > box.clientWidth + 1;
      if (scrolls && !box.hasAttribute("tabindex")) {
        var heading = box.closest("section") && box.closest("section").querySelector("h2");
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        var title = heading ? heading.childNodes[0].textContent.trim() : "";
        box.setAttribute("aria-label", (title ? title + "：" : "") + "表格可左右滑动");
      } else if (!scrolls && box.getAttribute("role") === "region") {
        box.removeAttribute("tabindex");
        box.removeAttribute("role");
        box.removeAttribute("aria-label");
      }
    });
  }

  // On a phone each table row is shown as a small card (app.css); every cell then carries its
  // column's name, taken from the table's header, so "8" still reads as "应到：8".
  function labelCells() {
    document.querySelectorAll("table.data").forEach(function (table) {
      var heads = table.querySelectorAll("thead th");
      if (!heads.length) { return; }
      table.querySelectorAll("tbody tr").forEach(function (row) {
        Array.prototype.forEach.call(row.children, function (cell, index) {
          var head = heads[index];
          var name = head ? head.textContent.trim() : "";
          if (name && !cell.hasAttribute("data-label") && !cell.hasAttribute("colspan")) {
            cell.setAttribute("data-label", name);
          }
        });
      });
    });
  }

  function arrangeTables() {
    labelCells();
    labelScrollers();
  }

  document.addEventListener("DOMContentLoaded", arrangeTables);
  document.addEventListener("htmx:afterSettle", arrangeTables);
  window.addEventListener("resize", labelScrollers);

  // --- toasts ---

  var FADE_AFTER_MS = 6000;  // success and information only; errors wait for the close button

  function closeToast(toast) {
    toast.classList.add("fading");
    setTimeout(function () { toast.remove(); }, 400);
  }

  function closeButton() {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "toast-close";
    button.setAttribute("aria-label", "关闭提示");
    button.textContent = "×";
    return button;
  }

  function arm(toast) {
    if (!toast.querySelector(".toast-close")) { toast.appendChild(closeButton()); }
    if (!toast.classList.contains("toast-error")) {
      setTimeout(function () { closeToast(toast); }, FADE_AFTER_MS);
    }
  }

  function showToast(message, level) {
    var box = document.getElementById("toasts");
    if (!box) { return; }
    var toast = document.createElement("div");
    toast.className = "toast toast-" + (level || "info");
    toast.setAttribute("role", level === "error" ? "alert" : "status");
    var text = document.createElement("span");
    text.className = "toast-text";
    text.textContent = message;  // text, never HTML: messages may echo user input
    toast.appendChild(text);
    box.appendChild(toast);
    arm(toast);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".toast-close") : null;
    if (button) { closeToast(button.closest(".toast")); }
  });

  // --- marking the fields the server named ---

  function clearMark(input) {
    input.removeAttribute("aria-invalid");
    var note = document.getElementById(input.dataset.errorNote || "");
    if (note) { note.remove(); }
    var described = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
      return id && id !== input.dataset.errorNote;
    });
    if (described.length) { input.setAttribute("aria-describedby", described.join(" ")); } else { input.removeAttribute("aria-describedby"); }
    delete input.dataset.errorNote;
  }

  function clearMarks(form) {
    form.querySelectorAll("[aria-invalid=true]").forEach(clearMark);
  }

  var noteCount = 0;

  function markField(input, message) {
    clearMark(input);
    noteCount += 1;
    var note = document.createElement("small");
    note.className = "field-error";
    note.id = "field-error-" + noteCount;
    note.textContent = message;
    input.setAttribute("aria-invalid", "true");
    input.dataset.errorNote = note.id;
    var described = input.getAttribute("aria-describedby");
    input.setAttribute("aria-describedby", (described ? described + " " : "") + note.id);
    input.insertAdjacentElement("afterend", note);
  }

  function markFields(origin, fields, message) {
    var form = origin && origin.closest ? origin.closest("form") : null;
    if (!form || !fields || !fields.length) { return; }
    clearMarks(form);
    var first = null;
    fields.forEach(function (name) {
      var input = form.elements.namedItem(name);
      if (!input || !input.tagName) { return; }  // absent, or a group of radio buttons
      markField(input, message);
      first = first || input;
    });
    if (first) { first.focus(); }
  }

  document.addEventListener("input", function (event) {
    var input = event.target;
    if (input && input.getAttribute && input.getAttribute("aria-invalid") === "true") { clearMark(input); }
  });

  document.addEventListener("toast", function (event) {
    var detail = event.detail || {};
    showToast(detail.message || "", detail.level);
    if (detail.level === "error") { markFields(event.target, detail.fields, detail.message || ""); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#toasts .toast").forEach(arm);
  });
})();
