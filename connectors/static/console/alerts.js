/* kefu console: operational alerts for supervisors (bot/alerts, docs/operations.md#alerts).
 * Its own file; console.js only re-broadcasts each websocket event as a "kefu:console-event"
 * DOM event. The list comes from GET /handoff/api/alerts (supervisors and admins; agents get
 * 403 and never see the panel); a live {"type": "alert"} event reloads it. */
(function () {
  "use strict";
  var TEXT = {
    en: { title: "Alerts", none: "No active alerts.", since: "since", cleared: "cleared", critical: "critical",
      warning: "warning", info: "info" },
    zh: { title: "告警", none: "当前没有告警。", since: "开始于", cleared: "已恢复", critical: "严重",
      warning: "警告", info: "提示" }
  };
  var lastCleared = null;
  function lang() {
    var saved = localStorage.getItem("kefu-console-lang");
    return saved || ((navigator.language || "en").indexOf("zh") === 0 ? "zh" : "en");
  }
  function t(key) { return (TEXT[lang()] || TEXT.en)[key] || key; }
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
  function hhmm(ts) { var d = new Date(ts * 1000); return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2); }

  function panel() {
    var found = document.getElementById("alerts-panel");
    if (found) return found;
    var aside = document.querySelector("#app aside");
    if (!aside) return null;
    var link = document.createElement("link");
    link.rel = "stylesheet"; link.href = "/console/alerts.css";
    document.head.appendChild(link);
    var section = el("section", "alerts"); section.id = "alerts-panel"; section.hidden = true;
    section.setAttribute("aria-live", "polite");
    var h = el("h2", null, t("title")); h.id = "alerts-title";
    section.appendChild(h);
    var list = el("ul", "alert-list"); list.id = "alert-list";
    section.appendChild(list);
    aside.insertBefore(section, aside.firstChild);
    return section;
  }

  function render(data) {
    var section = panel(); if (!section) return;
    section.hidden = false;
    document.getElementById("alerts-title").textContent = t("title") + (data.active.length ? " (" + data.active.length + ")" : "");
    var list = document.getElementById("alert-list");
    list.textContent = "";
    data.active.forEach(function (a) {
      var li = el("li", "alert " + a.severity); li.dataset.rule = a.rule;
      li.appendChild(el("span", "alert-severity", t(a.severity)));
      li.appendChild(el("span", "alert-message", (a.message && (a.message[lang()] || a.message.en)) || a.rule));
      li.appendChild(el("span", "alert-since", t("since") + " " + hhmm(a.since)));
      list.appendChild(li);
    });
    if (!data.active.length) list.appendChild(el("li", "alert-none", t("none")));
    if (lastCleared) {
      var c = el("li", "alert cleared"); c.dataset.rule = lastCleared.rule;
      c.textContent = t("cleared") + ": " + ((lastCleared.message && (lastCleared.message[lang()] || lastCleared.message.en)) || lastCleared.rule);
      list.appendChild(c);
    }
  }

  function load() {
    var token = sessionStorage.getItem("kefu-console-token");
    if (!token) return;
    fetch("/handoff/api/alerts", { headers: { Authorization: "Bearer " + token } }).then(function (res) {
      if (!res.ok) { var s = document.getElementById("alerts-panel"); if (s) s.hidden = true; return null; }
      return res.json();
    }).then(function (data) { if (data) render(data); }).catch(function () {});
  }

  document.addEventListener("kefu:console-event", function (e) {
    var ev = e.detail || {};
    if (ev.type === "hello") load();
    if (ev.type === "alert") {
      if (ev.alert && ev.alert.state === "cleared") lastCleared = ev.alert;
      load();
    }
  });
  document.addEventListener("click", function (e) {
    if (e.target && e.target.classList && e.target.classList.contains("lang-toggle")) setTimeout(load, 0);
  });
})();
