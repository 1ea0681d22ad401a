// The digital twin's charts (issue 15 item 4), one script for both places that draw them: the
// report `suanwang twin --report` writes (beside its index.html) and the console's Twin page.
// `policies` are twin.json's (`policy`, `cost_fen`, `carbon_kg`, `mean_wait_s`,
// `pareto_efficient`, `daily_green_share`, `daily_hub_utilization`); `place(kind, policy)` finds
// the element of a chart (`frontier`, `green`, `hubs` of a policy); `init(el)` makes its chart.
"use strict";
/* exported drawTwin */
function drawTwin(policies, place, init) {
  const pct = (v) => `${Math.round(v * 100)} %`;
  const sweep = (p) => p.policy.startsWith("sweep:");
  const days = Math.max(0, ...policies.flatMap((p) => [p.daily_green_share.length, ...Object.values(p.daily_hub_utilization).map((v) => v.length)]));
  const dayNames = Array.from({ length: days }, (_, i) => `${i + 1}`);
  const named = policies.filter((p) => !sweep(p));
  const base = { animation: false, tooltip: { trigger: "axis" }, grid: { left: 70, right: 90, top: 60, bottom: 60 } };
  const dayAxis = { type: "category", data: dayNames, name: "day of the trace", nameLocation: "middle", nameGap: 32, axisTick: { show: true, alignWithLabel: true } };
  const shareAxis = { type: "value", min: 0, max: 1, name: "share", axisLabel: { formatter: pct }, axisTick: { show: true } };
  const draw = (el, option) => { if (el) init(el).setOption(option); };
  draw(place("green"), { ...base, legend: { type: "scroll", top: 0 }, xAxis: dayAxis, yAxis: shareAxis,
    series: named.map((p, i) => ({ name: p.policy, type: "line", showSymbol: false, data: p.daily_green_share,
      markLine: i === 0 ? { silent: true, symbol: "none", label: { formatter: "target 80 %" }, data: [{ yAxis: 0.8 }] } : undefined })) });
  named.forEach((p) => {
    const max = Math.max(0.05, ...Object.values(p.daily_hub_utilization).flat());
    draw(place("hubs", p.policy), { ...base, legend: { type: "scroll", top: 0 }, xAxis: dayAxis,
      yAxis: { ...shareAxis, max: Math.min(1, Math.ceil(max * 10) / 10) },
      series: Object.entries(p.daily_hub_utilization).map(([hub, v]) => ({ name: hub, type: "line", showSymbol: false, data: v })) });
  });
  const maxWait = Math.max(1, ...policies.map((p) => p.mean_wait_s));
  const point = (p) => ({ name: p.policy, value: [p.cost_fen / 100, p.carbon_kg, p.mean_wait_s],
    symbolSize: 8 + 22 * Math.min(1, p.mean_wait_s / maxWait),
    itemStyle: p.pareto_efficient ? { borderColor: "#000", borderWidth: 2 } : {} });
  draw(place("frontier"), { ...base, tooltip: { trigger: "item", formatter: (x) =>
      `${x.name}<br>cost ${x.value[0].toFixed(2)} CNY<br>carbon ${x.value[1].toFixed(1)} kg<br>mean wait ${x.value[2].toFixed(0)} s` },
    legend: { type: "scroll", top: 0 },
    xAxis: { type: "value", scale: true, name: "cost (CNY)", nameLocation: "middle", nameGap: 32, axisTick: { show: true } },
    yAxis: { type: "value", scale: true, name: "carbon (kg CO₂, market-based)", nameLocation: "middle", nameGap: 55, axisTick: { show: true } },
    series: [
      ...named.map((p) => ({ name: p.policy, type: "scatter", data: [point(p)], label: { show: true, position: "right", formatter: (x) => x.name },
        labelLayout: { hideOverlap: true } })),
      ...(policies.some(sweep) ? [{ name: "sweep", type: "scatter", itemStyle: { color: "#9aa3b5" }, data: policies.filter(sweep).map(point) }] : []),
    ] });
}
