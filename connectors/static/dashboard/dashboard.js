/* kefu operations dashboard: figures, ECharts charts and CSV exports from /dashboard/api (scope analytics:read).
   Data is inserted as text only (never as HTML). The token stays in this tab's sessionStorage. */
(function () {
  "use strict";
  var TEXTS = {
    en: { title: "Operations dashboard", start: "From", end: "To", channel: "Channel", segment: "Segment", all: "All",
          apply: "Apply", token: "Access token", signin: "Sign in", trend: "Conversations", reasons: "Escalation reasons",
          csatdist: "CSAT distribution", intents: "Top intents", csv: "CSV", loading: "Loading…", none: "No data",
          nocharts: "Charts need ECharts: run scripts/install.sh (it fetches it from the npm registry).",
          e401: "Sign in with a token (a supervisor, trainer or admin JWT, or the API token).",
          e403: "This token may not read analytics (needs the scope analytics:read).", updated: "Updated in", other: "中文" },
    zh: { title: "运营看板", start: "开始", end: "结束", channel: "渠道", segment: "客户分群", all: "全部",
          apply: "查询", token: "访问令牌", signin: "登录", trend: "会话数", reasons: "转人工原因",
          csatdist: "满意度分布", intents: "热门意图", csv: "导出 CSV", loading: "加载中…", none: "暂无数据",
          nocharts: "图表需要 ECharts：请运行 scripts/install.sh（从 npm 仓库获取）。",
          e401: "请使用令牌登录（主管、训练师或管理员的 JWT，或 API 令牌）。",
          e403: "此令牌无权查看数据分析（需要 analytics:read 权限）。", updated: "查询耗时", other: "English" }
  };
  var params = new URLSearchParams(location.search);
  var lang = (params.get("lang") || navigator.language || "en").toLowerCase().indexOf("zh") === 0 ? "zh" : "en";
  var $ = function (id) { return document.getElementById(id); };
  var charts = {};
  var last = null;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function T(key) { return TEXTS[lang][key] || key; }
  function translate() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    Array.prototype.forEach.call(document.querySelectorAll("[data-t]"), function (n) { n.textContent = T(n.dataset.t); });
    $("lang").textContent = T("other");
    document.title = "kefu · " + T("title");
  }
  function iso(d) { return d.toISOString().slice(0, 10); }
  function status(text, error) { $("status").textContent = text || ""; $("status").className = error ? "error" : ""; }
  function token() { return sessionStorage.getItem("kefu-dashboard-token") || ""; }
  function query() {
    var q = new URLSearchParams({ start: $("start").value, end: $("end").value, lang: lang });
    if ($("channel").value) q.set("channel", $("channel").value);
    if ($("segment").value) q.set("segment", $("segment").value);
    return q.toString();
  }
  function call(path) {
    return fetch(path, { headers: { Authorization: "Bearer " + token() } }).then(function (r) {
      if (r.status === 401) throw new Error(T("e401"));
      if (r.status === 403) throw new Error(T("e403"));
      if (!r.ok) return r.json().then(function (b) { throw new Error(b.message || r.statusText); });
      return r;
    });
  }

  function format(value, unit) {
    if (value === null || value === undefined) return "–";
    if (unit === "ratio") return (value * 100).toFixed(1) + "%";
    if (unit === "seconds") return value >= 90 ? (value / 60).toFixed(1) + " min" : value.toFixed(1) + " s";
    if (unit === "money") return value.toFixed(2);
    if (unit === "score") return value.toFixed(2).replace(/\.?0+$/, "");
    return String(value);
  }

  function fillChoices(select, values) {
    var keep = select.value;
    while (select.options.length > 1) select.remove(1);
    values.forEach(function (v) { var o = el("option", null, v); o.value = v; select.appendChild(o); });
    select.value = values.indexOf(keep) >= 0 ? keep : "";
  }

  function renderFigures(data) {
    var box = $("figures");
    box.textContent = "";
    Object.keys(data.figures).forEach(function (key) {
      var def = data.definitions[key] || { name: key, definition: "", unit: "" };
      var card = el("div", "card");
      card.dataset.metric = key;
      card.appendChild(el("div", "name", def.name));
      card.appendChild(el("div", "value", format(data.figures[key], def.unit)));
      card.appendChild(el("div", "def", def.definition));
      box.appendChild(card);
    });
  }

  function download(name) {
    call("/dashboard/api/export/" + name + ".csv?" + query()).then(function (r) { return r.blob(); }).then(function (blob) {
      var a = el("a");
      a.href = URL.createObjectURL(blob);
      a.download = "kefu-" + name + "-" + $("start").value + "-" + $("end").value + ".csv";
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(function () { URL.revokeObjectURL(a.href); }, 1000);
    }).catch(function (e) { status(e.message, true); });
  }

  function renderTables(data) {
    var box = $("tables");
    box.textContent = "";
    var names = ["figures"].concat(Object.keys(data.tables));
    names.forEach(function (name) {
      var rows = name === "figures" ? Object.keys(data.figures).map(function (k) {
        return { metric: (data.definitions[k] || {}).name || k, value: format(data.figures[k], (data.definitions[k] || {}).unit) };
      }) : data.tables[name];
      var def = data.definitions[name] || { name: name === "figures" ? T("title") : name, definition: "" };
      var section = el("div", "table");
      section.dataset.table = name;
      var h = el("h2", null, def.name);
      var button = el("button", "csv", T("csv"));
      button.type = "button";
      button.onclick = function () { download(name); };
      h.appendChild(button);
      section.appendChild(h);
      if (def.definition) section.appendChild(el("div", "def", def.definition));
      if (!rows.length) {
        section.appendChild(el("div", "empty", T("none")));
      } else {
        var table = el("table"), head = el("tr");
        var columns = Object.keys(rows[0]);
        columns.forEach(function (c) { head.appendChild(el("th", typeof rows[0][c] === "number" ? "num" : null, c)); });
        table.appendChild(head);
        rows.forEach(function (row) {
          var tr = el("tr");
          columns.forEach(function (c) {
            var v = row[c];
            tr.appendChild(el("td", typeof v === "number" ? "num" : null, v === null || v === undefined ? "–" : v));
          });
          table.appendChild(tr);
        });
        section.appendChild(table);
      }
      box.appendChild(section);
    });
  }

  function chart(id, option) {
    if (!window.echarts) return;
    if (!charts[id]) charts[id] = window.echarts.init($(id));
    charts[id].setOption(option, true);
  }

  function renderCharts(data) {
    var noCharts = !window.echarts;
    $("nocharts").hidden = !noCharts;
    if (noCharts) return;
    var trend = data.tables.conversations_by_day;
    chart("chart-trend", { grid: { left: 40, right: 16, top: 16, bottom: 40 }, tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: trend.map(function (r) { return r.bucket; }) }, yAxis: { type: "value", minInterval: 1 },
      series: [{ type: "line", name: T("trend"), data: trend.map(function (r) { return r.conversations; }), areaStyle: {} }] });
    chart("chart-reasons", { tooltip: { trigger: "item" },
      series: [{ type: "pie", radius: ["35%", "65%"], data: data.tables.escalation_reasons.map(function (r) {
        return { name: r.name, value: r.count }; }) }] });
    var csat = data.tables.distribution.filter(function (r) { return r.kind === "csat"; });
    var counts = [1, 2, 3, 4, 5].map(function (s) {
      var row = csat.filter(function (r) { return r.score === s; })[0]; return row ? row.count : 0; });
    chart("chart-csat", { grid: { left: 40, right: 16, top: 16, bottom: 30 }, tooltip: {},
      xAxis: { type: "category", data: ["1★", "2★", "3★", "4★", "5★"] }, yAxis: { type: "value", minInterval: 1 },
      series: [{ type: "bar", data: counts, itemStyle: { color: "#f5a524" } }] });
    var intents = data.tables.top_intents.slice(0, 10).reverse();
    chart("chart-intents", { grid: { left: 110, right: 16, top: 8, bottom: 24 }, tooltip: {},
      xAxis: { type: "value", minInterval: 1 }, yAxis: { type: "category", data: intents.map(function (r) { return r.name; }) },
      series: [{ type: "bar", data: intents.map(function (r) { return r.count; }), itemStyle: { color: "#3370ff" } }] });
  }

  function render(data) {
    last = data;
    fillChoices($("channel"), data.choices.channels);
    fillChoices($("segment"), data.choices.segments);
    renderFigures(data);
    renderTables(data);
    $("content").hidden = false;
    renderCharts(data);
    status(T("updated") + " " + data.took_ms + " ms");
    document.body.dataset.loaded = "true";
  }

  function load() {
    status(T("loading"));
    document.body.dataset.loaded = "false";
    call("/dashboard/api/metrics?" + query()).then(function (r) { return r.json(); }).then(render)
      .catch(function (e) { $("content").hidden = true; status(e.message, true); document.body.dataset.loaded = "error"; });
  }

  var today = new Date();
  $("end").value = params.get("end") || iso(today);
  $("start").value = params.get("start") || iso(new Date(today.getTime() - 29 * 86400000));
  if (params.get("channel")) { var o = el("option", null, params.get("channel")); o.value = o.textContent; $("channel").appendChild(o); $("channel").value = o.value; }
  translate();
  $("filters").onsubmit = function (e) { e.preventDefault(); load(); };
  $("login").onsubmit = function (e) {
    e.preventDefault();
    sessionStorage.setItem("kefu-dashboard-token", $("token").value.trim());
    $("token").value = "";
    load();
  };
  $("lang").onclick = function () {
    lang = lang === "zh" ? "en" : "zh";
    translate();
    load();
  };
  window.addEventListener("resize", function () { Object.keys(charts).forEach(function (k) { charts[k].resize(); }); });
  if (token()) load(); else status(T("e401"), true);
})();
