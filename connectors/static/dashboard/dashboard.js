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
          e403: "This token may not read analytics (needs the scope analytics:read).", updated: "Updated in", other: "中文",
          journeys: "Lifecycle journeys", journeysince: "From the trigger engine's report: sends and conversions since",
          e403j: "Journeys need the scope triggers:read.", healthtrend: "Health-score trend",
          healthdist: "Health-score distribution", mean: "Mean score", healthy: "healthy", watch: "watch",
          at_risk: "at risk" },
    zh: { title: "运营看板", start: "开始", end: "结束", channel: "渠道", segment: "客户分群", all: "全部",
          apply: "查询", token: "访问令牌", signin: "登录", trend: "会话数", reasons: "转人工原因",
          csatdist: "满意度分布", intents: "热门意图", csv: "导出 CSV", loading: "加载中…", none: "暂无数据",
          nocharts: "图表需要 ECharts：请运行 scripts/install.sh（从 npm 仓库获取）。",
          e401: "请使用令牌登录（主管、训练师或管理员的 JWT，或 API 令牌）。",
          e403: "此令牌无权查看数据分析（需要 analytics:read 权限）。", updated: "查询耗时", other: "English",
          journeys: "生命周期旅程", journeysince: "来自触发引擎报表：自以下日期起的发送与转化",
          e403j: "查看旅程需要 triggers:read 权限。", healthtrend: "健康度趋势", healthdist: "健康度分布",
          mean: "平均分", healthy: "健康", watch: "关注", at_risk: "流失风险" }
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
    if (unit === "days") return value.toFixed(1) + (lang === "zh" ? " 天" : " d");
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

  function csvText(rows) {
    if (!rows.length) return "\ufeff";
    var columns = Object.keys(rows[0]);
    function cell(v) {
      var text = v === null || v === undefined ? "" : String(v);
      return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
    }
    return "\ufeff" + [columns.map(cell).join(",")].concat(rows.map(function (r) {
      return columns.map(function (c) { return cell(r[c]); }).join(",");
    })).join("\r\n") + "\r\n";
  }

  function saveLocal(name, rows) {
    var a = el("a");
    a.href = URL.createObjectURL(new Blob([csvText(rows)], { type: "text/csv;charset=utf-8" }));
    a.download = "kefu-" + name + "-" + $("start").value + "-" + $("end").value + ".csv";
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(a.href); }, 1000);
  }

  // One table with its definition and CSV button (server export, or built here for the journey tables).
  function renderTable(box, name, rows, def, local) {
    var section = el("div", "table");
    section.dataset.table = name;
    var h = el("h2", null, def.name);
    var button = el("button", "csv", T("csv"));
    button.type = "button";
    button.onclick = function () { if (local) saveLocal(name, rows); else download(name); };
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
  }

  function renderTables(data) {
    var box = $("tables");
    box.textContent = "";
    ["figures"].concat(Object.keys(data.tables)).forEach(function (name) {
      var rows = name === "figures" ? Object.keys(data.figures).map(function (k) {
        return { metric: (data.definitions[k] || {}).name || k, value: format(data.figures[k], (data.definitions[k] || {}).unit) };
      }) : data.tables[name];
      renderTable(box, name, rows, data.definitions[name] || { name: name, definition: "" }, false);
    });
  }

  function round(v) { return v === null || v === undefined ? null : Math.round(v * 10000) / 10000; }

  // The trigger engine's report (GET /triggers/report, scope triggers:read) as three tables.
  function journeyTables(report) {
    var overview = [], skips = [], funnel = [];
    Object.keys(report.journeys || {}).sort().forEach(function (name) {
      var j = report.journeys[name], skipped = 0;
      Object.keys(j.skips || {}).sort().forEach(function (reason) {
        skipped += j.skips[reason];
        skips.push({ journey: name, reason: reason, count: j.skips[reason] });
      });
      overview.push({ journey: name, sends: j.sends, conversions: j.conversions,
                      conversion_rate: round(j.conversion_rate), skips: skipped });
      Object.keys(j.steps || {}).sort().forEach(function (step) {
        var variants = j.steps[step];
        Object.keys(variants).sort(function (a, b) { return (variants[b].control ? 1 : 0) - (variants[a].control ? 1 : 0) || (a < b ? -1 : 1); })
          .forEach(function (variant) {
            var v = variants[variant], c = v.vs_control || {};
            funnel.push({ journey: name, step: step, variant: variant, sends: v.sends, conversions: v.conversions,
                          rate: round(v.rate), control: v.control ? variant : (c.control || ""),
                          p_value: v.control ? null : round(c.p_value), significant: v.control ? "" : (c.significant ? "yes" : "no") });
          });
      });
    });
    return { journeys: overview, journey_skips: skips, journey_funnel: funnel };
  }

  function loadJourneys(definitions) {
    var box = $("journeys");
    box.textContent = "";
    var since = Date.parse($("start").value + "T00:00:00Z") / 1000;
    fetch("/triggers/report?since=" + since, { headers: { Authorization: "Bearer " + token() } }).then(function (r) {
      if (r.status === 404 || r.status === 409) return null;  // no trigger engine in this project
      if (r.status === 403) throw new Error(T("e403j"));
      if (!r.ok) throw new Error(r.statusText);
      return r.json();
    }).then(function (report) {
      if (!report) { box.dataset.state = "none"; return; }
      box.appendChild(el("h2", "section", T("journeys")));
      box.appendChild(el("div", "def", T("journeysince") + " " + $("start").value));
      var tables = journeyTables(report);
      Object.keys(tables).forEach(function (name) {
        renderTable(box, name, tables[name], definitions[name] || { name: name, definition: "" }, true);
      });
      box.dataset.state = "loaded";
    }).catch(function (e) { box.appendChild(el("div", "empty", e.message)); box.dataset.state = "error"; });
  }

  function chart(id, option) {
    if (!window.echarts) return;
    if (!charts[id]) charts[id] = window.echarts.init($(id));
    charts[id].setOption(option, true);
  }

  function renderCharts(data) {
    var noCharts = !window.echarts;
    $("nocharts").hidden = !noCharts;
    renderHealth(data);  // its definitions show without ECharts too
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

  // Customer 360's health score (data.health is null when that feature does not run).
  var BAND_COLOURS = ["#2e9e5b", "#f5a524", "#e5484d", "#8d6cd9", "#6b7280"];
  function renderHealth(data) {
    var h = data.health;
    $("health-trend").hidden = $("health-dist").hidden = !h;
    if (!h) return;
    $("def-health-trend").textContent = data.definitions.health_trend.definition;
    $("def-health-dist").textContent = data.definitions.health_distribution.definition;
    var bands = Object.keys(h.bands);
    var series = bands.map(function (band, i) {
      return { type: "bar", stack: "bands", name: T(band), itemStyle: { color: BAND_COLOURS[i % BAND_COLOURS.length] },
               data: h.trend.map(function (p) { return p.bands[band] || 0; }) };
    });
    series.push({ type: "line", name: T("mean"), yAxisIndex: 1, data: h.trend.map(function (p) { return p.mean; }),
                  itemStyle: { color: "#1f2937" }, symbolSize: 5 });
    chart("chart-health-trend", { animation: false, grid: { left: 40, right: 40, top: 30, bottom: 40 }, tooltip: { trigger: "axis" },
      legend: { top: 0, textStyle: { fontSize: 11 } },
      xAxis: { type: "category", data: h.trend.map(function (p) { return p.day; }) },
      yAxis: [{ type: "value", minInterval: 1 }, { type: "value", min: 0, max: 100, splitLine: { show: false } }],
      series: series });
    chart("chart-health-dist", { animation: false, grid: { left: 40, right: 16, top: 16, bottom: 30 }, tooltip: {},
      xAxis: { type: "category", data: h.bins.map(function (b) { return b.from + "–" + b.to; }) },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ type: "bar", data: h.bins.map(function (b) { return b.customers; }), itemStyle: { color: "#3370ff" } }] });
  }

  function render(data) {
    last = data;
    fillChoices($("channel"), data.choices.channels);
    fillChoices($("segment"), data.choices.segments);
    renderFigures(data);
    renderTables(data);
    $("content").hidden = false;
    renderCharts(data);
    loadJourneys(data.definitions);
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
