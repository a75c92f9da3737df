// The plugins page: every plugin file, loaded or failed, with its identity
// and last load error.

import { listPlugins, listProviders } from "../api.js";
import { copyButton, h, icon } from "../dom.js";
import { initials, operationPills, timeEl } from "../format.js";

function pluginCard(plugin, provider) {
  const failed = plugin.status !== "loaded";
  const title = plugin.display_name || plugin.id || plugin.file;
  const sha = plugin.sha256 || "";
  return h(
    "article",
    { class: `card plugin-card${failed ? " failed" : ""}`, dataset: { plugin: plugin.id || plugin.file, status: plugin.status }, "aria-label": `Plugin ${title}` },
    h(
      "div",
      { class: "plugin-head" },
      h("span", { class: "provider-avatar", "aria-hidden": "true" }, initials(title)),
      h("div", { class: "grow" }, h("h2", {}, title), h("div", { class: "id" }, plugin.id || "unknown id")),
      h("span", { class: `pill ${failed ? "bad" : "ok"}`, dataset: { role: "status" } }, failed ? "Failed" : "Loaded"),
    ),
    h(
      "div",
      { class: "plugin-body" },
      plugin.last_error
        ? h(
            "div",
            { class: "alert", role: "alert", dataset: { role: "last-error" } },
            icon("alert"),
            h("div", {}, h("strong", {}, failed ? "Failed to load" : "The latest version failed to load; the previous one keeps serving"), h("pre", {}, plugin.last_error)),
          )
        : null,
      h(
        "dl",
        { class: "kv" },
        h("dt", {}, "Version"),
        h("dd", { dataset: { field: "version" } }, plugin.version || "—"),
        h("dt", {}, "WIT version"),
        h("dd", { dataset: { field: "wit_version" } }, plugin.wit_version || "—"),
        h("dt", {}, "File"),
        h("dd", { class: "mono", dataset: { field: "file" } }, plugin.file),
        h("dt", {}, "SHA-256"),
        h(
          "dd",
          { dataset: { field: "sha256" } },
          sha
            ? h("span", { class: "hash" }, h("code", { title: sha }, sha.slice(0, 12)), copyButton(() => sha, { className: "icon-button", iconOnly: true, ariaLabel: `Copy SHA-256 of ${plugin.file}` }))
            : "—",
        ),
        h("dt", {}, "Loaded"),
        h("dd", { dataset: { field: "loaded_at" } }, timeEl(plugin.loaded_at)),
        h("dt", {}, "Models"),
        h("dd", { dataset: { field: "models" } }, provider ? `${provider.models.length} in catalog` : "—"),
        h("dt", { class: "wide" }, "Operations"),
        h("dd", { class: "wide", dataset: { field: "operations" } }, plugin.operations?.length ? operationPills(plugin.operations) : "—"),
      ),
    ),
  );
}

export async function pluginsView({ refresh }) {
  const [plugins, providers] = await Promise.all([listPlugins(), listProviders()]);
  const byId = new Map(providers.map((p) => [p.id, p]));
  plugins.sort((a, b) => (a.status === b.status ? (a.display_name || a.file).localeCompare(b.display_name || b.file) : a.status === "failed" ? -1 : 1));
  const loaded = plugins.filter((p) => p.status === "loaded").length;
  const failed = plugins.length - loaded;

  const refreshButton = h("button", { type: "button", class: "button", id: "plugins-refresh" }, icon("refresh"), "Refresh");
  refreshButton.addEventListener("click", refresh);

  return h(
    "div",
    { class: "page" },
    h(
      "div",
      { class: "page-header" },
      h(
        "div",
        {},
        h("h1", {}, "Plugins"),
        h("p", { class: "lede" }, "Provider adapters, each a sandboxed WebAssembly component loaded from the gateway's plugins folder. Add, replace or remove a .wasm file there and it is picked up without a restart."),
      ),
      h("div", { class: "page-actions" }, refreshButton),
    ),
    plugins.length
      ? h(
          "div",
          { class: "summary-row" },
          h("span", { class: "summary-chip" }, h("span", { class: "pill ok" }, "Loaded"), h("b", {}, String(loaded))),
          failed ? h("span", { class: "summary-chip" }, h("span", { class: "pill bad" }, "Failed"), h("b", {}, String(failed))) : null,
        )
      : null,
    plugins.length
      ? h("div", { class: "plugin-grid" }, plugins.map((p) => pluginCard(p, p.status === "loaded" ? byId.get(p.id) : null)))
      : h(
          "div",
          { class: "card empty" },
          h("span", { class: "empty-icon" }, icon("puzzle")),
          h("h2", {}, "No plugins"),
          h("p", {}, "The plugins folder has no .wasm files. Build or download provider plugins and copy them there; the gateway loads them within seconds."),
        ),
  );
}
