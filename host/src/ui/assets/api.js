// The management API client: JSON in and out, errors as ApiError carrying
// the API's {"error": {"message", "type"}}, and the admin token.
//
// The token lives in sessionStorage: it survives reloads of this tab but
// not the browser session, and is never written to localStorage or cookies.

const TOKEN_KEY = "portico.adminToken";

export class ApiError extends Error {
  constructor(status, message, type) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
  }
}

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lasts as long as the prompt answers
  }
  document.dispatchEvent(new CustomEvent("portico:token"));
}

// Asks the user for a token: `async ({rejected}) => token | null`. Set by
// the app shell; one prompt is shared by every request that got a 401.
let promptForToken = async () => null;
let pendingPrompt = null;

export function setTokenPrompt(fn) {
  promptForToken = fn;
}

function askToken(rejected) {
  if (!pendingPrompt) {
    pendingPrompt = promptForToken({ rejected }).finally(() => {
      pendingPrompt = null;
    });
  }
  return pendingPrompt;
}

export async function api(method, path, body) {
  for (;;) {
    const token = getToken();
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Bearer ${token}`;

    let response;
    try {
      response = await fetch(`/api/v1${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (error) {
      throw new ApiError(0, `Cannot reach the gateway (${error.message}).`, "network");
    }

    if (response.status === 401) {
      // Someone else may have entered a token while this request was in
      // flight: retry with it before asking again.
      if (getToken() !== token) continue;
      if (token) setToken("");
      const entered = await askToken(Boolean(token));
      if (!entered) throw new ApiError(401, "The management API needs the admin token.", "unauthorized");
      setToken(entered);
      continue;
    }

    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const message = data?.error?.message || text.trim() || `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message, data?.error?.type);
    }
    return data;
  }
}

export const listProviders = () => api("GET", "/providers");
export const listPlugins = () => api("GET", "/plugins");
export const listEndpoints = () => api("GET", "/endpoints");
export const getEndpoint = (name) => api("GET", `/endpoints/${encodeURIComponent(name)}`);
export const createEndpoint = (endpoint) => api("POST", "/endpoints", endpoint);
export const updateEndpoint = (name, endpoint) => api("PUT", `/endpoints/${encodeURIComponent(name)}`, endpoint);
export const deleteEndpoint = (name) => api("DELETE", `/endpoints/${encodeURIComponent(name)}`);
