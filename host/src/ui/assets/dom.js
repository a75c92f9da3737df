// DOM helpers. Everything is built with createElement and text nodes, never
// innerHTML, so names, messages and config values from the API cannot inject
// markup.

const SVG_NS = "http://www.w3.org/2000/svg";

/** h("div", {class: "x", onclick: fn}, child, [children], "text") */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "value" || key === "checked") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Icon paths (24×24 grid, stroked), drawn for this UI.
const ICONS = {
  route: ["M6 19a2 2 0 1 0 0-4 2 2 0 0 0 0 4Z", "M18 9a2 2 0 1 0 0-4 2 2 0 0 0 0 4Z", "M8 17h7.5a3.5 3.5 0 0 0 0-7h-7a3.5 3.5 0 0 1 0-7H16"],
  puzzle: ["M10 4.5a2 2 0 1 1 4 0V6h4v4h1.5a2 2 0 1 1 0 4H18v4h-4v-1.5a2 2 0 1 0-4 0V18H6v-4h1.5a2 2 0 1 0 0-4H6V6h4Z"],
  plus: ["M12 5v14", "M5 12h14"],
  copy: ["M9 9h10v10H9z", "M5 15V5h10"],
  check: ["m5 12.5 4.5 4.5L19 7.5"],
  edit: ["M4 20h4L19 9a2.8 2.8 0 0 0-4-4L4 16v4Z", "m13.5 6.5 4 4"],
  trash: ["M4 7h16", "M10 11v6", "M14 11v6", "M6 7l1 12a2 2 0 0 0 2 2h6a2 2 0 0 0 2-2l1-12", "M9 7V4h6v3"],
  code: ["m8 8-4 4 4 4", "m16 8 4 4-4 4", "m13.5 5-3 14"],
  search: ["M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14Z", "m20 20-4-4"],
  key: ["M8 15a4 4 0 1 0 0-8 4 4 0 0 0 0 8Z", "M12 11h9", "M18 11v3", "M21 11v2"],
  lock: ["M6 11h12v9H6z", "M8.5 11V8a3.5 3.5 0 0 1 7 0v3"],
  contrast: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18Z", "M12 3v18", "M12 8h4", "M12 12h5", "M12 16h4"],
  sun: ["M12 16a4 4 0 1 0 0-8 4 4 0 0 0 0 8Z", "M12 2v2", "M12 20v2", "M4.9 4.9l1.4 1.4", "M17.7 17.7l1.4 1.4", "M2 12h2", "M20 12h2", "M4.9 19.1l1.4-1.4", "M17.7 6.3l1.4-1.4"],
  moon: ["M20 14.5A8 8 0 0 1 9.5 4a8 8 0 1 0 10.5 10.5Z"],
  alert: ["M12 9v4", "M12 17h.01", "M10.3 3.9 2.4 18a2 2 0 0 0 1.7 3h15.8a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0Z"],
  refresh: ["M20 11a8 8 0 0 0-14.9-3.5L4 9", "M4 4v5h5", "M4 13a8 8 0 0 0 14.9 3.5L20 15", "M20 20v-5h-5"],
  eye: ["M2.5 12S6 5.5 12 5.5 21.5 12 21.5 12 18 18.5 12 18.5 2.5 12 2.5 12Z", "M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6Z"],
  eyeOff: ["M3 3l18 18", "M10.6 5.6A9.7 9.7 0 0 1 12 5.5c6 0 9.5 6.5 9.5 6.5a17 17 0 0 1-2.6 3.4", "M6.6 6.6A16.6 16.6 0 0 0 2.5 12S6 18.5 12 18.5a9.5 9.5 0 0 0 4.6-1.2", "M9.9 9.9a3 3 0 0 0 4.2 4.2"],
  arrowRight: ["M5 12h14", "m13 6 6 6-6 6"],
  chevronRight: ["m9 6 6 6-6 6"],
  wrench: ["M14.5 6.5a4 4 0 0 0 5 5L13 18a2.1 2.1 0 0 1-3-3l6.5-6.5", "M14.5 6.5 17 4a4 4 0 0 1 3 3l-2.5 2.5", "M10 15 4 21", "M3 20l1 1"],
  brain: ["M9 4a3 3 0 0 0-3 3 3 3 0 0 0-2 5 3 3 0 0 0 2 5 3 3 0 0 0 6 1V5a2 2 0 0 0-3-1Z", "M15 4a3 3 0 0 1 3 3 3 3 0 0 1 2 5 3 3 0 0 1-2 5 3 3 0 0 1-6 1"],
  database: ["M12 8c4.4 0 8-1.3 8-3s-3.6-3-8-3-8 1.3-8 3 3.6 3 8 3Z", "M4 5v14c0 1.7 3.6 3 8 3s8-1.3 8-3V5", "M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3"],
  image: ["M4 5h16v14H4z", "m4 16 5-5 4 4 2-2 5 5", "M15 9.5a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3Z"],
  vector: ["M5 19 19 5", "M5 19h6", "M5 19v-6", "M12 5h7v7"],
  layers: ["m12 3 9 5-9 5-9-5 9-5Z", "m3 13 9 5 9-5"],
  file: ["M14 3H6v18h12V7l-4-4Z", "M14 3v4h4"],
  clock: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18Z", "M12 7v5l3 2"],
  external: ["M14 4h6v6", "M20 4 10 14", "M18 14v6H4V6h6"],
};

export function icon(name, label) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  if (label) {
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
  } else {
    svg.setAttribute("aria-hidden", "true");
  }
  for (const d of ICONS[name] || []) {
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

/** Fills the `data-icon` placeholders of static markup. */
export function hydrateIcons(root) {
  for (const el of root.querySelectorAll("[data-icon]")) {
    if (!el.firstElementChild) el.append(icon(el.dataset.icon));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
}

export function toast(message, kind = "ok") {
  const box = document.getElementById("toasts");
  const el = h("div", { class: `toast ${kind === "error" ? "error" : ""}` }, icon(kind === "error" ? "alert" : "check"), h("span", {}, message));
  box.append(el);
  setTimeout(() => el.remove(), 4200);
}

/** A modal yes/no; resolves true when confirmed. */
export function confirmDialog({ title, message, confirmLabel = "Delete" }) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-desc").textContent = message;
  document.getElementById("confirm-ok").textContent = confirmLabel;
  dialog.returnValue = "";
  dialog.showModal();
  document.getElementById("confirm-cancel").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** Copies text; falls back to a hidden textarea where the async clipboard
 * API is unavailable (plain-http origins other than localhost). */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the legacy path
  }
  const area = h("textarea", { class: "visually-hidden", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** A button that copies `getText()` and confirms with a check mark. */
export function copyButton(getText, { label = "Copy", className = "copy", iconOnly = false, ariaLabel } = {}) {
  const text = h("span", {}, label);
  const btn = h("button", { type: "button", class: className, "aria-label": ariaLabel || label, title: ariaLabel || label }, icon("copy"), iconOnly ? null : text);
  btn.addEventListener("click", async () => {
    const ok = await copyText(getText());
    btn.classList.toggle("copied", ok);
    btn.replaceChild(icon(ok ? "check" : "alert"), btn.firstChild);
    if (!iconOnly) text.textContent = ok ? "Copied" : "Press Ctrl+C";
    setTimeout(() => {
      btn.classList.remove("copied");
      btn.replaceChild(icon("copy"), btn.firstChild);
      if (!iconOnly) text.textContent = label;
    }, 1800);
  });
  return btn;
}

export function loading(label = "Loading…") {
  return h("div", { class: "loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), label);
}

export function errorAlert(title, message) {
  return h("div", { class: "alert", role: "alert" }, icon("alert"), h("div", {}, h("strong", {}, title), message ? h("pre", {}, message) : null));
}
