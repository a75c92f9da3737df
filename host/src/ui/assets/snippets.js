// Copy-paste snippets for calling an endpoint with each official SDK,
// pointed at this gateway (the page's own origin).

import { copyButton, h, icon } from "./dom.js";

export function baseUrls(origin = window.location.origin) {
  return {
    openai: `${origin}/gateway/openai/v1`,
    anthropic: `${origin}/gateway/anthropic`,
    gemini: `${origin}/gateway/gemini`,
  };
}

// Python string literal (the endpoint name is [A-Za-z0-9._-], but be safe).
const py = (s) => JSON.stringify(String(s));

/** The snippets for one endpoint: [{id, label, language, install, code, note}]. */
export function snippetsFor(name, { embeddings = false } = {}, origin = window.location.origin) {
  const urls = baseUrls(origin);
  const openai = embeddings
    ? `from openai import OpenAI

client = OpenAI(
    base_url=${py(urls.openai)},
    api_key="dummy",
)

result = client.embeddings.create(
    model=${py(name)},
    input=["Portico routes this through the gateway."],
)
print(len(result.data[0].embedding))
`
    : `from openai import OpenAI

client = OpenAI(
    base_url=${py(urls.openai)},
    api_key="dummy",
)

response = client.chat.completions.create(
    model=${py(name)},
    messages=[{"role": "user", "content": "Hello!"}],
)
print(response.choices[0].message.content)
`;

  const anthropic = `import anthropic

client = anthropic.Anthropic(
    base_url=${py(urls.anthropic)},
    api_key="dummy",
)

message = client.messages.create(
    model=${py(name)},
    max_tokens=1024,
    messages=[{"role": "user", "content": "Hello!"}],
)
print(message.content[0].text)
`;

  const gemini = embeddings
    ? `from google import genai
from google.genai import types

client = genai.Client(
    api_key="dummy",
    http_options=types.HttpOptions(
        base_url=${py(urls.gemini)},
    ),
)

result = client.models.embed_content(
    model=${py(name)},
    contents="Portico routes this through the gateway.",
)
print(len(result.embeddings[0].values))
`
    : `from google import genai
from google.genai import types

client = genai.Client(
    api_key="dummy",
    http_options=types.HttpOptions(
        base_url=${py(urls.gemini)},
    ),
)

response = client.models.generate_content(
    model=${py(name)},
    contents="Hello!",
)
print(response.text)
`;

  const body = embeddings
    ? { model: name, input: "Portico routes this through the gateway." }
    : { model: name, messages: [{ role: "user", content: "Hello!" }] };
  const curl = `curl ${urls.openai}/${embeddings ? "embeddings" : "chat/completions"} \\
  -H "Content-Type: application/json" \\
  -d '${JSON.stringify(body).replaceAll("'", "'\\''")}'
`;

  const list = [
    { id: "openai", label: "OpenAI", language: "python", install: "pip install openai", code: openai, baseUrl: urls.openai },
    embeddings
      ? { id: "anthropic", label: "Anthropic", language: "python", install: "pip install anthropic", code: null, baseUrl: urls.anthropic, note: "The Anthropic API has no embeddings: call this endpoint with the OpenAI or Gemini SDK." }
      : { id: "anthropic", label: "Anthropic", language: "python", install: "pip install anthropic", code: anthropic, baseUrl: urls.anthropic },
    { id: "gemini", label: "Gemini", language: "python", install: "pip install google-genai", code: gemini, baseUrl: urls.gemini },
    { id: "curl", label: "curl", language: "shell", install: null, code: curl, baseUrl: urls.openai },
  ];
  return list;
}

// A deliberately small highlighter: strings, comments, keywords, numbers
// (Python) and flags (shell). Output is text nodes inside spans.
const PATTERNS = {
  python: /(#[^\n]*)|("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')|\b(from|import|print|True|False|None|as)\b|\b(\d+)\b/g,
  shell: /(#[^\n]*)|('(?:[^'])*'|"(?:[^"\\]|\\.)*")|\b(curl)\b|(?<=\s)(-[A-Za-z]\b|--[a-z-]+)/g,
};

export function highlight(code, language) {
  const pattern = PATTERNS[language];
  const out = [];
  let last = 0;
  if (pattern) {
    pattern.lastIndex = 0;
    for (const m of code.matchAll(pattern)) {
      const [whole, comment, string, keyword, other] = m;
      const token = comment || string || keyword || other;
      const start = m.index + whole.indexOf(token);
      if (start > last) out.push(code.slice(last, start));
      const cls = comment ? "tok-comment" : string ? "tok-string" : keyword ? "tok-keyword" : language === "shell" ? "tok-flag" : "tok-number";
      out.push(h("span", { class: cls }, token));
      last = start + token.length;
    }
  }
  out.push(code.slice(last));
  return out;
}

export function codeBlock(code, language, label) {
  return h(
    "div",
    { class: "codeblock" },
    h("pre", { tabindex: "0", "aria-label": label }, h("code", { class: `language-${language}` }, highlight(code.trimEnd(), language))),
    copyButton(() => code, { ariaLabel: `Copy ${label}`, label: "Copy" }),
  );
}

/** The tabbed "Connect" card for an endpoint. */
export function snippetCard(name, { embeddings = false } = {}) {
  const snippets = snippetsFor(name, { embeddings });
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "SDK" });
  const panels = [];
  snippets.forEach((snippet, i) => {
    const tabId = `tab-${snippet.id}`;
    const panelId = `panel-${snippet.id}`;
    const tab = h(
      "button",
      { type: "button", class: "tab", role: "tab", id: tabId, "aria-controls": panelId, "aria-selected": i === 0 ? "true" : "false", tabindex: i === 0 ? "0" : "-1", dataset: { snippet: snippet.id } },
      snippet.label,
    );
    const panel = h(
      "div",
      { class: "snippet-panel", role: "tabpanel", id: panelId, "aria-labelledby": tabId, hidden: i !== 0, dataset: { snippet: snippet.id } },
      h(
        "div",
        { class: "base-url" },
        h(
          "span",
          { class: "base-url-main" },
          h("span", {}, "Base URL"),
          h("code", { class: "base-url-value" }, snippet.baseUrl),
          copyButton(() => snippet.baseUrl, { className: "icon-button", iconOnly: true, ariaLabel: `Copy the ${snippet.label} base URL` }),
        ),
        snippet.install ? h("span", { class: "install" }, h("code", {}, snippet.install)) : null,
      ),
      snippet.code
        ? codeBlock(snippet.code, snippet.language, `${snippet.label} ${snippet.language === "python" ? "SDK " : ""}example`)
        : h("div", { class: "alert warn" }, icon("alert"), h("div", {}, snippet.note)),
    );
    tab.addEventListener("click", () => select(i));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      event.preventDefault();
      const next = (i + step + snippets.length) % snippets.length;
      select(next);
      tabs.children[next].focus();
    });
    tabs.append(tab);
    panels.push(panel);
  });

  function select(index) {
    [...tabs.children].forEach((tab, i) => {
      tab.setAttribute("aria-selected", i === index ? "true" : "false");
      tab.tabIndex = i === index ? 0 : -1;
    });
    panels.forEach((panel, i) => {
      panel.hidden = i !== index;
    });
  }

  return h(
    "section",
    { class: "card", id: "connect", "aria-labelledby": "connect-title" },
    h(
      "div",
      { class: "card-header" },
      h("div", {}, h("h2", { id: "connect-title" }, "Connect"), h("p", { class: "sub" }, "Point the official SDK at this gateway and pass the endpoint name as the model. The gateway holds the provider credentials, so the SDK's api_key is only a placeholder.")),
    ),
    tabs,
    panels,
  );
}
