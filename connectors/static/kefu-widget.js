/*
 * kefu chat widget: one <script> tag, no build step, no dependencies.
 *
 *   <script src="https://bot.example/webhooks/socketio/widget.js"
 *           data-lang="zh" data-title="Sports shop" defer></script>
 *
 * Speaks kefu's socketio channel (Rasa's socket.io protocol plus message ids,
 * replay and typing) through a minimal Engine.IO v4 / Socket.IO v5 client over
 * a WebSocket. The server issues the session id (session_confirm); the widget
 * keeps it in localStorage and proposes it again on every (re)connect, asking
 * for the messages after the last seq it has shown, so a reload restores the
 * conversation and a dropped connection loses and duplicates nothing. When the
 * server answers with another id (it did not issue the stored one, or the
 * shopper signed in or out) the widget starts a fresh conversation view.
 *
 * A signed-in shopper: the shop's page passes a token its server signed
 * (docs/channels.md), before the script:
 *   window.KefuWidgetConfig = { identityToken: "<jwt>" };
 * or as data-identity-token="<jwt>", or later: window.KefuWidget.identify("<jwt>").
 * Licence: same as kefu.
 */
(function () {
  "use strict";
  if (window.KefuWidget) return;

  var script = document.currentScript || (function () {
    var all = document.getElementsByTagName("script");
    for (var i = all.length - 1; i >= 0; i--) {
      if (/widget\.js/.test(all[i].src)) return all[i];
    }
    return null;
  })();
  var MAX_RETRIES = 6;  // re-sends of a message the server could not take (a store down): 1+2+4+8+10+10 s
  var defaults = window.KEFU_CHANNEL_DEFAULTS || {};
  var options = window.KefuWidgetConfig || {};
  var data = (script && script.dataset) || {};
  var scriptUrl = new URL((script && script.src) || window.location.href, window.location.href);
  var serverUrl = data.server || scriptUrl.origin;
  var config = {
    server: serverUrl.replace(/\/$/, ""),
    socketPath: data.socketPath || defaults.socketPath || "/socket.io",
    namespace: data.namespace || defaults.namespace || "",
    userEvent: data.userEvent || defaults.userEvent || "user_uttered",
    botEvent: data.botEvent || defaults.botEvent || "bot_uttered",
    storageKey: "kefu:" + (data.storageKey || serverUrl),
    title: data.title || "",
    open: data.open === "true",
    initPayload: data.initPayload || "",
    token: data.token || "",         // a JWT when the channel sets jwt_key
    identityToken: options.identityToken || data.identityToken || ""  // the shop-signed shopper identity
  };
  if (config.namespace === "/") config.namespace = "";
  var staticBase = config.server + "/webhooks/socketio/";

  // ------------------------------------------------------------------ i18n
  var TEXTS = {
    en: {
      title: "Customer service", placeholder: "Type a message…", send: "Send",
      open: "Chat with us", close: "Close", connecting: "Connecting…",
      offline: "Offline – reconnecting…", typing: "typing", rate: "Rate this conversation",
      thanks: "Thank you for your rating!", stars: "stars", comment: "Anything to add?", skip: "Skip", image: "Image", error: "Could not send. Retrying…",
      notSent: "Not sent. Tap to try again.",
      refused: "Could not confirm who you are. Please reload the page or sign in again."
    },
    zh: {
      title: "在线客服", placeholder: "输入消息…", send: "发送",
      open: "联系客服", close: "关闭", connecting: "连接中…",
      offline: "网络断开，正在重连…", typing: "正在输入", rate: "请为本次服务评分",
      thanks: "感谢您的评价！", stars: "星", comment: "还有什么想告诉我们的吗？", skip: "跳过", image: "图片", error: "发送失败，正在重试…",
      notSent: "未发送，点击重试。",
      refused: "无法确认您的身份，请刷新页面或重新登录。"
    }
  };
  var lang = (data.lang || navigator.language || "en").toLowerCase().indexOf("zh") === 0 ? "zh" : "en";
  var T = TEXTS[lang];

  // ------------------------------------------------------------------ storage
  function load() {
    try { return JSON.parse(localStorage.getItem(config.storageKey) || "{}"); } catch (e) { return {}; }
  }
  function save() {
    try {
      localStorage.setItem(config.storageKey, JSON.stringify({
        sessionId: state.sessionId, open: state.open, pending: state.pending
      }));
    } catch (e) { /* private mode: the session lasts as long as the page */ }
  }
  var stored = load();
  var state = {
    sessionId: stored.sessionId || null,
    open: stored.open === undefined ? config.open : !!stored.open,
    pending: stored.pending || [],   // user messages not yet acknowledged by the server
    lastSeq: 0,                      // highest seq shown; replay asks for what follows
    seen: {},                        // message_id -> true, to drop duplicates
    unread: 0,
    connected: false,
    confirmed: false                 // the server confirmed a session on this connection
  };

  function uid() {
    var a = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // ------------------------------------------------------------------ socket
  // Engine.IO v4 packets: 0 open, 1 close, 2 ping, 3 pong, 4 message.
  // Socket.IO v5 packets inside "4": 0 connect, 1 disconnect, 2 event, 3 ack, 4 connect_error.
  function Socket(onEvent, onStatus) {
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.acks = {};
    this.nextAck = 1;
    this.retry = 0;
    this.ready = false;
    this.closedByUs = false;
  }
  Socket.prototype.url = function () {
    var base = config.server.replace(/^http/, "ws");
    var path = config.socketPath.replace(/\/$/, "");
    return base + path + "/?EIO=4&transport=websocket";
  };
  Socket.prototype.nsp = function () { return config.namespace ? config.namespace + "," : ""; };
  Socket.prototype.connect = function () {
    var self = this;
    self.ready = false;
    self.onStatus("connecting");
    var ws;
    try { ws = new WebSocket(self.url()); } catch (e) { self.scheduleReconnect(); return; }
    self.ws = ws;
    ws.onmessage = function (ev) { self.handle(String(ev.data)); };
    ws.onclose = function () {
      clearTimeout(self.heartbeat);
      var wasReady = self.ready;
      self.ready = false;
      self.failAcks();
      if (ws === self.ws && !self.closedByUs) {
        self.onStatus("offline", wasReady);
        self.scheduleReconnect();
      }
    };
    ws.onerror = function () { try { ws.close(); } catch (e) { /* ignore */ } };
  };
  Socket.prototype.failAcks = function () {
    var acks = this.acks;
    this.acks = {};
    Object.keys(acks).forEach(function (id) { acks[id](null); });
  };
  Socket.prototype.scheduleReconnect = function () {
    var self = this;
    var delay = Math.min(10000, 500 * Math.pow(2, self.retry++)) + Math.random() * 300;
    clearTimeout(self.reconnectTimer);
    self.reconnectTimer = setTimeout(function () { self.connect(); }, delay);
  };
  Socket.prototype.drop = function () {  // for tests: simulate a network drop
    if (this.ws) this.ws.close();
  };
  Socket.prototype.armHeartbeat = function () {
    var self = this;
    clearTimeout(self.heartbeat);
    self.heartbeat = setTimeout(function () { if (self.ws) self.ws.close(); },
      (self.pingInterval || 25000) + (self.pingTimeout || 20000));
  };
  Socket.prototype.handle = function (packet) {
    var type = packet.charAt(0);
    if (type === "0") {
      var open = JSON.parse(packet.slice(1));
      this.pingInterval = open.pingInterval;
      this.pingTimeout = open.pingTimeout;
      this.armHeartbeat();
      this.ws.send("40" + this.nsp() + (config.token ? JSON.stringify({ token: config.token }) : ""));
    } else if (type === "2") {
      this.armHeartbeat();
      this.ws.send("3");
    } else if (type === "4") {
      this.handleSocketIO(packet.slice(1));
    }
  };
  Socket.prototype.handleSocketIO = function (body) {
    var kind = body.charAt(0);
    var rest = body.slice(1);
    if (config.namespace && rest.indexOf(config.namespace + ",") === 0) {
      rest = rest.slice(config.namespace.length + 1);
    }
    if (kind === "0") {
      this.ready = true;
      this.retry = 0;
      this.onStatus("connected");
    } else if (kind === "2" || kind === "3") {
      var m = /^(\d*)(.*)$/.exec(rest);
      var args = JSON.parse(m[2] || "[]");
      if (kind === "2") {
        this.onEvent(args[0], args[1]);
      } else if (this.acks[m[1]]) {
        var cb = this.acks[m[1]];
        delete this.acks[m[1]];
        cb(args[0]);
      }
    } else if (kind === "4") {
      this.onStatus("refused");
    }
  };
  Socket.prototype.emit = function (event, payload, ack) {
    if (!this.ready) return false;
    var id = "";
    if (ack) { id = String(this.nextAck++); this.acks[id] = ack; }
    this.ws.send("42" + this.nsp() + id + JSON.stringify([event, payload]));
    return true;
  };

  // ------------------------------------------------------------------ DOM helpers
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function safeUrl(url) {
    if (/^data:image\//.test(String(url))) return String(url);
    try {
      var u = new URL(String(url), config.server + "/");
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) { return null; }
  }
  function linkify(text, into) {
    var re = /(https?:\/\/[^\s<>"']+)|\[([^\]]+)\]\((https?:\/\/[^)\s]+)\)/g;
    var last = 0, m;
    text = String(text);
    while ((m = re.exec(text))) {
      if (m.index > last) into.appendChild(document.createTextNode(text.slice(last, m.index)));
      var a = el("a", "kefu-link", m[2] || m[1]);
      a.href = m[3] || m[1];
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      into.appendChild(a);
      last = re.lastIndex;
    }
    if (last < text.length) into.appendChild(document.createTextNode(text.slice(last)));
  }
  function clock(ts) {
    var d = ts ? new Date(ts * 1000) : new Date();
    return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
  }

  // ------------------------------------------------------------------ UI
  var root, panel, log, input, statusBar, badge, typingRow, launcher;

  function injectCss() {
    if (document.getElementById("kefu-widget-css")) return;
    var link = document.createElement("link");
    link.id = "kefu-widget-css";
    link.rel = "stylesheet";
    link.href = staticBase + "widget.css";
    document.head.appendChild(link);
  }

  function build() {
    injectCss();
    root = el("div", "kefu-root");
    root.setAttribute("lang", lang === "zh" ? "zh-CN" : "en");
    launcher = el("button", "kefu-launcher");
    launcher.type = "button";
    launcher.setAttribute("aria-label", T.open);
    var icon = el("span", "kefu-launcher-icon");
    icon.innerHTML = '<svg width="20" height="20" viewBox="0 0 24 24" aria-hidden="true">' +
      '<path fill="currentColor" d="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"/></svg>';
    launcher.appendChild(icon);
    launcher.appendChild(el("span", "kefu-launcher-text", T.open));
    badge = el("span", "kefu-badge");
    badge.hidden = true;
    launcher.appendChild(badge);
    launcher.onclick = function () { setOpen(true); };

    panel = el("section", "kefu-panel");
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", config.title || T.title);
    var header = el("header", "kefu-header");
    header.appendChild(el("span", "kefu-title", config.title || T.title));
    var close = el("button", "kefu-close", "×");
    close.type = "button";
    close.setAttribute("aria-label", T.close);
    close.onclick = function () { setOpen(false); };
    header.appendChild(close);
    statusBar = el("div", "kefu-status", T.connecting);
    log = el("div", "kefu-log");
    log.setAttribute("aria-live", "polite");
    typingRow = el("div", "kefu-row kefu-bot kefu-typing");
    var dots = el("div", "kefu-bubble");
    dots.setAttribute("aria-label", T.typing);
    dots.appendChild(el("span", "kefu-dot"));
    dots.appendChild(el("span", "kefu-dot"));
    dots.appendChild(el("span", "kefu-dot"));
    typingRow.appendChild(dots);
    typingRow.hidden = true;
    var form = el("form", "kefu-form");
    input = el("input", "kefu-input");
    input.type = "text";
    input.placeholder = T.placeholder;
    input.setAttribute("aria-label", T.placeholder);
    input.maxLength = 2000;
    var send = el("button", "kefu-send", T.send);
    send.type = "submit";
    form.appendChild(input);
    form.appendChild(send);
    form.onsubmit = function (ev) {
      ev.preventDefault();
      var text = input.value.trim();
      if (!text) return;
      input.value = "";
      sendUser(text, null);
    };
    panel.appendChild(header);
    panel.appendChild(statusBar);
    panel.appendChild(log);
    panel.appendChild(form);
    log.appendChild(typingRow);
    root.appendChild(panel);
    root.appendChild(launcher);
    document.body.appendChild(root);
    setOpen(state.open);
  }

  function setOpen(open) {
    state.open = open;
    root.classList.toggle("kefu-is-open", open);
    if (open) {
      state.unread = 0;
      badge.hidden = true;
      scrollDown();
      setTimeout(function () { input.focus(); }, 0);
    }
    save();
  }

  function setStatus(kind) {
    statusBar.dataset.state = kind;
    statusBar.textContent = kind === "connected" ? "" : kind === "offline" ? T.offline
      : kind === "refused" ? T.refused : T.connecting;
    root.classList.toggle("kefu-is-online", kind === "connected");
  }

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function setTyping(on) {
    typingRow.hidden = !on;
    log.appendChild(typingRow);  // keep it last
    if (on) scrollDown();
  }

  function buttonRow(buttons, cls) {
    var row = el("div", cls || "kefu-buttons");
    (buttons || []).forEach(function (b) {
      var title = b.title || b.payload || "";
      var url = b.url && safeUrl(b.url);
      if (url || b.type === "web_url") {
        var a = el("a", "kefu-button kefu-button-link", title);
        a.href = url || "#";
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        row.appendChild(a);
        return;
      }
      var btn = el("button", "kefu-button", title);
      btn.type = "button";
      btn.onclick = function () { sendUser(b.payload || title, title); };
      row.appendChild(btn);
    });
    return row;
  }

  function productCard(card) {
    var box = el("div", "kefu-card");
    var img = card.image_url && safeUrl(card.image_url);
    if (img) {
      var image = el("img", "kefu-card-image");
      image.src = img;
      image.alt = card.title || T.image;
      image.loading = "lazy";
      box.appendChild(image);
    }
    var body = el("div", "kefu-card-body");
    var title = el("div", "kefu-card-title");
    var link = card.url && safeUrl(card.url);
    if (link) {
      var a = el("a", "kefu-link", card.title || link);
      a.href = link; a.target = "_blank"; a.rel = "noopener noreferrer";
      title.appendChild(a);
    } else {
      title.textContent = card.title || "";
    }
    body.appendChild(title);
    if (card.subtitle) body.appendChild(el("div", "kefu-card-subtitle", card.subtitle));
    if (card.price !== undefined && card.price !== null) body.appendChild(el("div", "kefu-card-price", card.price));
    box.appendChild(body);
    if (card.buttons && card.buttons.length) box.appendChild(buttonRow(card.buttons, "kefu-card-buttons"));
    return box;
  }

  function csat(custom) {
    var box = el("div", "kefu-csat");
    box.appendChild(el("div", "kefu-csat-text", custom.text || T.rate));
    var stars = el("div", "kefu-stars");
    var max = Math.min(10, Math.max(2, parseInt(custom.scale, 10) || 5));
    var min = custom.min === 0 ? 0 : 1;
    var numeric = min === 0 || max !== 5;  // NPS 0-10, CES 1-7: numbered buttons instead of stars
    var intent = custom.intent || "csat";
    var entity = custom.entity || "rating";
    for (var i = min; i <= max; i++) {
      (function (value) {
        var star = el("button", numeric ? "kefu-star kefu-score" : "kefu-star", numeric ? String(value) : "★");
        star.type = "button";
        star.setAttribute("aria-label", value + " " + T.stars);
        star.dataset.value = String(value);
        star.onclick = function () {
          if (box.classList.contains("kefu-rated")) return;
          box.classList.add("kefu-rated");
          Array.prototype.forEach.call(stars.children, function (s) {
            var v = parseInt(s.dataset.value, 10);
            s.classList.toggle("kefu-star-on", numeric ? v === value : v <= value);
            s.disabled = true;
          });
          var entities = {};
          entities[entity] = value;
          sendUser("/" + intent + JSON.stringify(entities), numeric ? String(value) : new Array(value + 1).join("★"));
          box.appendChild(el("div", "kefu-csat-thanks", T.thanks));
        };
        stars.appendChild(star);
      })(i);
    }
    box.appendChild(stars);
    return box;
  }

  // The conversation-end survey's optional comment: sent as /survey_comment{"comment": "..."}.
  function surveyComment(custom) {
    var box = el("div", "kefu-csat kefu-survey-comment");
    box.appendChild(el("div", "kefu-csat-text", custom.text || T.comment));
    var area = el("textarea", "kefu-comment");
    area.rows = 2; area.maxLength = 2000; area.placeholder = T.comment;
    var row = el("div", "kefu-comment-buttons");
    var send = el("button", "kefu-comment-send", T.send);
    var skip = el("button", "kefu-comment-skip", T.skip);
    send.type = "button"; skip.type = "button";
    function done(comment) {
      if (box.classList.contains("kefu-rated")) return;
      box.classList.add("kefu-rated");
      area.disabled = true; send.disabled = true; skip.disabled = true;
      var payload = {};
      payload[custom.entity || "comment"] = comment;
      sendUser("/" + (custom.intent || "survey_comment") + JSON.stringify(payload), comment || T.skip);
    }
    send.onclick = function () { var v = area.value.trim(); if (v) done(v); };
    skip.onclick = function () { done(""); };
    box.appendChild(area);
    row.appendChild(send); row.appendChild(skip);
    box.appendChild(row);
    return box;
  }

  function renderBot(m, bubble) {
    var any = false;
    if (m.text) { linkify(m.text, bubble); any = true; }
    var att = m.attachment;
    if (att && att.type === "image" && att.payload && safeUrl(att.payload.src)) {
      var img = el("img", "kefu-image");
      img.src = safeUrl(att.payload.src);
      img.alt = T.image;
      bubble.appendChild(img);
      any = true;
    } else if (att && att.type === "template" && att.payload && att.payload.elements) {
      var els = [].concat(att.payload.elements);
      els.forEach(function (e) { bubble.appendChild(productCard(e)); });
      any = true;
    } else if (att && typeof att === "object") {
      var url = safeUrl(att.url || (att.payload && att.payload.src) || "");
      if (url) { var a = el("a", "kefu-link", url); a.href = url; a.target = "_blank"; a.rel = "noopener noreferrer"; bubble.appendChild(a); any = true; }
    }
    var custom = m.custom;
    if (custom && custom.type === "product_card") {
      bubble.appendChild(productCard(custom)); any = true;
    } else if (custom && custom.type === "product_list" && custom.products) {
      custom.products.forEach(function (p) { bubble.appendChild(productCard(p)); });
      any = true;
    } else if (custom && custom.type === "csat") {
      bubble.appendChild(csat(custom)); any = true;
    } else if (custom && custom.type === "survey_comment") {
      bubble.appendChild(surveyComment(custom)); any = true;
    } else if (custom && custom.text) {
      linkify(custom.text, bubble); any = true;
    }
    var buttons = m.quick_replies || m.buttons;
    if (buttons && buttons.length) { bubble.appendChild(buttonRow(buttons)); any = true; }
    return any;
  }

  function addMessage(m, live) {
    if (m.message_id) {
      if (state.seen[m.message_id]) {
        var known = log.querySelector('[data-message-id="' + m.message_id + '"]');
        if (known && m.seq) known.dataset.seq = String(m.seq);
        if (m.seq > state.lastSeq) state.lastSeq = m.seq;
        return;
      }
      state.seen[m.message_id] = true;
    }
    if (m.seq > state.lastSeq) state.lastSeq = m.seq;
    var sender = m.sender === "user" ? "user" : "bot";
    var row = el("div", "kefu-row kefu-" + sender);
    if (m.message_id) row.dataset.messageId = m.message_id;
    if (m.seq) row.dataset.seq = String(m.seq);
    var bubble = el("div", "kefu-bubble");
    if (sender === "user") {
      linkify(m.display || m.text || "", bubble);
    } else if (!renderBot(m, bubble)) {
      return;  // a message kind this widget does not render
    }
    row.appendChild(bubble);
    row.appendChild(el("time", "kefu-time", clock(m.timestamp)));
    // keep seq order: insert before the first row with a higher seq
    var before = typingRow;
    if (m.seq) {
      var rows = log.querySelectorAll(".kefu-row[data-seq]");
      for (var i = 0; i < rows.length; i++) {
        if (parseInt(rows[i].dataset.seq, 10) > m.seq) { before = rows[i]; break; }
      }
    }
    log.insertBefore(row, before);
    if (live && sender === "bot" && !state.open) {
      state.unread += 1;
      badge.textContent = String(state.unread);
      badge.hidden = false;
    }
    scrollDown();
  }

  // ------------------------------------------------------------------ protocol
  var socket = new Socket(onEvent, onStatus);

  function onStatus(kind) {
    setStatus(kind);
    state.connected = kind === "connected";
    state.confirmed = false;
    if (kind === "connected") requestSession();
  }

  function requestSession() {
    var request = { session_id: state.sessionId, last_seen_seq: state.lastSeq };
    if (config.identityToken) request.identity_token = config.identityToken;
    socket.emit("session_request", request);
  }

  function resetConversation() {
    // The server issued another session: what is shown belongs to the old one.
    Array.prototype.forEach.call(log.querySelectorAll(".kefu-row[data-message-id]"), function (row) {
      row.parentNode.removeChild(row);
    });
    state.seen = {};
    state.lastSeq = 0;
    state.pending.forEach(function (p) {
      if (!p.hidden) addMessage({ sender: "user", text: p.message, display: p.display, message_id: p.message_id, timestamp: p.timestamp }, false);
    });
  }

  function onEvent(name, payload) {
    if (name === "session_confirm") {
      var id = typeof payload === "string" ? payload : payload && payload.session_id;
      if (!id) return;
      var fresh = id !== state.sessionId;
      if (fresh) {
        if (state.sessionId) resetConversation();
        state.sessionId = id;
        save();
      }
      state.confirmed = true;
      setStatus("connected");
      flushPending();
      if (fresh && config.initPayload) sendUser(config.initPayload, null, true);
    } else if (name === "kefu_error") {
      setStatus("refused");
      try { window.dispatchEvent(new CustomEvent("kefu:error", { detail: payload })); } catch (e) { /* old browsers */ }
    } else if (name === "kefu_history") {
      (payload.messages || []).forEach(function (m) { addMessage(m, false); });
    } else if (name === config.botEvent) {
      setTyping(false);
      addMessage(payload || {}, true);
    } else if (name === "bot_typing") {
      setTyping(!!(payload && payload.typing));
    }
  }

  function sendUser(text, display, hidden) {
    var msg = { message: text, message_id: uid(), display: display || undefined, timestamp: Date.now() / 1000,
                hidden: hidden || undefined };
    if (!hidden) {
      addMessage({ sender: "user", text: text, display: display, message_id: msg.message_id, timestamp: msg.timestamp }, true);
    }
    state.pending.push(msg);
    save();
    flushPending();
  }

  // A user message the server has not taken: "retrying" while the widget re-sends it, "failed"
  // once it gave up (a button that queues it again, same message id); null clears the mark.
  // Returns the message's row (null when it has none, e.g. a hidden payload).
  function markSend(msg, how) {
    var row = log.querySelector('[data-message-id="' + msg.message_id + '"]');
    if (!row) return null;
    var note = row.querySelector(".kefu-send-state");
    row.classList.toggle("kefu-failed", how === "failed");
    if (!how) { if (note) row.removeChild(note); return row; }
    if (!note) {
      note = document.createElement("button");
      note.type = "button";
      note.className = "kefu-send-state";
      row.appendChild(note);
    }
    note.textContent = how === "failed" ? T.notSent : T.error;
    note.disabled = how !== "failed";
    note.onclick = how !== "failed" ? null : function () {
      msg.tries = 0;
      markSend(msg, "retrying");
      state.pending.push(msg);
      save();
      flushPending();
    };
    return row;
  }

  function flushPending() {
    if (!state.connected || !state.confirmed || !state.sessionId) return;
    state.pending.forEach(function (msg) {
      if (msg.inFlight) return;
      msg.inFlight = true;
      setTyping(true);
      var sent = socket.emit(config.userEvent, {
        message: msg.message, session_id: state.sessionId, message_id: msg.message_id,
        display: msg.display, metadata: { page: window.location.pathname, lang: lang }
      }, function (ack) {
        msg.inFlight = false;
        if (!ack) return;  // connection dropped: resent after reconnect, the server dedups
        if (ack.status === "error" && ack.retryable && (msg.tries = (msg.tries || 0) + 1) <= MAX_RETRIES) {
          // a store was down for a moment: re-send the same message id later (handled once)
          markSend(msg, "retrying");
          setTimeout(flushPending, Math.min(10000, 1000 * Math.pow(2, msg.tries - 1)));
          return;
        }
        state.pending = state.pending.filter(function (p) { return p.message_id !== msg.message_id; });
        save();
        if (ack.status === "error") {  // refused, or still failing after the re-sends: the shopper decides
          markSend(msg, "failed");
          setTyping(false);
          return;
        }
        var row = markSend(msg, null);
        if (row && ack.seq) {
          row.dataset.seq = String(ack.seq);
          if (ack.seq > state.lastSeq) state.lastSeq = ack.seq;
        }
        setTyping(false);
      });
      if (!sent) msg.inFlight = false;
    });
  }

  function start() {
    state.pending.forEach(function (p) { p.inFlight = false; });
    build();
    socket.connect();
  }

  window.KefuWidget = {
    open: function () { setOpen(true); },
    close: function () { setOpen(false); },
    send: function (text) { sendUser(text, null); },
    sessionId: function () { return state.sessionId; },
    // A shopper signed in (or the token was renewed): bind the session to them.
    identify: function (token) {
      config.identityToken = token || "";
      if (state.connected) { state.confirmed = false; requestSession(); }
    },
    lastSeq: function () { return state.lastSeq; },
    // messages the server has not taken yet (id, text, re-sends so far): a host page may warn
    pending: function () {
      return state.pending.map(function (m) { return { message_id: m.message_id, message: m.message, tries: m.tries || 0 }; });
    },
    isConnected: function () { return state.connected; },
    dropConnection: function () { socket.drop(); },
    config: config,
    lang: lang
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
