"use strict";
(function () {
  var byId = function (id) { return document.getElementById(id); };
  var hideTimer = null;
  var lastShown = null;

  function setText(id, text) { byId(id).textContent = text || ""; }

  function clockText(time) {
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return pad(time.getHours()) + ":" + pad(time.getMinutes()) + ":" + pad(time.getSeconds());
  }

  function tick() { setText("clock", clockText(new Date())); }

  function showIdle() {
    byId("result").hidden = true;
    byId("idle").hidden = false;
  }

  // 留言亭: the one-time link as a QR code (as text too when the agent could not draw one).
  function showQr(result) {
    var box = byId("qr-box");
    var image = byId("qr");
    box.hidden = !result.link;
    box.setAttribute("data-link", result.link || "");
    image.hidden = !result.qr;
    if (result.qr) { image.src = result.qr; } else { image.removeAttribute("src"); }
    setText("qr-caption", result.qr_caption);
    setText("qr-link", result.qr ? "" : result.link);
  }

  function render(state) {
    byId("gone").hidden = true;
    setText("kiosk", [state.kiosk_name, state.venue_name].filter(Boolean).join(" · "));
    setText("mode", state.mode_label + "模式");
    setText("prompt", state.idle_prompt);
    var pending = state.pending === null ? "–" : String(state.pending);
    setText("pending", pending);

    var net = byId("net");
    net.classList.toggle("online", state.online === true);
    net.classList.toggle("offline", state.online === false);
    setText("net-text", state.online === true ? "在线" : state.online === false ? "离线" : "正在连接…");
    var offline = byId("offline");
    offline.hidden = state.online !== false;
    var waiting = state.pending
      ? "，" + state.pending + " 条刷卡记录待上传，联网后自动上传"
      : "，刷卡照常记录";
    setText("offline", "离线：" + (state.offline_reason || "无法连接服务器") + waiting);

    var reader = byId("reader");
    reader.hidden = !state.reader_message;
    setText("reader", state.reader_message);

    var result = state.result;
    var shownFor = result ? (result.shown_s || state.result_shown_s) : 0;
    if (!result || result.age_s >= shownFor) { showIdle(); return; }
    var key = state.run_id + "/" + result.number;
    if (key !== lastShown) {
      lastShown = key;
      var box = byId("result");
      box.className = "result tone-" + result.tone + (result.link ? " has-qr" : "");
      setText("headline", result.headline);
      setText("member", result.member_name);
      setText("event", result.event_title);
      setText("detail", result.detail);
      setText("at", clockText(new Date(result.at)));
      showQr(result);
      byId("idle").hidden = true;
      box.hidden = false;
      if (hideTimer) { clearTimeout(hideTimer); }
      hideTimer = setTimeout(showIdle, (shownFor - result.age_s) * 1000);
    }
  }

  function connect() {
    var source = new EventSource("/events");
    source.onmessage = function (event) { render(JSON.parse(event.data)); };
    source.onerror = function () {
      // EventSource reconnects by itself; meanwhile nothing on screen may be trusted.
      byId("gone").hidden = false;
    };
  }

  tick();
  setInterval(tick, 1000);
  connect();
})();
