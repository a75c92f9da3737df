// Create and edit an endpoint: provider, model from the provider's catalog
// (or a custom id), and the provider's config fields rendered by kind.

import { createEndpoint, getEndpoint, listEndpoints, listProviders, updateEndpoint } from "../api.js";
import { clear, h, icon, toast } from "../dom.js";
import { capabilityBadges, initials, operationPills, priceLine, tokens } from "../format.js";

const MASK = "********";
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const CUSTOM = "__custom__";
// The provider choice of a router: an endpoint that only routes to targets.
const ROUTER = "";
const enc = encodeURIComponent;

/** A config-field-safe DOM id. */
const fieldId = (name) => `cfg-${String(name).replace(/[^A-Za-z0-9_-]/g, "_")}`;

/** An endpoint name derived from a model id: "models/gemini-2.5" → "gemini-2.5". */
function suggestName(modelId) {
  const base = String(modelId || "").split("/").pop().replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "");
  return base.slice(0, 128);
}

function fieldShell({ id, label, required, help, control, holder, extra, readonly = false }) {
  const helpId = `${id}-help`;
  const errorId = `${id}-error`;
  const describedBy = [help ? helpId : null, errorId].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", describedBy);
  if (required) {
    control.required = true;
    control.setAttribute("aria-required", "true");
  }
  return h(
    "div",
    { class: "field", dataset: { field: id } },
    h(
      "label",
      { for: id },
      label,
      readonly ? null : required ? h("span", { class: "req", "aria-hidden": "true", title: "Required" }, "*") : h("span", { class: "optional" }, "optional"),
    ),
    holder || control,
    extra || null,
    help ? h("p", { class: "help", id: helpId }, help) : null,
    h("p", { class: "field-error", id: errorId, hidden: true }),
  );
}

/** The input for one config field, by kind. `stored` is the masked secret
 * marker when the endpoint already has a value for this secret. */
function configControl(field, value, storedSecret) {
  const id = fieldId(field.name);
  const placeholder = field.default_value || "";
  let control;
  let wrapper = null;
  let extra = null;
  switch (field.kind) {
    case "secret": {
      control = h("input", { id, name: field.name, type: "password", autocomplete: "new-password", spellcheck: "false", placeholder, class: "mono" });
      const toggle = h("button", { type: "button", class: "icon-button", "aria-label": `Show ${field.label}`, title: "Show", "aria-pressed": "false" }, icon("eye"));
      toggle.addEventListener("click", () => {
        const show = control.type === "password";
        control.type = show ? "text" : "password";
        toggle.setAttribute("aria-pressed", String(show));
        toggle.setAttribute("aria-label", `${show ? "Hide" : "Show"} ${field.label}`);
        toggle.replaceChildren(icon(show ? "eyeOff" : "eye"));
      });
      wrapper = h("div", { class: "input-group" }, control, toggle);
      break;
    }
    case "secret_json":
      control = h("textarea", { id, name: field.name, rows: "6", spellcheck: "false", autocomplete: "off", placeholder });
      break;
    case "url":
      control = h("input", { id, name: field.name, type: "url", inputmode: "url", autocomplete: "off", spellcheck: "false", placeholder, class: "mono" });
      break;
    case "enum": {
      const options = field.options || [];
      const first = field.default_value
        ? h("option", { value: "" }, `Default (${field.default_value})`)
        : h("option", { value: "" }, field.required ? "Select…" : "—");
      control = h("select", { id, name: field.name }, first, options.map((o) => h("option", { value: o }, o)));
      break;
    }
    default:
      control = h("input", { id, name: field.name, type: "text", autocomplete: "off", spellcheck: "false", placeholder });
  }
  control.dataset.kind = field.kind;
  if (storedSecret) {
    // The stored value is never sent to the browser: the mask stands for
    // it and is sent back as is, which keeps it.
    control.value = MASK;
    control.dataset.stored = "true";
    control.addEventListener("focus", () => {
      if (control.value === MASK) control.select();
    });
    extra = h("span", { class: "secret-note" }, icon("lock"), "Stored. Leave as is to keep it, or type a new value to replace it.");
  } else if (value !== undefined && value !== null) {
    control.value = value;
  }
  const el = fieldShell({ id, label: field.label || field.name, required: field.required, help: field.help, control, holder: wrapper, extra });
  el.dataset.config = field.name;
  return { el, control };
}

function modelOption(model, checked) {
  const caps = model.capabilities || {};
  const specs = [
    h("span", {}, icon("layers"), `${tokens(model.context_window)} context`),
    caps.embeddings
      ? model.embedding_dimensions
        ? h("span", {}, icon("vector"), `${model.embedding_dimensions} dimensions`)
        : null
      : model.max_output_tokens
        ? h("span", {}, icon("arrowRight"), `${tokens(model.max_output_tokens)} output`)
        : null,
  ];
  return h(
    "label",
    { class: "model-option", dataset: { model: model.id } },
    h("input", { type: "radio", name: "model", value: model.id, checked }),
    h("div", { class: "model-name" }, h("span", {}, model.display_name || model.id), h("span", { class: "model-id" }, model.id)),
    h("div", { class: "model-side" }, priceLine(model), capabilityBadges(caps)),
    h("div", { class: "model-specs" }, specs),
  );
}

/** Layout for the Routing section's own elements, set through the CSSOM
 * (the page's CSP allows no inline style attributes). */
function styled(el, css) {
  Object.assign(el.style, css);
  return el;
}
const GRID = { display: "grid", gridTemplateColumns: "repeat(auto-fill, minmax(190px, 1fr))", gap: "0 14px" };

/** A number input for the Routing section; `value` may be null. */
function numberField(id, label, value, help, { min = 0, placeholder = "" } = {}) {
  const control = h("input", { id, name: id, type: "number", min: String(min), step: "1", inputmode: "numeric", placeholder, class: "mono" });
  if (value !== undefined && value !== null) control.value = String(value);
  return { el: fieldShell({ id, label, required: false, help, control }), control };
}

/** Reads an optional whole number; `undefined` when empty. */
function readNumber(control) {
  const v = control.value.trim();
  return v === "" ? undefined : Number(v);
}

/**
 * The "Routing" section: targets with weights, ordered fallbacks, retries,
 * timeouts, circuit breaker and the endpoint's rate limits. `read()` returns
 * the `policy` object the API takes; `errors()` the client-side problems.
 */
function routingSection(policy, endpointNames, lead) {
  const p = policy || {};
  const options = (selected) => [
    h("option", { value: "" }, "Select an endpoint…"),
    endpointNames.map((n) => h("option", { value: n, selected: n === selected }, n)),
  ];
  const targetRows = h("div", { class: "routing-rows", id: "routing-targets" });
  const fallbackRows = h("div", { class: "routing-rows", id: "routing-fallbacks" });

  function row(list, endpoint, weight) {
    const index = list.children.length + 1;
    const kind = list === targetRows ? "target" : "fallback";
    const select = h("select", { class: "routing-endpoint", "aria-label": `${kind} ${index} endpoint` }, options(endpoint));
    if (endpoint && !endpointNames.includes(endpoint)) select.append(h("option", { value: endpoint, selected: true }, `${endpoint} (missing)`));
    const weightInput = kind === "target"
      ? h("input", { class: "routing-weight mono", type: "number", min: "0", step: "1", value: String(weight ?? 1), "aria-label": `${kind} ${index} weight`, title: "Weight: share of the traffic" })
      : null;
    const remove = h("button", { type: "button", class: "icon-button", "aria-label": `Remove ${kind} ${index}`, title: "Remove" }, icon("trash"));
    if (weightInput) styled(weightInput, { maxWidth: "96px" });
    const el = styled(h("div", { class: "routing-row", dataset: { kind } }, select, weightInput, remove), { display: "flex", gap: "8px", alignItems: "center", marginBottom: "8px" });
    remove.addEventListener("click", () => el.remove());
    list.append(el);
    return el;
  }
  for (const t of p.targets || []) row(targetRows, t.endpoint, t.weight);
  for (const f of p.fallbacks || []) row(fallbackRows, f);
  const addTarget = h("button", { type: "button", class: "button subtle", id: "add-target" }, icon("plus"), "Add target");
  addTarget.addEventListener("click", () => row(targetRows, "", 1).querySelector("select").focus());
  const addFallback = h("button", { type: "button", class: "button subtle", id: "add-fallback" }, icon("plus"), "Add fallback");
  addFallback.addEventListener("click", () => row(fallbackRows, "").querySelector("select").focus());

  const retry = p.retry || {};
  const timeouts = p.timeouts || {};
  const breaker = p.circuit_breaker || null;
  const limits = p.limits || {};
  const attempts = numberField("retry-max-attempts", "Attempts per target", retry.max_attempts ?? 1, "1 means no retry. Retries follow 429, 5xx, timeouts and connection errors.", { min: 1 });
  const initial = numberField("retry-initial-backoff", "First backoff (ms)", retry.initial_backoff_ms ?? 200, "Doubles each retry, with random jitter.");
  const maxBackoff = numberField("retry-max-backoff", "Longest backoff (ms)", retry.max_backoff_ms ?? 5000, "An upstream Retry-After longer than this moves on to the next target.");
  const connect = numberField("timeout-connect", "Connect timeout (ms)", timeouts.connect_ms, "Empty: the gateway default.", { min: 1, placeholder: "default" });
  const attempt = numberField("timeout-attempt", "Attempt timeout (ms)", timeouts.attempt_ms, "One try; a slower target counts as failed.", { min: 1, placeholder: "default" });
  const total = numberField("timeout-total", "Total timeout (ms)", timeouts.total_ms, "The whole call, retries and fallbacks included.", { min: 1, placeholder: "none" });
  const breakerOn = h("input", { type: "checkbox", id: "breaker-enabled", checked: !!breaker });
  const threshold = numberField("breaker-threshold", "Failures to open", breaker?.failure_threshold ?? 5, "Consecutive failures that take a target out of rotation.", { min: 1 });
  const cooldown = numberField("breaker-cooldown", "Cool-down (ms)", breaker?.cooldown_ms ?? 30000, "Then one probe call decides whether it is back.", { min: 1 });
  const breakerFields = styled(h("div", { class: "routing-grid", id: "breaker-fields", hidden: !breaker }, threshold.el, cooldown.el), GRID);
  // `hidden` alone loses to the grid display set above.
  const showBreaker = () => {
    breakerFields.hidden = !breakerOn.checked;
    breakerFields.style.display = breakerOn.checked ? "grid" : "none";
  };
  breakerOn.addEventListener("change", showBreaker);
  showBreaker();
  const grid = (...children) => styled(h("div", { class: "routing-grid" }, ...children), GRID);
  const rpm = numberField("limit-rpm", "Requests per minute", limits.requests_per_minute, "Empty: unlimited.", { min: 1, placeholder: "unlimited" });
  const tpm = numberField("limit-tpm", "Tokens per minute", limits.tokens_per_minute, "Empty: unlimited.", { min: 1, placeholder: "unlimited" });

  const configured = JSON.stringify(p) !== "{}" && (p.targets?.length || p.fallbacks?.length || (p.retry?.max_attempts ?? 1) > 1 || p.circuit_breaker || Object.values(p.timeouts || {}).some((v) => v !== null) || Object.values(p.limits || {}).some((v) => v !== null));
  const body = h(
      "div",
      { class: "card-body" },
      lead,
      h("h3", {}, "Targets"),
      h("p", { class: "help" }, "Each call goes to one target, picked by weight. None: this endpoint itself. Targets must be plain endpoints (without targets or fallbacks of their own)."),
      targetRows,
      addTarget,
      h("h3", {}, "Fallbacks"),
      h("p", { class: "help" }, "Tried in order when the target answers 429 or 5xx, times out or cannot be reached. A stream falls back only before its first byte."),
      fallbackRows,
      addFallback,
      h("h3", {}, "Retries"),
      grid(attempts.el, initial.el, maxBackoff.el),
      h("h3", {}, "Timeouts"),
      grid(connect.el, attempt.el, total.el),
      h("h3", {}, "Circuit breaker"),
      h("label", { class: "checkbox", for: "breaker-enabled" }, breakerOn, " Take a failing target out of rotation for a cool-down"),
      breakerFields,
      h("h3", {}, "Rate limits"),
      grid(rpm.el, tpm.el),
    );
  // Collapsed unless the endpoint already has routing: most endpoints need none.
  const el = h(
    "details",
    { class: "card form-section", id: "routing-section", open: Boolean(configured) || lead.querySelector("input").checked },
    h("summary", { class: "card-header" }, h("div", {}, h("h2", { id: "routing-title" }, "Routing"), h("p", { class: "sub" }, "Optional. Split traffic over other endpoints, fall back when one fails, retry, time out, and take failing targets out of rotation."))),
    body,
  );

  function read() {
    const targets = [...targetRows.children].map((r) => ({ endpoint: r.querySelector("select").value, weight: Number(r.querySelector("input").value || 0) })).filter((t) => t.endpoint);
    const fallbacks = [...fallbackRows.children].map((r) => r.querySelector("select").value).filter(Boolean);
    const policy = {
      targets,
      fallbacks,
      retry: { max_attempts: readNumber(attempts.control) ?? 1, initial_backoff_ms: readNumber(initial.control) ?? 200, max_backoff_ms: readNumber(maxBackoff.control) ?? 5000 },
      timeouts: { connect_ms: readNumber(connect.control) ?? null, attempt_ms: readNumber(attempt.control) ?? null, total_ms: readNumber(total.control) ?? null },
      circuit_breaker: breakerOn.checked ? { failure_threshold: readNumber(threshold.control) ?? 5, cooldown_ms: readNumber(cooldown.control) ?? 30000 } : null,
      limits: { requests_per_minute: readNumber(rpm.control) ?? null, tokens_per_minute: readNumber(tpm.control) ?? null },
    };
    return policy;
  }

  function errors() {
    const out = [];
    const whole = [attempts, initial, maxBackoff, connect, attempt, total, threshold, cooldown, rpm, tpm];
    for (const { control } of whole) {
      const v = readNumber(control);
      if (v !== undefined && (!Number.isInteger(v) || v < Number(control.min))) out.push([control.id, `Enter a whole number of at least ${control.min}.`]);
    }
    const policy = read();
    if (policy.targets.length && policy.targets.every((t) => !t.weight)) out.push(["routing-targets", "At least one target needs a weight above 0."]);
    return out;
  }

  return { el, read, errors, hasTargets: () => read().targets.length > 0 };
}

export async function endpointFormView({ name } = {}) {
  const editing = name !== undefined;
  const [providers, endpoint, allEndpoints] = await Promise.all([
    listProviders(),
    editing ? getEndpoint(name) : Promise.resolve(null),
    listEndpoints().catch(() => []),
  ]);
  providers.sort((a, b) => a.display_name.localeCompare(b.display_name));

  const title = editing ? "Edit endpoint" : "New endpoint";
  const crumbs = h(
    "nav",
    { class: "crumbs", "aria-label": "Breadcrumb" },
    h("a", { href: "#/endpoints" }, "Endpoints"),
    icon("chevronRight"),
    editing ? [h("a", { href: `#/endpoints/${enc(name)}` }, name), icon("chevronRight"), h("span", { "aria-current": "page" }, "Edit")] : h("span", { "aria-current": "page" }, "New"),
  );
  const header = h(
    "div",
    { class: "page-header" },
    h(
      "div",
      {},
      crumbs,
      h("h1", { id: "form-title" }, editing ? [title, " ", h("span", { class: "mono muted" }, name)] : title),
      h("p", { class: "lede" }, editing ? "Changes apply to the next request; no restart needed." : "Pick a provider and a model, give the endpoint a name, and paste the credentials. Applications then call it by name."),
    ),
  );

  if (!providers.length) {
    return h(
      "div",
      { class: "page narrow" },
      header,
      h(
        "div",
        { class: "card empty" },
        h("span", { class: "empty-icon" }, icon("puzzle")),
        h("h2", {}, "No provider plugins loaded"),
        h("p", {}, "Endpoints route to providers, and providers come from plugins. Put provider .wasm files into the gateway's plugins folder: they load within seconds, without a restart."),
        h("a", { class: "button", href: "#/plugins" }, "Open plugins"),
      ),
    );
  }

  // ---- form state ----
  let provider = providers.find((p) => p.id === endpoint?.provider) || providers.find((p) => p.id === "openai") || providers[0];
  // A router endpoint has no provider of its own.
  let isRouter = editing && endpoint.provider === ROUTER;
  let nameTouched = editing;
  let configControls = new Map();

  const errorBanner = h("div", { class: "alert", role: "alert", id: "form-error", hidden: true });

  // Name
  const nameInput = h("input", {
    id: "endpoint-name", name: "name", type: "text", class: "mono", autocomplete: "off", spellcheck: "false",
    placeholder: "e.g. chat-default", maxlength: "128", readonly: editing, value: editing ? endpoint.name : "",
  });
  nameInput.addEventListener("input", () => {
    nameTouched = true;
    setFieldError("endpoint-name", "");
  });
  const nameField = fieldShell({
    id: "endpoint-name",
    label: "Endpoint name",
    required: !editing,
    readonly: editing,
    help: editing
      ? "The name clients use as the model. It cannot change: create a new endpoint to rename."
      : "What clients pass as the model. Letters, digits, dot, dash and underscore; starts with a letter or digit.",
    control: nameInput,
  });

  // Provider
  const providerSelect = h(
    "select",
    { id: "endpoint-provider", name: "provider" },
    providers.map((p) => h("option", { value: p.id, selected: p.id === provider.id }, p.display_name)),
  );
  // A router has no provider: the provider, model and connection give way
  // to the targets in the Routing section.
  const routerToggle = h("input", { type: "checkbox", id: "endpoint-router", checked: isRouter });
  const routerField = h(
    "div",
    { class: "field" },
    h("label", { class: "checkbox", for: "endpoint-router" }, routerToggle, " No provider of its own: route to other endpoints only (set the targets under Routing)"),
  );
  const providerSummary = h("div", { class: "provider-summary", id: "provider-summary", "aria-live": "polite" });
  const providerField = fieldShell({ id: "endpoint-provider", label: "Provider", required: true, control: providerSelect, extra: providerSummary });
  const missingProvider = editing && !isRouter && !providers.some((p) => p.id === endpoint.provider)
    ? h("div", { class: "alert warn" }, icon("alert"), h("div", {}, h("strong", {}, `The plugin for “${endpoint.provider}” is not loaded`), "Pick another provider, or load the plugin and reload this page."))
    : null;

  // Model
  const modelSearch = h("input", { type: "search", id: "model-search", placeholder: "Search models", "aria-label": "Search models", autocomplete: "off" });
  // One radio group: the scrolling catalog, then the custom id below it
  // (always in sight, however long the catalog).
  const modelList = h("div", { class: "model-list", id: "model-list" });
  const customBox = h("div", { class: "model-custom" });
  const modelGroup = h("div", { class: "model-group", role: "radiogroup", "aria-labelledby": "model-title" }, modelList, customBox);
  const modelError = h("p", { class: "field-error", id: "model-error", hidden: true });
  const modelSub = h("p", { class: "sub", id: "model-sub" });
  const customInput = h("input", { type: "text", id: "custom-model", class: "mono", placeholder: "any model id the provider accepts", autocomplete: "off", spellcheck: "false", "aria-label": "Custom model ID" });

  // Connection
  const configBody = h("div", { class: "card-body", id: "config-fields" });
  const configSub = h("p", { class: "sub" });

  function renderProviderSummary() {
    clear(providerSummary);
    providerSummary.append(
      h("span", { class: "provider-avatar", "aria-hidden": "true" }, initials(provider.display_name)),
      h(
        "div",
        {},
        h("div", { class: "cell-title" }, provider.display_name, " ", h("span", { class: "muted mono small" }, `${provider.id} · v${provider.version}`)),
        provider.description ? h("p", { class: "desc" }, provider.description) : null,
        h("div", { class: "meta" }, operationPills(provider.operations), provider.egress_hosts?.length ? h("span", { class: "pill", title: "Hosts this plugin may connect to" }, `Egress: ${provider.egress_hosts.join(", ")}`) : null),
      ),
    );
  }

  function selectedModel() {
    const checked = modelGroup.querySelector('input[name="model"]:checked');
    if (!checked) return "";
    return checked.value === CUSTOM ? customInput.value.trim() : checked.value;
  }

  function onModelChosen() {
    setFieldError("model", "");
    const id = selectedModel();
    if (!nameTouched && id) nameInput.value = suggestName(id);
  }

  function renderModels() {
    clear(modelList);
    clear(customBox);
    modelSearch.value = "";
    const models = provider.models || [];
    const current = editing && endpoint.provider === provider.id ? endpoint.model : null;
    const inCatalog = current && models.some((m) => m.id === current);
    const initial = current ? (inCatalog ? current : CUSTOM) : models[0]?.id || CUSTOM;
    for (const model of models) modelList.append(modelOption(model, model.id === initial));
    modelList.append(h("p", { class: "model-empty", id: "model-empty", hidden: true }, "No catalog model matches. Use a custom model ID below."));
    customInput.value = current && !inCatalog ? current : "";
    const custom = h(
      "label",
      { class: "model-option custom", dataset: { model: CUSTOM } },
      h("input", { type: "radio", name: "model", value: CUSTOM, checked: initial === CUSTOM }),
      h("div", { class: "model-name" }, h("span", {}, "Custom model ID"), h("span", { class: "model-id" }, "not in the catalog: no badges or prices")),
      h("div", { class: "custom-input" }, customInput),
    );
    customBox.append(custom);
    modelList.hidden = !models.length;
    modelSub.textContent = models.length
      ? `${models.length} models in ${provider.display_name}'s catalog, or any model id the provider accepts.`
      : `${provider.display_name} has no model catalog: enter the model id.`;
    modelSearch.closest(".model-toolbar").hidden = models.length < 6;
    // Once laid out, scroll the list to the chosen model (editing one far
    // down the catalog).
    requestAnimationFrame(() => {
      const chosen = modelList.querySelector("input:checked")?.closest(".model-option");
      if (chosen && !chosen.classList.contains("custom")) {
        modelList.scrollTop = Math.max(0, chosen.offsetTop - modelList.clientHeight / 2 + chosen.offsetHeight / 2);
      }
    });
    if (!nameTouched) nameInput.value = suggestName(selectedModel());
  }

  function renderConfig() {
    clear(configBody);
    configControls = new Map();
    const sameProvider = editing && endpoint.provider === provider.id;
    const secretsSet = new Set(sameProvider ? endpoint.secrets_set || [] : []);
    configSub.textContent = `Settings of the ${provider.display_name} plugin. Secrets are kept by the gateway and never shown again.`;
    const fields = provider.config_fields || [];
    if (!fields.length) configBody.append(h("p", { class: "muted" }, "This provider needs no settings."));
    for (const field of fields) {
      const secret = field.kind === "secret" || field.kind === "secret_json";
      const value = sameProvider ? endpoint.config?.[field.name] : undefined;
      const stored = secret && sameProvider && (secretsSet.has(field.name) || value === MASK);
      const { el, control } = configControl(field, secret ? undefined : value, stored);
      control.addEventListener("input", () => setFieldError(control.id, ""));
      configControls.set(field.name, { field, control });
      configBody.append(el);
    }
  }

  modelGroup.addEventListener("change", onModelChosen);
  customInput.addEventListener("focus", () => {
    const radio = customBox.querySelector(`input[value="${CUSTOM}"]`);
    if (radio && !radio.checked) {
      radio.checked = true;
      onModelChosen();
    }
  });
  customInput.addEventListener("input", onModelChosen);
  modelSearch.addEventListener("input", () => {
    const q = modelSearch.value.trim().toLowerCase();
    let shown = 0;
    for (const option of modelList.querySelectorAll(".model-option:not(.custom)")) {
      const hit = !q || option.textContent.toLowerCase().includes(q);
      option.hidden = !hit;
      if (hit) shown += 1;
    }
    modelList.querySelector("#model-empty").hidden = shown > 0;
  });
  routerToggle.addEventListener("change", () => {
    isRouter = routerToggle.checked;
    setFieldError("endpoint-provider", "");
    showRouterMode();
  });
  providerSelect.addEventListener("change", () => {
    provider = providers.find((p) => p.id === providerSelect.value) || provider;
    setFieldError("endpoint-provider", "");
    renderProviderSummary();
    renderModels();
    renderConfig();
  });

  // ---- errors ----
  function setFieldError(id, message) {
    const el = document.getElementById(`${id}-error`);
    const control = id === "model" ? null : document.getElementById(id);
    if (el) {
      el.hidden = !message;
      el.replaceChildren(...(message ? [icon("alert"), message] : []));
    }
    if (control) {
      if (message) control.setAttribute("aria-invalid", "true");
      else control.removeAttribute("aria-invalid");
    }
  }

  function showBanner(message) {
    errorBanner.hidden = !message;
    errorBanner.replaceChildren(...(message ? [icon("alert"), h("div", {}, h("strong", {}, editing ? "Could not save the endpoint" : "Could not create the endpoint"), h("div", { class: "message" }, message))] : []));
  }

  function clearErrors() {
    showBanner("");
    for (const el of form.querySelectorAll(".field-error")) {
      el.hidden = true;
      el.replaceChildren();
    }
    for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute("aria-invalid");
  }

  // Which input an API error message is about: the API names fields in its
  // messages ("missing required config field 'api_key'").
  function fieldForMessage(status, message) {
    for (const name of configControls.keys()) {
      const quoted = [`'${name}'`, `"${name}"`, `\`${name}\``];
      if (quoted.some((q) => message.includes(q)) || new RegExp(`\\b${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\b`).test(message)) {
        return fieldId(name);
      }
    }
    if (status === 409 && !editing) return "endpoint-name";
    if (/\bprovider\b/i.test(message) && !/\bconfig\b/i.test(message)) return "endpoint-provider";
    if (/\bmodel\b/i.test(message)) return "model";
    if (/\bname\b/i.test(message) && !editing) return "endpoint-name";
    return null;
  }

  function focusFirstInvalid() {
    const target = form.querySelector('[aria-invalid="true"]') || (document.getElementById("model-error")?.hidden ? null : modelGroup.querySelector("input:checked") || modelGroup.querySelector("input"));
    (target || errorBanner).focus?.();
    (target || errorBanner).scrollIntoView({ block: "center", behavior: "smooth" });
  }

  function validate() {
    const errors = [];
    const value = nameInput.value.trim();
    if (!editing) {
      if (!value) errors.push(["endpoint-name", "Give the endpoint a name."]);
      else if (!NAME_RE.test(value)) errors.push(["endpoint-name", "Use letters, digits, “.”, “-” and “_”, starting with a letter or digit (at most 128)."]);
    }
    errors.push(...routing.errors());
    if (isRouter) {
      if (!routing.hasTargets()) errors.push(["endpoint-provider", "A router endpoint needs at least one target (see Routing), or pick a provider."]);
      return errors;
    }
    if (!selectedModel()) errors.push(["model", "Choose a model, or enter a custom model ID."]);
    for (const { field, control } of configControls.values()) {
      const v = control.value.trim();
      // A required field with a default is satisfied by the default.
      if (field.required && !v && !field.default_value) errors.push([control.id, `${field.label || field.name} is required.`]);
      if (field.kind === "url" && v) {
        let ok = false;
        try {
          ok = ["http:", "https:"].includes(new URL(v).protocol);
        } catch {
          ok = false;
        }
        if (!ok) errors.push([control.id, "Enter an http:// or https:// URL."]);
      }
      if (field.kind === "secret_json" && v && v !== MASK) {
        try {
          JSON.parse(v);
        } catch {
          errors.push([control.id, "This must be valid JSON (paste the whole file)."]);
        }
      }
    }
    return errors;
  }

  // ---- routing ----
  const otherNames = (allEndpoints || []).filter((e) => e.name !== name && e.provider && !(e.policy?.targets?.length || e.policy?.fallbacks?.length)).map((e) => e.name);
  // An endpoint with a provider may name itself (e.g. to split traffic between itself and another).
  const routing = routingSection(endpoint?.policy, editing && endpoint.provider ? [name, ...otherNames] : otherNames, routerField);

  function showRouterMode() {
    for (const id of ["model-section", "config-section"]) {
      const section = form.querySelector(`#${id}`);
      if (section) section.hidden = isRouter;
    }
    providerField.hidden = isRouter;
  }

  // ---- submit ----
  const fromFile = editing && endpoint.source === "file";
  const submit = h("button", { type: "submit", class: "button primary", id: "endpoint-submit", disabled: fromFile }, icon(editing ? "check" : "plus"), editing ? "Save changes" : "Create endpoint");

  const form = h(
    "form",
    { class: "form", id: "endpoint-form", novalidate: true, "aria-labelledby": "form-title" },
    errorBanner,
    fromFile
      ? h("div", { class: "alert warn" }, icon("file"), h("div", {}, h("strong", {}, "Declared in the endpoints file"), "The gateway takes this endpoint from its endpoints file, so it cannot be changed here: edit the file instead. It is reloaded automatically."))
      : null,
    missingProvider,
    h(
      "section",
      { class: "card form-section", "aria-labelledby": "basics-title" },
      h("div", { class: "card-header" }, h("div", {}, h("h2", { id: "basics-title" }, "Endpoint"), h("p", { class: "sub" }, "The name your applications call, and the provider it routes to."))),
      h("div", { class: "card-body" }, nameField, providerField),
    ),
    h(
      "section",
      { class: "card form-section", "aria-labelledby": "model-title", id: "model-section" },
      h("div", { class: "card-header" }, h("div", {}, h("h2", { id: "model-title" }, "Model"), modelSub)),
      h(
        "div",
        { class: "card-body" },
        h("div", { class: "model-toolbar" }, h("div", { class: "search" }, icon("search"), modelSearch)),
        modelGroup,
        modelError,
      ),
    ),
    h(
      "section",
      { class: "card form-section", "aria-labelledby": "config-title", id: "config-section" },
      h("div", { class: "card-header" }, h("div", {}, h("h2", { id: "config-title" }, "Connection"), configSub)),
      configBody,
    ),
    routing.el,
    h(
      "div",
      { class: "form-footer" },
      h("a", { class: "button subtle", href: editing ? `#/endpoints/${enc(name)}` : "#/endpoints" }, "Cancel"),
      submit,
    ),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const errors = validate();
    if (errors.length) {
      for (const [id, message] of errors) setFieldError(id, message);
      showBanner(errors.length === 1 ? errors[0][1] : `Fix the ${errors.length} highlighted fields.`);
      focusFirstInvalid();
      return;
    }
    const config = {};
    for (const [key, { control }] of configControls) {
      const v = control.dataset.kind === "secret_json" ? control.value : control.value.trim();
      if (v.trim() !== "") config[key] = v;
    }
    const policy = routing.read();
    const payload = isRouter ? { provider: ROUTER, model: "", config: {}, policy } : { provider: provider.id, model: selectedModel(), config, policy };
    const endpointName = editing ? name : nameInput.value.trim();
    submit.disabled = true;
    submit.setAttribute("aria-busy", "true");
    try {
      if (editing) await updateEndpoint(endpointName, payload);
      else await createEndpoint({ name: endpointName, ...payload });
    } catch (error) {
      submit.disabled = false;
      submit.removeAttribute("aria-busy");
      const id = fieldForMessage(error.status, error.message);
      if (id) setFieldError(id, error.message);
      showBanner(error.message);
      focusFirstInvalid();
      return;
    }
    toast(editing ? `Endpoint “${endpointName}” saved` : `Endpoint “${endpointName}” created`);
    window.location.hash = `#/endpoints/${enc(endpointName)}`;
  });

  errorBanner.tabIndex = -1;
  renderProviderSummary();
  renderModels();
  renderConfig();
  showRouterMode();

  return h("div", { class: "page narrow" }, header, form);
}
