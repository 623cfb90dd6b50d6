/* kefu agent console: vanilla JS, zh/en, live over a websocket.
 * Every live event triggers a re-fetch of the lists (and of the open transcript), so a
 * dropped socket or a reload never loses or duplicates a message: the server is the truth.
 * Replies carry a client_id; a retried POST is answered with the stored message, not resent. */
(function () {
  "use strict";
  var API = "/handoff/api";
  var I18N = {
    en: { console: "Agent console", agentId: "Agent ID", password: "Password", login: "Log in", logout: "Log out",
      online: "Online", away: "Away", offline: "offline", live: "live", queue: "Queue", mine: "My conversations",
      pick: "Pick a conversation.", claim: "Claim", transfer: "Transfer", resolve: "Resolve", send: "Send",
      note: "Note", canned: "Canned reply…", replyPlaceholder: "Reply to the shopper", profile: "Profile",
      reason: "Reason", waiting: "waiting", position: "#", shopper: "Shopper", bot: "Bot", agent: "Agent",
      noteLabel: "Note", loginFailed: "Wrong agent id or password.", loginLocked: "Too many failed logins. Try again in {s} s.", orders: "Orders", ltv: "Lifetime value",
      cases: "Open after-sales", trend: "Sentiment", none: "—", suggestions: "Suggested answers", rated: "Rating",
      leftMessage: "Left a message", viaTemplate: "Sent as a template message (outside WeChat's 48-hour window)." },
    zh: { console: "客服工作台", agentId: "客服账号", password: "密码", login: "登录", logout: "退出",
      online: "在线", away: "离开", offline: "未连接", live: "实时", queue: "排队中", mine: "我的会话",
      pick: "请选择一个会话。", claim: "接入", transfer: "转接", resolve: "结束服务", send: "发送",
      note: "备注", canned: "快捷回复…", replyPlaceholder: "回复顾客", profile: "顾客资料",
      reason: "原因", waiting: "等待", position: "#", shopper: "顾客", bot: "机器人", agent: "客服",
      noteLabel: "内部备注", loginFailed: "账号或密码错误。", loginLocked: "登录失败次数过多，请 {s} 秒后再试。", orders: "订单数", ltv: "累计消费",
      cases: "未完结售后", trend: "情绪", none: "—", suggestions: "知识库建议", rated: "评分",
      leftMessage: "留言", viaTemplate: "已通过模板消息发送（超出微信 48 小时客服消息窗口）。" }
  };
  var state = { token: sessionStorage.getItem("kefu-console-token"), me: null, lang: localStorage.getItem("kefu-console-lang") ||
    ((navigator.language || "en").indexOf("zh") === 0 ? "zh" : "en"), current: null, ws: null, agents: [] };
  function T(key) { return (I18N[state.lang] || I18N.en)[key] || key; }
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
  function uid() { return "c-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10); }
  function fmtTime(ts) { var d = new Date(ts * 1000); return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2); }

  function applyI18n() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-i18n]").forEach(function (n) { n.textContent = T(n.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach(function (n) { n.placeholder = T(n.dataset.i18nPlaceholder); });
  }
  // the badge keeps its key in data-i18n, so a language switch re-labels the current state
  function showLive(on) { var b = $("live"); b.dataset.i18n = on ? "live" : "offline"; b.textContent = T(b.dataset.i18n); b.classList.toggle("on", on); }
  function toggleLang() { state.lang = state.lang === "zh" ? "en" : "zh"; localStorage.setItem("kefu-console-lang", state.lang); applyI18n(); refresh(); }

  function api(method, path, body, retries) {
    var opts = { method: method, headers: { "Authorization": "Bearer " + state.token } };
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    return fetch(API + path, opts).then(function (res) {
      if (res.status === 401) { logout(); throw new Error("unauthorized"); }
      return res.json().then(function (data) { if (!res.ok) { var e = new Error(data.message || res.status); e.status = res.status; throw e; } return data; });
    }, function (err) {
      if (retries > 0) return new Promise(function (r) { setTimeout(r, 500); }).then(function () { return api(method, path, body, retries - 1); });
      throw err;
    });
  }

  function login(ev) {
    ev.preventDefault();
    fetch(API + "/login", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ agent_id: $("agent-id").value.trim(), password: $("password").value }) })
      .then(function (res) { return res.json().then(function (d) {
        if (!res.ok) { var e = new Error(d.message); e.retryAfter = res.status === 429 ? res.headers.get("Retry-After") : null; throw e; }
        return d; }); })
      .then(function (d) { state.token = d.token; sessionStorage.setItem("kefu-console-token", d.token); start(); })
      .catch(function (e) {
        $("login-error").textContent = e && e.retryAfter ? T("loginLocked").replace("{s}", e.retryAfter) : T("loginFailed"); });
  }
  function logout() {
    sessionStorage.removeItem("kefu-console-token"); state.token = null;
    if (state.ws) { state.ws.onclose = null; state.ws.close(); }
    $("app").hidden = true; $("login").hidden = false;
  }

  function start() {
    api("GET", "/me").then(function (me) {
      state.me = me; $("login").hidden = true; $("app").hidden = false;
      $("me").textContent = me.name + " (" + me.role + ")"; $("status").value = me.status;
      if (me.role !== "agent") api("GET", "/agents").then(function (a) { state.agents = a; fillTransfer(); }).catch(function () {});
      else { state.agents = []; fillTransfer(); }
      api("GET", "/canned").then(fillCanned).catch(function () {});
      connect(); refresh();
    }).catch(function () { logout(); });
  }
  function fillTransfer() {
    var sel = $("transfer-to"); sel.innerHTML = "";
    [["skill:after_sales", "after_sales"], ["skill:product", "product"], ["skill:general", "general"]].forEach(function (o) {
      var opt = el("option", null, "→ " + o[1]); opt.value = o[0]; sel.appendChild(opt); });
    state.agents.forEach(function (a) { var opt = el("option", null, "→ " + a.name + " (" + a.status + ")"); opt.value = "agent:" + a.id; sel.appendChild(opt); });
  }
  function fillCanned(canned) {
    var sel = $("canned");
    Object.keys(canned).forEach(function (key) { var opt = el("option", null, key); opt.value = key; sel.appendChild(opt); });
  }

  function connect() {
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    // The token goes in the first message, never in the URL (URLs end up in logs and history).
    var ws = new WebSocket(proto + location.host + "/handoff/ws");
    state.ws = ws;
    ws.onopen = function () { ws.send(JSON.stringify({ type: "auth", token: state.token })); };
    ws.onmessage = function (m) {
      var ev; try { ev = JSON.parse(m.data); } catch (e) { return; }
      document.dispatchEvent(new CustomEvent("kefu:console-event", { detail: ev }));  // alerts.js listens
      if (ev.type === "hello") {
        state.leftMessages = ev.left_messages || []; state.live = true;
        showLive(true); refresh(); return;
      }
      var hid = ev.handoff_id || (ev.handoff && ev.handoff.id);
      scheduleRefresh(state.current && hid === state.current);
    };
    ws.onclose = function (ev) {
      state.live = false;
      if (ev.code === 4401) { logout(); return; }
      showLive(false);
      if (state.token) setTimeout(connect, 1000);
    };
  }

  // A burst of websocket events (many handoffs at once) costs one round of list requests.
  var pending = { timer: null, current: false };
  function scheduleRefresh(current) {
    pending.current = pending.current || current;
    if (pending.timer) return;
    pending.timer = setTimeout(function () {
      var reopen = pending.current;
      pending.timer = null; pending.current = false;
      refreshLists();
      if (reopen && state.current) openHandoff(state.current, true);
    }, 200);
  }
  function refresh() { if (!state.token || !state.me) return; refreshLists(); if (state.current) openHandoff(state.current, true); }
  function refreshLists() {
    api("GET", "/handoffs?status=queued").then(function (rows) { renderList($("queue"), rows, true); }).catch(function () {});
    api("GET", "/handoffs?status=mine").then(function (rows) { renderList($("mine"), rows, false); }).catch(function () {});
  }
  function renderList(ul, rows, queued) {
    ul.innerHTML = "";
    rows.forEach(function (h) {
      var li = el("li", "item" + (h.id === state.current ? " active" : "") + (h.priority > 0 ? " priority" : ""));
      li.dataset.id = h.id; li.dataset.conversation = h.conversation_id;
      li.appendChild(el("span", "who", h.conversation_id.slice(0, 12)));
      li.appendChild(el("span", "reason", h.reason));
      (h.skills || []).forEach(function (s) { li.appendChild(el("span", "tag", s)); });
      if (h.left_messages && h.left_messages.length) li.appendChild(el("span", "tag left-message", T("leftMessage") + " · " + h.left_messages.length));
      if (queued && h.position) li.appendChild(el("span", "pos", T("position") + h.position));
      li.onclick = function () { openHandoff(h.id, false); };
      ul.appendChild(li);
    });
  }

  function openHandoff(id, quiet) {
    state.current = id;
    return api("GET", "/handoffs/" + encodeURIComponent(id)).then(function (h) {
      $("empty").hidden = true; $("conversation").hidden = false;
      $("conv-title").textContent = h.conversation_id + " · " + T("reason") + ": " + h.reason + " · " + h.status;
      $("claim").hidden = !(h.status === "queued");
      var mine = h.status === "assigned" && state.me && h.agent_id === state.me.id;
      $("resolve").disabled = !(mine || (state.me.role !== "agent" && h.status !== "resolved"));
      $("send").disabled = !mine;
      $("summary").textContent = (h.record && h.record.summary) || "";
      renderTranscript(h); renderProfile(h);
      document.dispatchEvent(new CustomEvent("kefu:conversation", { detail: { conversation_id: h.conversation_id, token: state.token, lang: state.lang } }));  // customers.js
      document.querySelectorAll(".list .item").forEach(function (n) { n.classList.toggle("active", n.dataset.id === id); });
      if (!quiet) loadSuggestions(id);
      document.dispatchEvent(new CustomEvent("kefu:handoff", { detail: h }));  // for add-on panels (compensation.js)
    }).catch(function () {});
  }
  function line(kind, who, text, ts, extra) {
    var li = el("li", "line " + kind);
    li.appendChild(el("span", "who", who));
    li.appendChild(el("span", "text", text));
    if (extra) li.appendChild(el("span", "meta", extra));
    if (ts) li.appendChild(el("time", "ts", fmtTime(ts)));
    return li;
  }
  function renderTranscript(h) {
    var ol = $("transcript"); ol.innerHTML = "";
    ((h.record && h.record.transcript) || []).forEach(function (l) {
      if (l.type === "user") ol.appendChild(line("user", T("shopper"), l.text, l.timestamp,
        (l.intent || "") + (l.confidence != null ? " " + Number(l.confidence).toFixed(2) : "") +
        (l.sentiment ? " · " + l.sentiment.label : "")));
      else if (l.type === "bot" && (l.text || l.data)) ol.appendChild(line("bot", T("bot"), l.text || JSON.stringify(l.data), l.timestamp, l.kb ? "KB" : ""));
      else if (l.type === "action") ol.appendChild(line("action", "⚙", l.name + (l.failed ? " ✗" : ""), l.timestamp));
    });
    (h.messages || []).forEach(function (m) {
      var text = m.text || (m.data && m.data.custom ? (m.data.custom.title || m.data.custom.type) : "");
      if (m.sender === "user") ol.appendChild(line("user live", T("shopper"), text, m.timestamp));
      else if (m.sender === "agent") ol.appendChild(line("agent", T("agent") + " " + (m.agent_id || ""), text, m.timestamp));
      else if (m.sender === "note") ol.appendChild(line("note", T("noteLabel"), text, m.timestamp));
    });
    if (h.csat) ol.appendChild(line("note", T("rated"), "★".repeat(h.csat), h.resolved_at));
    ol.scrollTop = ol.scrollHeight;
  }
  function renderProfile(h) {
    var dl = $("profile"); dl.innerHTML = "";
    var p = (h.record && h.record.profile) || {};
    var trend = (h.record && h.record.sentiment_trend) || {};
    var rows = [["ID", p.customer_id || h.conversation_id], ["Name", p.name], [T("orders"), p.orders],
      [T("ltv"), p.lifetime_value_cents != null ? "¥" + (p.lifetime_value_cents / 100).toFixed(2) : null],
      [T("cases"), p.open_after_sales ? p.open_after_sales.length : null], [T("trend"), trend.direction],
      ["Tags", (h.skills || []).concat(h.tags || []).join(", ")]];
    rows.forEach(function (r) { dl.appendChild(el("dt", null, r[0])); dl.appendChild(el("dd", null, r[1] == null ? T("none") : String(r[1]))); });
  }
  function loadSuggestions(id) {
    var box = $("suggestions"); box.innerHTML = "";
    api("GET", "/handoffs/" + encodeURIComponent(id) + "/suggestions").then(function (rows) {
      if (!rows.length) return;
      box.appendChild(el("div", "label", T("suggestions")));
      rows.forEach(function (s) {
        if (!s.answer) return;
        var b = el("button", "suggestion", s.answer); b.type = "button";
        b.onclick = function () { $("reply").value = s.answer; $("reply").focus(); };
        box.appendChild(b);
      });
    }).catch(function () {});
  }

  function send(ev) {
    ev.preventDefault();
    var text = $("reply").value.trim(), canned = $("canned").value;
    if (!state.current || (!text && !canned)) return;
    var body = { client_id: uid() };
    if (text) body.text = text; else body.canned = canned;
    $("reply").value = ""; $("canned").value = "";
    api("POST", "/handoffs/" + encodeURIComponent(state.current) + "/messages", body, 3)
      .then(function (row) { if (row && row.delivery === "template") alert(T("viaTemplate")); openHandoff(state.current, true); })
      .catch(function (e) { $("reply").value = text; if (e && e.status && e.status < 500) alert(e.message); });
  }
  function note() {
    var text = $("reply").value.trim(); if (!text || !state.current) return;
    $("reply").value = "";
    api("POST", "/handoffs/" + encodeURIComponent(state.current) + "/notes", { text: text }).then(function () { openHandoff(state.current, true); });
  }
  function act(path, body) {
    if (!state.current) return;
    api("POST", "/handoffs/" + encodeURIComponent(state.current) + path, body || {})
      .then(function () { refreshLists(); openHandoff(state.current, true); })
      .catch(function (e) { alert(e.message); refresh(); });
  }
  function transfer() {
    var v = $("transfer-to").value; if (!v) return;
    var parts = v.split(":");
    act("/transfer", parts[0] === "agent" ? { agent_id: parts[1] } : { skill: parts[1] });
  }

  document.addEventListener("DOMContentLoaded", function () {
    applyI18n();
    $("login-form").addEventListener("submit", login);
    $("reply-form").addEventListener("submit", send);
    $("note").onclick = note;
    $("claim").onclick = function () { act("/claim"); };
    $("resolve").onclick = function () { act("/resolve"); };
    $("transfer").onclick = transfer;
    $("logout").onclick = logout;
    $("lang-toggle").onclick = toggleLang; $("lang-toggle-login").onclick = toggleLang;
    $("status").onchange = function () { api("POST", "/status", { status: $("status").value }).then(refreshLists); };
    $("reply").addEventListener("keydown", function (e) { if (e.key === "Enter" && !e.shiftKey) send(e); });
    if (state.token) start();
  });
  window.KefuConsole = { state: state, refresh: refresh, isLive: function () { return !!(state.live && state.ws && state.ws.readyState === 1); } };
})();
