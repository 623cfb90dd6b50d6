/* kefu agent console add-on: a compensation coupon for the open conversation (#20).
 * The server decides what the agent may give: the role comes from the login, the limits from the
 * project's `ports: compensation` (shop.yml), one coupon per conversation. The code reaches the
 * shopper as an agent reply, so it shows up in the transcript like any other message. */
(function () {
  "use strict";
  var TEXT = {
    en: { button: "Compensation coupon", amount: "Amount", sent: "Coupon {code} sent ({amount}).",
      already: "This case already has coupon {code}.", failed: "Not issued: " },
    zh: { button: "发补偿券", amount: "金额", sent: "已发送补偿券 {code}（{amount}）。",
      already: "本会话已发过补偿券 {code}。", failed: "未发放：" }
  };
  function kc() { return window.KefuConsole || { state: {} }; }
  function T(key) { var s = kc().state; return (TEXT[s.lang] || TEXT.en)[key]; }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) e.textContent = text;
    return e;
  }

  var box = null, current = null;
  function render(h) {
    var head = document.querySelector("#conversation .chat-head");
    if (!head) return;
    if (!box) {
      box = el("span", { id: "compensation", "class": "compensation" });
      box.style.cssText = "display:inline-flex;gap:4px;align-items:center";
      var input = el("input", { id: "compensation-amount", type: "number", min: "1", step: "1", value: "10" });
      input.style.width = "5em";
      var button = el("button", { type: "button", id: "compensation-send" });
      var result = el("span", { id: "compensation-result", role: "status" });
      result.style.fontSize = "13px";
      button.onclick = send;
      box.appendChild(input); box.appendChild(button); box.appendChild(result);
      head.appendChild(box);
    }
    if (!current || current.id !== h.id) document.getElementById("compensation-result").textContent = "";
    current = h;
    var me = kc().state.me || {};
    var mayAct = h.status === "assigned" && (h.agent_id === me.id || (me.role && me.role !== "agent"));
    box.hidden = !(h.customer_id && mayAct);
    document.getElementById("compensation-amount").setAttribute("aria-label", T("amount"));
    document.getElementById("compensation-send").textContent = T("button");
  }

  function send() {
    if (!current) return;
    var button = document.getElementById("compensation-send");
    var result = document.getElementById("compensation-result");
    var amount = Number(document.getElementById("compensation-amount").value);
    button.disabled = true;
    fetch("/handoff/api/handoffs/" + encodeURIComponent(current.id) + "/compensation", {
      method: "POST",
      headers: { "Authorization": "Bearer " + kc().state.token, "Content-Type": "application/json" },
      body: JSON.stringify({ amount: amount })
    }).then(function (res) {
      return res.json().then(function (data) {
        if (!res.ok) { result.className = "error"; result.textContent = T("failed") + (data.message || res.status); return; }
        result.className = "ok";
        result.textContent = T(data["new"] ? "sent" : "already").replace("{code}", data.coupon_code)
          .replace("{amount}", (data.amount_cents / 100).toFixed(2));
        if (kc().refresh) kc().refresh();
      });
    }).catch(function (e) { result.className = "error"; result.textContent = T("failed") + e.message; })
      .then(function () { button.disabled = false; });
  }

  document.addEventListener("kefu:handoff", function (ev) { render(ev.detail); });
})();
