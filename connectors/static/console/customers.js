/* kefu agent console — Customer 360 panel (docs/customers.md).
 * Listens for "kefu:conversation" (console.js fires it when a conversation opens), looks the
 * conversation's customer up with the console's own login token, and shows the computed profile,
 * tags, the health score with its explanation and trend, and one paginated timeline.
 * Everything is rendered with textContent: no customer data is ever parsed as HTML. */
(function () {
  "use strict";
  var I18N = {
    en: { title: "Customer 360", unknown: "No customer record for this conversation yet.", health: "Health",
      why: "Why", trend: "Trend", timeline: "Timeline", more: "Older…", tags: "Tags", identities: "Identities",
      orders: "Orders", ltv: "Lifetime value", aov: "Avg order", lastOrder: "Days since last order",
      categories: "Preferred categories", price: "Price sensitivity", returns: "Return rate", channel: "Preferred channel",
      contacts: "Contacts (90 days)", sentiment: "Recent sentiment", csat: "CSAT", open: "Open handoffs / complaints",
      healthy: "healthy", watch: "watch", at_risk: "at risk" },
    zh: { title: "客户 360", unknown: "该会话暂无客户档案。", health: "健康度", why: "原因", trend: "趋势",
      timeline: "时间线", more: "更早…", tags: "标签", identities: "身份", orders: "订单数", ltv: "累计消费",
      aov: "客单价", lastOrder: "距上次下单（天）", categories: "偏好品类", price: "价格敏感度", returns: "退货率",
      channel: "常用渠道", contacts: "近 90 天咨询次数", sentiment: "近期情绪", csat: "满意度",
      open: "未结转人工 / 投诉", healthy: "健康", watch: "关注", at_risk: "流失风险" }
  };
  var state = { token: null, lang: "en", customer: null, next: null, seq: 0 };
  function T(k) { return (I18N[state.lang] || I18N.en)[k] || k; }
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
  function yuan(cents) { return cents == null ? "—" : "¥" + (cents / 100).toFixed(2); }
  function fmt(ts) { var d = new Date(ts * 1000); return d.toISOString().slice(0, 16).replace("T", " "); }
  function api(path) {
    return fetch(path, { headers: { "Authorization": "Bearer " + state.token } }).then(function (res) {
      return res.json().then(function (d) { if (!res.ok) { var e = new Error(d.message || res.status); e.status = res.status; throw e; } return d; });
    });
  }
  function panel() {
    var box = document.getElementById("c360");
    if (!box) {
      box = el("section", "c360"); box.id = "c360";
      var host = document.querySelector("aside.profile") || document.body;
      host.appendChild(box);
    }
    return box;
  }
  function sparkline(points) {
    var ns = "http://www.w3.org/2000/svg", w = 200, h = 40;
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h); svg.setAttribute("class", "c360-trend"); svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", T("trend") + ": " + points.map(function (p) { return Math.round(p.score); }).join(", "));
    if (points.length < 2) return svg;
    var d = points.map(function (p, i) {
      var x = (i / (points.length - 1)) * (w - 4) + 2, y = h - 2 - (p.score / 100) * (h - 4);
      return (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
    }).join(" ");
    var path = document.createElementNS(ns, "path"); path.setAttribute("d", d); svg.appendChild(path);
    return svg;
  }
  function row(dl, k, v) { dl.appendChild(el("dt", null, T(k))); dl.appendChild(el("dd", null, v == null || v === "" ? "—" : String(v))); }
  function render(c) {
    var box = panel(); box.innerHTML = ""; box.hidden = false;
    box.appendChild(el("h2", null, T("title")));
    var head = el("div", "c360-health band-" + (c.health_band || "none"));
    head.appendChild(el("span", "c360-score", c.health_score == null ? "—" : String(Math.round(c.health_score))));
    head.appendChild(el("span", "c360-band", T("health") + " · " + T(c.health_band || "")));
    box.appendChild(head);
    var hist = c.health_history || [];
    box.appendChild(sparkline(hist.slice(-30)));
    var why = el("ul", "c360-why"); why.setAttribute("aria-label", T("why"));
    ((c.health && c.health.factors) || []).forEach(function (f) {
      var li = el("li", f.contribution >= 0 ? "up" : "down");
      li.textContent = (f.contribution >= 0 ? "▲ " : "▼ ") + f.label + " (" + (f.value == null ? "—" : f.value) + ") " +
        (f.contribution >= 0 ? "+" : "") + f.contribution.toFixed(1);
      why.appendChild(li);
    });
    box.appendChild(why);
    var alerts = el("ul", "c360-alerts"); alerts.id = "c360-alerts"; box.appendChild(alerts);
    api("/customers/alerts?limit=200").then(function (d) {  // health.yml threshold actions for this customer
      (d.alerts || []).filter(function (a) { return a.customer_id === c.id; }).slice(0, 3).forEach(function (a) {
        alerts.appendChild(el("li", null, "⚠ " + (a.detail.message || a.rule) + " · " + fmt(a.at) +
          (a.detail.skill_group ? " → " + a.detail.skill_group : "")));
      });
    }).catch(function () {});
    var tags = el("div", "c360-tags");
    (c.tags || []).forEach(function (t) { tags.appendChild(el("span", "tag c360-tag", t)); });
    box.appendChild(tags);
    var p = c.profile || {}, dl = el("dl", "c360-profile");
    row(dl, "orders", p.order_count); row(dl, "ltv", yuan(p.lifetime_value)); row(dl, "aov", yuan(p.aov));
    row(dl, "lastOrder", p.days_since_last_order); row(dl, "categories", (p.preferred_categories || []).join(", "));
    row(dl, "price", p.price_sensitivity); row(dl, "returns", p.return_rate); row(dl, "channel", p.preferred_channel);
    row(dl, "contacts", p.contacts_90d); row(dl, "sentiment", p.recent_sentiment == null ? null : Number(p.recent_sentiment).toFixed(2));
    row(dl, "csat", p.csat_avg); row(dl, "open", (p.open_handoffs || 0) + " / " + (p.open_complaints || 0));
    row(dl, "identities", (c.identities || []).map(function (i) { return i.kind; }).join(", "));
    box.appendChild(dl);
    box.appendChild(el("h3", null, T("timeline")));
    var ol = el("ol", "c360-timeline"); ol.id = "c360-timeline"; box.appendChild(ol);
    var more = el("button", "c360-more", T("more")); more.type = "button"; more.id = "c360-more"; more.hidden = true;
    more.onclick = function () { loadTimeline(false); };
    box.appendChild(more);
  }
  function describe(item) {
    var d = item.data || {};
    switch (item.type) {
      case "conversation_started": return (d.channel || "") + " · " + (d.conversation_id || "");
      case "order_paid": return (d.order_id || "") + " " + yuan(d.total_cents);
      case "handoff_requested": return (d.reason || "") + (d.summary ? " — " + d.summary : "");
      case "handoff_resolved": return d.duration_s != null ? Math.round(d.duration_s / 60) + " min" : "";
      case "csat_submitted": return "★".repeat(Math.max(0, Math.min(5, d.rating || 0)));
      case "health_changed": return (d.from || "—") + " → " + d.to + " (" + Math.round(d.score) + ")";
      case "proactive_send": return (d.journey || "") + "/" + (d.step || "") + " · " + (d.outcome || "") + (d.reason ? " (" + d.reason + ")" : "");
      case "tags_changed": return (d.added || []).map(function (t) { return "+" + t; }).concat((d.removed || []).map(function (t) { return "−" + t; })).join(" ");
      default: return d.order_id || d.sku || d.journey || "";
    }
  }
  function loadTimeline(first) {
    var c = state.customer, seq = state.seq;
    if (!c) return;
    var path = "/customers/" + encodeURIComponent(c.id) + "/timeline?limit=20" + (!first && state.next ? "&before=" + encodeURIComponent(state.next) : "");
    api(path).then(function (page) {
      if (seq !== state.seq) return;  // another conversation opened meanwhile
      var ol = document.getElementById("c360-timeline");
      page.items.forEach(function (item) {
        var li = el("li", "c360-item type-" + item.type);
        li.appendChild(el("time", null, fmt(item.ts)));
        li.appendChild(el("span", "c360-type", item.type));
        li.appendChild(el("span", "c360-detail", describe(item)));
        ol.appendChild(li);
      });
      state.next = page.next;
      document.getElementById("c360-more").hidden = !page.next;
    }).catch(function () {});
  }
  function open(detail) {
    state.token = detail.token; state.lang = detail.lang || state.lang; state.seq += 1;
    var seq = state.seq;
    api("/customers/lookup?kind=conversation&value=" + encodeURIComponent(detail.conversation_id)).then(function (c) {
      if (seq !== state.seq) return;
      state.customer = c; state.next = null;
      render(c); loadTimeline(true);
    }).catch(function (e) {
      if (seq !== state.seq) return;
      state.customer = null;
      var box = panel(); box.innerHTML = ""; box.hidden = false;
      box.appendChild(el("h2", null, T("title")));
      box.appendChild(el("p", "c360-empty", e.status === 404 ? T("unknown") : String(e.message)));
    });
  }
  document.addEventListener("kefu:conversation", function (ev) { if (ev.detail && ev.detail.conversation_id) open(ev.detail); });
  // Health alerts live (health.yml notify_agents, pushed through the console's websocket as
  // {"type": "customer_alert"}): a banner anyone the server sent it to sees, and the open
  // customer's alert list gets the line at once.
  var NOTICE = { en: "Customer alert", zh: "客户预警" };
  function banner() {
    var box = document.getElementById("c360-live");
    if (!box) {
      box = el("ul", "c360-live"); box.id = "c360-live"; box.setAttribute("role", "status");
      box.style.cssText = "position:fixed;right:12px;bottom:12px;max-width:360px;margin:0;padding:0;list-style:none;z-index:50";
      document.body.appendChild(box);
    }
    return box;
  }
  document.addEventListener("kefu:console-event", function (ev) {
    var a = ev.detail;
    if (!a || a.type !== "customer_alert") return;
    var text = "⚠ " + (a.message || a.rule) + " · " + T(a.band || "") + (a.score == null ? "" : " (" + Math.round(a.score) + ")") +
      (a.skill_group ? " → " + a.skill_group : "");
    var li = el("li", "c360-live-alert band-" + (a.band || "none"));
    li.dataset.customer = a.customer_id; li.dataset.rule = a.rule;
    li.style.cssText = "background:#fff4e5;border:1px solid #f0b44c;border-radius:8px;padding:8px 10px;margin-top:6px;font-size:13px";
    li.appendChild(el("strong", null, (NOTICE[state.lang] || NOTICE.en) + ": "));
    li.appendChild(el("span", null, text + " · " + a.customer_id));
    var box = banner(); box.appendChild(li);
    while (box.children.length > 5) box.removeChild(box.firstChild);
    if (state.customer && state.customer.id === a.customer_id) {
      var list = document.getElementById("c360-alerts");
      if (list) list.insertBefore(el("li", null, text + " · " + fmt(a.at)), list.firstChild);
    }
  });
})();
