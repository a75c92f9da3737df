// The endpoint list and the endpoint detail page.

import { deleteEndpoint, getEndpoint, listEndpoints, listProviders } from "../api.js";
import { confirmDialog, h, icon, toast } from "../dom.js";
import { capabilityBadges, priceLine, timeEl, tokens, usd } from "../format.js";
import { codeBlock, snippetCard } from "../snippets.js";

const enc = encodeURIComponent;

function providerMap(providers) {
  return new Map((providers || []).map((p) => [p.id, p]));
}

function catalogModel(provider, modelId) {
  return provider?.models?.find((m) => m.id === modelId) || null;
}

function sourcePill(source) {
  return source === "file"
    ? h("span", { class: "pill", title: "Declared in the endpoints file: edit the file to change it", dataset: { source } }, icon("file"), "File")
    : h("span", { class: "pill", title: "Created through the console or the API", dataset: { source: source || "api" } }, icon("layers"), "API");
}

/** Asks, deletes, reports. Resolves true once deleted. */
export async function confirmAndDelete(name) {
  const yes = await confirmDialog({
    title: `Delete endpoint “${name}”?`,
    message: `Applications calling the model “${name}” will get an error from their next request on. This cannot be undone.`,
    confirmLabel: "Delete endpoint",
  });
  if (!yes) return false;
  try {
    await deleteEndpoint(name);
  } catch (error) {
    toast(`Could not delete “${name}”: ${error.message}`, "error");
    return false;
  }
  toast(`Endpoint “${name}” deleted`);
  return true;
}

const TOML_EXAMPLE = `# portico.toml — endpoints declared in a file are listed here too
[[endpoints]]
name = "chat"
provider = "openai"
model = "gpt-4.1-mini"

[endpoints.config]
api_key = "\${OPENAI_API_KEY}"   # read from the environment
`;

function howStep(n, title, text) {
  return h("li", {}, h("span", { class: "num", "aria-hidden": "true" }, String(n)), h("div", {}, h("strong", {}, title), h("span", { class: "text" }, text)));
}

function emptyState(providers) {
  const noPlugins = providers.length === 0;
  return h(
    "div",
    { class: "card empty", dataset: { empty: "endpoints" } },
    h("span", { class: "empty-icon" }, icon("route")),
    h("h2", {}, "No endpoints yet"),
    h(
      "p",
      {},
      "An endpoint gives a name to a provider, a model and its credentials. Your applications pass that name as the ",
      h("code", {}, "model"),
      " to the OpenAI, Anthropic or Gemini SDK, and the gateway does the rest.",
    ),
    noPlugins
      ? h(
          "div",
          { class: "alert warn" },
          icon("alert"),
          h("div", {}, h("strong", {}, "No provider plugins are loaded"), "Put provider .wasm files into the gateway's plugins folder: they load without a restart. ", h("a", { href: "#/plugins" }, "See plugins")),
        )
      : null,
    h("div", { class: "steps" }, h("a", { class: "button primary", href: "#/endpoints/new" }, icon("plus"), "Create your first endpoint")),
    h(
      "ol",
      { class: "how", "aria-label": "How it works" },
      howStep(1, "Pick a provider and model", "From the loaded plugins' catalogs, with prices and capabilities."),
      howStep(2, "Add credentials", "The gateway keeps them; applications never see them."),
      howStep(3, "Call it by name", "Use the OpenAI, Anthropic or Gemini SDK with the snippet shown."),
    ),
    h(
      "details",
      { class: "empty-hint" },
      h("summary", {}, "Prefer configuration files?"),
      codeBlock(TOML_EXAMPLE, "python", "portico.toml example"),
    ),
  );
}

/** A short description of an endpoint's routing, or null for none. */
function routingSummary(policy) {
  const targets = policy?.targets || [];
  const fallbacks = policy?.fallbacks || [];
  if (!targets.length && !fallbacks.length) return null;
  const parts = [];
  if (targets.length) parts.push(targets.map((t) => `${t.endpoint} ×${t.weight}`).join(", "));
  if (fallbacks.length) parts.push(`then ${fallbacks.join(" → ")}`);
  return parts.join(" ");
}

function endpointRow(endpoint, providers) {
  const provider = providers.get(endpoint.provider);
  const model = catalogModel(provider, endpoint.model);
  const name = endpoint.name;
  const fromFile = endpoint.source === "file";
  const deleteButton = h(
    "button",
    { type: "button", class: "icon-button danger", "aria-label": `Delete ${name}`, title: "Delete", dataset: { action: "delete" } },
    icon("trash"),
  );
  const row = h(
    "tr",
    { dataset: { endpoint: name } },
    h(
      "td",
      { class: "name-cell" },
      h("a", { class: "cell-title mono", href: `#/endpoints/${enc(name)}` }, name),
      h("div", { class: "cell-sub" }, "Updated ", timeEl(endpoint.updated_at)),
    ),
    h(
      "td",
      { "data-label": "Provider", dataset: { col: "provider" } },
      !endpoint.provider
        ? [h("div", { class: "cell-title" }, "Router"), h("div", { class: "cell-sub" }, "routes to other endpoints")]
        : provider
          ? [h("div", { class: "cell-title" }, provider.display_name), h("div", { class: "cell-sub mono" }, provider.id)]
          : [h("div", { class: "cell-title mono" }, endpoint.provider), h("span", { class: "pill warn" }, "Plugin not loaded")],
    ),
    h(
      "td",
      { "data-label": "Model", dataset: { col: "model" } },
      !endpoint.provider
        ? [h("div", { class: "cell-title mono" }, routingSummary(endpoint.policy) || "—"), h("div", { class: "cell-sub" }, "Targets")]
        : model
          ? [h("div", { class: "cell-title" }, model.display_name), h("div", { class: "cell-sub mono" }, model.id), routingSummary(endpoint.policy) ? h("div", { class: "cell-sub mono", dataset: { col: "routing" } }, routingSummary(endpoint.policy)) : null]
          : [h("div", { class: "cell-title mono" }, endpoint.model), h("div", { class: "cell-sub" }, "Custom model"), routingSummary(endpoint.policy) ? h("div", { class: "cell-sub mono", dataset: { col: "routing" } }, routingSummary(endpoint.policy)) : null],
    ),
    h("td", { "data-label": "Capabilities", dataset: { col: "capabilities" } }, model ? capabilityBadges(model.capabilities) : h("span", { class: "muted small" }, "Not in catalog")),
    h("td", { "data-label": "Source", dataset: { col: "source" } }, sourcePill(endpoint.source)),
    h(
      "td",
      { class: "actions" },
      h("a", { class: "icon-button", href: `#/endpoints/${enc(name)}`, "aria-label": `Connect to ${name}`, title: "Code snippets", dataset: { action: "connect" } }, icon("code")),
      // File endpoints change only through the file: the API refuses writes.
      fromFile ? null : h("a", { class: "icon-button", href: `#/endpoints/${enc(name)}/edit`, "aria-label": `Edit ${name}`, title: "Edit", dataset: { action: "edit" } }, icon("edit")),
      fromFile ? h("span", { class: "icon-button locked", role: "img", "aria-label": "Managed in the endpoints file", title: "Declared in the endpoints file: edit the file to change it" }, icon("lock")) : deleteButton,
    ),
  );
  deleteButton.addEventListener("click", async () => {
    if (await confirmAndDelete(name)) {
      const body = row.parentElement;
      row.remove();
      if (body && !body.children.length) window.dispatchEvent(new HashChangeEvent("hashchange"));
    }
  });
  return row;
}

export async function endpointsView() {
  const [endpoints, providerList] = await Promise.all([listEndpoints(), listProviders()]);
  const providers = providerMap(providerList);
  endpoints.sort((a, b) => a.name.localeCompare(b.name));

  const header = h(
    "div",
    { class: "page-header" },
    h(
      "div",
      {},
      h("h1", {}, "Endpoints"),
      h("p", { class: "lede" }, "Named routes to a provider and model. Applications call them with the official OpenAI, Anthropic or Gemini SDK, using the endpoint name as the model."),
    ),
    endpoints.length ? h("div", { class: "page-actions" }, h("a", { class: "button primary", href: "#/endpoints/new" }, icon("plus"), "New endpoint")) : null,
  );

  if (!endpoints.length) return h("div", { class: "page" }, header, emptyState(providerList || []));

  const table = h(
    "div",
    { class: "card table-card" },
    h(
      "table",
      { class: "table", "aria-label": "Endpoints" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Endpoint"),
          h("th", { scope: "col" }, "Provider"),
          h("th", { scope: "col" }, "Model"),
          h("th", { scope: "col" }, "Capabilities"),
          h("th", { scope: "col" }, "Source"),
          h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")),
        ),
      ),
      h("tbody", {}, endpoints.map((e) => endpointRow(e, providers))),
    ),
  );
  return h("div", { class: "page" }, header, table);
}

function modelCard(model, modelId) {
  const body = model
    ? h(
        "div",
        { class: "card-body model-card", dataset: { model: model.id } },
        h("div", {}, h("div", { class: "cell-title" }, model.display_name), h("div", { class: "cell-sub mono" }, model.id)),
        capabilityBadges(model.capabilities),
        h(
          "div",
          { class: "stats" },
          stat("Context", tokens(model.context_window), "tokens"),
          model.capabilities?.embeddings
            ? stat("Dimensions", model.embedding_dimensions || "—", "per vector")
            : stat("Max output", tokens(model.max_output_tokens), "tokens"),
          stat("Input", usd(model.input_price_per_mtok), "per 1M tokens"),
          model.capabilities?.embeddings && !model.output_price_per_mtok
            ? stat("Output", "—", "not billed")
            : stat("Output", usd(model.output_price_per_mtok), "per 1M tokens"),
        ),
      )
    : h(
        "div",
        { class: "card-body model-card" },
        h("div", {}, h("div", { class: "cell-title mono" }, modelId), h("p", { class: "cell-sub" }, "A custom model, not in the provider's catalog: its capabilities and prices are not known.")),
      );
  return h("section", { class: "card", "aria-labelledby": "model-title" }, h("div", { class: "card-header" }, h("h2", { id: "model-title" }, "Model")), body);
}

function stat(label, value, unit) {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, String(value)), h("div", { class: "unit" }, unit));
}

/** The non-default parts of an endpoint's policy, as description rows. */
function policyRows(policy) {
  const p = policy || {};
  const rows = [];
  const add = (label, value) => rows.push(h("dt", {}, label), h("dd", { class: "mono", dataset: { policy: label } }, value));
  if (p.targets?.length) add("Targets", p.targets.map((t) => `${t.endpoint} (weight ${t.weight})`).join(", "));
  if (p.fallbacks?.length) add("Fallbacks", p.fallbacks.join(" → "));
  if (p.retry && p.retry.max_attempts > 1) add("Retries", `${p.retry.max_attempts} attempts, backoff ${p.retry.initial_backoff_ms}–${p.retry.max_backoff_ms} ms`);
  const t = p.timeouts || {};
  const timeouts = [t.connect_ms && `connect ${t.connect_ms} ms`, t.attempt_ms && `attempt ${t.attempt_ms} ms`, t.total_ms && `total ${t.total_ms} ms`].filter(Boolean);
  if (timeouts.length) add("Timeouts", timeouts.join(", "));
  if (p.circuit_breaker) add("Circuit breaker", `open after ${p.circuit_breaker.failure_threshold} failures, ${p.circuit_breaker.cooldown_ms} ms cool-down`);
  const l = p.limits || {};
  const limits = [l.requests_per_minute && `${l.requests_per_minute} requests/min`, l.tokens_per_minute && `${l.tokens_per_minute} tokens/min`].filter(Boolean);
  if (limits.length) add("Rate limits", limits.join(", "));
  return rows;
}

export async function endpointDetailView({ name }) {
  const [endpoint, providerList] = await Promise.all([getEndpoint(name), listProviders()]);
  const provider = providerMap(providerList).get(endpoint.provider);
  const model = catalogModel(provider, endpoint.model);
  const secrets = new Set(endpoint.secrets_set || []);
  const fields = new Map((provider?.config_fields || []).map((f) => [f.name, f]));

  const deleteButton = h("button", { type: "button", class: "button", dataset: { action: "delete" } }, icon("trash"), "Delete");
  deleteButton.addEventListener("click", async () => {
    if (await confirmAndDelete(endpoint.name)) window.location.hash = "#/endpoints";
  });

  const configRows = Object.entries(endpoint.config || {}).map(([key, value]) => {
    const field = fields.get(key);
    const secret = secrets.has(key) || field?.kind === "secret" || field?.kind === "secret_json";
    return [
      h("dt", {}, field?.label || key),
      h("dd", { dataset: { config: key } }, secret ? h("span", { class: "secret" }, icon("lock"), "********") : h("span", { class: "mono" }, value)),
    ];
  });

  const details = h(
    "section",
    { class: "card", "aria-labelledby": "details-title" },
    h("div", { class: "card-header" }, h("h2", { id: "details-title" }, "Configuration")),
    h(
      "div",
      { class: "card-body" },
      h(
        "dl",
        { class: "kv" },
        h("dt", {}, "Provider"),
        h(
          "dd",
          {},
          !endpoint.provider
            ? h("span", {}, "None (router)")
            : provider
              ? h("span", {}, provider.display_name, " ", h("span", { class: "muted mono small" }, provider.id))
              : h("span", {}, h("span", { class: "mono" }, endpoint.provider), " ", h("span", { class: "pill warn" }, "Plugin not loaded")),
        ),
        configRows,
        policyRows(endpoint.policy),
        h("dt", {}, "Created"),
        h("dd", {}, timeEl(endpoint.created_at)),
        h("dt", {}, "Updated"),
        h("dd", {}, timeEl(endpoint.updated_at)),
      ),
    ),
  );

  return h(
    "div",
    { class: "page", dataset: { endpoint: endpoint.name } },
    h(
      "div",
      { class: "page-header" },
      h(
        "div",
        {},
        h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/endpoints" }, "Endpoints"), icon("chevronRight"), h("span", { "aria-current": "page" }, endpoint.name)),
        h(
          "div",
          { class: "title-row" },
          h("h1", { class: "mono" }, endpoint.name),
          sourcePill(endpoint.source),
        ),
        model ? h("p", { class: "lede" }, `${provider?.display_name || endpoint.provider} · ${model.display_name} · `, priceLine(model)) : null,
      ),
      endpoint.source === "file"
        ? h("div", { class: "page-actions" }, h("span", { class: "pill", title: "The API cannot change endpoints declared in the endpoints file" }, icon("lock"), "Managed in the endpoints file"))
        : h("div", { class: "page-actions" }, h("a", { class: "button", href: `#/endpoints/${enc(endpoint.name)}/edit` }, icon("edit"), "Edit"), deleteButton),
    ),
    h("div", { class: "detail-grid" }, snippetCard(endpoint.name, { embeddings: Boolean(model?.capabilities?.embeddings) }), h("div", { class: "side" }, modelCard(model, endpoint.model), details)),
  );
}
