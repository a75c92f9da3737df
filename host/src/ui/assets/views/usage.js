// The usage page: requests, tokens, cost and latency of the calls through
// the gateway over a time range (from /api/v1/usage), drawn as inline SVG
// charts, with a table grouped by endpoint, provider, model or key.

import { api } from "../api.js";
import { h, icon } from "../dom.js";

const SVG_NS = "http://www.w3.org/2000/svg";

const RANGES = [
  { id: "1h", label: "Last hour", ms: 3600e3, bucket: "minute" },
  { id: "24h", label: "Last 24 hours", ms: 24 * 3600e3, bucket: "hour" },
  { id: "7d", label: "Last 7 days", ms: 7 * 24 * 3600e3, bucket: "hour" },
  { id: "30d", label: "Last 30 days", ms: 30 * 24 * 3600e3, bucket: "day" },
];
const BUCKET_MS = { minute: 60e3, hour: 3600e3, day: 24 * 3600e3 };
const GROUPS = [
  { id: "endpoint", label: "Endpoint" },
  { id: "provider", label: "Provider" },
  { id: "model", label: "Model" },
  { id: "key", label: "Gateway key" },
];

// Kept across visits so returning to the page shows the same view.
const state = { range: "24h", group: "endpoint" };

const count = new Intl.NumberFormat("en");
const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });

function money(n) {
  if (!n) return "$0";
  if (n < 0.01) return "$" + n.toPrecision(2);
  return "$" + n.toFixed(2);
}

function ms(n) {
  if (n === null || n === undefined) return "—";
  return n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${Math.round(n)} ms`;
}

function bucketLabel(start, bucket) {
  const d = new Date(start);
  if (bucket === "day") return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  if (bucket === "hour") return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** Every bucket of the range, with the API's rows filled in (zeros elsewhere). */
function series(rows, fromMs, toMs, bucket) {
  const size = BUCKET_MS[bucket];
  const byStart = new Map(rows.map((r) => [r.bucket_start_ms, r]));
  const out = [];
  for (let t = Math.floor(fromMs / size) * size; t < toMs; t += size) {
    out.push(byStart.get(t) || { bucket_start_ms: t, requests: 0, errors: 0, input_tokens: 0, output_tokens: 0, cost_usd: 0, avg_latency_ms: null, p95_latency_ms: null, avg_ttft_ms: null });
  }
  return out;
}

/**
 * A chart of one or more series over the buckets. `kind` "bar" stacks the
 * series; "line" draws each as a line. The SVG has a text summary as its
 * accessible name, and every bucket a <title> for pointer users.
 */
function chart({ id, title, points, bucket, series: defs, kind, format }) {
  const W = 640;
  const H = 200;
  const pad = { l: 56, r: 12, t: 12, b: 28 };
  const iw = W - pad.l - pad.r;
  const ih = H - pad.t - pad.b;
  const totals = points.map((p) => defs.reduce((s, d) => s + (d.value(p) || 0), 0));
  const maxOf = kind === "bar" ? Math.max(0, ...totals) : Math.max(0, ...points.flatMap((p) => defs.map((d) => d.value(p) || 0)));
  const max = maxOf > 0 ? maxOf : 1;
  const n = Math.max(points.length, 1);
  const step = iw / n;
  const y = (v) => pad.t + ih - (v / max) * ih;

  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img" });
  const peakIndex = totals.indexOf(Math.max(...totals));
  const summary = defs
    .map((d) => {
      const values = points.map((p) => d.value(p)).filter((v) => v !== null && v !== undefined);
      const sum = values.reduce((a, b) => a + b, 0);
      return kind === "bar" ? `${d.label}: ${format(sum)} in total` : `${d.label}: average ${format(values.length ? sum / values.length : null)}`;
    })
    .join("; ");
  const label = `${title}, ${points.length} buckets of one ${bucket}. ${summary}.${maxOf > 0 && kind === "bar" ? ` Peak ${format(totals[peakIndex])} at ${bucketLabel(points[peakIndex].bucket_start_ms, bucket)}.` : ""}`;
  root.setAttribute("aria-label", label);
  root.append(svg("title", {}, label));

  // Grid lines and y labels at 0, half and max.
  for (const frac of [0, 0.5, 1]) {
    const v = max * frac;
    root.append(svg("line", { x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), class: "chart-grid" }));
    root.append(svg("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end", class: "chart-axis" }, maxOf > 0 || frac === 0 ? format(v) : ""));
  }
  // X labels: first, middle and last bucket.
  for (const i of [...new Set([0, Math.floor((n - 1) / 2), n - 1])]) {
    if (!points[i]) continue;
    const anchor = i === 0 ? "start" : i === n - 1 ? "end" : "middle";
    const x = i === 0 ? pad.l : i === n - 1 ? W - pad.r : pad.l + step * (i + 0.5);
    root.append(svg("text", { x, y: H - 8, "text-anchor": anchor, class: "chart-axis" }, bucketLabel(points[i].bucket_start_ms, bucket)));
  }

  if (kind === "bar") {
    const bw = Math.max(step * 0.7, 1);
    points.forEach((p, i) => {
      let base = 0;
      // A full-height target first (under the bars), so every bucket has
      // a tooltip and a hover highlight.
      const g = svg("g", { class: "chart-bucket" }, svg("rect", { x: pad.l + step * i, y: pad.t, width: step, height: ih, class: "chart-hit" }));
      const parts = [];
      defs.forEach((d, k) => {
        const v = d.value(p) || 0;
        parts.push(`${d.label} ${format(v)}`);
        if (v <= 0) return;
        g.append(svg("rect", { x: pad.l + step * i + (step - bw) / 2, y: y(base + v), width: bw, height: Math.max(y(base) - y(base + v), 0.5), class: `chart-series-${k}` }));
        base += v;
      });
      g.append(svg("title", {}, `${bucketLabel(p.bucket_start_ms, bucket)}: ${parts.join(", ")}`));
      root.append(g);
    });
  } else {
    defs.forEach((d, k) => {
      let path = "";
      let pen = false;
      points.forEach((p, i) => {
        const v = d.value(p);
        if (v === null || v === undefined) {
          pen = false;
          return;
        }
        path += `${pen ? "L" : "M"}${(pad.l + step * (i + 0.5)).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
        root.append(svg("circle", { cx: pad.l + step * (i + 0.5), cy: y(v), r: 2.5, class: `chart-dot chart-series-${k}` }, svg("title", {}, `${bucketLabel(p.bucket_start_ms, bucket)}: ${d.label} ${format(v)}`)));
      });
      if (path) root.insertBefore(svg("path", { d: path, class: `chart-line chart-series-${k}` }), root.querySelector("circle"));
    });
  }

  const legend = h(
    "ul",
    { class: "chart-legend", "aria-hidden": "true" },
    defs.map((d, k) => h("li", {}, h("span", { class: `chart-swatch chart-series-${k}` }), d.label)),
  );
  return h("figure", { class: "card usage-chart", dataset: { chart: id } }, h("figcaption", {}, h("h2", {}, title), legend), root);
}

function stat(id, label, value, detail) {
  return h("div", { class: "card usage-stat", dataset: { stat: id } }, h("div", { class: "usage-stat-label" }, label), h("div", { class: "usage-stat-value" }, value), detail ? h("div", { class: "usage-stat-detail" }, detail) : null);
}

function groupName(row, group) {
  if (group === "key") return row.key ? `${row.key_prefix || row.key}…` : "No key";
  return row[group] || "(none)";
}

function table(rows, group) {
  const label = GROUPS.find((g) => g.id === group).label;
  if (!rows.length) return h("div", { class: "card empty" }, h("span", { class: "empty-icon" }, icon("database")), h("h2", {}, "No calls in this range"), h("p", {}, "Calls through /gateway appear here within a second or two."));
  const sorted = [...rows].sort((a, b) => b.requests - a.requests);
  return h(
    "div",
    { class: "card table-card" },
    h(
      "table",
      { class: "table usage-table", "aria-label": `Usage by ${label.toLowerCase()}` },
      h("thead", {}, h("tr", {}, [label, "Requests", "Errors", "Input tokens", "Output tokens", "Cost", "Avg latency", "p95 latency", "Avg TTFT"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        sorted.map((r) =>
          h(
            "tr",
            { dataset: { group: groupName(r, group) } },
            h("td", { class: "mono" }, groupName(r, group)),
            h("td", { dataset: { col: "requests" } }, count.format(r.requests)),
            h("td", { dataset: { col: "errors" } }, count.format(r.errors)),
            h("td", { dataset: { col: "input_tokens" } }, count.format(r.input_tokens)),
            h("td", { dataset: { col: "output_tokens" } }, count.format(r.output_tokens)),
            h("td", { dataset: { col: "cost" }, title: r.unpriced_requests ? `${r.unpriced_requests} call(s) without a catalog price are not included` : null }, money(r.cost_usd), r.unpriced_requests ? " *" : ""),
            h("td", {}, ms(r.avg_latency_ms)),
            h("td", { dataset: { col: "p95_latency" } }, ms(r.p95_latency_ms)),
            h("td", {}, ms(r.avg_ttft_ms)),
          ),
        ),
      ),
    ),
  );
}

async function content() {
  const range = RANGES.find((r) => r.id === state.range) || RANGES[1];
  const to = Date.now();
  const from = to - range.ms;
  const q = `from=${from}&to=${to}`;
  const [overTime, grouped] = await Promise.all([
    api("GET", `/usage?${q}&bucket=${range.bucket}`),
    api("GET", `/usage?${q}&group_by=${state.group}`),
  ]);
  const t = overTime.totals;
  const points = series(overTime.rows, from, to, range.bucket);
  const errorRate = t.requests ? ` (${((t.errors / t.requests) * 100).toFixed(1)}%)` : "";
  return h(
    "div",
    { class: "usage-content" },
    h(
      "div",
      { class: "usage-stats" },
      stat("requests", "Requests", count.format(t.requests), `${count.format(t.errors)} errors${errorRate}`),
      stat("tokens", "Tokens", compact.format(t.input_tokens + t.output_tokens), `${compact.format(t.input_tokens)} in · ${compact.format(t.output_tokens)} out`),
      stat("cost", "Cost", money(t.cost_usd), t.unpriced_requests ? `${t.unpriced_requests} call(s) without a catalog price` : "at catalog prices"),
      stat("latency", "Avg latency", ms(t.requests ? t.avg_latency_ms : null), `p50 ${ms(t.requests ? t.p50_latency_ms : null)} · p95 ${ms(t.requests ? t.p95_latency_ms : null)} · p99 ${ms(t.requests ? t.p99_latency_ms : null)} · max ${ms(t.requests ? t.max_latency_ms : null)} · TTFT ${ms(t.avg_ttft_ms)}`),
    ),
    h(
      "div",
      { class: "usage-charts" },
      chart({ id: "requests", title: "Requests", points, bucket: range.bucket, kind: "bar", format: (v) => compact.format(v), series: [{ label: "Succeeded", value: (p) => p.requests - p.errors }, { label: "Errors", value: (p) => p.errors }] }),
      chart({ id: "tokens", title: "Tokens", points, bucket: range.bucket, kind: "bar", format: (v) => compact.format(v), series: [{ label: "Input", value: (p) => p.input_tokens }, { label: "Output", value: (p) => p.output_tokens }] }),
      chart({ id: "cost", title: "Cost (USD)", points, bucket: range.bucket, kind: "bar", format: money, series: [{ label: "Cost", value: (p) => p.cost_usd }] }),
      chart({ id: "latency", title: "Latency", points, bucket: range.bucket, kind: "line", format: ms, series: [{ label: "Avg latency", value: (p) => (p.requests ? p.avg_latency_ms : null) }, { label: "p95 latency", value: (p) => (p.requests ? p.p95_latency_ms : null) }, { label: "Avg time to first token", value: (p) => p.avg_ttft_ms }] }),
    ),
    h("h2", { class: "section-title" }, `By ${GROUPS.find((g) => g.id === state.group).label.toLowerCase()}`),
    table(grouped.rows, state.group),
  );
}

export async function usageView() {
  const body = h("div", { class: "usage-body" }, await content());
  const reload = async () => {
    body.setAttribute("aria-busy", "true");
    try {
      body.replaceChildren(await content());
    } catch (error) {
      body.replaceChildren(h("div", { class: "alert", role: "alert" }, icon("alert"), h("div", {}, h("strong", {}, "Could not load usage"), h("p", {}, error.message))));
    } finally {
      body.removeAttribute("aria-busy");
    }
  };
  const select = (id, label, options, key) => {
    const el = h("select", { id, "aria-label": label }, options.map((o) => h("option", { value: o.id, selected: o.id === state[key] }, o.label)));
    el.value = state[key];
    el.addEventListener("change", () => {
      state[key] = el.value;
      reload();
    });
    return h("label", { class: "usage-control" }, h("span", {}, label), el);
  };
  const refresh = h("button", { type: "button", class: "button", id: "usage-refresh" }, icon("refresh"), "Refresh");
  refresh.addEventListener("click", reload);
  return h(
    "div",
    { class: "page usage-page" },
    h(
      "div",
      { class: "page-header" },
      h("div", {}, h("h1", {}, "Usage"), h("p", { class: "lede" }, "Requests, tokens, cost and latency of the calls through the gateway. Cost is computed from each provider plugin's model catalog prices; message contents are never logged.")),
      h("div", { class: "page-actions usage-controls" }, select("usage-range", "Time range", RANGES, "range"), select("usage-group", "Group table by", GROUPS, "group"), refresh),
    ),
    body,
  );
}
