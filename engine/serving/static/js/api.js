// The API client: the token lives in sessionStorage and travels only in the
// Authorization header. Errors become ApiError carrying the server's "detail".

const TOKEN_KEY = "labelengine.token";
const SINCE_KEY = "labelengine.since";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function since() {
  return sessionStorage.getItem(SINCE_KEY);
}

export function signIn(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
  if (!since()) sessionStorage.setItem(SINCE_KEY, new Date().toISOString());
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(SINCE_KEY);
}

// A login link is http://HOST:PORT/#token=<token>: the fragment never reaches the
// server (nor its logs). Take it, keep it, and remove it from the address bar.
export function tokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const value = params.get("token");
  if (!value) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return value;
}

function headers(json) {
  const out = { Authorization: `Bearer ${token()}` };
  if (json) out["Content-Type"] = "application/json";
  return out;
}

async function detailOf(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    return JSON.stringify(body.detail ?? body);
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

// JSON in, JSON out; {status, data} (data null for 204). keepalive lets a request
// outlive the page (a release on unload; sendBeacon cannot send headers).
export async function call(method, path, body, { keepalive = false } = {}) {
  const init = { method, headers: headers(body !== undefined), keepalive };
  if (body !== undefined) init.body = JSON.stringify(body);
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `the server cannot be reached (${err.message})`);
  }
  if (!response.ok) throw new ApiError(response.status, await detailOf(response));
  const data = response.status === 204 ? null : await response.json();
  return { status: response.status, data };
}

export const get = (path) => call("GET", path);
export const post = (path, body, options) => call("POST", path, body ?? {}, options);

// An image through the token: a blob URL the caller revokes when done.
export async function imageUrl(path) {
  const response = await fetch(path, { headers: headers(false) });
  if (!response.ok) throw new ApiError(response.status, await detailOf(response));
  return URL.createObjectURL(await response.blob());
}

export function clientKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// A handler that runs ``fn`` and hands any error to ``onError`` (the page's banner).
export function guarded(fn, onError) {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (err) {
      onError(err);
    }
  };
}
