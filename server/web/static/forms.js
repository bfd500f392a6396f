// Safe form posts, for every form of the web app without editing each one:
// * a confirmation naming the consequence: data-confirm="…" on the form or on the submit button
//   that was pressed (htmx 2 reads hx-confirm only from the element that sends the request, the
//   form, so a button's own question needs this);
// * one submit at a time: the buttons are disabled while the form is being sent;
// * an idempotency token: each POST form gets a hidden form_token, which the server records with
//   what the form did (server/web/form_tokens.py), so a repeat changes nothing;
// * a loading bar at the top of the page while a request takes longer than a moment.
(function () {
  "use strict";

  var TOKEN_FIELD = "form_token";
  var HTMX_VERBS = ["hx-post", "hx-put", "hx-patch", "hx-delete"];
  var BAR_DELAY_MS = 250;

  function newToken() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    // randomUUID needs a secure context; a server reached over plain http on the LAN is not one.
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function isPost(form) {
    return (form.getAttribute("method") || "get").toLowerCase() === "post" ||
      HTMX_VERBS.some(function (name) { return form.hasAttribute(name); });
  }

  function isHtmx(form) {
    return HTMX_VERBS.some(function (name) { return form.hasAttribute(name); });
  }

  function tokenInput(form) {
    return form.querySelector('input[name="' + TOKEN_FIELD + '"]');
  }

  function renewToken(form) {
    var input = tokenInput(form);
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = TOKEN_FIELD;
      form.appendChild(input);
    }
    input.value = newToken();
  }

  function prepare(root) {
    var forms = [];
    if (root.matches && root.matches("form")) { forms.push(root); }
    if (root.querySelectorAll) { forms = forms.concat(Array.prototype.slice.call(root.querySelectorAll("form"))); }
    forms.forEach(function (form) {
      if (!isPost(form)) { return; }
      if (!tokenInput(form)) { renewToken(form); }
      if (isHtmx(form) && !form.hasAttribute("hx-sync")) {
        form.setAttribute("hx-sync", "this:drop");  // never a second request while one is on its way
      }
    });
  }

  function submitButtons(form) {
    var inside = Array.prototype.slice.call(form.querySelectorAll('button:not([type="button"]):not([type="reset"]), input[type="submit"]'));
    if (form.id) {
      inside = inside.concat(Array.prototype.slice.call(document.querySelectorAll('[form="' + form.id + '"]')));
    }
    return inside;
  }

  function setSending(form, sending) {
    if (sending) {
      form.setAttribute("aria-busy", "true");
      form.dataset.sending = "1";
    } else {
      form.removeAttribute("aria-busy");
      delete form.dataset.sending;
    }
    submitButtons(form).forEach(function (button) {
      if (sending && !button.disabled) {
        button.disabled = true;
        button.dataset.disabledWhileSending = "1";
      } else if (!sending && button.dataset.disabledWhileSending) {
        button.disabled = false;
        delete button.dataset.disabledWhileSending;
      }
    });
  }

  // The loading bar: shown once a request has taken BAR_DELAY_MS, so quick ones do not flicker.
  var pending = 0;
  var barTimer = null;
  var bar = null;

  function ensureBar() {
    if (bar) { return bar; }
    bar = document.createElement("div");
    bar.className = "loading-bar";
    bar.id = "loading-bar";
    bar.setAttribute("role", "status");
    bar.hidden = true;
    var text = document.createElement("span");
    text.className = "visually-hidden";
    text.textContent = "正在处理，请稍候……";
    bar.appendChild(text);
    document.body.appendChild(bar);
    return bar;
  }

  function startLoading() {
    pending += 1;
    if (barTimer === null && pending === 1) {
      barTimer = window.setTimeout(function () {
        barTimer = null;
        if (pending > 0) {
          ensureBar().hidden = false;
          document.documentElement.classList.add("is-loading");
        }
      }, BAR_DELAY_MS);
    }
  }

  function stopLoading(all) {
    pending = all ? 0 : Math.max(0, pending - 1);
    if (pending > 0) { return; }
    if (barTimer !== null) { window.clearTimeout(barTimer); barTimer = null; }
    if (bar) { bar.hidden = true; }
    document.documentElement.classList.remove("is-loading");
  }

  // Capture phase on the document: runs before htmx's own submit handler on the form, so a
  // dismissed confirmation stops the request before htmx sees it.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) { return; }
    var submitter = event.submitter || null;
    var question = (submitter && submitter.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
      return;
    }
    if (!isPost(form) || isHtmx(form)) { return; }  // htmx forms: see htmx:beforeRequest below
    if (form.dataset.sending) {
      event.preventDefault();  // a second click while the first submit is on its way
      return;
    }
    form.dataset.sending = "1";
    // After this event the browser collects the fields; a disabled button would lose its own
    // name and value, so disable once that is done.
    window.setTimeout(function () { setSending(form, true); }, 0);
    startLoading();
  }, true);

  function formOf(detail) {
    var elt = detail && detail.elt;
    if (!elt) { return null; }
    return elt instanceof HTMLFormElement ? elt : (elt.closest ? elt.closest("form") : null);
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = formOf(event.detail);
    if (form && isPost(form)) { setSending(form, true); }
    startLoading();
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    stopLoading(false);
    var form = formOf(event.detail);
    if (!form || !isPost(form)) { return; }
    var xhr = event.detail.xhr;
    if (xhr && xhr.getResponseHeader("HX-Redirect")) {
      startLoading();  // the next page is on its way: keep the buttons off and the bar on
      return;
    }
    setSending(form, false);
    // The form stays on the page (a refusal, or a part of the page replaced): a new token, so
    // sending it again on purpose is a new submission. A refused one was never recorded.
    if (form.isConnected) { renewToken(form); }
  });

  document.addEventListener("htmx:load", function (event) { prepare(event.target); });

  document.addEventListener("DOMContentLoaded", function () { prepare(document); });

  // Back to a page from the browser's cache: its forms may still say "sending".
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    stopLoading(true);
    document.querySelectorAll("form[data-sending]").forEach(function (form) {
      setSending(form, false);
      renewToken(form);
    });
  });
})();
