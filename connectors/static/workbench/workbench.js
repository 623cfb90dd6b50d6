/* kefu trainer workbench: inbox, annotation, conversation browser, models. Every action is an API call
   under /workbench/api (docs/workbench.md); the token stays in this tab's sessionStorage. */
(function () {
  "use strict";
  const T = {
    en: {
      title: "Trainer workbench", login: "Open", logout: "Log out", inbox: "Inbox", conversations: "Conversations",
      models: "Models", reason: "Reason", all: "All", refresh: "Refresh", search: "Text", intent: "Intent",
      channel: "Channel", customer: "Customer", anyCsat: "Any CSAT", anyHandoff: "Handoff?", withHandoff: "With handoff",
      noHandoff: "No handoff", filter: "Filter", train: "Train a candidate", rollback: "Roll back", model: "Model",
      trainedBy: "Trained by", dataVersion: "Data", accuracy: "Accuracy (held-out)", gate: "Gate",
      tokenHint: "Paste your token (python -m bot token create --role trainer)",
      messages: "messages", groups: "groups", scanned: "conversations scanned", assign: "Save as intent",
      newIntent: "or a new intent", markEntity: "Mark selection as", entity: "entity", addFaq: "Add as FAQ phrasing",
      dismiss: "Dismiss", suggested: "Suggested", faq: "FAQ", saved: "Saved to", rejected: "Not saved",
      saveStory: "Save as test story", activate: "Activate", override: "Override gate", passed: "passed",
      failed: "blocked", active: "active", training: "Training…", trainDone: "Candidate trained", empty: "Nothing to review.",
      perIntent: "Per-intent F1 (held-out)", confusions: "Confusions that changed", delta: "Δ", handoff: "handoff",
      newIntentCandidate: "new intent?", noSelection: "Select part of a message first.", loaded: "Loaded model",
      fallback: "fallback", low_confidence: "low confidence", kb_no_answer: "FAQ miss", kb_clarify: "FAQ clarify",
      low_csat: "low CSAT", unauthorized: "The token was refused.", testStories: "Test stories passed",
      sawHoldout: "The active model was trained outside the workbench and saw these held-out examples: its figures are optimistic. Activate a workbench-trained model once to compare fairly.",
    },
    zh: {
      title: "训练师工作台", login: "进入", logout: "退出", inbox: "待处理", conversations: "会话", models: "模型",
      reason: "原因", all: "全部", refresh: "刷新", search: "文本", intent: "意图", channel: "渠道", customer: "客户",
      anyCsat: "任意满意度", anyHandoff: "转人工?", withHandoff: "有转人工", noHandoff: "无转人工", filter: "筛选",
      train: "训练候选模型", rollback: "回滚", model: "模型", trainedBy: "训练人", dataVersion: "数据版本",
      accuracy: "准确率(留出集)", gate: "质量门", tokenHint: "粘贴令牌 (python -m bot token create --role trainer)",
      messages: "条消息", groups: "组", scanned: "个会话已扫描", assign: "标注为意图", newIntent: "或新意图",
      markEntity: "将选中文字标为", entity: "实体", addFaq: "加入常见问题问法", dismiss: "忽略", suggested: "建议",
      faq: "常见问题", saved: "已写入", rejected: "未保存", saveStory: "保存为测试故事", activate: "启用",
      override: "越过质量门", passed: "通过", failed: "未通过", active: "使用中", training: "训练中…",
      trainDone: "候选模型已训练", empty: "没有待处理的消息。", perIntent: "各意图 F1(留出集)",
      confusions: "变化的混淆", delta: "变化", handoff: "转人工", newIntentCandidate: "新意图?",
      noSelection: "请先选中消息中的文字。", loaded: "当前模型", fallback: "兜底", low_confidence: "低置信度",
      kb_no_answer: "知识库未答", kb_clarify: "知识库追问", low_csat: "低满意度", unauthorized: "令牌无效。", testStories: "测试故事通过",
      sawHoldout: "当前模型不是在工作台训练的,训练时见过这些留出样本,其分数偏高。先启用一次工作台训练的模型,之后的比较才公平。",
    },
  };
  let lang = localStorage.getItem("kefu-wb-lang") || ((navigator.language || "en").startsWith("zh") ? "zh" : "en");
  const t = (k) => (T[lang] && T[lang][k]) || T.en[k] || k;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null) node.setAttribute(k, v);
    }
    for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  };
  let project = { intents: [], entities: [], faq: [] };
  let loadedModel = null;
  const showLoaded = (name) => { if (name !== undefined) loadedModel = name; $("#loaded-model").textContent = `${t("loaded")}: ${loadedModel || "—"}`; };

  function applyI18n() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    $$("[data-i18n]").forEach((n) => { n.textContent = t(n.dataset.i18n); });
    $$("[data-i18n-placeholder]").forEach((n) => { n.placeholder = t(n.dataset.i18nPlaceholder); });
    showLoaded();
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + sessionStorage.getItem("kefu-wb-token") };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch("/workbench/api" + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await resp.json().catch(() => ({}));
    if (resp.status === 401) { logout(t("unauthorized")); throw new Error(t("unauthorized")); }
    if (!resp.ok) { const e = new Error(data.message || resp.statusText); e.data = data; e.status = resp.status; throw e; }
    return data;
  }

  function notice(text, bad) { const n = $("#notice"); n.textContent = text; n.classList.toggle("bad", !!bad); }

  function logout(message) {
    sessionStorage.removeItem("kefu-wb-token");
    $("#app").hidden = true; $("#login").hidden = false;
    $("#login-error").textContent = message || "";
  }

  // ------------------------------------------------------------------ inbox
  function highlighted(text, entities) {
    const span = el("span", { class: "msg-text" });
    let pos = 0;
    for (const e of [...entities].sort((a, b) => a.start - b.start)) {
      span.append(text.slice(pos, e.start), el("mark", { title: e.entity }, text.slice(e.start, e.end)));
      pos = e.end;
    }
    span.append(text.slice(pos));
    return span;
  }

  function selectionIn(node) {
    const sel = window.getSelection();
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed) return null;
    const range = sel.getRangeAt(0);
    if (!node.contains(range.startContainer) || !node.contains(range.endContainer)) return null;
    const pre = document.createRange();
    pre.selectNodeContents(node); pre.setEnd(range.startContainer, range.startOffset);
    const start = pre.toString().length;
    return { start, end: start + range.toString().length };
  }

  function messageRow(group, m) {
    const entities = [];
    let textNode = highlighted(m.text, entities);
    const holder = el("span", {}, textNode);
    const redraw = () => { const n = highlighted(m.text, entities); holder.replaceChildren(n); textNode = n; };
    const intentSel = el("select", { class: "intent-select" },
      project.intents.map((i) => el("option", { value: i }, i)));
    const best = (group.suggested_intents[0] || {}).intent;
    if (best) intentSel.value = best;
    const newIntent = el("input", { class: "new-intent", placeholder: t("newIntent"), size: 14 });
    const entitySel = el("select", { class: "entity-select" }, project.entities.map((e) => el("option", { value: e }, e)));
    const faqSel = el("select", { class: "faq-select" }, project.faq.map((f) => el("option", { value: f.id }, f.title || f.id)));
    const sug = (group.suggested_faq[0] || {}).id; if (sug) faqSel.value = sug;
    const row = el("li", { "data-text": m.text },
      el("span", { class: "tag" }, "×" + m.count), holder,
      el("span", { class: "nlu" }, `${m.intent || "?"} ${m.confidence}`),
      m.reasons.map((r) => el("span", { class: "tag" }, t(r))));
    const save = async () => {
      const intent = newIntent.value.trim() || intentSel.value;
      try {
        const r = await api("POST", "/annotate/intent", { text: m.text, intent, entities });
        notice(`${t("saved")} ${r.file}:${r.line}  ${r.added.trim()}`);
        row.remove();
      } catch (e) { notice(`${t("rejected")}: ${e.message} ${((e.data || {}).details || {}).findings || ""}`, true); }
    };
    const mark = () => {
      const s = selectionIn(textNode);
      if (!s || s.end <= s.start) { notice(t("noSelection"), true); return; }
      entities.push({ start: s.start, end: s.end, entity: entitySel.value, value: m.text.slice(s.start, s.end) });
      redraw();
    };
    const faq = async () => {
      try {
        const r = await api("POST", "/annotate/faq", { text: m.text, entry_id: faqSel.value, language: /[\u4e00-\u9fff]/.test(m.text) ? "zh" : "en" });
        notice(`${t("saved")} ${r.file}:${r.line}`); row.remove();
      } catch (e) { notice(`${t("rejected")}: ${e.message}`, true); }
    };
    const dismiss = async () => { await api("POST", "/annotate/dismiss", { texts: [m.text] }); row.remove(); };
    row.append(el("div", { class: "annotate" },
      intentSel, newIntent, el("button", { class: "primary save-intent", type: "button", onclick: save }, t("assign")),
      project.entities.length ? [el("button", { type: "button", class: "mark-entity", onclick: mark }, t("markEntity")), entitySel] : [],
      project.faq.length ? [faqSel, el("button", { type: "button", class: "add-faq", onclick: faq }, t("addFaq"))] : [],
      el("button", { type: "button", class: "dismiss", onclick: dismiss }, t("dismiss"))));
    return row;
  }

  async function loadInbox() {
    const reason = $("#inbox-reason").value;
    const data = await api("GET", "/inbox" + (reason ? "?reason=" + encodeURIComponent(reason) : ""));
    if ($("#inbox-reason").options.length === 1) {
      for (const r of data.reasons) $("#inbox-reason").append(el("option", { value: r }, t(r)));
    }
    $("#inbox-summary").textContent = `${data.total_messages} ${t("messages")} · ${data.total_groups} ${t("groups")} · ${data.conversations_scanned} ${t("scanned")}`;
    const list = $("#groups"); list.replaceChildren();
    if (!data.groups.length) list.append(el("li", { class: "muted" }, t("empty")));
    for (const g of data.groups) {
      list.append(el("li", { class: "group", "data-group": g.id },
        el("h3", {}, el("span", { class: "count" }, g.count), g.representative,
          g.new_intent_candidate ? el("span", { class: "tag" }, t("newIntentCandidate")) : ""),
        el("div", { class: "muted" }, `${t("suggested")}: `,
          g.suggested_intents.map((s) => `${s.intent} (${Math.round(s.score * 100)}%)`).join(", ") || "—",
          g.suggested_faq.length ? ` · ${t("faq")}: ${g.suggested_faq.map((f) => f.id).join(", ")}` : "",
          " · ", Object.entries(g.reasons).map(([k, v]) => `${t(k)} ${v}`).join(", ")),
        el("ul", { class: "messages" }, g.messages.map((m) => messageRow(g, m)))));
    }
  }

  // ------------------------------------------------------------------ conversations
  async function loadConversations() {
    const form = new FormData($("#conv-filter"));
    const params = new URLSearchParams();
    for (const [k, v] of form.entries()) if (v) params.set(k, v);
    const data = await api("GET", "/conversations?" + params.toString());
    const list = $("#conv-list"); list.replaceChildren();
    for (const c of data.conversations) {
      const when = c.last ? new Date(c.last * 1000).toLocaleString(lang === "zh" ? "zh-CN" : "en") : "";
      list.append(el("li", { "data-id": c.conversation_id, onclick: () => openConversation(c.conversation_id) },
        el("strong", {}, c.conversation_id), " ", el("span", { class: "muted" }, `${c.channel || ""} · ${when}`),
        el("div", {}, c.first_text),
        el("div", { class: "muted" }, c.intents.join(", "), c.handoff ? ` · ${t("handoff")}` : "",
          c.csat ? ` · CSAT ${c.csat}` : "")));
    }
  }

  async function openConversation(id) {
    $$("#conv-list li").forEach((li) => li.classList.toggle("selected", li.dataset.id === id));
    const data = await api("GET", "/conversations/" + encodeURIComponent(id));
    const box = $("#transcript"); box.replaceChildren(
      el("div", { class: "toolbar" }, el("strong", {}, id),
        el("button", { type: "button", id: "save-story", onclick: async () => {
          try { const r = await api("POST", "/annotate/story", { conversation_id: id }); notice(`${t("saved")} ${r.file}:${r.line}`); }
          catch (e) { notice(`${t("rejected")}: ${e.message}`, true); }
        } }, t("saveStory"))));
    for (const m of data.messages) {
      if (m.type === "user") {
        const intent = (m.nlu.intent || {});
        box.append(el("div", { class: "turn user" }, el("span", { class: "bubble" }, highlighted(m.text || "", (m.nlu.entities || []).filter((e) => e.start !== undefined))),
          el("span", { class: "nlu" }, `${intent.name || "?"} ${(intent.confidence || 0).toFixed(2)}`,
            (m.nlu.entities || []).map((e) => ` [${e.entity}=${e.value}]`).join(""))));
      } else if (m.type === "bot") {
        box.append(el("div", { class: "turn bot" }, el("span", { class: "bubble" }, m.text || JSON.stringify(m.data)),
          m.kb ? el("span", { class: "nlu" }, `FAQ ${m.kb.outcome} ${m.kb.id || ""}`) : ""));
      } else if (m.type === "action") {
        box.append(el("div", { class: "turn muted" }, `→ ${m.name}`));
      } else if (m.type === "handoff") {
        box.append(el("div", { class: "turn muted" }, `⇢ ${t("handoff")}`));
      }
    }
  }

  // ------------------------------------------------------------------ models
  function comparisonView(entry) {
    const c = entry.comparison; if (!c) return el("div");
    const rows = c.intents.map((r) => el("tr", {}, el("td", {}, r.intent), el("td", {}, r.support),
      el("td", {}, r.f1_active === null ? "—" : r.f1_active.toFixed(3)), el("td", {}, r.f1_candidate.toFixed(3)),
      el("td", { class: r.delta < 0 ? "delta-neg" : r.delta > 0 ? "delta-pos" : "" }, r.delta === null ? "—" : (r.delta > 0 ? "+" : "") + r.delta.toFixed(3))));
    return el("div", {},
      el("h3", {}, `${entry.name}: `, el("span", { class: c.passed ? "pass" : "fail" }, c.passed ? t("passed") : t("failed")),
        ` · ${t("accuracy")} ${c.accuracy.active ?? "—"} → ${c.accuracy.candidate} (n=${c.held_out})`),
      c.active_saw_holdout ? el("p", { class: "warn" }, t("sawHoldout")) : "",
      c.stories ? el("p", { class: "stories" }, `${t("testStories")}: ${c.stories.active ? `${c.stories.active.correct}/${c.stories.active.total}` : "—"} → ${c.stories.candidate.correct}/${c.stories.candidate.total}`,
        c.stories.newly_failing.length ? ` · ${c.stories.newly_failing.join(", ")}` : "") : "",
      c.kb && c.kb.candidate ? el("p", { class: "kb" }, `${t("faq")} recall@1: ${c.kb.active ? c.kb.active["recall@1"] : "—"} → ${c.kb.candidate["recall@1"]} (${c.kb.candidate.queries})`) : "",
      c.regressions.length ? el("p", { class: "fail" }, c.regressions.map((r) => `${r.intent} ${r.delta.toFixed(3)} < ${r.limit}`).join(" · ")) : "",
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, t("intent")), el("th", {}, "n"), el("th", {}, t("active")),
        el("th", {}, t("model")), el("th", {}, t("delta")))), el("tbody", {}, rows)),
      c.confusions_changed.length ? el("div", {}, el("h4", {}, t("confusions")),
        el("ul", {}, c.confusions_changed.map((x) => el("li", {}, `${x.pair}: ${x.active} → ${x.candidate}`)))) : "");
  }

  async function loadModels() {
    const data = await api("GET", "/models");
    showLoaded(data.loaded);
    const body = $("#model-table tbody"); body.replaceChildren();
    for (const m of [...data.models].reverse()) {
      const c = m.comparison || {};
      const gate = m.gate_passed === null ? "—" : el("span", { class: m.gate_passed ? "pass" : "fail" }, m.gate_passed ? t("passed") : t("failed"));
      const activate = async (override) => {
        try { await api("POST", `/models/${encodeURIComponent(m.name)}/activate`, { override }); notice(`${t("activate")}: ${m.name}`); loadModels(); }
        catch (e) { notice(e.message, true); }
      };
      body.append(el("tr", { "data-model": m.name, onclick: () => $("#comparison").replaceChildren(comparisonView(m)) },
        el("td", {}, m.name, data.active === m.name ? el("span", { class: "tag" }, t("active")) : ""),
        el("td", {}, m.trained_by), el("td", {}, m.data_version),
        el("td", {}, c.accuracy ? `${c.accuracy.active ?? "—"} → ${c.accuracy.candidate}` : "—"), el("td", {}, gate),
        el("td", {}, data.active === m.name ? "" : [
          el("button", { type: "button", class: "activate", onclick: (ev) => { ev.stopPropagation(); activate(false); } }, t("activate")),
          m.gate_passed === false ? el("button", { type: "button", onclick: (ev) => { ev.stopPropagation(); activate(true); } }, t("override")) : ""])));
    }
    if (data.models.length) $("#comparison").replaceChildren(comparisonView(data.models[data.models.length - 1]));
  }

  async function train() {
    $("#train-status").textContent = t("training");
    const { job } = await api("POST", "/train");
    for (;;) {
      await new Promise((r) => setTimeout(r, 1000));
      const s = await api("GET", "/train/" + job);
      if (s.status === "running") continue;
      $("#train-status").textContent = s.status === "done" ? `${t("trainDone")}: ${s.model}` : s.error;
      break;
    }
    loadModels();
  }

  // ------------------------------------------------------------------ shell
  function showTab(name) {
    $$("[data-tab]").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
    $$(".tab").forEach((s) => { s.hidden = s.id !== "tab-" + name; });
    const load = { inbox: loadInbox, conversations: loadConversations, models: loadModels }[name];
    load().catch((e) => notice(e.message, true));
  }

  async function open() {
    project = await api("GET", "/project");
    $("#intent-list").replaceChildren(...project.intents.map((i) => el("option", { value: i })));
    showLoaded(project.model);
    $("#login").hidden = true; $("#app").hidden = false;
    showTab("inbox");
  }

  document.addEventListener("DOMContentLoaded", () => {
    applyI18n();
    $$("[data-lang-toggle]").forEach((b) => b.addEventListener("click", () => {
      lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("kefu-wb-lang", lang); applyI18n();
      if (!$("#app").hidden) showTab(($("[data-tab].active") || {}).dataset.tab || "inbox");
    }));
    $("#login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("kefu-wb-token", $("#token").value.trim());
      open().catch((e) => { $("#login-error").textContent = e.message; });
    });
    $("#logout").addEventListener("click", () => logout());
    $$("[data-tab]").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
    $("#inbox-refresh").addEventListener("click", () => loadInbox().catch((e) => notice(e.message, true)));
    $("#inbox-reason").addEventListener("change", () => loadInbox().catch((e) => notice(e.message, true)));
    $("#conv-filter").addEventListener("submit", (ev) => { ev.preventDefault(); loadConversations().catch((e) => notice(e.message, true)); });
    $("#train").addEventListener("click", () => train().catch((e) => { $("#train-status").textContent = e.message; }));
    $("#rollback").addEventListener("click", async () => {
      try { const r = await api("POST", "/models/rollback"); notice(`${t("rollback")}: ${r.model}`); loadModels(); }
      catch (e) { notice(e.message, true); }
    });
    if (sessionStorage.getItem("kefu-wb-token")) open().catch(() => logout());
  });
})();
