// The gateway keys page: the keys (prefix only), a form to create one
// (the key is shown once, with a copy button), and revocation.

import { api } from "../api.js";
import { confirmDialog, copyButton, h, icon, toast } from "../dom.js";
import { timeEl, tokens } from "../format.js";

const listKeys = () => api("GET", "/keys");
const createKey = (body) => api("POST", "/keys", body);
const revokeKey = (id) => api("DELETE", `/keys/${encodeURIComponent(id)}`);

function limitsText(key) {
  const parts = [];
  if (key.requests_per_minute) parts.push(`${key.requests_per_minute.toLocaleString("en-US")} req/min`);
  if (key.tokens_per_minute) parts.push(`${tokens(key.tokens_per_minute)} tok/min`);
  return parts.length ? parts.join(" · ") : null;
}

function statusPill(key) {
  return key.status === "revoked"
    ? h("span", { class: "pill bad", dataset: { role: "status" } }, "Revoked")
    : h("span", { class: "pill ok", dataset: { role: "status" } }, "Active");
}

function keyRow(key, refresh) {
  const limits = limitsText(key);
  const revoke =
    key.status === "revoked"
      ? null
      : h("button", { type: "button", class: "icon-button danger", "aria-label": `Revoke key ${key.name}`, title: "Revoke", dataset: { action: "revoke" } }, icon("trash"));
  revoke?.addEventListener("click", async () => {
    const yes = await confirmDialog({
      title: `Revoke key “${key.name}”?`,
      message: `Applications using the key ${key.prefix}… are refused from their next request on. This cannot be undone.`,
      confirmLabel: "Revoke key",
    });
    if (!yes) return;
    try {
      await revokeKey(key.id);
    } catch (error) {
      toast(`Could not revoke “${key.name}”: ${error.message}`, "error");
      return;
    }
    toast(`Key “${key.name}” revoked`);
    refresh();
  });
  return h(
    "tr",
    { dataset: { key: key.id, status: key.status } },
    h("td", { class: "name-cell" }, h("div", { class: "cell-title" }, key.name), h("div", { class: "cell-sub mono", dataset: { col: "prefix" } }, `${key.prefix}…`)),
    h(
      "td",
      { "data-label": "Endpoints", dataset: { col: "endpoints" } },
      key.endpoints ? h("span", { class: "mono" }, key.endpoints.join(", ")) : h("span", { class: "muted" }, "All endpoints"),
    ),
    h("td", { "data-label": "Limits", dataset: { col: "limits" } }, limits || h("span", { class: "muted" }, "None")),
    h("td", { "data-label": "Created", dataset: { col: "created" } }, timeEl(key.created_at)),
    h("td", { "data-label": "Last used", dataset: { col: "last_used" } }, key.last_used_at ? timeEl(key.last_used_at) : h("span", { class: "muted" }, "Never")),
    h("td", { "data-label": "Status", dataset: { col: "status" } }, statusPill(key)),
    h("td", { class: "actions" }, revoke),
  );
}

function field(id, label, control, help) {
  control.id = id;
  control.setAttribute("aria-describedby", `${id}-help ${id}-error`);
  return h(
    "div",
    { class: "field", dataset: { field: id } },
    h("label", { for: id }, label, control.required ? h("span", { class: "req", "aria-hidden": "true", title: "Required" }, "*") : h("span", { class: "optional" }, "optional")),
    control,
    h("p", { class: "help", id: `${id}-help` }, help),
    h("p", { class: "field-error", id: `${id}-error`, hidden: true }),
  );
}

function showError(form, id, message) {
  const control = form.querySelector(`#${id}`);
  const error = form.querySelector(`#${id}-error`);
  control.setAttribute("aria-invalid", "true");
  error.textContent = message;
  error.hidden = false;
}

/** A positive whole number, empty (null), or undefined when invalid. */
function perMinute(value) {
  const text = value.trim();
  if (!text) return null;
  return /^[1-9][0-9]{0,9}$/.test(text) && Number(text) <= 4294967295 ? Number(text) : undefined;
}

function createForm(onCreated) {
  const name = h("input", { name: "name", type: "text", autocomplete: "off", spellcheck: "false", maxlength: "128", required: true, "aria-required": "true" });
  const endpoints = h("input", { name: "endpoints", type: "text", autocomplete: "off", spellcheck: "false", class: "mono", placeholder: "All endpoints" });
  const rpm = h("input", { name: "requests_per_minute", type: "text", inputmode: "numeric", autocomplete: "off", placeholder: "No limit" });
  const tpm = h("input", { name: "tokens_per_minute", type: "text", inputmode: "numeric", autocomplete: "off", placeholder: "No limit" });
  const banner = h("div", { class: "alert", role: "alert", id: "key-form-error", hidden: true });
  const submit = h("button", { type: "submit", class: "button primary", id: "key-submit" }, icon("plus"), "Create key");
  const form = h(
    "form",
    { class: "form", id: "key-form", novalidate: true, "aria-labelledby": "key-form-title" },
    h(
      "section",
      { class: "card form-section" },
      h("div", { class: "card-header" }, h("h2", { id: "key-form-title" }, "New key")),
      h(
        "div",
        { class: "card-body" },
        banner,
        field("key-name", "Name", name, "Who or what uses the key, e.g. the application's name."),
        field("key-endpoints", "Endpoints", endpoints, "Endpoint names the key may call, separated by commas; empty for all."),
        field("key-rpm", "Requests per minute", rpm, "Most requests a minute with this key, over all endpoints."),
        field("key-tpm", "Tokens per minute", tpm, "Most input and output tokens a minute with this key."),
      ),
    ),
    h("div", { class: "form-footer" }, h("span", { class: "spacer" }), submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    banner.hidden = true;
    for (const el of form.querySelectorAll(".field-error")) el.hidden = true;
    for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute("aria-invalid");
    const body = { name: name.value.trim() };
    const list = endpoints.value.split(",").map((e) => e.trim()).filter(Boolean);
    if (list.length) body.endpoints = list;
    const requests = perMinute(rpm.value);
    const toks = perMinute(tpm.value);
    let invalid = null;
    if (!body.name) {
      showError(form, "key-name", "Enter a name.");
      invalid ||= name;
    }
    if (requests === undefined) {
      showError(form, "key-rpm", "Enter a whole number of at least 1, or leave empty.");
      invalid ||= rpm;
    }
    if (toks === undefined) {
      showError(form, "key-tpm", "Enter a whole number of at least 1, or leave empty.");
      invalid ||= tpm;
    }
    if (invalid) {
      invalid.focus();
      return;
    }
    if (requests) body.requests_per_minute = requests;
    if (toks) body.tokens_per_minute = toks;
    submit.disabled = true;
    submit.setAttribute("aria-busy", "true");
    try {
      const created = await createKey(body);
      form.reset();
      onCreated(created);
    } catch (error) {
      banner.replaceChildren(icon("alert"), h("div", {}, h("strong", {}, "The key was not created"), h("div", { class: "message" }, error.message)));
      banner.hidden = false;
      banner.focus?.();
    } finally {
      submit.disabled = false;
      submit.removeAttribute("aria-busy");
    }
  });
  return form;
}

/** The new key, shown once. */
function createdCard(created) {
  const value = h("input", { id: "new-key-value", type: "text", readonly: true, class: "mono", value: created.key, "aria-label": `Key ${created.name}`, spellcheck: "false" });
  value.addEventListener("focus", () => value.select());
  return h(
    "section",
    { class: "card", id: "new-key", tabindex: "-1", "aria-labelledby": "new-key-title" },
    h("div", { class: "card-header" }, h("div", {}, h("h2", { id: "new-key-title" }, `Key “${created.name}” created`), h("div", { class: "sub" }, "Copy it now: it is shown only once. The gateway keeps only its hash."))),
    h(
      "div",
      { class: "card-body" },
      h("div", { class: "input-group" }, value, copyButton(() => created.key, { className: "icon-button", iconOnly: true, ariaLabel: "Copy the key" })),
      h("p", { class: "help" }, "Applications pass it as their SDK's API key (", h("code", {}, "api_key=…"), ")."),
    ),
  );
}

export async function keysView({ refresh }) {
  const keys = await listKeys();
  keys.sort((a, b) => (a.status === b.status ? b.created_at.localeCompare(a.created_at) : a.status === "active" ? -1 : 1));
  const slot = h("div", { id: "new-key-slot" });
  const tableBody = h("tbody", {}, keys.map((k) => keyRow(k, refresh)));
  const table = keys.length
    ? h(
        "div",
        { class: "card table-card" },
        h(
          "table",
          { class: "table", "aria-label": "Gateway keys" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, "Key"),
              h("th", { scope: "col" }, "Endpoints"),
              h("th", { scope: "col" }, "Limits"),
              h("th", { scope: "col" }, "Created"),
              h("th", { scope: "col" }, "Last used"),
              h("th", { scope: "col" }, "Status"),
              h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")),
            ),
          ),
          tableBody,
        ),
      )
    : h(
        "div",
        { class: "card empty", dataset: { empty: "keys" } },
        h("span", { class: "empty-icon" }, icon("key")),
        h("h2", {}, "No keys yet"),
        h("p", {}, "Gateway keys let you tell applications apart, limit them to some endpoints and rate-limit them. Start the gateway with ", h("code", {}, "--require-keys"), " to refuse calls without one."),
      );
  const page = h(
    "div",
    { class: "page" },
    h(
      "div",
      { class: "page-header" },
      h(
        "div",
        {},
        h("h1", {}, "Keys"),
        h("p", { class: "lede" }, "Keys applications present to the gateway as their SDK's API key. Only a key's first characters are shown after it is created."),
      ),
    ),
    slot,
    table,
  );
  const form = createForm(async (created) => {
    toast(`Key “${created.name}” created`);
    // Re-render the list, then show the new key above it.
    const fresh = await keysView({ refresh });
    page.replaceWith(fresh);
    const card = createdCard(created);
    fresh.querySelector("#new-key-slot").append(card);
    card.focus();
  });
  page.append(form);
  return page;
}
