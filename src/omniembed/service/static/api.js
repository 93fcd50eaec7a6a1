// The one way the page talks to the server: fetch with the API key (when one is set), and every error
// face's body (OpenAI and others: {"error": {...}}; TwelveLabs: {code, message}) read as {status, code, message}.

export const auth = { key: "", keyed: false };  // keyed: the server asks for a key

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export async function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  if (auth.key) headers.set("authorization", `Bearer ${auth.key}`);
  let response;
  try {
    response = await fetch(path, { ...init, headers });
  } catch (exc) {
    throw new ApiError(0, "network_error", `the server did not answer (${exc.message})`);
  }
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const e = (body && (body.error || body)) || {};  // OpenAI / others nest under "error"; TwelveLabs does not
    const message = e.message || e.detail || text || response.statusText;
    throw new ApiError(response.status, e.code || `http_${response.status}`, String(message).replace(/^input\[0\]: /, ""));
  }
  return body;
}
