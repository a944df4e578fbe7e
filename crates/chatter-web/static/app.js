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

// A part of a page that shows work in progress (`data-refresh="<seconds>"`, e.g. sending
// conversations to amoCRM) reloads the page while the work lasts, only while it is seen.
(function () {
  var el = document.querySelector("[data-refresh]");
  if (!el) return;
  var secs = parseInt(el.getAttribute("data-refresh"), 10) || 5;
  setTimeout(function again() {
    if (document.hidden) {
      document.addEventListener("visibilitychange", again, { once: true });
    } else {
      location.reload();
    }
  }, secs * 1000);
})();

// The Telegram Login Widget (sign-in, profile) hands the signed user data to the page; it is
// posted with our CSRF token. The widget's iframe posts it as a message, taken here rather
// than through `data-onauth`, which the widget would `eval` (the CSP allows no eval).
var chatterTelegramSent = false;
function chatterTelegramAuth(user) {
  var form = document.getElementById("telegram-form");
  if (!form || chatterTelegramSent) return;
  chatterTelegramSent = true;
  Object.keys(user).forEach(function (k) {
    var i = document.createElement("input");
    i.type = "hidden";
    i.name = k;
    i.value = String(user[k]);
    form.appendChild(i);
  });
  form.submit();
}
window.addEventListener("message", function (e) {
  if (e.origin !== "https://oauth.telegram.org") return;
  var frame = document.querySelector('iframe[id^="telegram-login-"]');
  if (!frame || e.source !== frame.contentWindow) return;
  var d;
  try { d = JSON.parse(e.data); } catch (_) { return; }
  if (d && d.event === "auth_user" && d.auth_data) chatterTelegramAuth(d.auth_data);
});

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
  // Opened from a search hit (#msg-…): show that message, not the latest.
  var hit = location.hash.indexOf("#msg-") === 0 ? document.getElementById(location.hash.slice(1)) : null;
  if (hit && box && box.contains(hit)) hit.scrollIntoView({ block: "center" });
  else scrollDown();
  function fragment(html) {
    var t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }
  var after = root.getAttribute("data-last-event") || "0";
  // The unread count in the tab's title: "(3) Входящие — Чаттер", kept as messages arrive.
  var baseTitle = document.title;
  function countUnread() {
    var n = 0;
    if (list) Array.prototype.forEach.call(list.querySelectorAll(".badge"), function (b) { n += parseInt(b.textContent, 10) || 0; });
    document.title = n > 0 ? "(" + n + ") " + baseTitle : baseTitle;
  }
  countUnread();
  // The open conversation's header follows what colleagues do: the assignee and open/closed.
  function updateHeader(d) {
    var who = document.querySelector(".thread-actions select[name=assignee]");
    if (who && document.activeElement !== who && "assignee_id" in d) who.value = d.assignee_id || "";
    var closeF = document.getElementById("close-form");
    var reopenF = document.getElementById("reopen-form");
    if (closeF && reopenF && d.status) {
      closeF.hidden = d.status !== "open";
      reopenF.hidden = d.status === "open";
    }
    var labels = document.getElementById("thread-labels");
    // Replaced only when it changed (opening a conversation alone sends an event).
    var fresh = labels && d.labels ? fragment(d.labels) : null;
    if (fresh && !fresh.isEqualNode(labels) && !labels.contains(document.activeElement)) labels.replaceWith(fresh);
  }
  function markSeen(row) {
    row.classList.remove("unread");
    var b = row.querySelector(".badge");
    if (b) b.remove();
  }
  // Back to a tab that got messages while hidden: they are read now.
  document.addEventListener("visibilitychange", function () {
    if (!thread || document.visibilityState !== "visible") return;
    var row = document.getElementById("conv-" + thread);
    if (row && row.querySelector(".badge")) {
      markSeen(row);
      countUnread();
      fetch("/app/inbox/" + thread + "/read", { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
    }
  });
  function onEvent(e) {
    if (e.lastEventId) after = e.lastEventId;
    var d;
    try { d = JSON.parse(e.data); } catch (_) { return; }
    if (list && d.row) {
      var row = fragment(d.row);
      var old = document.getElementById("conv-" + d.conversation_id);
      // A row ticked for a bulk action stays ticked when it changes.
      var ticked = old && old.querySelector("input.pick");
      if (ticked && ticked.checked) row.querySelector("input.pick").checked = true;
      if (d.conversation_id === thread) {
        row.classList.add("on");
        // The open conversation is being read: its row shows no badge while the page is seen.
        if (document.visibilityState === "visible") markSeen(row);
      }
      // A new message brings its conversation to the top; anything else (read, assigned,
      // closed) changes the row where it is, so the list does not jump under the pointer.
      if (old && !d.message) old.replaceWith(row);
      else { if (old) old.remove(); list.insertBefore(row, list.firstChild); }
      var empty = document.getElementById("inbox-empty");
      if (empty) empty.remove();
      countUnread();
      document.dispatchEvent(new Event("chatter:rows"));
    }
    if (d.conversation_id === thread) updateHeader(d);
    document.dispatchEvent(new CustomEvent("chatter:event", { detail: d }));
    if (box && d.conversation_id === thread && d.note) {
      var n = fragment(d.note);
      var had = document.getElementById("note-" + d.note_id);
      if (had) had.replaceWith(n); else { box.appendChild(n); scrollDown(); }
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
  // One stream per shown page: closed when the page is left (a page kept in the back/forward
  // cache would otherwise hold its connection, and after six of them the browser has none left
  // for this site), reopened from the last event seen when the page is shown again.
  var es = null;
  function openStream() {
    if (es) return;
    es = new EventSource("/app/events?after=" + encodeURIComponent(after));
    es.addEventListener("message", onEvent);
    es.addEventListener("conversation", onEvent);
    es.addEventListener("note", onEvent);
    es.addEventListener("notification", function (e) {
      if (e.lastEventId) after = e.lastEventId;
      if (window.chatterNotify) window.chatterNotify(e);
    });
    // The node is stopping: reconnect (to whichever node the proxy picks) from the last event
    // seen, after a short random pause so a hundred open pages do not arrive at once.
    es.addEventListener("reconnect", function () {
      closeStream();
      setTimeout(function () { if (document.visibilityState !== "hidden" || !es) openStream(); }, 300 + Math.floor(Math.random() * 1200));
    });
  }
  function closeStream() {
    if (es) { es.close(); es = null; }
  }
  openStream();
  window.addEventListener("pagehide", closeStream);
  window.addEventListener("pageshow", function (e) { if (e.persisted) openStream(); });
  window.addEventListener("beforeunload", function () {
    closeStream();
    // A link that turns out to be a download leaves the page where it is: live again.
    setTimeout(function () { if (document.visibilityState === "visible") openStream(); }, 1500);
  });

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
    // Enter sends with a keyboard; on a touch screen it makes a new line and the button sends
    // (a phone keyboard has no Shift+Enter).
    var touch = window.matchMedia && window.matchMedia("(pointer: coarse)").matches;
    text.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !touch) {
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

// The reply box's two tabs: a reply to the customer, or an internal note for the team (the
// links work without this script: `?mode=note`). A note is posted in place; it arrives in the
// thread through the live stream. Typing `@` offers the teammates to mention.
(function () {
  var tabReply = document.getElementById("tab-reply");
  var tabNote = document.getElementById("tab-note");
  var replyPane = document.getElementById("reply-pane");
  var notePane = document.getElementById("note-pane");
  var noteText = document.getElementById("note-text");
  var noteForm = document.getElementById("note-form");
  if (!tabReply || !tabNote || !replyPane || !notePane) return;
  function show(note) {
    notePane.hidden = !note;
    replyPane.hidden = note;
    tabNote.classList.toggle("on", note);
    tabReply.classList.toggle("on", !note);
    tabNote.setAttribute("aria-selected", note ? "true" : "false");
    tabReply.setAttribute("aria-selected", note ? "false" : "true");
    var t = note ? noteText : document.getElementById("reply-text");
    if (t) t.focus();
  }
  tabReply.addEventListener("click", function (e) { e.preventDefault(); show(false); });
  tabNote.addEventListener("click", function (e) { e.preventDefault(); show(true); });
  if (!noteForm || !noteText) return;
  var list = document.getElementById("mention-list");
  var buttons = list ? Array.prototype.slice.call(list.querySelectorAll("button.mention")) : [];
  var at = -1;
  // The word being typed after an `@` (letters, digits, spaces inside a name), or null.
  function query() {
    var v = noteText.value.slice(0, noteText.selectionStart);
    var i = v.lastIndexOf("@");
    if (i < 0 || (i > 0 && !/\s/.test(v.charAt(i - 1)))) return null;
    var q = v.slice(i + 1);
    if (q.length > 40 || /\n/.test(q)) return null;
    at = i;
    return q.toLowerCase();
  }
  function shown() { return buttons.filter(function (b) { return !b.parentNode.hidden; }); }
  function close() { if (list) list.hidden = true; buttons.forEach(function (b) { b.classList.remove("on"); }); }
  function pick(b) {
    var name = b.getAttribute("data-name");
    var end = noteText.selectionStart;
    var before = noteText.value.slice(0, at);
    noteText.value = before + "@" + name + " " + noteText.value.slice(end);
    var pos = before.length + name.length + 2;
    noteText.setSelectionRange(pos, pos);
    noteText.focus();
    close();
  }
  noteText.addEventListener("input", function () {
    var q = query();
    if (q === null || !list) { close(); return; }
    var any = false;
    buttons.forEach(function (b) {
      var ok = b.getAttribute("data-name").toLowerCase().indexOf(q) === 0;
      b.parentNode.hidden = !ok;
      b.classList.remove("on");
      if (ok) any = true;
    });
    list.hidden = !any;
    var first = shown()[0];
    if (first) first.classList.add("on");
  });
  noteText.addEventListener("keydown", function (e) {
    if (!list || list.hidden) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); noteForm.requestSubmit ? noteForm.requestSubmit() : noteForm.submit(); }
      return;
    }
    var items = shown();
    var cur = items.findIndex(function (b) { return b.classList.contains("on"); });
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (cur >= 0) items[cur].classList.remove("on");
      var next = e.key === "ArrowDown" ? Math.min(items.length - 1, cur + 1) : Math.max(0, cur - 1);
      items[next].classList.add("on");
    } else if (e.key === "Enter" || e.key === "Tab") {
      if (cur >= 0) { e.preventDefault(); pick(items[cur]); }
    } else if (e.key === "Escape") { close(); }
  });
  buttons.forEach(function (b) {
    b.addEventListener("mousedown", function (e) { e.preventDefault(); });
    b.addEventListener("click", function () { query(); pick(b); });
  });
  noteForm.addEventListener("submit", function (e) {
    if (!window.fetch) return;
    e.preventDefault();
    var body = new URLSearchParams(new FormData(noteForm));
    var sent = noteText.value;
    noteText.value = "";
    close();
    var old = document.getElementById("note-refused");
    fetch(noteForm.action, { method: "POST", body: body, headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.ok) { if (old) old.remove(); return; }
        noteText.value = sent;
        return r.json().then(function (j) {
          var p = old || document.createElement("p");
          p.id = "note-refused";
          p.className = "error-text field-error";
          p.textContent = j.error || String(r.status);
          if (!old) noteForm.insertBefore(p, noteText);
        });
      })
      .catch(function () { noteText.value = sent; });
  });
})();

// The bell: its count and panel follow the live stream (the inbox's, or its own elsewhere);
// the count is in the tab's title outside the inbox (the inbox counts unread messages there).
// With browser notifications turned on in the profile, a notification and a chime while the
// tab is hidden.
(function () {
  var bell = document.getElementById("bell");
  if (!bell) return;
  var count = document.getElementById("bell-count");
  var panel = document.getElementById("bell-panel");
  var inbox = !!document.querySelector("[data-live]");
  var baseTitle = document.title.replace(/^\(\d+\) /, "");
  function setCount(n) {
    count.textContent = String(n);
    count.hidden = n <= 0;
    bell.classList.toggle("has-unread", n > 0);
    if (!inbox) document.title = n > 0 ? "(" + n + ") " + baseTitle : baseTitle;
  }
  var chime = null;
  window.chatterNotify = function (e) {
    var d;
    try { d = JSON.parse(e.data); } catch (_) { return; }
    if (typeof d.unread === "number") setCount(d.unread);
    if (d.item && panel) {
      var ul = panel.querySelector("ul.notifications");
      if (ul) {
        var t = document.createElement("template");
        t.innerHTML = d.item.trim();
        var li = t.content.firstElementChild;
        var had = document.getElementById(li.id);
        if (had) had.remove();
        ul.insertBefore(li, ul.firstChild);
        var empty = document.getElementById("panel-empty");
        if (empty) empty.remove();
      }
    }
    var page = document.getElementById("notification-list");
    if (d.item && page) {
      var t2 = document.createElement("template");
      t2.innerHTML = d.item.trim();
      var li2 = t2.content.firstElementChild;
      var had2 = page.querySelector('[id="' + li2.id + '"]');
      if (had2) had2.remove();
      page.insertBefore(li2, page.firstChild);
    }
    if (d.item && !d.read && bell.getAttribute("data-browser") === "1" && document.visibilityState === "hidden") {
      if (window.Notification && Notification.permission === "granted") {
        try {
          var n = new Notification(d.title || document.title, { body: (d.item.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim()), tag: d.notification_id || undefined });
          n.onclick = function () { window.focus(); if (d.href) location.href = d.href; };
        } catch (_) {}
      }
      try {
        if (!chime) chime = new Audio(bell.getAttribute("data-sound"));
        chime.currentTime = 0;
        var p = chime.play();
        if (p && p.catch) p.catch(function () {});
      } catch (_) {}
    }
  };
  // The panel: the latest notifications, fetched when opened (the link is the page without JS).
  bell.addEventListener("click", function (e) {
    if (!panel || !window.fetch) return;
    e.preventDefault();
    if (!panel.hidden) { panel.hidden = true; return; }
    fetch("/app/notifications?panel=1", { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) { panel.innerHTML = html; panel.hidden = false; });
  });
  document.addEventListener("click", function (e) {
    if (panel && !panel.hidden && !panel.contains(e.target) && !bell.contains(e.target)) panel.hidden = true;
  });
  if (inbox || !window.EventSource) return;
  // Not the inbox: a stream of our own for the bell, closed while the page is not shown.
  var after = bell.getAttribute("data-last-event") || "0";
  var es = null;
  function open() {
    if (es) return;
    es = new EventSource("/app/events?after=" + encodeURIComponent(after));
    ["message", "conversation", "note"].forEach(function (k) {
      es.addEventListener(k, function (e) { if (e.lastEventId) after = e.lastEventId; });
    });
    es.addEventListener("notification", function (e) {
      if (e.lastEventId) after = e.lastEventId;
      window.chatterNotify(e);
    });
    es.addEventListener("reconnect", function () {
      shut();
      setTimeout(open, 300 + Math.floor(Math.random() * 1200));
    });
  }
  function shut() { if (es) { es.close(); es = null; } }
  open();
  window.addEventListener("pagehide", shut);
  window.addEventListener("pageshow", function (e) { if (e.persisted) open(); });
})();

// Browser notifications are asked for only when the person turns them on in the profile.
(function () {
  var box = document.getElementById("notify-browser");
  if (!box) return;
  var denied = document.getElementById("notify-denied");
  box.addEventListener("change", function () {
    if (!box.checked || !window.Notification) return;
    if (Notification.permission === "granted") return;
    Notification.requestPermission().then(function (p) {
      if (p === "denied" && denied) denied.hidden = false;
    });
  });
})();

// Filters that apply at once: a changed choice submits its form, the search on Enter (or after
// a pause in typing); the «Показать» button is only for pages without this script.
(function () {
  var forms = document.querySelectorAll("form[data-autosubmit]");
  Array.prototype.forEach.call(forms, function (f) {
    f.classList.add("live");
    Array.prototype.forEach.call(f.querySelectorAll("select"), function (s) {
      s.addEventListener("change", function () { f.submit(); });
    });
    var q = f.querySelector("input[name=q]");
    if (q) {
      var timer = null;
      var last = q.value;
      q.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(function () {
          if (q.value !== last && (q.value.trim().length === 0 || q.value.trim().length >= 2)) {
            try { sessionStorage.setItem("chatterTyping", "1"); } catch (_) {}
            f.submit();
          }
        }, 700);
      });
      // Back from a search made while typing: keep typing where it was.
      var typing = null;
      try { typing = sessionStorage.getItem("chatterTyping"); sessionStorage.removeItem("chatterTyping"); } catch (_) {}
      if (typing) { q.focus(); q.setSelectionRange(q.value.length, q.value.length); }
    }
  });
})();

// On a phone the menu scrolls sideways: show the current section, not the first ones.
(function () {
  var on = document.querySelector("nav.side a.on");
  if (on && on.scrollIntoView && window.innerWidth < 720) on.scrollIntoView({ block: "nearest", inline: "center" });
})();

// Inbox keys: j / k the next / previous conversation, r the reply box, e close the
// conversation, ? this list. Not while typing in a field. `/` is kept for message templates.
(function () {
  var list = document.getElementById("conv-list");
  if (!list) return;
  var help = document.getElementById("keys-help");
  function typing(t) {
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }
  // A conversation opened from the list keeps the list's filters (status, label, source…),
  // so the list beside it and j / k stay in the same list.
  function filtered(href) {
    var f = document.querySelector("form.filters");
    if (!f || !window.URLSearchParams || !window.FormData) return href;
    var p = new URLSearchParams();
    new FormData(f).forEach(function (v, k) { if (v && k !== "q") p.append(k, v); });
    var s = p.toString();
    return s ? href + "?" + s : href;
  }
  list.addEventListener("click", function (e) {
    var a = e.target.closest ? e.target.closest("li.conv a") : null;
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button) return;
    e.preventDefault();
    location.href = filtered(a.getAttribute("href"));
  });
  function go(step) {
    var rows = Array.prototype.slice.call(list.querySelectorAll("li.conv a"));
    if (!rows.length) return;
    var at = -1;
    rows.forEach(function (a, i) { if (a.parentNode.classList.contains("on")) at = i; });
    var next = at < 0 ? 0 : Math.min(rows.length - 1, Math.max(0, at + step));
    if (next !== at) rows[next].click();
  }
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && typing(e.target)) { e.target.blur(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    if (help && help.open) return;
    var k = e.key;
    if (k === "j") { e.preventDefault(); go(1); }
    else if (k === "k") { e.preventDefault(); go(-1); }
    else if (k === "r") { var t = document.getElementById("reply-text"); if (t) { e.preventDefault(); t.focus(); } }
    else if (k === "e") { var c = document.getElementById("close-form"); if (c && !c.hidden) { e.preventDefault(); c.submit(); } }
    else if (k === "?") { if (help && help.showModal) { e.preventDefault(); help.showModal(); } }
  });
})();

// The customer card stands open beside the thread on wide screens; on narrower ones it is a
// section that opens on a tap.
(function () {
  var card = document.querySelector("details[data-wide-open]");
  if (card && window.matchMedia && window.matchMedia("(min-width: 1100px)").matches) card.open = true;
})();

// Bulk actions on the list: the bar's actions show once a row is ticked, with how many are;
// «select all» ticks every row of this page. Without the script the bar is always there.
(function () {
  var form = document.getElementById("bulk-form");
  var list = document.getElementById("conv-list");
  if (!form || !list) return;
  var all = document.getElementById("pick-all");
  var count = document.getElementById("bulk-count");
  form.classList.add("js");
  if (all && all.parentNode) all.parentNode.hidden = false;
  function picks() { return Array.prototype.slice.call(list.querySelectorAll("input.pick")); }
  function update() {
    var p = picks(), n = p.filter(function (c) { return c.checked; }).length;
    form.classList.toggle("some", n > 0);
    list.classList.toggle("picking", n > 0);
    if (count) count.textContent = n > 0 ? String(n) : "";
    if (all) { all.checked = n > 0 && n === p.length; all.indeterminate = n > 0 && n < p.length; }
  }
  list.addEventListener("change", function (e) { if (e.target.classList.contains("pick")) update(); });
  if (all) all.addEventListener("change", function () {
    picks().forEach(function (c) { c.checked = all.checked; });
    update();
  });
  document.addEventListener("chatter:rows", update);
  update();
})();

// Files from the reply box: the 📎 button, a paste or a drop picks one file, shown above the
// text (pictures previewed); «Отправить» then sends it with the text as its caption to the
// file form's address. Without this script the file form below the box works on its own.
(function () {
  var form = document.getElementById("reply-form");
  var fileForm = document.getElementById("file-form");
  var btn = document.getElementById("attach-btn");
  var text = document.getElementById("reply-text");
  var input = document.getElementById("file-input");
  var preview = document.getElementById("attach-preview");
  var error = document.getElementById("attach-error");
  if (!form || !fileForm || !btn || !text || !input || !preview || !error) return;
  var max = parseInt(fileForm.getAttribute("data-max-bytes"), 10) || 0;
  var maxImage = parseInt(preview.getAttribute("data-max-image"), 10) || 0;
  var only = (fileForm.getAttribute("data-only") || "").split(",").filter(Boolean);
  var picked = null;
  fileForm.hidden = true;
  btn.hidden = false;
  var hint = document.getElementById("attach-hint");
  if (hint) hint.hidden = false;
  var say = function (msg) { error.textContent = msg || ""; error.hidden = !msg; };
  // The picture type of a file's first bytes (PNG, JPEG, GIF, WebP, BMP, HEIC), "" otherwise.
  var pictureType = function (b) {
    var at = function (i, s) { for (var k = 0; k < s.length; k++) if (b[i + k] !== s.charCodeAt(k)) return false; return true; };
    if (at(0, "\x89PNG\r\n\x1a\n")) return "image/png";
    if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "image/jpeg";
    if (at(0, "GIF87a") || at(0, "GIF89a")) return "image/gif";
    if (at(0, "RIFF") && at(8, "WEBP")) return "image/webp";
    if (at(0, "BM") && !b[6] && !b[7] && !b[8] && !b[9]) return "image/bmp";
    if (at(4, "ftyp") && (at(8, "heic") || at(8, "heix") || at(8, "heim") || at(8, "heis") || at(8, "mif1"))) return "image/heic";
    return "";
  };
  var size = function (n) {
    return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : n >= 1024 ? Math.round(n / 1024) + " KB" : n + " B";
  };
  var clear = function () {
    picked = null;
    preview.hidden = true;
    preview.textContent = "";
    text.required = true;
    input.value = "";
  };
  var pick = function (f) {
    if (!f) return;
    say("");
    if (f.size === 0) { clear(); say(fileForm.getAttribute("data-empty")); return; }
    if (max && f.size > max) { clear(); say(fileForm.getAttribute("data-too-large")); return; }
    if (only.length && maxImage && f.size > maxImage) { clear(); say(fileForm.getAttribute("data-only-refused")); return; }
    if (only.length) {
      // A kind that takes only pictures: what the file is by its first bytes, as the server
      // decides, not by its name or the type the browser guessed from it.
      f.slice(0, 16).arrayBuffer().then(function (buf) {
        if (only.indexOf(pictureType(new Uint8Array(buf))) < 0) { clear(); say(fileForm.getAttribute("data-only-refused")); return; }
        take(f);
      }, function () { take(f); });
      return;
    }
    take(f);
  };
  var take = function (f) {
    picked = f;
    text.required = false;
    preview.textContent = "";
    if (/^image\/(png|jpeg|gif|webp)$/.test(f.type) && (!maxImage || f.size <= maxImage)) {
      var img = document.createElement("img");
      img.alt = f.name;
      img.className = "attach-thumb";
      img.id = "attach-thumb";
      var reader = new FileReader();
      reader.onload = function () { img.src = reader.result; };
      reader.readAsDataURL(f);
      preview.appendChild(img);
    }
    var name = document.createElement("span");
    name.className = "attach-name";
    name.textContent = "📎 " + f.name + " · " + size(f.size);
    preview.appendChild(name);
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "small attach-remove";
    remove.textContent = "✕";
    remove.title = preview.getAttribute("data-remove");
    remove.setAttribute("aria-label", remove.title);
    remove.addEventListener("click", function () { clear(); say(""); text.focus(); });
    preview.appendChild(remove);
    preview.hidden = false;
    text.focus();
  };
  btn.addEventListener("click", function () { input.click(); });
  input.addEventListener("change", function () { pick(input.files && input.files[0]); });
  text.addEventListener("paste", function (e) {
    var files = e.clipboardData && e.clipboardData.files;
    if (files && files.length) { e.preventDefault(); pick(files[0]); }
  });
  var zones = [form, document.getElementById("thread-messages")];
  zones.forEach(function (z) {
    if (!z) return;
    z.addEventListener("dragover", function (e) {
      if (e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types || [], "Files") >= 0) {
        e.preventDefault();
        form.classList.add("dragging");
        form.setAttribute("data-drop", fileForm.getAttribute("data-drop"));
      }
    });
    z.addEventListener("dragleave", function () { form.classList.remove("dragging"); });
    z.addEventListener("drop", function (e) {
      form.classList.remove("dragging");
      var files = e.dataTransfer && e.dataTransfer.files;
      if (files && files.length) { e.preventDefault(); pick(files[0]); }
    });
  });
  // Runs before the text reply's own handler (capture), and instead of it when a file is picked.
  form.addEventListener("submit", function (e) {
    if (!picked) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    var body = new FormData();
    var csrf = form.querySelector("input[name=_csrf]").value;
    body.append("_csrf", csrf);
    var replyTo = form.querySelector("input[name=reply_to]");
    if (replyTo) body.append("reply_to", replyTo.value);
    body.append("text", text.value);
    body.append("file", picked, picked.name);
    var send = document.getElementById("reply-send");
    if (send) send.disabled = true;
    var done = function () { if (send) send.disabled = false; };
    fetch(fileForm.action, { method: "POST", body: body, headers: { "Accept": "application/json", "X-CSRF-Token": csrf }, credentials: "same-origin" })
      .then(function (r) {
        done();
        if (r.ok) { text.value = ""; clear(); return; }
        return r.json().then(function (j) { say(j.error || String(r.status)); }, function () { say(fileForm.getAttribute("data-too-large")); });
      })
      .catch(function () { done(); say(fileForm.getAttribute("data-failed")); });
  }, true);
})();

// ---- Scheduled replies (the reply box's «send later», the list above it) ----
// «Send later» posts the reply form to its own address (`formaction`): the form goes as a page
// submission, not through the reply box's in-place send, which would send it now. The list of
// scheduled replies is replaced when the live stream says it changed.
(function () {
  var inbox = document.querySelector(".inbox[data-thread]");
  if (!inbox) return;
  var thread = inbox.getAttribute("data-thread");
  document.addEventListener("submit", function (e) {
    var b = e.submitter;
    if (b && (b.id === "schedule-at" || b.id === "schedule-hours")) e.stopImmediatePropagation();
  }, true);
  document.addEventListener("chatter:event", function (e) {
    var d = e.detail;
    if (!d || d.conversation_id !== thread || typeof d.scheduled !== "string") return;
    var old = document.getElementById("scheduled-list");
    if (!old || !d.scheduled) return;
    var t = document.createElement("template");
    t.innerHTML = d.scheduled.trim();
    var fresh = t.content.firstElementChild;
    if (fresh && !old.contains(document.activeElement)) old.replaceWith(fresh);
  });
})();
// ---- Reply templates (begin) ----
// In the reply box, `/` at the start of the text (or the «Шаблоны» button) opens the list of
// the templates this member may use, rendered for this conversation by the server and
// filtered by what follows the `/`. ArrowUp/ArrowDown move, Enter or a click inserts, Esc
// closes and leaves the focus in the text. Inserting replaces the `/query` with the text; a
// template's file goes with the reply (its id rides in the form's `template_id`). Without the
// script the button is a link to a page of templates with «Вставить».
(function () {
  var form = document.getElementById("reply-form");
  var text = document.getElementById("reply-text");
  var open = document.getElementById("tpl-open");
  var list = document.getElementById("tpl-list");
  var idInput = document.getElementById("template-id");
  var fileRow = document.getElementById("tpl-file");
  var fileName = document.getElementById("tpl-file-name");
  var fileRemove = document.getElementById("tpl-file-remove");
  if (!form || !text || !open || !list || !idInput) return;
  var src = open.getAttribute("data-src");
  var range = null; // [start, end] of the text the chosen template replaces
  var items = [];
  var seq = 0;
  function setFile(id, name) {
    idInput.value = name ? id : "";
    if (!fileRow) return;
    fileRow.hidden = !name;
    if (fileName) fileName.textContent = name ? "📎 " + name : "";
  }
  if (fileRemove) fileRemove.addEventListener("click", function () { setFile("", null); text.focus(); });
  function isOpen() { return !list.hidden; }
  function close() {
    list.hidden = true;
    list.textContent = "";
    items = [];
    range = null;
    text.removeAttribute("aria-activedescendant");
    open.setAttribute("aria-expanded", "false");
  }
  function current() { return items.findIndex(function (li) { return li.classList.contains("on"); }); }
  function move(i) {
    items.forEach(function (li) { li.classList.remove("on"); li.setAttribute("aria-selected", "false"); });
    if (i < 0 || i >= items.length) return;
    items[i].classList.add("on");
    items[i].setAttribute("aria-selected", "true");
    text.setAttribute("aria-activedescendant", items[i].id);
    if (items[i].scrollIntoView) items[i].scrollIntoView({ block: "nearest" });
  }
  function insert(li) {
    var t = li.getAttribute("data-text");
    var r = range || [text.selectionStart, text.selectionEnd];
    var v = text.value;
    text.value = v.slice(0, r[0]) + t + v.slice(r[1]);
    var pos = r[0] + t.length;
    setFile(li.getAttribute("data-id"), li.getAttribute("data-file"));
    close();
    text.focus();
    text.setSelectionRange(pos, pos);
    text.dispatchEvent(new Event("input", { bubbles: true }));
  }
  function show(q, r) {
    var mine = ++seq;
    fetch(src + "?q=" + encodeURIComponent(q), { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (resp) { return resp.ok ? resp.json() : []; })
      .then(function (found) {
        if (mine !== seq) return;
        range = r;
        list.textContent = "";
        items = [];
        if (!found.length) {
          var none = document.createElement("li");
          none.className = "tpl-none muted";
          none.textContent = open.getAttribute("data-empty");
          list.appendChild(none);
        }
        found.forEach(function (t, i) {
          var li = document.createElement("li");
          li.id = "tpl-opt-" + i;
          li.className = "tpl-item";
          li.setAttribute("role", "option");
          li.setAttribute("data-id", t.id);
          li.setAttribute("data-text", t.text);
          if (t.file) li.setAttribute("data-file", t.file);
          var title = document.createElement("strong");
          title.textContent = t.title;
          li.appendChild(title);
          if (t.category) {
            var cat = document.createElement("span");
            cat.className = "muted small";
            cat.textContent = " · " + t.category + (t.file ? " · 📎" : "");
            li.appendChild(cat);
          }
          var body = document.createElement("span");
          body.className = "tpl-text small";
          body.textContent = t.text;
          li.appendChild(body);
          li.addEventListener("mousedown", function (e) { e.preventDefault(); });
          li.addEventListener("click", function () { insert(li); });
          list.appendChild(li);
          items.push(li);
        });
        list.hidden = false;
        open.setAttribute("aria-expanded", "true");
        move(0);
      })
      .catch(function () {});
  }
  // `/query` at the very start of the text, up to the caret, on one line: the query, or null.
  function slashQuery() {
    var upto = text.value.slice(0, text.selectionStart);
    if (upto.charAt(0) !== "/" || /\n/.test(upto) || upto.length > 60) return null;
    return upto.slice(1);
  }
  text.addEventListener("input", function () {
    var q = slashQuery();
    if (q === null) { if (isOpen() && range && range[0] === 0 && range[1] !== range[0]) close(); return; }
    show(q, [0, text.selectionStart]);
  });
  // Capture on the form: runs before the box's own Enter-sends handler.
  form.addEventListener("keydown", function (e) {
    if (e.target !== text || !isOpen()) return;
    var i = current();
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (!items.length) return;
      move(e.key === "ArrowDown" ? Math.min(items.length - 1, i + 1) : Math.max(0, i - 1));
    } else if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      e.stopImmediatePropagation();
      if (i >= 0) insert(items[i]); else close();
    } else if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      close();
      text.focus();
    }
  }, true);
  open.addEventListener("click", function (e) {
    e.preventDefault();
    if (isOpen()) { close(); text.focus(); return; }
    text.focus();
    show("", [text.selectionStart, text.selectionEnd]);
  });
  text.addEventListener("blur", function () { setTimeout(function () { if (document.activeElement !== text && document.activeElement !== open) close(); }, 150); });
  // A sent reply empties the box: the template's file is not sent twice.
  form.addEventListener("submit", function () { setTimeout(function () { if (!text.value) setFile("", null); }, 0); });
})();
// ---- Reply templates (end) ----
