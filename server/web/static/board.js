// The live board's connection, told honestly: 实时更新 only while the stream is open and alive.
// htmx's SSE extension reports open and error; the server also sends a "ping" every few seconds,
// so a connection that died without an error (a pulled cable, a sleeping laptop) shows too.
// Also the full-screen button for a projector.
(function () {
  "use strict";

  var GRACE_MS = 1000;          // a moment's hiccup is not worth an alarm
  var PLANNED_GRACE_MS = 6000;  // the server ends each stream after a minute ("bye") and the page reopens it

  var source = null;
  var lastMessageAt = 0;
  var offlineTimer = null;
  var plannedUntil = 0;
  var watchdog = null;

  function board() { return document.getElementById("live-board"); }

  function clock(date) {
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return two(date.getHours()) + ":" + two(date.getMinutes()) + ":" + two(date.getSeconds());
  }

  function show(state) {
    var status = document.getElementById("live-status");
    var offline = document.getElementById("board-offline");
    var root = board();
    if (!status || !root) { return; }
    var text = status.querySelector(".live-text");
    status.dataset.state = state;
    status.classList.remove("green", "red", "amber");
    if (state === "live") {
      status.classList.add("green");
      text.textContent = "实时更新";
    } else if (state === "offline") {
      status.classList.add("red");
      text.textContent = "连接中断，正在重新连接……" + (lastMessageAt ? "（最后更新 " + clock(new Date(lastMessageAt)) + "）" : "");
    } else {
      status.classList.add("amber");
      text.textContent = "正在连接……";
    }
    if (offline) { offline.hidden = state !== "offline"; }
    root.classList.toggle("is-stale", state === "offline");
  }

  function seen() {
    lastMessageAt = Date.now();
    if (offlineTimer !== null) { window.clearTimeout(offlineTimer); offlineTimer = null; }
    show("live");
  }

  function lostSoon() {
    if (offlineTimer !== null) { return; }
    offlineTimer = window.setTimeout(function () {
      offlineTimer = null;
      show("offline");
    }, Date.now() < plannedUntil ? PLANNED_GRACE_MS : GRACE_MS);
  }

  function reconnect() {
    // A silent, dead connection: close it and let htmx open a new one on a fresh element.
    var stream = document.getElementById("board-stream");
    if (!stream || !window.htmx) { return; }
    if (source) { source.close(); source = null; }
    var fresh = stream.cloneNode(true);
    stream.replaceWith(fresh);
    window.htmx.process(fresh);
  }

  function startWatchdog(root) {
    var pingSeconds = parseInt(root.dataset.pingSeconds || "10", 10);
    var silentMs = (pingSeconds * 2 + 5) * 1000;
    watchdog = window.setInterval(function () {
      if (!lastMessageAt || Date.now() - lastMessageAt < silentMs) { return; }
      show("offline");
      lastMessageAt = Date.now() - pingSeconds * 1000;  // next check in a while, not at once
      reconnect();
    }, 1000);
  }

  document.addEventListener("htmx:sseOpen", function (event) {
    source = event.detail && event.detail.source;
    if (source) {
      source.addEventListener("ping", seen);
      source.addEventListener("board", seen);
      source.addEventListener("bye", function () { plannedUntil = Date.now() + PLANNED_GRACE_MS; });
    }
    seen();
  });

  document.addEventListener("htmx:sseError", function () { lostSoon(); });
  document.addEventListener("htmx:sseClose", function () { lostSoon(); });

  function fullscreenSupported() {
    return !!(document.fullscreenEnabled && document.documentElement.requestFullscreen);
  }

  function syncFullscreen() {
    var root = board();
    var button = document.getElementById("board-fullscreen");
    if (!root || !button) { return; }
    var on = document.fullscreenElement === root;
    root.classList.toggle("is-fullscreen", on);
    button.textContent = on ? "退出全屏" : "全屏投影";
  }

  document.addEventListener("fullscreenchange", syncFullscreen);

  document.addEventListener("DOMContentLoaded", function () {
    var root = board();
    if (!root) { return; }
    show("connecting");
    startWatchdog(root);
    var button = document.getElementById("board-fullscreen");
    if (button && fullscreenSupported()) {
      button.hidden = false;
      button.addEventListener("click", function () {
        if (document.fullscreenElement) {
          document.exitFullscreen();
        } else {
          root.requestFullscreen().catch(function () { /* refused by the browser: stay as is */ });
        }
      });
    }
  });

  window.addEventListener("pagehide", function () {
    if (watchdog !== null) { window.clearInterval(watchdog); }
  });
})();
