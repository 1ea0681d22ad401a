// Suanwang's web console (issue 15, R7/R8): one page, no build step, no CDN. It reads the same
// API as the CLI with the token the user signs in with (kept in this tab's sessionStorage), and
// follows /v1/events for live updates. Labels in Chinese and English (?lang=zh|en, default from
// the browser). The twin's charts come from twin-charts.js, shared with `suanwang twin --report`.
"use strict";

const T = {
  en: {
    map: "Map", jobs: "Jobs", sites: "Sites", kpis: "KPIs", alerts: "Alerts", sign_out: "Sign out",
    sign_in: "Sign in", token: "Token", sign_in_help: "Paste a token (suanwang token create, or suanwang-data/credentials.json).",
    bad_token: "The token was refused", session_ended: "Signed out", colour_by: "Colour sites by",
    utilisation: "utilisation", green: "green-power share", longitude: "longitude (°E)", latitude: "latitude (°N)",
    hub: "hub", site: "site", link: "link", alert: "alert", state: "state", all: "all", name: "name", tenant: "tenant",
    kind: "kind", submitted: "submitted", placed_at: "site", pool: "pool", start: "start", end: "end",
    reason: "reason", meter: "meter", bill: "bill", evidence: "evidence", total: "total", tenant_pays: "tenant pays",
    entries_proved: "entries, each with an inclusion proof against the signed checkpoint of", entries_word: "entries",
    no_alerts: "No alerts.", severity: "severity", summary: "summary", since: "since", value: "value",
    target: "target", actual: "actual", hub_share: "share of compute in hubs", green_share: "green-power share",
    jobs_total: "jobs", cost: "cost", energy: "energy", carbon: "carbon", not_found: "Not found",
    schematic: "Schematic: sites at their coordinates, no administrative borders (an approved map is needed to publish borders).",
    live: "live", refused: "refused", placements: "placements", capacity: "capacity (ucu)", region: "region", side: "side",
    explanation: "placement", attempts: "attempts", ucu_h: "ucu·h", kwh: "kWh", kg: "kg CO₂", gb: "GB moved",
    money: "Money", data: "Data", twin: "Twin", pools: "Pools", family: "family", model: "model", units: "units",
    price: "price per unit·h", account: "account", balance: "balance", available: "available", credit_limit: "credit limit",
    statement: "Statement, last 30 days", net: "net", debit: "debit", credit: "credit", counterparty: "counterparty",
    programmes: "Voucher programmes", programme: "programme", budget_left: "budget left", rate: "rate", grants: "grants",
    redemptions: "Redemptions", job: "job", amount: "amount", when: "when", datasets: "Datasets", owner: "owner",
    size: "size (GB)", classification: "classification", replicas: "replicas", none: "None.", party: "party",
    show: "Show", reports: "Reports", report: "report", policies: "policies", written: "written", frontier: "The frontier: cost, carbon and mean wait",
    green_per_day: "Green share of energy used, per day", hubs_per_day: "Per-hub utilisation per day", targets: "Targets",
    met: "met", missed: "missed", no_reports: "No twin reports: start the server with --twin-reports DIR and write them with suanwang twin … --report DIR/NAME.",
    hub_vs_national: "hub utilisation ÷ national average", hub_green: "hubs' green-power share", tier_attainment: "latency-tier attainment",
    cost_per_ucu: "cost per ucu·h", transfer_per_gb: "transfer cost per GB", inter_hub_per_gb: "inter-hub transfer cost per GB",
    now: "now", delivered: "delivered so far", borders: "Borders", approval: "approval number",
    network_util: "national average utilisation",
  },
  zh: {
    map: "全国地图", jobs: "作业", sites: "站点", kpis: "指标", alerts: "告警", sign_out: "退出",
    sign_in: "登录", token: "令牌", sign_in_help: "粘贴令牌（suanwang token create，或 suanwang-data/credentials.json）。",
    bad_token: "令牌被拒绝", session_ended: "已退出", colour_by: "站点着色",
    utilisation: "利用率", green: "绿电占比", longitude: "经度（°E）", latitude: "纬度（°N）",
    hub: "枢纽", site: "站点", link: "链路", alert: "告警", state: "状态", all: "全部", name: "名称", tenant: "租户",
    kind: "类型", submitted: "提交", placed_at: "站点", pool: "资源池", start: "开始", end: "结束",
    reason: "原因", meter: "计量", bill: "账单", evidence: "存证", total: "合计", tenant_pays: "租户支付",
    entries_proved: "条记录，均有对已签名检查点的包含证明，检查点大小", entries_word: "条",
    no_alerts: "暂无告警。", severity: "级别", summary: "摘要", since: "起始", value: "数值",
    target: "目标", actual: "实际", hub_share: "枢纽算力占比", green_share: "绿电占比",
    jobs_total: "作业数", cost: "费用", energy: "能耗", carbon: "碳排放", not_found: "未找到",
    schematic: "示意图：站点按坐标绘制，不含行政区划边界（公开发布边界需使用审图号地图）。",
    live: "实时", refused: "拒绝", placements: "调度", capacity: "容量（ucu）", region: "区域", side: "东/西",
    explanation: "调度", attempts: "尝试", ucu_h: "ucu·时", kwh: "千瓦时", kg: "千克 CO₂", gb: "传输 GB",
    money: "账务", data: "数据", twin: "数字孪生", pools: "资源池", family: "类别", model: "型号", units: "数量",
    price: "单价（每单位·时）", account: "账户", balance: "余额", available: "可用", credit_limit: "信用额度",
    statement: "对账单（近 30 天）", net: "净额", debit: "借方", credit: "贷方", counterparty: "对方",
    programmes: "算力券/运力券项目", programme: "项目", budget_left: "剩余预算", rate: "补贴比例", grants: "发放",
    redemptions: "核销记录", job: "作业", amount: "金额", when: "时间", datasets: "数据集", owner: "所有者",
    size: "大小（GB）", classification: "分级", replicas: "副本", none: "无。", party: "主体",
    show: "查看", reports: "报告", report: "报告", policies: "策略", written: "生成时间", frontier: "前沿：费用、碳排放与平均等待",
    green_per_day: "每日绿电占比", hubs_per_day: "各枢纽每日利用率", targets: "目标",
    met: "达成", missed: "未达成", no_reports: "暂无数字孪生报告：以 --twin-reports DIR 启动服务，并用 suanwang twin … --report DIR/NAME 生成。",
    hub_vs_national: "枢纽利用率 ÷ 全国平均", hub_green: "枢纽绿电占比", tier_attainment: "时延圈达成率",
    cost_per_ucu: "单位算力成本（每 ucu·时）", transfer_per_gb: "数据传输单价（每 GB）", inter_hub_per_gb: "跨枢纽传输单价（每 GB）",
    now: "当前", delivered: "累计", borders: "边界", approval: "审图号",
    network_util: "全国平均利用率",
  },
};
const params = new URLSearchParams(location.search);
let lang = params.get("lang") || ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");
if (!T[lang]) lang = "en";
const t = (k) => (T[lang][k] ?? T.en[k] ?? k);
const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const time = (ms) => (ms ? new Date(ms).toISOString().replace(".000", "").replace("T", " ") : "—");
const yuan = (fen) => "¥" + (fen / 100).toFixed(2);

let token = sessionStorage.getItem("suanwang.token");
let me = null; // {name, role}
let charts = [];
let stream = null;

class ApiError extends Error {
  constructor(status, body) { super(body?.message || `HTTP ${status}`); this.status = status; this.body = body; }
}

async function api(path) {
  const r = await fetch(path, { headers: { authorization: `Bearer ${token}` } });
  if (r.status === 401) {
    const body = await r.json().catch(() => ({}));
    signOut(`${t("session_ended")}: ${body.message || "401"}`);
    throw new ApiError(401, body);
  }
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => ({})));
  return r.headers.get("content-type")?.includes("json") ? r.json() : r.text();
}

function applyLabels() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $("#lang").textContent = lang === "zh" ? "English" : "中文";
}

function signOut(reason) {
  token = null;
  me = null;
  sessionStorage.removeItem("suanwang.token");
  if (stream) { stream.abort(); stream = null; }
  showSignIn(reason);
}

function showSignIn(reason) {
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#who").textContent = "";
  disposeCharts();
  $("#main").innerHTML = `<form class="card signin" id="signin">
    <h2>${esc(t("sign_in"))}</h2><p class="muted">${esc(t("sign_in_help"))}</p>
    ${reason ? `<p class="error" id="signin-error">${esc(reason)}</p>` : ""}
    <label>${esc(t("token"))}<input id="token" type="password" autocomplete="off" autofocus></label>
    <button class="primary" type="submit">${esc(t("sign_in"))}</button></form>`;
  $("#signin").addEventListener("submit", async (e) => {
    e.preventDefault();
    const candidate = $("#token").value.trim();
    const r = await fetch("/v1/whoami", { headers: { authorization: `Bearer ${candidate}` } });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { showSignIn(`${t("bad_token")}: ${body.message || r.status}`); return; }
    token = candidate;
    sessionStorage.setItem("suanwang.token", token);
    await start(body);
  });
}

async function start(who) {
  me = who;
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  $("#who").textContent = `${me.name} (${me.role})`;
  document.querySelectorAll("[data-roles]").forEach((el) => { el.hidden = !el.dataset.roles.split(" ").includes(me.role); });
  follow();
  route();
}

function disposeCharts() { charts.forEach((c) => c.dispose()); charts = []; }

function chart(el) {
  const c = echarts.init(el, null, { renderer: "canvas" });
  charts.push(c);
  return c;
}

// Prometheus text → { name: [{labels, value}] } (only our gauges are read)
function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (.+)$/);
    if (!m) continue;
    const labels = {};
    for (const p of (m[3] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[p[1]] = p[2];
    (out[m[1]] ||= []).push({ labels, value: Number(m[4]) });
  }
  return out;
}

async function pageMap() {
  const colourBy = params.get("colour") || "utilisation";
  $("#main").innerHTML = `<div class="card"><div class="toolbar">${esc(t("colour_by"))}:
      <button id="by-util">${esc(t("utilisation"))}</button><button id="by-green">${esc(t("green"))}</button>
      <span class="muted" id="map-note">${esc(t("schematic"))}</span></div>
    <div id="map" class="chart"></div></div>`;
  const g = generation;
  const [net, metricsText, alerts, layer] = await Promise.all([api("/v1/network"), fetch("/metrics").then((r) => r.text()),
    api("/v1/alerts?state=firing"), api("/v1/map")]);
  if (stale(g) || !$("#map")) return;
  if (layer.lines.length > 0) {
    $("#map-note").textContent = `${t("borders")}: ${layer.source || ""} — ${t("approval")} ${layer.approval || ""}`;
  }
  const m = parseMetrics(metricsText);
  const util = Object.fromEntries((m.suanwang_site_utilization || []).map((s) => [s.labels.site, s.value]));
  const hubGreen = Object.fromEntries((m.suanwang_hub_green_share || []).map((s) => [s.labels.hub, s.value]));
  const bytes = Object.fromEntries((m.suanwang_link_transfer_bytes || []).map((s) => [s.labels.link, s.value]));
  const place = {};
  net.cities.forEach((c) => (place[c.id] = [c.lon, c.lat]));
  net.clusters.forEach((c) => (place[c.id] = [c.lon, c.lat]));
  net.regions.forEach((r) => (place[r.id] = [r.lon, r.lat]));
  net.sites.forEach((s) => (place[s.id] = [s.lon, s.lat]));
  const value = (s) => (colourBy === "green" ? (s.hub ? hubGreen[s.hub] ?? 0 : 0) : util[s.id] ?? 0);
  const hubs = net.hubs.map((h) => {
    const cl = net.clusters.filter((c) => c.hub === h.id);
    const lon = cl.reduce((a, c) => a + c.lon, 0) / Math.max(cl.length, 1);
    const lat = cl.reduce((a, c) => a + c.lat, 0) / Math.max(cl.length, 1);
    return { name: lang === "zh" ? h.name_cn : h.name_en, id: h.id, value: [lon, lat] };
  });
  const links = net.links.filter((l) => place[l.a] && place[l.b]).map((l) => ({
    coords: [place[l.a], place[l.b]], name: `${l.a} — ${l.b}`,
    lineStyle: { width: 0.5 + Math.min(6, Math.log10(1 + (bytes[`${l.a}~${l.b}`] || 0) / 1e9) * 2), opacity: 0.25 },
  }));
  const pins = alerts.alerts.filter((a) => a.labels.site && place[a.labels.site]).map((a) => ({
    name: `${a.name}: ${a.annotations.summary || ""}`, value: place[a.labels.site], severity: a.severity,
  }));
  // the extent of sites and borders (a loop: a border may have more points than a call's arguments)
  const ext = { x0: Infinity, x1: -Infinity, y0: Infinity, y1: -Infinity };
  const grow = (x, y) => { ext.x0 = Math.min(ext.x0, x); ext.x1 = Math.max(ext.x1, x); ext.y0 = Math.min(ext.y0, y); ext.y1 = Math.max(ext.y1, y); };
  net.sites.forEach((s) => grow(s.lon, s.lat));
  for (const line of layer.lines) for (const [x, y] of line) grow(x, y);
  const c = chart($("#map"));
  c.setOption({
    animation: false,
    tooltip: { trigger: "item", formatter: (p) => esc(p.data?.tip || p.name) },
    legend: { top: 0, data: [t("site"), t("hub"), t("link"), t("alert")] },
    grid: { left: 60, right: 90, top: 40, bottom: 50 },
    xAxis: { type: "value", name: t("longitude"), nameLocation: "middle", nameGap: 28, axisTick: { show: true },
      min: Math.floor(ext.x0 - 3), max: Math.ceil(ext.x1 + 3) },
    yAxis: { type: "value", name: t("latitude"), nameLocation: "middle", nameGap: 40, axisTick: { show: true },
      min: Math.floor(ext.y0 - 2), max: Math.ceil(ext.y1 + 2) },
    visualMap: { type: "continuous", min: 0, max: 1, dimension: 2, seriesIndex: 2, right: 0, top: "middle", text: ["100 %", "0 %"],
      calculable: true, inRange: { color: ["#d8e6f3", "#4e8fd4", "#0b3d91"] }, formatter: (v) => `${Math.round(v * 100)} %` },
    series: [
      { name: t("borders"), id: "borders", type: "lines", coordinateSystem: "cartesian2d", polyline: true, silent: true, z: 0,
        lineStyle: { color: "#b8bfca", width: 0.8 }, data: layer.lines.map((coords) => ({ coords })) },
      { name: t("link"), type: "lines", coordinateSystem: "cartesian2d", data: links, silent: true, lineStyle: { color: "#8a94a6" }, z: 1 },
      { name: t("site"), type: "scatter", symbolSize: 10, z: 3, itemStyle: { borderColor: "#4e6a8f", borderWidth: 1 },
        data: net.sites.map((s) => ({ name: s.id, value: [s.lon, s.lat, value(s)],
          tip: `${s.name_cn} (${s.id}) — ${t(colourBy === "green" ? "green" : "utilisation")} ${Math.round(value(s) * 100)} %` })) },
      { name: t("hub"), type: "scatter", symbol: "diamond", symbolSize: 18, z: 4, itemStyle: { color: "#2e7d32" },
        label: { show: true, position: "right", formatter: (p) => p.name, fontWeight: 600 },
        labelLayout: { hideOverlap: true }, data: hubs },
      { name: t("alert"), type: "scatter", symbol: "pin", z: 5, itemStyle: { color: "#c62828" },
        data: pins.map((p) => ({ ...p, tip: p.name, symbolSize: p.severity === "info" ? 16 : 28,
          itemStyle: { color: p.severity === "critical" ? "#c62828" : p.severity === "warning" ? "#e08a00" : "#9aa3b5", opacity: p.severity === "info" ? 0.7 : 1 } })) },
    ],
  });
  $("#by-util").onclick = () => setParam("colour", "utilisation");
  $("#by-green").onclick = () => setParam("colour", "green");
}

function setParam(k, v) {
  params.set(k, v);
  history.replaceState(null, "", `?${params}${location.hash}`);
  route();
}

async function pageJobs() {
  const state = params.get("state") || "";
  const q = state ? `?state=${encodeURIComponent(state)}&limit=200` : "?limit=200";
  const g = generation;
  const list = await api(`/v1/jobs${q}`);
  if (stale(g)) return;
  const states = ["", "placed", "running", "completed", "failed", "cancelled", "refused"];
  $("#main").innerHTML = `<div class="card"><div class="toolbar">${esc(t("state"))}:
    <select id="state">${states.map((s) => `<option value="${s}" ${s === state ? "selected" : ""}>${esc(s || t("all"))}</option>`).join("")}</select>
    <span class="muted" id="jobs-live"></span></div>
    <table id="jobs-table"><thead><tr><th class="num">#</th><th>${esc(t("name"))}</th><th>${esc(t("tenant"))}</th><th>${esc(t("kind"))}</th>
    <th>${esc(t("state"))}</th><th>${esc(t("placed_at"))}</th><th>${esc(t("submitted"))}</th></tr></thead><tbody>
    ${list.jobs.map((j) => `<tr><td class="num"><a href="#/jobs/${j.id}">${j.id}</a></td><td>${esc(j.name)}</td><td>${esc(j.tenant)}</td>
      <td>${esc(j.kind)}</td><td>${esc(j.state)}</td><td>${esc(j.site || "—")}</td><td>${time(j.submitted_at)}</td></tr>`).join("")}
    </tbody></table></div>`;
  $("#state").onchange = (e) => setParam("state", e.target.value);
}

async function pageJob(id) {
  const g = generation;
  let job;
  try { job = await api(`/v1/jobs/${encodeURIComponent(id)}`); } catch (e) {
    if (stale(g)) return;
    $("#main").innerHTML = `<div class="card"><h2>${esc(t("not_found"))}</h2><p class="error" id="job-error">${esc(e.message)}</p></div>`;
    return;
  }
  const [bill, ev] = await Promise.all([api(`/v1/jobs/${id}/bill`).catch(() => null), api(`/v1/jobs/${id}/evidence`).catch(() => null)]);
  if (stale(g)) return;
  const m = job.meter;
  const checkpointSize = ev ? (ev.checkpoint.split("\n")[1] || "?") : "?";
  $("#main").innerHTML = `<div class="card"><h2 id="job-title">#${job.id} ${esc(job.name)}</h2><dl class="kv">
      <dt>${esc(t("tenant"))}</dt><dd>${esc(job.tenant)}</dd><dt>${esc(t("kind"))}</dt><dd>${esc(job.kind)}</dd>
      <dt>${esc(t("state"))}</dt><dd id="job-state">${esc(job.state)}</dd>
      <dt>${esc(t("explanation"))}</dt><dd id="job-explanation">${esc(job.site ? `${job.site} / ${job.pool}, ${time(job.start_at)} → ${time(job.end_at)}` : "—")}${job.reason ? ` — ${esc(t("reason"))}: ${esc(job.reason)}` : ""}</dd>
      <dt>${esc(t("attempts"))}</dt><dd>${job.attempts}</dd><dt>${esc(t("submitted"))}</dt><dd>${time(job.submitted_at)}</dd>
      <dt>${esc(t("meter"))}</dt><dd>${m ? `${m.ucu_hours.toFixed(3)} ${esc(t("ucu_h"))}, ${m.energy_kwh.toFixed(3)} ${esc(t("kwh"))}, ${m.carbon_location_kg.toFixed(3)} ${esc(t("kg"))}, ${yuan(m.money_fen)}` : "—"}</dd>
    </dl></div>
    <div class="card"><h3>${esc(t("bill"))}</h3>${bill ? `<table><tbody>${bill.lines.map((l) => `<tr><td>${esc(l.kind)}</td><td>${esc(l.description)}</td><td class="num">${yuan(l.amount_fen)}</td></tr>`).join("")}
      <tr><th colspan="2">${esc(t("total"))}</th><th class="num">${yuan(bill.total_fen)}</th></tr><tr><td colspan="2">${esc(t("tenant_pays"))}</td><td class="num">${yuan(bill.tenant_fen)}</td></tr></tbody></table>` : "—"}</div>
    <div class="card"><h3>${esc(t("evidence"))}</h3><p id="job-evidence">${ev ? `${ev.entries.length} ${esc(t("entries_proved"))} ${esc(checkpointSize)} ${esc(t("entries_word"))}` : "—"}</p></div>`;
}

async function pageSites() {
  const g = generation;
  const [list, metricsText] = await Promise.all([api("/v1/sites"), fetch("/metrics").then((r) => r.text())]);
  if (stale(g)) return;
  const m = parseMetrics(metricsText);
  const util = Object.fromEntries((m.suanwang_site_utilization || []).map((s) => [s.labels.site, s.value]));
  const up = Object.fromEntries((m.suanwang_site_up || []).map((s) => [s.labels.site, s.value]));
  const pools = list.sites.flatMap((s) => s.pools.map((p) => ({ site: s.id, ...p })));
  $("#main").innerHTML = `<div class="card"><h3>${esc(t("sites"))}</h3><table id="sites-table"><thead><tr><th>${esc(t("site"))}</th><th>${esc(t("hub"))}</th><th>${esc(t("region"))}</th>
    <th class="num">${esc(t("capacity"))}</th><th class="num">${esc(t("utilisation"))}</th><th>${esc(t("state"))}</th></tr></thead><tbody>
    ${list.sites.map((s) => `<tr><td>${esc(s.id)} <span class="muted">${esc(s.name_cn)}</span></td><td>${esc(s.hub || "—")}</td><td>${esc(s.region)}</td>
      <td class="num">${Math.round(s.pools.reduce((a, p) => a + p.capacity_ucu, 0))}</td>
      <td class="num">${Math.round((util[s.id] || 0) * 100)} %</td><td>${up[s.id] === 0 ? "lost" : esc(s.approval || "approved")}</td></tr>`).join("")}
    </tbody></table></div>
    <div class="card"><h3>${esc(t("pools"))}</h3><table id="pools-table"><thead><tr><th>${esc(t("site"))}</th><th>${esc(t("pool"))}</th><th>${esc(t("family"))}</th>
    <th>${esc(t("model"))}</th><th class="num">${esc(t("units"))}</th><th class="num">${esc(t("capacity"))}</th><th class="num">${esc(t("price"))}</th></tr></thead><tbody>
    ${pools.map((p) => `<tr><td>${esc(p.site)}</td><td>${esc(p.id)}</td><td>${esc(p.family)}</td><td>${esc(p.model)}</td>
      <td class="num">${p.count} ${esc(p.unit)}</td><td class="num">${Math.round(p.capacity_ucu)}</td><td class="num">${yuan(p.price_fen_per_unit_hour)}</td></tr>`).join("")}
    </tbody></table></div>`;
}

async function pageKpis() {
  const g = generation;
  const k = await api("/v1/kpis");
  if (stale(g)) return;
  const per = (num, den, f) => (den > 0 ? f(num / den) : "—");
  const ratio = k.hub_utilization_ratio;
  const tiers = ["city", "regional", "cross-hub"];
  $("#main").innerHTML = `<div class="card"><div id="kpi" class="chart small"></div></div>
    <div class="card"><div id="kpi-tiers" class="chart small"></div></div>
    <div class="card"><dl class="kv" id="kpi-figures">
    <dt>${esc(t("hub_vs_national"))} (${esc(t("now"))})</dt><dd id="kpi-ratio">${ratio == null ? "—" : ratio.toFixed(2)} (${esc(t("target"))} ≥ ${k.targets.utilisation_ratio}; ${esc(t("network_util"))} ${Math.round(k.network_utilization * 100)} %)</dd>
    <dt>${esc(t("cost_per_ucu"))}</dt><dd id="kpi-cost-ucu">${per(k.cost_fen, k.ucu_hours, (v) => yuan(v))}</dd>
    <dt>${esc(t("transfer_per_gb"))}</dt><dd>${per(k.transfer_fen, k.transfer_gb, (v) => yuan(v))} (${k.transfer_gb.toFixed(1)} GB)</dd>
    <dt>${esc(t("inter_hub_per_gb"))}</dt><dd>${per(k.inter_hub_transfer_fen, k.inter_hub_transfer_gb, (v) => yuan(v))} (${k.inter_hub_transfer_gb.toFixed(1)} GB)</dd>
    <dt>${esc(t("jobs_total"))}</dt><dd>${k.jobs}</dd><dt>${esc(t("placements"))}</dt><dd>${k.placements}</dd><dt>${esc(t("refused"))}</dt><dd>${k.refusals}</dd>
    <dt>${esc(t("energy"))}</dt><dd>${k.energy_kwh.toFixed(1)} ${esc(t("kwh"))}</dd><dt>${esc(t("carbon"))}</dt><dd>${k.carbon_kg.toFixed(1)} ${esc(t("kg"))}</dd>
    <dt>${esc(t("cost"))}</dt><dd>${yuan(k.cost_fen)}</dd></dl></div>`;
  const label = (f) => ({ show: true, position: "top", formatter: (p) => (p.value == null ? "—" : f(p.value, p.dataIndex)) });
  // the first bar is a ratio (×), the second a share (%)
  const mixed = (prefix) => (v, i) => (i === 0 ? `${prefix}${v.toFixed(2)} ×` : `${prefix}${(v * 100).toFixed(1)} %`);
  const c = chart($("#kpi"));
  c.setOption({
    animation: false, tooltip: { trigger: "axis" }, legend: { top: 0, data: [t("actual"), t("target")] },
    grid: { left: 60, right: 20, top: 40, bottom: 40 },
    xAxis: { type: "category", data: [`${t("hub_vs_national")} (${t("now")})`, `${t("hub_green")} (${t("delivered")})`], axisTick: { alignWithLabel: true } },
    yAxis: { type: "value", min: 0, name: "×  /  %", axisTick: { show: true } },
    series: [
      { name: t("actual"), type: "bar", data: [ratio, k.hub_green_share], label: label(mixed("")) },
      { name: t("target"), type: "bar", data: [k.targets.utilisation_ratio, k.targets.green_share], itemStyle: { color: "#c5cbd6" },
        label: label(mixed("≥ ")) },
    ],
  });
  const ct = chart($("#kpi-tiers"));
  ct.setOption({
    animation: false, tooltip: { trigger: "axis" }, legend: { top: 0, data: [t("tier_attainment")] },
    grid: { left: 60, right: 20, top: 40, bottom: 40 },
    xAxis: { type: "category", data: tiers, name: t("tier_attainment"), nameLocation: "middle", nameGap: 26, axisTick: { alignWithLabel: true } },
    yAxis: { type: "value", min: 0, max: 1, name: "%", axisTick: { show: true }, axisLabel: { formatter: (v) => `${Math.round(v * 100)} %` } },
    series: [{ name: t("tier_attainment"), type: "bar", data: tiers.map((x) => k.latency_tier_attainment[x] ?? null),
      label: label((v) => `${(v * 100).toFixed(1)} %`) }],
  });
}

const table = (id, heads, rows) => (rows.length === 0 ? `<p class="muted" id="${id}-empty">${esc(t("none"))}</p>`
  : `<table id="${id}"><thead><tr>${heads.map(([h, num]) => `<th${num ? ' class="num"' : ""}>${esc(t(h))}</th>`).join("")}</tr></thead>
    <tbody>${rows.map((r) => `<tr>${r.map((c, i) => `<td${heads[i][1] ? ' class="num"' : ""}>${c}</td>`).join("")}</tr>`).join("")}</tbody></table>`);

// Money: the wallet or receivables of whoever signed in (the operator and the regulator pick a
// party), the statement of the last 30 days, voucher programmes, grants and redemptions.
async function pageMoney() {
  const g = generation;
  const all = ["operator", "regulator"].includes(me.role);
  const party = all ? params.get("party") || "platform" : me.name;
  const q = all ? `party=${encodeURIComponent(party)}&` : "";
  const from = Date.now() - 30 * 86_400_000;
  const wantsVouchers = ["operator", "regulator", "funder", "tenant"].includes(me.role);
  const [bal, st, v] = await Promise.all([api(`/v1/balance?${q}`), api(`/v1/statements?${q}from=${from}`),
    wantsVouchers ? api("/v1/vouchers") : Promise.resolve({ programmes: [], redemptions: [] })]);
  if (stale(g)) return;
  const money = (f) => (f == null ? "—" : yuan(f));
  $("#main").innerHTML = `<div class="card">${all ? `<form class="toolbar" id="party-form">${esc(t("party"))}:
      <input id="party" value="${esc(party)}"><button type="submit">${esc(t("show"))}</button></form>` : ""}
    <h3 id="money-party">${esc(t("account"))}: ${esc(bal.party)}</h3>
    ${table("accounts", [["account"], ["balance", 1], ["available", 1], ["credit_limit", 1]],
      bal.accounts.map((a) => [esc(`${a.kind} ${a.name}`), money(a.balance_fen), money(a.available_fen), money(a.credit_limit_fen)]))}</div>
    <div class="card"><h3>${esc(t("statement"))}</h3>
    ${table("statement", [["when"], ["kind"], ["job", 1], ["counterparty"], ["debit", 1], ["credit", 1]],
      st.lines.slice(-200).reverse().map((l) => [time(l.at_ms), esc(l.kind), l.job ? `<a href="#/jobs/${l.job}">${l.job}</a>` : "—",
        esc(l.counterparty), l.debit_fen ? yuan(l.debit_fen) : "", l.credit_fen ? yuan(l.credit_fen) : ""]))}
    <p>${esc(t("net"))}: <b id="statement-net">${yuan(st.net_fen)}</b></p></div>
    ${wantsVouchers ? `<div class="card"><h3>${esc(t("programmes"))}</h3>
    ${table("programmes", [["programme"], ["kind"], ["rate", 1], ["budget_left", 1], ["grants", 1]],
      v.programmes.map((p) => [esc(p.programme.id), esc(p.programme.kind), `${p.programme.rate_bp / 100} %`, money(p.budget_left_fen),
        p.grants.map((x) => `${esc(x.tenant)} ${yuan(x.left_fen)}`).join(", ")]))}
    <h3>${esc(t("redemptions"))}</h3>
    ${table("redemptions", [["when"], ["programme"], ["tenant"], ["job", 1], ["amount", 1]],
      v.redemptions.slice(-200).reverse().map((r) => [time(r.at_ms), esc(r.programme), esc(r.tenant), `<a href="#/jobs/${r.job}">${r.job}</a>`, yuan(r.amount_fen)]))}</div>` : ""}`;
  const form = $("#party-form");
  if (form) form.onsubmit = (e) => { e.preventDefault(); setParam("party", $("#party").value.trim()); };
}

async function pageData() {
  const g = generation;
  const list = await api("/v1/datasets?limit=200");
  if (stale(g)) return;
  $("#main").innerHTML = `<div class="card"><h3>${esc(t("datasets"))}</h3>
    ${table("datasets", [["name"], ["owner"], ["size", 1], ["classification"], ["region"], ["replicas"]],
      list.datasets.map((d) => [`${esc(d.name)} <span class="muted">${esc(d.id)}</span>`, esc(d.owner), d.size_gb.toFixed(1), esc(d.classification),
        esc(d.region || "—"), d.replicas.map((r) => esc(r.site)).join(", ") || "—"]))}</div>`;
}

// The twin's reports (`--twin-reports DIR`), drawn by the same script as the report's own page.
async function pageTwin(name) {
  const g = generation;
  let list;
  try { list = await api("/v1/twin/reports"); } catch (e) {
    if (stale(g)) return;
    if (e.status === 404) { $("#main").innerHTML = `<div class="card"><p id="no-reports">${esc(t("no_reports"))}</p></div>`; return; }
    throw e;
  }
  if (stale(g)) return;
  const chosen = name ? decodeURIComponent(name) : list.reports[0]?.name;
  const rows = list.reports.map((r) => [`<a href="#/twin/${encodeURIComponent(r.name)}">${esc(r.name)}</a>`, esc(r.trace), r.policies, time(r.modified_ms)]);
  $("#main").innerHTML = `<div class="card"><h3>${esc(t("reports"))}</h3>${list.reports.length === 0 ? `<p id="no-reports">${esc(t("no_reports"))}</p>`
    : table("reports", [["report"], ["trace"], ["policies", 1], ["written"]], rows)}</div><div id="twin-report"></div>`;
  if (!chosen) return;
  const rep = await api(`/v1/twin/reports/${encodeURIComponent(chosen)}`);
  if (stale(g)) return;
  const named = rep.policies.filter((p) => !p.policy.startsWith("sweep:"));
  const targets = named[0]?.targets || [];
  $("#twin-report").innerHTML = `<div class="card"><h3 id="twin-title">${esc(rep.name)} — ${esc(rep.trace)}</h3>
      ${table("twin-targets", [["targets"], ...named.map((p) => [p.policy, 1])],
        targets.map((tg, i) => [`<span title="${esc(tg.source)}">${esc(tg.name)} ${tg.bound === "at_least" ? "≥" : "≤"} ${tg.limit.toFixed(3)}</span>`,
          ...named.map((p) => { const x = p.targets[i]; return x ? `${x.value.toFixed(3)} ${x.met === true ? "✓" : x.met === false ? "✗" : "?"}` : ""; })]))}</div>
    <div class="card"><h3>${esc(t("frontier"))}</h3><div class="chart" data-twin="frontier"></div></div>
    <div class="card"><h3>${esc(t("green_per_day"))}</h3><div class="chart" data-twin="green"></div></div>
    <div class="card"><h3>${esc(t("hubs_per_day"))}</h3>${named.map((p) => `<h4>${esc(p.policy)}</h4><div class="chart" data-twin="hubs" data-policy="${esc(p.policy)}"></div>`).join("")}</div>`;
  const els = [...document.querySelectorAll("[data-twin]")];
  drawTwin(rep.policies, (kind, policy) => els.find((el) => el.dataset.twin === kind && (!policy || el.dataset.policy === policy)), chart);
}

async function pageAlerts() {
  const g = generation;
  const list = await api("/v1/alerts");
  updateBadge(list);
  if (stale(g)) return;
  $("#main").innerHTML = `<div class="card">${list.alerts.length === 0 ? `<p id="no-alerts">${esc(t("no_alerts"))}</p>` : `<table id="alerts-table"><thead><tr>
    <th>${esc(t("state"))}</th><th>${esc(t("severity"))}</th><th>${esc(t("name"))}</th><th>${esc(t("summary"))}</th><th class="num">${esc(t("value"))}</th><th>${esc(t("since"))}</th></tr></thead><tbody>
    ${list.alerts.map((a) => `<tr data-alert="${esc(a.name)}" data-state="${esc(a.state)}"><td class="state-${esc(a.state)}">${esc(a.state)}</td><td class="sev-${esc(a.severity)}">${esc(a.severity)}</td>
      <td>${esc(a.name)}</td><td>${esc(a.annotations.summary)}</td><td class="num">${a.value ?? "—"}</td><td>${time(a.fired_at_ms || a.active_at_ms)}</td></tr>`).join("")}
    </tbody></table>`}</div>`;
}

function updateBadge(list) {
  const firing = list.alerts.filter((a) => a.state === "firing").length;
  const b = $("#alert-count");
  b.hidden = firing === 0;
  b.textContent = String(firing);
}

// Live updates: /v1/events through fetch (EventSource cannot send a bearer token), resumed
// with Last-Event-ID after a break.
async function follow() {
  if (stream) stream.abort();
  const ctl = new AbortController();
  stream = ctl;
  let last = null;
  let pending = null;
  const refresh = () => {
    if (pending) return;
    pending = setTimeout(() => { pending = null; route(true); }, 300);
  };
  while (!ctl.signal.aborted && token) {
    try {
      const headers = { authorization: `Bearer ${token}` };
      if (last) headers["last-event-id"] = last;
      const r = await fetch("/v1/events", { headers, signal: ctl.signal });
      if (r.status === 401) { signOut(t("session_ended")); return; }
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      let kind = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, "");
          buf = buf.slice(nl + 1);
          if (line.startsWith("id:")) last = line.slice(3).trim();
          else if (line.startsWith("event:")) kind = line.slice(6).trim();
          else if (line === "") {
            const page = location.hash.split("/")[1] || "map";
            if (kind === "alert" && ["alerts", "map"].includes(page)) refresh();
            else if (kind === "alert") api("/v1/alerts").then(updateBadge).catch(() => {});
            else if (kind === "job" && page === "jobs") refresh();
            kind = "";
          }
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
}

// Each route() is a new generation: a page whose data arrives after the user moved on draws
// nothing (its elements are gone), and its errors are not shown over the new page.
let generation = 0;
const stale = (g) => g !== generation;

let routing = null;
async function route(quiet) {
  if (!token || !me) return;
  const [, page = "map", arg] = location.hash.split("/");
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === `#/${page}`));
  const g = ++generation;
  if (!quiet) disposeCharts();
  const run = async () => {
    if (quiet) disposeCharts();
    if (page === "jobs" && arg) return pageJob(arg);
    if (page === "jobs") return pageJobs();
    if (page === "sites") return pageSites();
    if (page === "kpis") return pageKpis();
    if (page === "money") return pageMoney();
    if (page === "data") return pageData();
    if (page === "twin") return pageTwin(arg);
    if (page === "alerts") return pageAlerts();
    return pageMap();
  };
  routing = run().catch((e) => {
    if (e.status !== 401 && !stale(g)) $("#main").innerHTML = `<div class="card error">${esc(e.message)}</div>`;
  });
  await routing;
  if (page !== "alerts") api("/v1/alerts").then(updateBadge).catch(() => {});
}

window.addEventListener("hashchange", () => route());
// a stream held past the page would keep one of the browser's six HTTP/1.1 connections to
// this host busy: closed when the page goes away
window.addEventListener("pagehide", () => { if (stream) { stream.abort(); stream = null; } });
window.addEventListener("resize", () => charts.forEach((c) => c.resize()));
$("#signout").addEventListener("click", () => signOut(""));
$("#lang").addEventListener("click", (e) => {
  e.preventDefault();
  lang = lang === "zh" ? "en" : "zh";
  params.set("lang", lang);
  history.replaceState(null, "", `?${params}${location.hash}`);
  applyLabels();
  route();
});

applyLabels();
if (token) {
  fetch("/v1/whoami", { headers: { authorization: `Bearer ${token}` } }).then(async (r) => {
    const body = await r.json().catch(() => ({}));
    if (r.ok) start(body); else signOut(`${t("bad_token")}: ${body.message || r.status}`);
  });
} else {
  showSignIn("");
}
