// The console shell: hash routing, navigation, theme, and the admin-token
// prompt. Views are async functions returning a DOM node.

import { getToken, setToken, setTokenPrompt } from "./api.js";
import { clear, errorAlert, h, hydrateIcons, icon, loading } from "./dom.js";
import { endpointDetailView, endpointsView } from "./views/endpoints.js";
import { endpointFormView } from "./views/endpoint_form.js";
import { pluginsView } from "./views/plugins.js";
import { keysView } from "./views/keys.js";
import { usageView } from "./views/usage.js";

const main = document.getElementById("main");

const ROUTES = [
  [/^\/?$/, () => ["endpoints", endpointsView, {}]],
  [/^\/endpoints\/?$/, () => ["endpoints", endpointsView, {}]],
  [/^\/endpoints\/new$/, () => ["endpoints", endpointFormView, {}]],
  [/^\/endpoints\/([^/]+)\/edit$/, (m) => ["endpoints", endpointFormView, { name: decodeURIComponent(m[1]) }]],
  [/^\/endpoints\/([^/]+)$/, (m) => ["endpoints", endpointDetailView, { name: decodeURIComponent(m[1]) }]],
  [/^\/plugins\/?$/, () => ["plugins", pluginsView, {}]],
  [/^\/keys\/?$/, () => ["keys", keysView, {}]],
  [/^\/usage\/?$/, () => ["usage", usageView, {}]],
];

const TITLES = { endpoints: "Endpoints", plugins: "Plugins", keys: "Keys", usage: "Usage" };

// Each navigation gets a number; a slow view that finishes after the user
// moved on is dropped instead of replacing the newer page.
let generation = 0;

async function render() {
  const current = ++generation;
  const path = window.location.hash.replace(/^#/, "");
  let match = null;
  for (const [re, make] of ROUTES) {
    const m = path.match(re);
    if (m) {
      match = make(m);
      break;
    }
  }
  if (!match) {
    window.location.replace("#/endpoints");
    return;
  }
  const [section, view, params] = match;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${params.name ? `${params.name} · ` : ""}${TITLES[section]} · Portico`;

  const slow = setTimeout(() => {
    if (current === generation) main.replaceChildren(loading());
  }, 150);
  let node;
  try {
    node = await view({ ...params, refresh: render });
  } catch (error) {
    node = errorPage(error);
  } finally {
    clearTimeout(slow);
  }
  if (current !== generation) return;
  clear(main);
  main.append(node);
  main.dataset.view = `${section}:${view.name}`;
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

function errorPage(error) {
  const retry = h("button", { type: "button", class: "button" }, icon("refresh"), "Try again");
  retry.addEventListener("click", render);
  const notFound = error.status === 404;
  const unauthorized = error.status === 401;
  return h(
    "div",
    { class: "page narrow" },
    h("div", { class: "page-header" }, h("h1", {}, notFound ? "Not found" : unauthorized ? "Admin token required" : "Something went wrong")),
    errorAlert(notFound ? "The gateway has no such item." : unauthorized ? "Enter the admin token to manage this gateway." : "The gateway answered with an error.", error.message),
    h("div", { class: "page-actions" }, retry, h("a", { class: "button subtle", href: "#/endpoints" }, "Back to endpoints")),
  );
}

// ---- admin token prompt ----

const tokenDialog = document.getElementById("token-dialog");
const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("token-input");
const tokenError = document.getElementById("token-error");

setTokenPrompt(({ rejected }) => {
  tokenInput.value = "";
  tokenError.hidden = !rejected;
  tokenError.textContent = rejected ? "That token was not accepted. Check it and try again." : "";
  if (rejected) tokenInput.setAttribute("aria-invalid", "true");
  else tokenInput.removeAttribute("aria-invalid");
  tokenDialog.returnValue = "";
  if (!tokenDialog.open) tokenDialog.showModal();
  tokenInput.focus();
  return new Promise((resolve) => {
    tokenDialog.addEventListener("close", () => resolve(tokenDialog.returnValue === "ok" ? tokenInput.value.trim() || null : null), { once: true });
  });
});

tokenForm.addEventListener("submit", (event) => {
  if (!tokenInput.value.trim()) {
    event.preventDefault();
    tokenError.hidden = false;
    tokenError.textContent = "Enter the token.";
    tokenInput.setAttribute("aria-invalid", "true");
    tokenInput.focus();
  }
});
document.getElementById("token-cancel").addEventListener("click", () => tokenDialog.close(""));

const forget = document.getElementById("forget-token");
function syncForget() {
  forget.hidden = !getToken();
}
forget.addEventListener("click", () => {
  setToken("");
  render();
});
document.addEventListener("portico:token", syncForget);

// ---- theme: system by default, or the user's pick ----

const THEMES = ["system", "light", "dark"];
const THEME_LABELS = { system: "System theme", light: "Light theme", dark: "Dark theme" };
const THEME_ICONS = { system: "contrast", light: "sun", dark: "moon" };
const themeButton = document.getElementById("theme-toggle");

function storedTheme() {
  try {
    return THEMES.includes(localStorage.getItem("portico.theme")) ? localStorage.getItem("portico.theme") : "system";
  } catch {
    return "system";
  }
}

function applyTheme(theme) {
  if (theme === "system") document.documentElement.removeAttribute("data-theme");
  else document.documentElement.dataset.theme = theme;
  document.getElementById("theme-label").textContent = THEME_LABELS[theme];
  themeButton.setAttribute("aria-label", `${THEME_LABELS[theme]}: switch theme`);
  themeButton.title = `${THEME_LABELS[theme]} (click to switch)`;
  themeButton.firstElementChild.replaceChildren(icon(THEME_ICONS[theme]));
}

let theme = storedTheme();
themeButton.addEventListener("click", () => {
  theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
  try {
    localStorage.setItem("portico.theme", theme);
  } catch {
    // storage disabled: the choice lasts for this page
  }
  applyTheme(theme);
});

hydrateIcons(document);
applyTheme(theme);
syncForget();
window.addEventListener("hashchange", render);
render();
