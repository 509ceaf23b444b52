// /sync over the homeserver's WebSocket transport (docs/websocket.md).
//
// matrix-js-sdk long-polls GET /sync; it lets us hand it the `fetch` it
// uses. This one answers the SDK's incremental /sync requests from frames
// of one WebSocket instead, so a new message reaches the screen the moment
// the server has it, without a request per delta:
//
// - Each frame the server pushes is exactly a /sync response, and frame k is
//   the sync *from* the previous frame's next_batch (the first frame: from
//   the `since` the socket was opened with). So a request "since T" is
//   answered by the frame whose from-token is T, and frames come in order
//   with nothing missed or repeated.
// - A request for a token the socket is not at (the SDK restarted, or went
//   back after an error) reopens the socket with since=T; a request at the
//   socket's position waits for the next frame up to its timeout, then gets
//   an empty sync at the same token (as an idle long poll would).
// - The socket closing or failing to open sends that request, and the next
//   ones for a while, over plain HTTP with the same token: no gap, no
//   repeat. Close code 4001 (token logged out) is a 401, as /sync gives.
//
// The initial sync (no `since`) and every other request use plain fetch.

const STREAM_PATH = "/_matrix/client/unstable/stream";
export const WEBSOCKET_FEATURE = "org.matrix.websockets_draft";
const CONNECT_TIMEOUT_MS = 10_000;
const FALLBACK_MS = 30_000;

interface Frame {
  from: string;
  body: string;
}

function emptySync(token: string): string {
  return JSON.stringify({
    next_batch: token,
    rooms: { join: {}, invite: {}, leave: {}, knock: {} },
    presence: { events: [] },
    account_data: { events: [] },
    to_device: { events: [] },
  });
}

function abortError(): DOMException {
  return new DOMException("The sync request was aborted", "AbortError");
}

class SocketClosed extends Error {
  constructor(readonly code: number) {
    super(`WebSocket closed (${code})`);
  }
}

export class WebSocketSync {
  private ws: WebSocket | null = null;
  private key = ""; // filter and set_presence the socket was opened with
  private position: string | null = null; // next_batch of the last frame
  private frames: Frame[] = [];
  private wake: (() => void)[] = [];
  private closedWith: number | null = null;
  private httpUntil = 0;
  private stopped = false;
  /** Deltas served from the socket (for the status line and tests). */
  public framesServed = 0;

  constructor(
    private readonly baseUrl: string,
    private readonly accessToken: string,
    private readonly realFetch: typeof fetch = window.fetch.bind(window),
  ) {}

  get connected(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  stop(): void {
    this.stopped = true;
    this.close();
  }

  readonly fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : String(input), this.baseUrl);
    const method = (init?.method ?? "GET").toUpperCase();
    const since = url.searchParams.get("since");
    if (
      method !== "GET" ||
      !url.pathname.endsWith("/_matrix/client/v3/sync") ||
      !since ||
      this.stopped ||
      Date.now() < this.httpUntil
    ) {
      return this.realFetch(input, init);
    }
    const key = JSON.stringify([url.searchParams.get("filter"), url.searchParams.get("set_presence")]);
    const timeout = Number(url.searchParams.get("timeout") ?? "30000");
    try {
      const body = await this.next(url, since, key, timeout, init?.signal ?? undefined);
      this.framesServed += 1;
      return new Response(body, { status: 200, headers: { "Content-Type": "application/json" } });
    } catch (e) {
      if (e instanceof DOMException && e.name === "AbortError") throw e;
      if (e instanceof SocketClosed && e.code === 4001) {
        return new Response(
          JSON.stringify({ errcode: "M_UNKNOWN_TOKEN", error: "Access token logged out" }),
          { status: 401, headers: { "Content-Type": "application/json" } },
        );
      }
      // the socket is gone or never came: plain /sync from the same token
      this.close();
      this.httpUntil = Date.now() + FALLBACK_MS;
      return this.realFetch(input, init);
    }
  };

  private async next(
    url: URL,
    since: string,
    key: string,
    timeout: number,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const at = this.frames.findIndex((f) => f.from === since);
    if (at >= 0 && key === this.key) {
      const frame = this.frames[at];
      this.frames = this.frames.slice(at + 1);
      return frame.body;
    }
    const atPosition = this.ws !== null && key === this.key && since === this.position;
    if (!atPosition) {
      this.open(url, since, key);
      // the first frame (the sync from `since`, timeout 0) always comes
      await this.waitForFrame(CONNECT_TIMEOUT_MS, signal, true);
      return this.next(url, since, key, timeout, signal);
    }
    const got = await this.waitForFrame(timeout, signal, false);
    if (!got) return emptySync(since);
    return this.next(url, since, key, timeout, signal);
  }

  private open(url: URL, since: string, key: string): void {
    this.close();
    const ws = new URL(STREAM_PATH, this.baseUrl);
    ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
    ws.searchParams.set("access_token", this.accessToken);
    ws.searchParams.set("since", since);
    for (const name of ["filter", "set_presence"]) {
      const value = url.searchParams.get(name);
      if (value !== null) ws.searchParams.set(name, value);
    }
    const socket = new WebSocket(ws.toString(), "m.json");
    this.ws = socket;
    this.key = key;
    this.position = since;
    this.frames = [];
    this.closedWith = null;
    socket.onmessage = (msg) => {
      if (this.ws !== socket || typeof msg.data !== "string") return;
      let parsed: { id?: unknown; next_batch?: unknown };
      try {
        parsed = JSON.parse(msg.data);
      } catch {
        return;
      }
      if ("id" in parsed || typeof parsed.next_batch !== "string") return; // not a delta
      this.frames.push({ from: this.position ?? since, body: msg.data });
      this.position = parsed.next_batch;
      this.notify();
    };
    socket.onclose = (ev) => {
      if (this.ws !== socket) return;
      this.ws = null;
      this.closedWith = ev.code || 1006;
      this.notify();
    };
  }

  private close(): void {
    const ws = this.ws;
    this.ws = null;
    this.frames = [];
    this.position = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = [];
    for (const w of wake) w();
  }

  /** Whether a frame came within `ms`; throws when the socket closed (or,
   * with `mustCome`, when none came in time) and on abort. */
  private waitForFrame(ms: number, signal: AbortSignal | undefined, mustCome: boolean): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      if (this.frames.length > 0) return resolve(true);
      if (this.ws === null) return reject(new SocketClosed(this.closedWith ?? 1006));
      if (signal?.aborted) return reject(abortError());
      let done = false;
      const finish = (f: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        f();
      };
      const onAbort = () => finish(() => reject(abortError()));
      const timer = setTimeout(
        () => finish(() => (mustCome ? reject(new SocketClosed(1006)) : resolve(false))),
        ms,
      );
      signal?.addEventListener("abort", onAbort);
      const onWake = () => {
        if (done) return;
        if (this.frames.length > 0) finish(() => resolve(true));
        else if (this.ws === null) finish(() => reject(new SocketClosed(this.closedWith ?? 1006)));
        else this.wake.push(onWake);
      };
      this.wake.push(onWake);
    });
  }
}
