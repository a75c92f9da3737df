// Display formatting shared by the views.

import { h, icon } from "./dom.js";

const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });

/** 400000 → "400K", 1047576 → "1M". */
export function tokens(n) {
  return n ? compact.format(n) : "—";
}

/** USD per million tokens: 1.25 → "$1.25", 0.075 → "$0.075". */
export function usd(n) {
  if (typeof n !== "number" || !Number.isFinite(n)) return "—";
  const digits = n !== 0 && n < 0.1 ? 3 : 2;
  return "$" + n.toFixed(digits).replace(/(\.\d\d\d?)0$/, "$1");
}

/** Input/output price per million tokens, as a small element. */
export function priceLine(model) {
  const input = model.input_price_per_mtok;
  const output = model.output_price_per_mtok;
  if (!input && !output) return h("span", { class: "price" }, h("b", {}, "No token charge"));
  if (model.capabilities?.embeddings && !output) {
    return h("span", { class: "price", title: "USD per million input tokens" }, h("b", {}, usd(input)), " / 1M tokens");
  }
  return h(
    "span",
    { class: "price", title: "USD per million tokens: input / output" },
    h("b", {}, usd(input)), " in · ", h("b", {}, usd(output)), " out / 1M",
  );
}

// Capability → badge label, CSS suffix and icon. Order is display order.
const CAPABILITIES = [
  ["tools", "Tools", "tools", "wrench"],
  ["reasoning", "Reasoning", "reasoning", "brain"],
  ["prompt_caching", "Caching", "caching", "database"],
  ["vision", "Vision", "vision", "image"],
  ["embeddings", "Embeddings", "embeddings", "vector"],
];

export function capabilityBadges(capabilities) {
  const caps = capabilities || {};
  const badges = CAPABILITIES.filter(([key]) => caps[key]).map(([key, label, css, ic]) =>
    h("span", { class: `badge badge-${css}`, dataset: { capability: key } }, icon(ic), label),
  );
  return h("div", { class: "badges" }, badges.length ? badges : h("span", { class: "muted small" }, "—"));
}

const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
const STEPS = [
  [60, "second"],
  [60, "minute"],
  [24, "hour"],
  [30, "day"],
  [12, "month"],
  [Infinity, "year"],
];

/** "3 minutes ago" for an RFC 3339 time; "" when absent or invalid. */
export function ago(rfc3339) {
  const t = Date.parse(rfc3339 || "");
  if (Number.isNaN(t)) return "";
  let value = (t - Date.now()) / 1000;
  for (const [size, unit] of STEPS) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return "";
}

export function absolute(rfc3339) {
  const t = Date.parse(rfc3339 || "");
  return Number.isNaN(t) ? "" : new Date(t).toLocaleString();
}

/** A <time> showing "3 minutes ago", the full date on hover. */
export function timeEl(rfc3339) {
  if (!rfc3339) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: rfc3339, title: absolute(rfc3339) }, ago(rfc3339) || rfc3339);
}

const OPERATION_LABELS = { chat: "Chat", chat_stream: "Streaming", embeddings: "Embeddings", count_tokens: "Token count" };

export function operationPills(operations) {
  return h("div", { class: "badges" }, (operations || []).map((op) => h("span", { class: "pill" }, OPERATION_LABELS[op] || op)));
}

/** Initials for a provider avatar: "OpenAI" → "O", "Google Vertex AI" → "GV". */
export function initials(name) {
  const words = String(name || "?").split(/\s+/).filter(Boolean);
  return words.slice(0, 2).map((w) => w[0].toUpperCase()).join("");
}
