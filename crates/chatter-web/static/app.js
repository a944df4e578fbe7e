// Chatter's own small script: confirmations, the Telegram login callback. Pages work without it.
(function () {
  document.addEventListener("submit", function (e) {
    var f = e.target;
    var msg = f.getAttribute && f.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });
  document.addEventListener("focusin", function (e) {
    if (e.target.classList && e.target.classList.contains("copy")) e.target.select();
  });
})();

// Called by the Telegram Login Widget with the signed user data; posted with our CSRF token.
function chatterTelegramAuth(user) {
  var form = document.getElementById("telegram-form");
  if (!form) return;
  Object.keys(user).forEach(function (k) {
    var i = document.createElement("input");
    i.type = "hidden";
    i.name = k;
    i.value = String(user[k]);
    form.appendChild(i);
  });
  form.submit();
}

// The live inbox: server-sent events carry server-rendered fragments that replace or add the
// conversation row and the message. Without JavaScript the page still works (reload to see).
(function () {
  var root = document.querySelector("[data-live]");
  if (!root || !window.EventSource) return;
  var thread = root.getAttribute("data-thread");
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var list = document.getElementById("conv-list");
  var box = document.getElementById("thread-messages");
  function scrollDown() { if (box) box.scrollTop = box.scrollHeight; }
  scrollDown();
  function fragment(html) {
    var t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }
  function onEvent(e) {
    var d;
    try { d = JSON.parse(e.data); } catch (_) { return; }
    if (list && d.row) {
      var row = fragment(d.row);
      var old = document.getElementById("conv-" + d.conversation_id);
      if (d.conversation_id === thread) row.classList.add("on");
      if (old) old.remove();
      list.insertBefore(row, list.firstChild);
      var empty = document.getElementById("inbox-empty");
      if (empty) empty.remove();
    }
    if (box && d.conversation_id === thread && d.message) {
      var m = fragment(d.message);
      var prev = document.getElementById("msg-" + d.message_id);
      if (prev) prev.replaceWith(m); else { box.appendChild(m); scrollDown(); }
      if (document.visibilityState === "visible") {
        fetch("/app/inbox/" + thread + "/read", { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
      }
    }
  }
  var after = root.getAttribute("data-last-event") || "0";
  var es = new EventSource("/app/events?after=" + encodeURIComponent(after));
  es.addEventListener("message", onEvent);
  es.addEventListener("conversation", onEvent);

  var form = document.getElementById("reply-form");
  var text = document.getElementById("reply-text");
  // SMS part count while typing: the rule of chatter_channels::sms::sms_parts (GSM-7 160/153,
  // extension characters count two; anything else UCS-2 70/67 in UTF-16 units).
  var parts = document.getElementById("sms-parts");
  if (parts && text) {
    var basic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    var ext = "\f^{}\\[~]|€";
    var count = function () {
      var v = text.value, gsm = 0, ok = true;
      for (var c of v) { if (basic.indexOf(c) >= 0) gsm += 1; else if (ext.indexOf(c) >= 0) gsm += 2; else { ok = false; break; } }
      var n = ok ? gsm : v.length, one = ok ? 160 : 70, per = ok ? 153 : 67;
      var k = n === 0 ? 0 : n <= one ? 1 : Math.ceil(n / per);
      var limit = k > 1 ? per * k : one;
      parts.textContent = k + " SMS · " + parts.getAttribute(ok ? "data-gsm" : "data-ucs2") + " · " + n + "/" + limit;
    };
    text.addEventListener("input", count);
  }
  if (form && text) {
    text.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        if (form.requestSubmit) form.requestSubmit(); else form.submit();
      }
    });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var body = new URLSearchParams(new FormData(form));
      if (!text.value.trim()) return;
      var sent = text.value;
      text.value = "";
      fetch(form.action, { method: "POST", body: body, headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) { if (!r.ok) { text.value = sent; return r.json().then(function (j) { alert(j.error || r.status); }); } })
        .catch(function () { text.value = sent; });
    });
  }
})();
