// The API, as kubectl reaches it: every request goes to this page's own origin (kubectl proxy, or anything else that
// forwards to kube-apiserver with the user's identity), so the console can do exactly what its user may, nothing more.
// Failures become ApiError, worded as kubectl words them; lists can be followed with a watch.

const CONSOLE_PATH = 'apis/tenancy.loft.sh/v1/console';

/// Where the API is: the page's path up to its console folder (`/` through `kubectl proxy`, or a proxy's prefix).
export const root = (() => {
  const at = location.pathname.indexOf(CONSOLE_PATH);
  return at >= 0 ? location.pathname.slice(0, at) : '/';
})();

export const SPACES = 'apis/tenancy.loft.sh/v1/spaces';
export const ACCOUNTS = 'apis/tenancy.loft.sh/v1/accounts';
export const CONFIG = 'apis/config.tenancy.loft.sh/v1';
export const CONNECTIONS = 'apis/tenancy.loft.sh/v1/clusterconnections';

/// A failed request: `message` is what kubectl would print for it; `status` the server's metav1.Status, if it sent one.
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }

  get code() {
    return this.status?.code;
  }
}

/// kubectl's words for a Status: `Error from server (Reason): message`.
export function describe(status) {
  const reason = status.reason ? ` (${status.reason})` : '';
  return `Error from server${reason}: ${status.message || 'an unknown error'}`;
}

async function failure(response) {
  const text = await response.text().catch(() => '');
  let status;
  try {
    status = JSON.parse(text);
  } catch {
    status = undefined;
  }
  if (status?.kind === 'Status') {
    return new ApiError(describe(status), status);
  }
  const detail = text.trim().slice(0, 300);
  const fallback = {kind: 'Status', code: response.status, message: detail};
  return new ApiError(
    `Error from server: the server responded with HTTP ${response.status}${detail ? `: ${detail}` : ''}`,
    fallback,
  );
}

async function send(method, path, body, signal) {
  const init = {method, headers: {Accept: 'application/json'}, signal, credentials: 'same-origin'};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(root + path, init);
  } catch (error) {
    if (error.name === 'AbortError') {
      throw error;
    }
    throw new ApiError(`Unable to connect to the server: ${error.message} (is kubectl proxy still running?)`);
  }
  if (!response.ok) {
    throw await failure(response);
  }
  return response;
}

/// The JSON answer of a request.
export async function request(method, path, body) {
  const response = await send(method, path, body);
  return response.json();
}

export const get = (path) => request('GET', path);

/// Streams the watch of `path` from `resourceVersion`, calling `onEvent` per event, until the server ends it. An
/// ERROR event (410 Expired among them) is thrown as an ApiError.
export async function watch(path, resourceVersion, onEvent, signal) {
  const query = new URLSearchParams({watch: '1', resourceVersion, allowWatchBookmarks: 'true'});
  const response = await send('GET', `${path}?${query}`, undefined, signal);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) {
      return;
    }
    buffered += value;
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (!line) {
        continue;
      }
      const event = JSON.parse(line);
      if (event.type === 'ERROR') {
        throw new ApiError(describe(event.object), event.object);
      }
      onEvent(event);
    }
  }
}

/// Keeps `items` (name -> object) equal to the collection at `path`, as client-go's informers do: list, then watch from
/// the list's resourceVersion; a watch that ends is resumed from the last version seen; an expired one (410), or any
/// failure, relists. `onChange(items)` after every change; `onError(error)` for failures, which are retried with backoff.
export function follow(path, {onChange, onError}) {
  const items = new Map();
  const controller = new AbortController();
  let delay = 1000;
  const run = async () => {
    while (!controller.signal.aborted) {
      let version;
      try {
        const list = await get(path);
        items.clear();
        for (const item of list.items || []) {
          items.set(item.metadata.name, item);
        }
        version = list.metadata?.resourceVersion || '';
        delay = 1000;
        onChange(items);
        for (;;) {
          const started = Date.now();
          await watch(path, version, (event) => {
            const object = event.object;
            version = object?.metadata?.resourceVersion || version;
            if (event.type === 'BOOKMARK') {
              return;
            }
            if (event.type === 'DELETED') {
              items.delete(object.metadata.name);
            } else {
              items.set(object.metadata.name, object);
            }
            onChange(items);
          }, controller.signal);
          // Ended by the server (its timeout, a restart): resume, though not in a tight loop if it keeps ending at once.
          if (Date.now() - started < 1000) {
            await new Promise((resolve) => setTimeout(resolve, 1000));
          }
        }
      } catch (error) {
        if (controller.signal.aborted) {
          return;
        }
        // 410: the history is gone, a relist is the answer (at once); anything else is worth telling.
        if (error.code !== 410) {
          onError(error);
          await new Promise((resolve) => setTimeout(resolve, delay));
          delay = Math.min(delay * 2, 30000);
        }
      }
    }
  };
  run();
  return {items, stop: () => controller.abort()};
}
